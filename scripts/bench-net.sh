#!/usr/bin/env bash
# Network benchmark of the test guest: build the LAN of tests/net/lan.sh, run the
# guest under castor-vmm behind a tap, and run `castor bench net` from the client
# namespace. Extra arguments go to `castor bench net` (e.g. --count 20000 --json).
#   scripts/bench-net.sh BUILD_DIR [castor bench net options]
set -euo pipefail
build=${1:-build}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tests/net/lan.sh"
vmm=$build/tools/vmm/castor-vmm
cli=$build/tools/castor/castor
tag=cbn$$
dir=$(mktemp -d /tmp/castor-benchnet.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
	lan_down "$tag"
	rm -rf "$dir"
}
trap cleanup EXIT
lan_up "$tag"
ip netns exec "$tag-host" "$vmm" run --mem 256M --cpus 2 --test-guest --control "$dir/vm.sock" \
	--serial none --net tap=tap0 --guest-param "ip=$LAN_GUEST_IP" --guest-param rate=100 --guest-param tick=0 \
	2>"$dir/vmm.log" &
pid=$!
for _ in $(seq 200); do
	[ -S "$dir/vm.sock" ] && ip netns exec "$tag-client" ping -c1 -W1 "$LAN_GUEST_IP" >/dev/null 2>&1 && break
	sleep 0.1
done
ip netns exec "$tag-client" "$cli" bench net --target "$LAN_GUEST_IP" "$@"
