#!/bin/sh
# castor disk sync / receive / log as a user runs them: two processes, real files,
# loopback TCP (docs/disks.md).
#   test_disk_cli.sh CASTOR
# Checks: option errors (exit 2); a checksum sync makes the images equal and sends
# only the ranges that changed (the summary's counts); a dirty sync sends what the
# log marks and resets it; a damaged log shows as all dirty; an image of another
# size is refused at both ends; a receiver or a source killed mid-transfer, or a
# source that stops answering, ends the other end with a clear error and exit 1
# within its timeout; and, as root in a private mount namespace, a read-only or a
# full destination. Every command runs under timeout(1): a hang fails the test.
set -u

castor=$1
tmp=$(mktemp -d /tmp/castor-test-disk.XXXXXX)
fails=0
pids=

cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

. "$(dirname "$0")/clitest.sh"

RANGE=65536

expect_usage_error() {
	run "$@"
	expect_rc 2
	expect_in err "castor: "
	expect_empty out
}

# start_bg OUT ERR ARGS...: castor ARGS in the background, its pid in $bgpid (so
# that signals reach castor itself), killed by a watchdog if still there after 60 s
start_bg() {
	o=$1
	e=$2
	shift 2
	"$castor" "$@" >"$o" 2>"$e" &
	bgpid=$!
	pids="$pids $bgpid"
	(sleep 60 && kill -9 $bgpid) >/dev/null 2>&1 &
	pids="$pids $!"
}

# receive_bg NAME ARGS...: castor disk receive in the background (its pid in
# $rpid, output in $tmp/NAME.out and .err); $port once it listens.
receive_bg() {
	name=$1
	shift
	start_bg "$tmp/$name.out" "$tmp/$name.err" disk receive "$@"
	rpid=$bgpid
	i=0
	port=
	while [ -z "$port" ] && [ $i -lt 200 ]; do
		port=$(sed -n 's/.*waiting on port \([0-9]*\).*/\1/p' "$tmp/$name.err")
		[ -n "$port" ] || sleep 0.05
		i=$((i + 1))
	done
	[ -n "$port" ] || { echo "FAIL: castor disk receive $* did not listen"; cat "$tmp/$name.err"; exit 1; }
}

# wait_for_line FILE TEXT: until FILE holds TEXT (10 s at most)
wait_for_line() {
	i=0
	while ! grep -qF -- "$2" "$1" && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	grep -qF -- "$2" "$1" || fail "$1 never said '$2'"
}

# json_of FILE EXPR: json_check against another file than $tmp/out
json_of() {
	cp "$1" "$tmp/out"
	json_check "$2"
}

# a file of $2 MiB of pseudo-random data (the same for the same name)
mkimage() {
	python3 -c "
import hashlib,sys
seed=hashlib.sha256(sys.argv[1].encode()).digest()
with open(sys.argv[2],'wb') as f:
    block=hashlib.shake_256(seed).digest(1<<20)
    for i in range(int(sys.argv[3])):
        f.write(bytes([i & 0xff]) + block[1:])
" "$3" "$1" "$2"
}

# poke FILE OFFSET TEXT: write TEXT at OFFSET
poke() {
	printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

command -v python3 >/dev/null || { echo "FAIL: python3 is missing"; exit 1; }

# ---- option errors ----------------------------------------------------------------------
expect_usage_error disk
expect_in err "disk: missing command"
run disk --help
expect_rc 0
expect_in out "castor disk <command>"
expect_usage_error disk nosuch
expect_usage_error disk sync --to 127.0.0.1:1
expect_in err "--from FILE and --to HOST:PORT are required"
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --mode fast
expect_in err "'fast' is not checksum, full or dirty"
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --mode dirty
expect_in err "--mode dirty needs --log FILE"
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --range 3000
expect_in err "not a power of two"
expect_usage_error disk sync --from /x --to 10.1.2.3:7000
expect_in err "is not a loopback address and there is no key"
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --encrypt
expect_in err "--encrypt needs --key"
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --timeout 5
expect_usage_error disk sync --from /x --to 127.0.0.1:1 --bogus
expect_in err "unknown option '--bogus'"
expect_usage_error disk receive --listen 127.0.0.1:0
expect_in err "--image FILE and --listen HOST:PORT are required"
expect_usage_error disk receive --image /x --listen 0.0.0.0:7000
expect_in err "is not a loopback address"
expect_usage_error disk log show --log /x
expect_usage_error disk log mark --log /x --image /y --offset 0
run disk sync --from "$tmp/missing.img" --to 127.0.0.1:1
expect_rc 1
expect_in err "cannot open $tmp/missing.img for reading"

# ---- a checksum sync: equal images, only the changed ranges sent ----------------------
mkimage "$tmp/src.img" 96 src
cp "$tmp/src.img" "$tmp/dst.img"
poke "$tmp/src.img" 0 "first range"
poke "$tmp/src.img" $((700 * RANGE + 5)) "a range in the middle"
poke "$tmp/src.img" $((96 * 1048576 - 3)) "end"
receive_bg r1 --image "$tmp/dst.img" --listen 127.0.0.1:0 --json
last="castor disk sync (checksum)"
timeout 30 "$castor" disk sync --from "$tmp/src.img" --to "127.0.0.1:$port" --json \
	--log "$tmp/src.log" >"$tmp/s1.out" 2>"$tmp/s1.err"
rc=$?
expect_rc 0
wait $rpid; r=$?
[ "$r" = 0 ] || fail "receive exited $r: $(cat "$tmp/r1.err")"
cmp -s "$tmp/src.img" "$tmp/dst.img" || fail "the images differ after the sync"
json_of "$tmp/s1.out" 'j["ok"] and j["mode"] == "checksum" and j["verified"]'
json_of "$tmp/s1.out" 'j["ranges_sent"] == 3 and j["data_bytes"] == 3 * 65536'
# the wire carries the three ranges, the destination's digests (32 bytes a range), little else
json_of "$tmp/s1.out" 'j["tx_bytes"] < 3 * 65536 + 4096 and j["rx_bytes"] < 1536 * 32 + 4096'
json_of "$tmp/r1.out" 'j["ok"] and j["written_bytes"] == 3 * 65536 and j["role"] == "destination"'
python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); assert a["digest"] and a["digest"] == b["digest"]' \
	"$tmp/s1.out" "$tmp/r1.out" || fail "the two ends' image digests differ"

