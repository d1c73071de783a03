#!/usr/bin/env bash
# castor bench, small: pause, dirty, snapshot and checkpoint each run to the
# end on a small guest and report figures that make sense together (never a
# speed: tests do not assert on time). bench net runs in tests/net/vm_net.sh.
#   bench_smoke.sh CASTOR
set -u
CLI=$1
. "$(dirname "$0")/../require.sh"
[ -c /dev/kvm ] || test_skip "/dev/kvm is absent"
dir=$(mktemp -d /tmp/castor-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# check NAME PYTHON-EXPR FILE: the JSON object in FILE as `d` satisfies EXPR
check() {
	if python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); assert eval("(" + sys.argv[1] + ")"), sys.argv[1]' "$2" "$3" 2>"$dir/err"; then
		ok "$1"
	else
		bad "$1: $(tail -1 "$dir/err"): $(head -c 600 "$3")"
	fi
}

# bench pause and bench dirty print one JSON object a line: check each
lines() {
	local what=$1 expr=$2 file=$3 n=0
	while IFS= read -r line; do
		printf '%s' "$line" >"$dir/line.json"
		check "$what: $(head -c 60 "$dir/line.json")" "$expr" "$dir/line.json"
		n=$((n + 1))
	done <"$file"
	[ "$n" -gt 0 ] || bad "$what: no output"
}
if "$CLI" bench pause --cpus 1,2 --cycles 50 --mem 64M --json >"$dir/pause.json" 2>"$dir/pause.log"; then
	lines "bench pause" '0 < d["pause_p50_us"] <= d["pause_p99_us"] and d["cycles"] == 50' "$dir/pause.json"
else
	bad "bench pause: $(tail -3 "$dir/pause.log")"
fi
if "$CLI" bench dirty --mem 64M --reps 2 --json >"$dir/dirty.json" 2>"$dir/dirty.log"; then
	lines "bench dirty" 'd["pages"] >= d["dirty_pct"] * 16384 // 100 * 9 // 10 and d["harvest_p50_us"] > 0 and d["bare_p50_us"] > 0' "$dir/dirty.json"
else
	bad "bench dirty: $(tail -3 "$dir/dirty.log")"
fi

if "$CLI" bench snapshot --mem 64M --reps 2 --json >"$dir/snap.json" 2>"$dir/snap.log"; then
	check "bench snapshot" 'all(d[k] > 0 for k in ("full_pause_p50_ms", "incremental_pause_p50_ms",
		"restore_to_running_p50_ms", "lazy_restore_to_running_p50_ms",
		"warm_restore_to_running_p50_ms", "warm_lazy_restore_to_running_p50_ms"))
		and d["full_bytes"] > d["incremental_bytes"] > 0' "$dir/snap.json"
else
	bad "bench snapshot: $(tail -3 "$dir/snap.log")"
fi

if "$CLI" bench checkpoint --mem 64M --wss 1M --rates 10 --intervals 10 --secs 1 \
	--csv "$dir/ck.csv" >"$dir/ck.out" 2>"$dir/ck.log"; then
	python3 - "$dir/ck.csv" >"$dir/ck.json" <<'EOF'
import csv, json, sys
print(json.dumps(next(csv.DictReader(open(sys.argv[1])))))
EOF
	check "bench checkpoint" 'd["status"] == "ok" and float(d["epochs_per_s"]) > 0
		and 0 < float(d["pause_p50_ms"]) <= float(d["pause_p99_ms"])
		and 0 < float(d["wire_over_raw"]) < 1 and float(d["pages_per_epoch"]) > 0
		and float(d["guest_throughput"]) > 0' "$dir/ck.json"
else
	bad "bench checkpoint: $(tail -3 "$dir/ck.log")"
fi

# bench dr: a DR session beside a twin, its link capped at 50 Mbit/s: checkpoints commit,
# each carries bytes, the twin's epochs go on beside them (more of them, shorter)
if "$CLI" bench dr --mem 64M --wss 1M --rates 10 --link-mbit 50 --rpo 1000 --secs 4 --json \
	>"$dir/dr.json" 2>"$dir/dr.log"; then
	check "bench dr" 'd["error"] is None and d["checkpoints"] > 0 and d["twin_epochs"] > d["checkpoints"]
		and 0 < d["rpo_p50_ms"] <= d["rpo_p99_ms"] and d["dr_bytes_per_checkpoint"] > 0
		and d["twin_bytes_per_checkpoint"] > 0
		and d["link_mbit"] == 50' "$dir/dr.json"
else
	bad "bench dr: $(tail -3 "$dir/dr.log")"
fi

echo "$fails failure(s)"
[ "$fails" = 0 ]
