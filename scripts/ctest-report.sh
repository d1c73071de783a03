#!/usr/bin/env bash
# ctest, then one line on what did not run: ctest counts a skipped test (exit
# 77) as passed in its "100% tests passed" line, so `make check` says how many
# were skipped and which. ctest's own output and exit status are unchanged.
#   cd BUILD && ctest-report.sh [ctest arguments...]
set -u
log=$(mktemp /tmp/castor-ctest.XXXXXX)
trap 'rm -f "$log"' EXIT

ctest "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# "  3/45 Test #21: kvm_test_boot ......***Skipped   0.01 sec"
names=$(sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: ([^ ]+) .*\*\*\*(Skipped|Not Run).*/\1/p' "$log")
total=$(grep -cE '^ *[0-9]+/[0-9]+ +Test +#' "$log")
if [ -n "$names" ]; then
	n=$(printf '%s\n' "$names" | wc -l)
	echo "castor: $n of $total tests skipped (set CASTOR_REQUIRE_KVM=1 to make a skip fail):" \
		$names
else
	echo "castor: 0 of $total tests skipped"
fi
exit "$rc"
