#!/usr/bin/env bash
# `make demo`: Castor's test guest under castor-vmm on a LAN of network namespaces
# (tests/net/lan.sh) with a NIC and a disk, driven by the castor CLI: status, a
# client that pings it and sends UDP and TCP requests, then a live move -- pause,
# snapshot, quit, restore in a new castor-vmm -- under a TCP connection that
# carries on, the snapshot checked by the independent verifier, a dirty-page
# harvest, quit. Then fault tolerance on two hosts of namespaces: the guest
# and its writable disk protected from host A to host B, kill -9 of the
# primary under a TCP connection, failover, the connection goes on; then a
# live migration of the survivor (and its disk) back to host A under another
# TCP connection.
#   scripts/demo.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tests/net/lan.sh"
vmm=$build/tools/vmm/castor-vmm
cli=$build/tools/castor/castor
[ -c /dev/kvm ] || { echo "demo: /dev/kvm is absent; Castor needs KVM" >&2; exit 1; }

tag=cdemo$$
dir=$(mktemp -d /tmp/castor-demo.XXXXXX)
pid=
rpid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
	if [ -n "$rpid" ] && kill -0 "$rpid" 2>/dev/null; then kill "$rpid"; wait "$rpid" 2>/dev/null || true; fi
	lan_down "$tag"
	if declare -f th_down >/dev/null; then th_down castor; fi
	rm -rf "$dir"
}
trap cleanup EXIT
sock=$dir/vm.sock
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
client() { ip netns exec "$tag-client" "$@"; }

echo "== castor demo: the test guest on /dev/kvm, on a LAN of namespaces"
lan_up "$tag"
truncate -s 16M "$dir/disk.img"
echo "   namespaces $tag-client (10.66.0.1) and $tag-host (bridge + tap0); guest at $LAN_GUEST_IP"
echo "   castor-vmm run --mem 512M --cpus 2 --test-guest --net tap=tap0 --disk disk.img ..."
ip netns exec "$tag-host" "$vmm" run --mem 512M --cpus 2 --test-guest --name demo \
	--control "$sock" --serial "$dir/serial.log" --net tap=tap0 --disk "$dir/disk.img" \
	--guest-param "ip=$LAN_GUEST_IP" --guest-param rate=200 --guest-param outrate=50 \
	--guest-param blkcount=512 --guest-param blkrate=500 2>"$dir/vmm.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "demo: castor-vmm did not start:"; cat "$dir/vmm.log"; exit 1; }
sleep 1.5

step "$cli" vm status --socket "$sock"
step client ping -c 3 -i 0.2 "$LAN_GUEST_IP"
step client python3 "$here/tests/net/tgclient.py" udp --host "$LAN_GUEST_IP" --count 1000
step client python3 "$here/tests/net/tgclient.py" tcp --host "$LAN_GUEST_IP" --count 1000

echo
echo "== a live move: one TCP connection keeps sending while the VM is paused, snapshotted,"
echo "   its castor-vmm quits, and a new castor-vmm restores it on the same tap and disk"
client python3 - "$LAN_GUEST_IP" <<'PY' &
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7700), timeout=20)
f = s.makefile("rb")
worst = 0.0
for seq in range(1, 401):
    t = time.monotonic()
    s.sendall(b"%d\n" % seq)
    line = f.readline().split()
    assert int(line[0]) == seq, line
    worst = max(worst, time.monotonic() - t)
    time.sleep(0.01)
print("   tcp client: 400 requests on one connection, all answered in order; longest wait %.0f ms" % (worst * 1000))
PY
cpid=$!
sleep 1
step "$cli" vm pause --socket "$sock"
step "$cli" vm snapshot --socket "$sock" --file "$dir/vm.snap"
step "$cli" vm quit --socket "$sock"
wait "$pid"
pid=
echo "   (the old castor-vmm is gone; the client's requests wait in the network)"
echo "   castor-vmm restore --snapshot vm.snap --net tap=tap0 --disk disk.img ..."
ip netns exec "$tag-host" "$vmm" restore --snapshot "$dir/vm.snap" --control "$sock" \
	--serial "$dir/serial.log" --net tap=tap0 --disk "$dir/disk.img" 2>>"$dir/vmm.log" &
pid=$!
for _ in $(seq 100); do "$cli" vm status --socket "$sock" >/dev/null 2>&1 && break; sleep 0.05; done
wait "$cpid"
step "$cli" stream verify "$dir/vm.snap"

step "$cli" vm dirty --socket "$sock" --harvest
sleep 0.1
echo "(100 ms of guest work later: the pages written since the last harvest)"
step "$cli" vm dirty --socket "$sock" --harvest
step "$cli" vm status --socket "$sock"
echo
echo "serial console of the guest:"
sed 's/^/  | /' "$dir/serial.log" | head -20
step "$cli" vm quit --socket "$sock"
wait "$pid"
pid=
lan_down "$tag"

