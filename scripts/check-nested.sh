#!/usr/bin/env bash
# make check-nested: the kvm, net, cluster and linux tests on the nested test
# machine of tests/nested/nest.sh (QEMU TCG with emulated SVM: a real
# /dev/kvm for hosts that have none), with CASTOR_REQUIRE_KVM=1 so that a
# test that cannot run fails. Test timeouts are multiplied by 5 for the run
# (CASTOR_TEST_TIMEOUT_SCALE) and put back after it. Three machines, one per
# group (kvm, net, cluster+linux), each run again up to twice if it froze
# (nest.sh --retries 2; freezes were seen about once a run): a frozen emulator
# costs one group, not the whole run.
#   scripts/check-nested.sh BUILD [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
build=$(cd "${1:?usage: check-nested.sh BUILD [ctest arguments...]}" && pwd)
shift
scale_back() {
	cmake -S "$top" -B "$build" -DCASTOR_TEST_TIMEOUT_SCALE=1 >/dev/null
}
trap scale_back EXIT
cmake -S "$top" -B "$build" -DCASTOR_TEST_TIMEOUT_SCALE=5 >/dev/null
export CASTOR_REQUIRE_KVM=1
cd "$build"
failed=
for group in kvm net "cluster|linux"; do
	echo "check-nested: the '$group' tests"
	"$top/tests/nested/nest.sh" --build . --retries 2 -- "$top/scripts/ctest-report.sh" \
		--output-on-failure -L "$group" -LE slow "$@" || failed="$failed '$group'"
done
if [ -n "$failed" ]; then
	echo "check-nested: FAILED:$failed"
	exit 1
fi
echo "check-nested: every group passed"
