# What a test does when something it needs is missing (sourced by the shell
# tests). Without CASTOR_REQUIRE_KVM it is skipped: exit 77, which ctest counts
# as "not run". With CASTOR_REQUIRE_KVM=1 (.ci/run sets it) it fails instead,
# naming what was missing, so CI cannot pass without running its VMs.
#
#   . "$(dirname "$0")/../require.sh"
#   [ -c /dev/kvm ] || test_skip "/dev/kvm is absent"

test_skip() {
	if [ "${CASTOR_REQUIRE_KVM:-}" = 1 ]; then
		echo "FAIL: CASTOR_REQUIRE_KVM=1 but this test cannot run: $*"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}

# For what no machine of this project's CI has (hardware virtualization for the
# `linux` tests, an RDMA device): skipped even under CASTOR_REQUIRE_KVM=1, with
# the reason, because requiring it would fail every run rather than catch a gap.
test_not_here() {
	echo "SKIP: $*"
	exit 77
}