echo
echo "== fault tolerance: the guest on host A (castor-a), its twin on host B (castor-b),"
echo "   a client in castor-client, all on one LAN bridge (tests/net/twohost.sh)"
. "$here/tests/net/twohost.sh"
th_up castor
rsock=$dir/twin.sock psock=$dir/prim.sock
echo "   castor key generate pair.key   (the link between the hosts is authenticated)"
"$cli" key generate "$dir/pair.key" >/dev/null
# each host its own copy of the VM's writable disk: B's starts empty, the protection copies it
truncate -s 16M "$dir/a.img" "$dir/b.img"
echo "   castor-vmm replica --listen $TH_B_IP:7800 --net tap=tap0 --disk b.img --key pair.key   (on castor-b)"
ip netns exec castor-b "$vmm" replica --listen "$TH_B_IP:7800" --control "$rsock" --name demo \
	--serial none --net tap=tap0 --disk "$dir/b.img" --key "$dir/pair.key" 2>"$dir/replica.log" &
rpid=$!
for _ in $(seq 100); do [ -S "$rsock" ] && break; sleep 0.05; done
echo "   castor-vmm run ... --net tap=tap0 --disk a.img --protect $TH_B_IP:7800 --interval 20 --key pair.key   (on castor-a)"
ip netns exec castor-a "$vmm" run --mem 256M --cpus 1 --test-guest --name demo --control "$psock" \
	--serial none --net tap=tap0 --disk "$dir/a.img" --guest-param "ip=$TH_GUEST_IP" \
	--guest-param rate=50 --guest-param blkcount=1024 --guest-param blkrate=500 \
	--protect "$TH_B_IP:7800" --interval 20 --key "$dir/pair.key" 2>"$dir/primary.log" &
pid=$!
for _ in $(seq 100); do "$cli" ha status --socket "$psock" 2>/dev/null | grep -q protected && break; sleep 0.1; done
sleep 1
step "$cli" ha status --socket "$psock"
echo
echo "   a client sends 3000 numbered requests over one TCP connection; after 1 s the"
echo "   primary's castor-vmm is killed (kill -9) and the replica is told to take over"
ip netns exec castor-client python3 "$here/tests/net/tgclient.py" tcp --host "$TH_GUEST_IP" \
	--count 3000 --rate 1000 --window 1 --timeout 15 &
cpid=$!
sleep 1
step kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
step "$cli" ha failover --socket "$rsock"
wait "$cpid" && echo "   the same TCP connection went on: every request answered once, in order"
step "$cli" ha status --socket "$rsock"
sleep 2
echo "   the twin's guest reads back what it wrote before and after the failover:"
"$cli" vm status --socket "$rsock" --json | python3 -c '
import json, sys
io = json.load(sys.stdin)["guest_io"]
print("   disk: pass %d, %d blocks written, %d read back right, %d wrong" %
      (io["blk_generation"], io["blk_written"], io["blk_verified"], io["blk_bad"]))'

echo
echo "== live migration: the survivor moves back to host A, its disk copied live, while"
echo "   a client keeps talking to it over one TCP connection"
asock=$dir/back.sock
echo "   castor-vmm incoming --listen $TH_A_IP:7801 --net tap=tap0 --disk a.img --key pair.key   (on castor-a)"
ip netns exec castor-a "$vmm" incoming --listen "$TH_A_IP:7801" --control "$asock" --name demo \
	--serial none --net tap=tap0 --disk "$dir/a.img" --key "$dir/pair.key" 2>"$dir/incoming.log" &
pid=$!
for _ in $(seq 100); do [ -S "$asock" ] && break; sleep 0.05; done
ip netns exec castor-client python3 "$here/tests/net/tgclient.py" tcp --host "$TH_GUEST_IP" \
	--count 2000 --rate 500 --window 1 --timeout 15 &
cpid=$!
sleep 1
step "$cli" migrate --socket "$rsock" --to "$TH_A_IP:7801"
wait "$rpid" 2>/dev/null || true # the source's castor-vmm ends once host A runs the VM
rpid=
wait "$cpid" && echo "   the same TCP connection went on across the move: every request answered once, in order"
step "$cli" vm status --socket "$asock"
step "$cli" vm quit --socket "$asock"
wait "$pid" 2>/dev/null || true
pid=
th_down castor
echo
echo "== demo done. Measurements: castor bench pause|dirty|snapshot|checkpoint,"
echo "   docs: docs/operations.md, docs/disks.md, docs/migration.md, docs/cluster.md"
echo "   scripts/bench-net.sh, scripts/bench-colo.sh (docs/benchmarks.md)"