# the log given to a successful sync starts clean
run disk log show --log "$tmp/src.log" --image "$tmp/src.img" --json
expect_rc 0
json_check 'j["dirty_regions"] == 0 and j["complete"] and j["regions"] == 1536'

# ---- a dirty sync sends what the log marks ------------------------------------------------
poke "$tmp/src.img" $((1000 * RANGE + 100)) "changed by hand"
run disk log mark --log "$tmp/src.log" --image "$tmp/src.img" --offset $((1000 * RANGE + 100)) --length 15
expect_rc 0
run disk log show --log "$tmp/src.log" --image "$tmp/src.img"
expect_rc 0
expect_in out "1 of 1536 regions of 64 KiB dirty"
receive_bg r2 --image "$tmp/dst.img" --listen 127.0.0.1:0 --quiet
last="castor disk sync (dirty)"
timeout 30 "$castor" disk sync --from "$tmp/src.img" --to "127.0.0.1:$port" --mode dirty \
	--log "$tmp/src.log" --json >"$tmp/s2.out" 2>"$tmp/s2.err"
rc=$?
expect_rc 0
wait $rpid; r=$?
[ "$r" = 0 ] || fail "receive exited $r: $(cat "$tmp/r2.err")"
cmp -s "$tmp/src.img" "$tmp/dst.img" || fail "the images differ after the dirty sync"
json_of "$tmp/s2.out" 'j["ranges_sent"] == 1 and j["data_bytes"] == 65536 and j["rx_bytes"] < 1024'
run disk log show --log "$tmp/src.log" --image "$tmp/src.img" --json
json_check 'j["dirty_regions"] == 0'

# a damaged log is all dirty, never nothing dirty
poke "$tmp/src.log" 60 "x"
run disk log show --log "$tmp/src.log" --image "$tmp/src.img" --json
expect_rc 0
json_check 'j["dirty_regions"] == 1536 and not j["complete"] and "damaged" in j["problem"]'

# ---- an image of another size ---------------------------------------------------------------
truncate -s $((96 * 1048576 - 4096)) "$tmp/small.img"
receive_bg r3 --image "$tmp/small.img" --listen 127.0.0.1:0
run disk sync --from "$tmp/src.img" --to "127.0.0.1:$port" --quiet
expect_rc 1
expect_in err "the image here is 100659200 bytes, the source's 100663296: give both the same size"
wait $rpid; r=$?
[ "$r" = 1 ] || fail "receive of a small image exited $r"
grep -qF "give both the same size" "$tmp/r3.err" || fail "receive did not say why: $(cat "$tmp/r3.err")"

# ---- ends that die or stop mid-transfer ------------------------------------------------------
mkimage "$tmp/big.img" 256 big
truncate -s 256M "$tmp/big-dst.img"
# the receiver is killed: the source, stopped meanwhile so it cannot finish first, then fails
receive_bg r4 --image "$tmp/big-dst.img" --listen 127.0.0.1:0
start_bg "$tmp/s4.out" "$tmp/s4.err" disk sync --from "$tmp/big.img" --to "127.0.0.1:$port" --mode full
spid=$bgpid
wait_for_line "$tmp/r4.err" "MiB received, batch"
kill -STOP $spid
kill -9 $rpid
kill -CONT $spid
last="castor disk sync, its receiver killed"
wait $spid; rc=$?
expect_rc 1
grep -qF "lost the destination 127.0.0.1:$port" "$tmp/s4.err" ||
	fail "no clear error from the source: $(cat "$tmp/s4.err")"
