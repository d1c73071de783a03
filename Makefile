# Castor: the two commands of the README.
#   make demo   install missing Debian packages, build, run the demo
#   make check  install missing Debian packages, build, run every test
# Also: make build, make test-asan (unit and kvm tests under ASan+UBSan), make clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: all deps build demo check test-asan clean

all: build

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

# ctest-report.sh: ctest as it is, then how many tests were skipped and which
check: build
	cd $(BUILD) && $(CURDIR)/scripts/ctest-report.sh --output-on-failure -j $(JOBS) -LE slow

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCASTOR_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && $(CURDIR)/scripts/ctest-report.sh --output-on-failure -j $(JOBS) -L "unit|kvm"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
