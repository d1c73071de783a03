#!/usr/bin/env bash
# Snapshot and restore under live traffic: the test guest serves one TCP
# connection to a client namespace and writes its disk; ten times in a row it
# is paused, snapshotted, its castor-vmm quits, and a new castor-vmm restores
# the snapshot on the same tap and disk. After each restore the same TCP
# connection goes on (every request answered once, in order, counts
# consecutive), and at the end the disk verifies against the disk rule and
# the guest's TSC clock (its serial "t=" lines) never went back or jumped.
#   snapshot_net.sh CASTOR_VMM CASTOR [ROUNDS]
set -u
VMM=$1
CLI=$2
ROUNDS=${3:-10}
# the nested test machine emulates everything: at most 4 rounds there
[ "${CASTOR_NESTED:-}" != 1 ] || ROUNDS=$((ROUNDS > 4 ? 4 : ROUNDS))
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lan.sh"
. "$here/../require.sh"
[ -c /dev/kvm ] || test_skip "/dev/kvm is absent"
why=$(lan_check) || test_skip "$why"

tag=csn$$
dir=$(mktemp -d /tmp/castor-snapnet.XXXXXX)
pid= cpid=
cleanup() {
	for p in $pid $cpid; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	lan_down "$tag"
	rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
sock=$dir/vm.sock
lan_up "$tag" || exit 1
truncate -s 8M "$dir/disk.img"
devs=(--net tap=tap0 --disk "$dir/disk.img")
H() { ip netns exec "$tag-host" "$@"; }

wait_socket() {
	for _ in $(seq 200); do "$CLI" vm status --socket "$sock" >/dev/null 2>&1 && return 0; sleep 0.05; done
	return 1
}

H "$VMM" run --mem 128M --cpus 2 --test-guest --control "$sock" --serial "$dir/serial.log" \
	"${devs[@]}" --guest-param "ip=$LAN_GUEST_IP" --guest-param rate=100 \
	--guest-param blkcount=256 --guest-param blkrate=400 2>>"$dir/vmm.log" &
pid=$!
wait_socket || { bad "castor-vmm did not start"; cat "$dir/vmm.log"; exit 1; }
for _ in $(seq 100); do ip netns exec "$tag-client" ping -c1 -W1 "$LAN_GUEST_IP" >/dev/null 2>&1 && break; done

# the client: one connection for the whole test, a request every 5 ms
ip netns exec "$tag-client" python3 - "$LAN_GUEST_IP" "$dir/stop" >"$dir/client.log" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 7700), timeout=30)
f = s.makefile("rb")
seq, last, worst, t0 = 0, None, 0.0, time.monotonic()
while not os.path.exists(sys.argv[2]):
    seq += 1
    t = time.monotonic()
    s.sendall(b"%d\n" % seq)
    try:
        line = f.readline()
    except TimeoutError:
        print("FAIL: no answer to request %d in 30 s (sent %.2f s after the first)" % (seq, t - t0))
        sys.exit(1)
    if not line:
        print("FAIL: connection closed at request", seq); sys.exit(1)
    a, c = map(int, line.split())
    if a != seq or (last is not None and c != last + 1):
        print("FAIL: request %d got answer %d count %d after %s" % (seq, a, c, last)); sys.exit(1)
    last = c
    worst = max(worst, time.monotonic() - t)
    time.sleep(0.005)
s.close()
print("client: %d requests on one connection, all in order; longest stall %.0f ms" % (seq, worst * 1000))
PY
cpid=$!
start=$EPOCHREALTIME
sleep 1

for round in $(seq "$ROUNDS"); do
	sleep 0.4
	"$CLI" vm pause --socket "$sock" >/dev/null || bad "round $round: pause"
	"$CLI" vm snapshot --socket "$sock" --file "$dir/snap" >"$dir/snap.out" || { bad "round $round: snapshot: $(cat "$dir/snap.out")"; break; }
	"$CLI" vm quit --socket "$sock" >/dev/null || bad "round $round: quit"
	wait "$pid"; pid=
	H "$VMM" restore --snapshot "$dir/snap" --control "$sock" --serial "$dir/serial.log" \
		"${devs[@]}" 2>>"$dir/vmm.log" &
	pid=$!
	wait_socket || { bad "round $round: restore did not come up"; tail -5 "$dir/vmm.log"; break; }
	[ "$("$CLI" vm status --socket "$sock" --json | json 'd["run_state"]')" = running ] ||
		bad "round $round: restored VM not running"
	kill -0 "$cpid" 2>/dev/null || { bad "round $round: the client stopped: $(cat "$dir/client.log")"; break; }
	awk "BEGIN { printf \"%.2f \", $EPOCHREALTIME - $start }" >>"$dir/rounds"
done
[ "$fails" = 0 ] && ok "$ROUNDS rounds of pause, snapshot, quit, restore"
sleep 0.5
touch "$dir/stop"
wait "$cpid"; code=$?; cpid=
if [ "$code" = 0 ]; then ok "$(tail -1 "$dir/client.log")"; else
	bad "client: $(cat "$dir/client.log")"
	echo "  rounds (s after the client started): $(cat "$dir/rounds")"
	echo "  net status: $("$CLI" vm status --socket "$sock" --json | json 'd.get("net")')"
	echo "  castor-vmm log:"; tail -20 "$dir/vmm.log" | sed 's/^/    /'
fi

# the disk, checked with the guest stopped
"$CLI" vm pause --socket "$sock" >/dev/null
"$CLI" vm status --socket "$sock" --json >"$dir/st"
gen=$(json 'd["guest_io"]["blk_generation"]' <"$dir/st")
nxt=$(json 'd["guest_io"]["blk_next"]' <"$dir/st")
bbad=$(json 'd["guest_io"]["blk_bad"]' <"$dir/st")
[ "$bbad" = 0 ] && ok "guest verified its disk reads (pass $gen)" || bad "guest found $bbad bad blocks"
python3 "$here/blkcheck.py" "$dir/disk.img" --first 0 --count 256 --seed 1 --generation "$gen" --next "$nxt" >"$dir/blk" 2>&1 &&
	ok "disk image: $(tail -1 "$dir/blk")" || bad "disk image: $(cat "$dir/blk")"

# the guest's clock: t= never goes back, never jumps more than 2 s between lines
python3 - "$dir/serial.log" <<'PY' && ok "guest clock moved forward without jumps" || bad "guest clock"
import re, sys
ts = [int(m.group(1)) for m in re.finditer(rb"castor-tg: t=(\d+) c0=", open(sys.argv[1], "rb").read())]
assert len(ts) > 3, ts
for a, b in zip(ts, ts[1:]):
    assert 0 <= b - a <= 2, (a, b, ts)
print("  %d clock lines, t=%d..%d" % (len(ts), ts[0], ts[-1]))
PY
"$CLI" vm quit --socket "$sock" >/dev/null
wait "$pid"; pid=
echo "$fails failure(s)"
[ "$fails" = 0 ]
