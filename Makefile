# Castor: the two commands of the README.
#   make demo   install missing Debian packages, build, run the demo
#   make check  install missing Debian packages, build, run every test
# Also: make build, make test-asan (unit and kvm tests under ASan+UBSan),
# make check-nested (the kvm/net/cluster/linux tests on an emulated machine with
# KVM, for hosts without /dev/kvm: tests/README.md), make clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: all deps build demo check check-nested test-asan clean

all: build

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASTOR_TEST_TIMEOUT_SCALE=1 >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# the engine on one and two hosts, then the cluster of three (scripts/demo-cluster.py)
demo: build
	./scripts/demo.sh $(BUILD)
	./scripts/demo-cluster.py $(BUILD)

# ctest-report.sh: ctest as it is, then how many tests were skipped and which
check: build
	cd $(BUILD) && $(CURDIR)/scripts/ctest-report.sh --output-on-failure -j $(JOBS) -LE slow

check-nested: build
	./scripts/check-nested.sh $(BUILD)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCASTOR_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && $(CURDIR)/scripts/ctest-report.sh --output-on-failure -j $(JOBS) -L "unit|kvm"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