# the source is killed: the receiver fails at once
receive_bg r5 --image "$tmp/big-dst.img" --listen 127.0.0.1:0
start_bg "$tmp/s5.out" "$tmp/s5.err" disk sync --from "$tmp/big.img" --to "127.0.0.1:$port" --mode full
spid=$bgpid
wait_for_line "$tmp/r5.err" "MiB received, batch"
kill -STOP $spid
kill -9 $spid
last="castor disk receive, its source killed"
wait $rpid; rc=$?
expect_rc 1
grep -qF "lost the source" "$tmp/r5.err" || fail "no clear error from the receiver: $(cat "$tmp/r5.err")"
grep -qF "the image is partly updated" "$tmp/r5.err" || fail "the receiver did not say the image is partly updated"
# the source stops answering: the receiver gives up after its --timeout
receive_bg r6 --image "$tmp/big-dst.img" --listen 127.0.0.1:0 --timeout 1000
start_bg "$tmp/s6.out" "$tmp/s6.err" disk sync --from "$tmp/big.img" --to "127.0.0.1:$port" --mode full
spid=$bgpid
wait_for_line "$tmp/r6.err" "MiB received, batch"
kill -STOP $spid
t0=$(date +%s)
last="castor disk receive, its source stopped"
wait $rpid; rc=$?
t1=$(date +%s)
expect_rc 1
grep -qF "Connection timed out" "$tmp/r6.err" || fail "no timeout from the receiver: $(cat "$tmp/r6.err")"
[ $((t1 - t0)) -le 5 ] || fail "the receiver took $((t1 - t0)) s to give up on a silent source"
kill -9 $spid
wait $spid 2>/dev/null
# whatever they left, a checksum sync repairs
receive_bg r7 --image "$tmp/big-dst.img" --listen 127.0.0.1:0 --quiet
run disk sync --from "$tmp/big.img" --to "127.0.0.1:$port" --quiet
expect_rc 0
wait $rpid; r=$?
[ "$r" = 0 ] || fail "the repairing receive exited $r"
cmp -s "$tmp/big.img" "$tmp/big-dst.img" || fail "the repairing sync left the images different"

# ---- a destination that cannot be written, or fills up (root, private mount namespace) ------
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	mkdir "$tmp/mnt"
	# read-only: refused when the image is opened, before anything listens
	last="castor disk receive on a read-only file system"
	unshare -m sh -c "mount --make-rprivate / && mount -t tmpfs -o size=2m castor-test '$tmp/mnt' &&
		truncate -s 96M '$tmp/mnt/dst.img' && mount -o remount,ro '$tmp/mnt' &&
		'$castor' disk receive --image '$tmp/mnt/dst.img' --listen 127.0.0.1:0" \
		>"$tmp/out" 2>"$tmp/err"
	rc=$?
	expect_rc 1
	expect_in err "cannot open $tmp/mnt/dst.img for writing: Read-only file system"
	# full: the source hears the receiver's ENOSPC
	unshare -m sh -c "mount --make-rprivate / && mount -t tmpfs -o size=2m castor-test '$tmp/mnt' &&
		truncate -s 96M '$tmp/mnt/dst.img' &&
		exec '$castor' disk receive --image '$tmp/mnt/dst.img' --listen 127.0.0.1:0" \
		>"$tmp/r8.out" 2>"$tmp/r8.err" &
	rpid=$!
	pids="$pids $rpid"
	wait_for_line "$tmp/r8.err" "waiting on port"
	port=$(sed -n 's/.*waiting on port \([0-9]*\).*/\1/p' "$tmp/r8.err")
	last="castor disk sync to a full file system"
	timeout 30 "$castor" disk sync --from "$tmp/src.img" --to "127.0.0.1:$port" --mode full \
		--quiet >"$tmp/out" 2>"$tmp/err"
	rc=$?
	expect_rc 1
	expect_in err "the destination failed: writing 65536 bytes at"
	expect_in err "No space left on device"
	wait $rpid; r=$?
	[ "$r" = 1 ] || fail "receive on a full file system exited $r"
	grep -qF "No space left on device" "$tmp/r8.err" || fail "receive did not say ENOSPC"
else
	echo "not root or no mount namespaces: the read-only and full destinations are not tried"
fi

# castor bench resync, small: every way makes the copy equal again; a protected VM's
# initial copy toward the old copy (§8.5 digests first) sends the changed ranges only,
# without the digests every range (bytes, never time)
run bench resync --size 16M --changed 5% --dir "$tmp" --json
expect_rc 0
if command -v python3 >/dev/null; then
	python3 - "$tmp/out" >"$tmp/pyout" 2>&1 <<'PY' || fail "bench resync: $(cat "$tmp/pyout")"
import json, sys
runs = {j["run"]: j for j in map(json.loads, open(sys.argv[1]).read().splitlines())}
assert set(runs) == {"checksum", "dirty", "dirty-nv", "full", "protect", "protect-full"}, runs
for name, j in runs.items():
    assert j["verified"] or name == "dirty-nv", j
assert runs["protect"]["data_bytes"] == runs["checksum"]["data_bytes"], runs
assert runs["protect"]["wire_over_rewritten"] <= 2, runs["protect"]
assert runs["protect-full"]["data_bytes"] == 16 << 20, runs["protect-full"]
PY
else
	fail "bench resync: python3 is missing"
fi

[ $fails = 0 ] && echo "PASS: castor disk" || echo "$fails failure(s)"
[ $fails = 0 ]
