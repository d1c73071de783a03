#!/usr/bin/env bash
# A fuzzing campaign over every libFuzzer harness (tests/fuzz/), keeping a minimized
# corpus per harness in tests/fuzz/corpus/NAME (in the repository, so the next campaign
# and the smoke runs start from what earlier ones found).
#   scripts/fuzz-campaign.sh SECONDS [NAME ...]      (default: every harness)
# Builds with clang into build-fuzz/ (-DCASTOR_FUZZ=ON); runs two harnesses at a time;
# a crash stops that harness and leaves crash-* / leak-* files in build-fuzz/findings/NAME.
# Prints one line per harness: executions, corpus size, and whether it crashed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:?usage: fuzz-campaign.sh SECONDS [NAME ...]}
shift
all="fuzz_frame fuzz_json fuzz_params fuzz_stream fuzz_stream_verify fuzz_codec fuzz_differential fuzz_cluster_conf fuzz_kernel fuzz_handshake fuzz_disk fuzz_session_verify"
names=${*:-$all}
build=$here/build-fuzz
CC=clang cmake -S "$here" -B "$build" -DCASTOR_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $names >/dev/null

run_one() {
	local n=$1 bin=$build/tests/fuzz/$1 corpus=$here/tests/fuzz/corpus/$1
	local work=$build/findings/$n
	mkdir -p "$corpus" "$work/new"
	# seeds from the smoke harness (-w), then the campaign into a scratch corpus
	"$build/tests/fuzz/${n}_smoke" -w "$work/new" >/dev/null 2>&1 || true
	local rc=0
	(cd "$work" && "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 "$work/new" "$corpus" >"$work/log" 2>&1) || rc=$?
	# keep only what adds coverage
	mkdir -p "$work/min"
	"$bin" -merge=1 "$work/min" "$corpus" "$work/new" >/dev/null 2>&1 || true
	rm -rf "$corpus" && mv "$work/min" "$corpus"
	local execs
	execs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$' || echo "?")
	printf '%-22s %s s, %s executions, corpus %s files, %s\n' "$n" "$secs" "$execs" \
		"$(ls "$corpus" | wc -l)" "$([ "$rc" = 0 ] && echo "no crash" || echo "CRASH (exit $rc): see $work")"
}

set -- $names
while [ $# -gt 0 ]; do
	run_one "$1" &
	if [ $# -gt 1 ]; then run_one "$2" & fi
	wait
	shift $(($# > 1 ? 2 : 1))
done
