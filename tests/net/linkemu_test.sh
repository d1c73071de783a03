#!/usr/bin/env bash
# linkemu.py between two namespaces (no VM, no KVM): wan.sh's host a (10.98.0.1) and
# host b (10.98.0.2) each hold one end of a veth pair whose other ends sit in a third
# namespace, where linkemu.py forwards between them. Checks: with a 30 ms delay every
# ping comes back, none sooner than 60 ms; with 20 % loss some frames are dropped and
# some pass; with a 2 Mbit/s cap 256 KiB over TCP take no less than the wire needs;
# nothing passes without it; bad arguments and a missing interface are refused.
# Every bound checked is a lower bound the emulator must guarantee (it can only be
# slower on a loaded machine), never a speed of Castor's.
#   linkemu_test.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../require.sh"
. "$here/wan.sh"
[ "$(id -u)" = 0 ] || test_skip "needs root (network namespaces)"
command -v ip >/dev/null || test_skip "iproute2 is missing"
command -v ping >/dev/null || test_skip "ping is missing (iputils-ping)"
command -v ethtool >/dev/null || test_skip "ethtool is missing (scripts/install-deps.sh installs it)"

P=castor-le$$
A=$P-a B=$P-b L=$P-link
dir=$(mktemp -d /tmp/castor-linkemu.XXXXXX)
emu=
fails=0
ok() { echo "ok: $*"; }
bad() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
stop_emu() {
	[ -n "$emu" ] || return 0
	kill "$emu" 2>/dev/null
	wait "$emu" 2>/dev/null
	emu=
}
cleanup() {
	stop_emu
	wan_down "$P"
	rm -rf "$dir"
}
trap cleanup EXIT

wan_up "$P" || {
	bad "cannot build the WAN's namespaces (wan.sh)"
	exit 1
}

# start_emu ARGS...: linkemu.py in the link namespace, its counts to $dir/stats
start_emu() {
	rm -f "$dir/stats"
	# no neighbour left FAILED by an earlier phase (it answers "unreachable" at once)
	ip -n "$A" neigh flush all
	ip -n "$B" neigh flush all
	ip netns exec "$L" python3 "$here/linkemu.py" --a a1 --b b1 --duration 120 \
		--stats "$dir/stats" "$@" 2>"$dir/emu.err" &
	emu=$!
	for _ in $(seq 300); do
		grep -q "linkemu: forwarding" "$dir/emu.err" 2>/dev/null && return 0
		kill -0 "$emu" 2>/dev/null || break
		sleep 0.1
	done
	bad "linkemu.py did not start: $(cat "$dir/emu.err")"
}
# stat EXPR: a Python expression over the counts `s` once the emulator has stopped
stat() {
	python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print($1)" "$dir/stats"
}

# a 30 ms delay each way: every answer, none before 60 ms
start_emu --delay-ms 30
ip netns exec "$A" ping -c 5 -i 0.2 -W 5 "$WAN_B_IP" >"$dir/ping" 2>&1
got=$(grep -o '[0-9]* received' "$dir/ping" | cut -d' ' -f1)
min=$(sed -n 's/.*= \([0-9.]*\)\/.*/\1/p' "$dir/ping")
if [ "${got:-0}" = 5 ] && python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 60.0)" "${min:-0}"; then
	ok "delay 30 ms: 5 of 5 answered, rtt min $min ms"
else
	bad "delay 30 ms: ${got:-0} of 5 answered, rtt min ${min:-?} ms: $(tail -2 "$dir/ping")"
fi
stop_emu

# 20 % loss: some frames dropped, some through (0.8^n for n frames makes none dropped
# unthinkable: 120 frames and more cross here)
start_emu --loss 20 --seed 7
ip netns exec "$A" ping -c 60 -i 0.02 -W 1 "$WAN_B_IP" >"$dir/ping" 2>&1
stop_emu
lost=$(stat 's["a_to_b"]["dropped_loss"] + s["b_to_a"]["dropped_loss"]')
through=$(stat 's["a_to_b"]["forwarded"] + s["b_to_a"]["forwarded"]')
if [ "${lost:-0}" -gt 0 ] && [ "${through:-0}" -gt 0 ]; then
	ok "loss 20 %: $lost frames dropped, $through forwarded; ping: $(grep -o '[0-9.]*% packet loss' "$dir/ping")"
else
	bad "loss 20 %: ${lost:-?} dropped, ${through:-?} forwarded"
fi

# a 2 Mbit/s cap: 256 KiB over TCP take at least 256 KiB * 8 / 2 Mbit/s (1.05 s)
start_emu --rate-kbit 2000 --queue 10000
ip netns exec "$A" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.98.0.1", 7070)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60); n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
print(n)' >"$dir/recv" 2>&1 &
srv=$!
sleep 0.3
ip netns exec "$B" python3 -c '
import socket, time
for _ in range(100):  # the server may still be starting
    try:
        s = socket.create_connection(("10.98.0.1", 7070), timeout=60)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
t0 = time.monotonic(); s.sendall(b"x" * 262144); s.shutdown(socket.SHUT_WR)
s.recv(1); print(f"{time.monotonic() - t0:.3f}")' >"$dir/send" 2>&1
wait "$srv"
stop_emu
secs=$(tail -1 "$dir/send")
if [ "$(tail -1 "$dir/recv")" = 262144 ] &&
	python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 1.0)" "${secs:-0}"; then
	ok "rate 2 Mbit/s: 256 KiB in $secs s (the wire needs 1.05 s)"
else
	bad "rate 2 Mbit/s: received $(tail -1 "$dir/recv"), $secs s: $(cat "$dir/send")"
fi

# no emulator: nothing crosses (last: its failed neighbour lookup would linger)
ip -n "$A" neigh flush all
if ip netns exec "$A" ping -c 1 -W 1 "$WAN_B_IP" >/dev/null 2>&1; then
	bad "a ping crossed without the emulator: something else forwards"
else
	ok "nothing crosses without the emulator"
fi

# bad input
for args in "--loss 101" "--delay-ms -1" "--queue 0" "--a x --b x"; do
	# shellcheck disable=SC2086
	if python3 "$here/linkemu.py" --a a1 --b b1 $args >/dev/null 2>"$dir/err"; then
		bad "linkemu.py $args was accepted"
	elif [ $? = 2 ] && grep -q "out of range" "$dir/err"; then
		ok "linkemu.py $args refused: $(tail -1 "$dir/err" | cut -c1-100)"
	else
		bad "linkemu.py $args: $(cat "$dir/err")"
	fi
done
if ip netns exec "$L" python3 "$here/linkemu.py" --a a1 --b nosuch --duration 1 2>"$dir/err"; then
	bad "a missing interface was accepted"
elif grep -q "cannot open a1 and nosuch" "$dir/err"; then
	ok "a missing interface refused: $(cat "$dir/err")"
else
	bad "a missing interface: $(cat "$dir/err")"
fi

[ "$fails" = 0 ] && echo PASS && exit 0
echo "$fails failure(s)"
exit 1
