#!/usr/bin/env bash
# `make demo`: run a 2-vCPU test-guest VM under castor-vmm and drive it with the
# castor CLI -- status, pause, resume, a dirty-page harvest, quit.
#   scripts/demo.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
vmm=$build/tools/vmm/castor-vmm
cli=$build/tools/castor/castor
[ -c /dev/kvm ] || { echo "demo: /dev/kvm is absent; Castor needs KVM" >&2; exit 1; }

dir=$(mktemp -d /tmp/castor-demo.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
sock=$dir/vm.sock
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "== castor demo: one VM of the test guest on /dev/kvm"
echo "   castor-vmm run --mem 512M --cpus 2 --test-guest --guest-param rate=200 --control $sock"
"$vmm" run --mem 512M --cpus 2 --test-guest --guest-param rate=200 --guest-param outrate=50 \
	--control "$sock" --serial "$dir/serial.log" --name demo 2>"$dir/vmm.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "demo: castor-vmm did not start:"; cat "$dir/vmm.log"; exit 1; }
sleep 1.2

step "$cli" vm status --socket "$sock"
step "$cli" vm pause --socket "$sock"
step "$cli" vm status --socket "$sock"
sleep 0.5
echo "(half a second later, still paused: the counters have not moved)"
step "$cli" vm status --socket "$sock"
step "$cli" vm resume --socket "$sock"
step "$cli" vm dirty --socket "$sock" --harvest
sleep 0.1
echo "(100 ms of guest work later: the pages written since the last harvest)"
step "$cli" vm dirty --socket "$sock" --harvest
echo
echo "serial console of the guest:"
sed 's/^/  | /' "$dir/serial.log"
step "$cli" vm quit --socket "$sock"
wait "$pid"
pid=
echo
echo "== demo done. Benchmarks: $cli bench pause; $cli bench dirty (docs/benchmarks.md)"
