#!/usr/bin/env bash
# Who may talk to castor-vmm, and what it leaves on disk -- checked on a
# replica, which needs no /dev/kvm: its control socket is 0600; root and its
# own uid get answers; another uid (nobody) is refused by the socket's mode
# and, with the mode loosened, by the SO_PEERCRED check, which logs the uid
# and pid; the VMM keeps serving. Its serial and event-log files are 0600
# whatever the umask.
#   test_vmm_access.sh CASTOR_VMM CASTOR
set -u
VMM=$1
CLI=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../require.sh"
[ "$(id -u)" = 0 ] || test_skip "needs root to connect as another uid (setpriv)"
command -v setpriv >/dev/null || test_skip "needs setpriv (util-linux)"

dir=$(mktemp -d /tmp/castor-access.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; fi
	rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# nobody must be able to reach the directory and run the CLI: a copy of it in
# a 0755 directory (the build tree may be private)
chmod 0755 "$dir"
cp "$CLI" "$dir/castor" && chmod 0755 "$dir/castor"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

sock=$dir/vm.sock
(umask 0 && exec "$VMM" replica --listen 127.0.0.1:0 --control "$sock" --serial "$dir/serial.log" \
	--event-log "$dir/events.log" --name access) 2>"$dir/vmm.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { bad "control socket never appeared: $(cat "$dir/vmm.log")"; exit 1; }

m=$(stat -c %a "$sock")
[ "$m" = 600 ] && ok "control socket is 0600 (umask 0)" || bad "control socket mode $m"
for f in serial.log events.log; do
	m=$(stat -c %a "$dir/$f" 2>/dev/null)
	[ "$m" = 600 ] && ok "$f is 0600 (umask 0)" || bad "$f mode '$m'"
done

"$CLI" ha status --socket "$sock" >"$dir/out" 2>&1 && ok "root is served" || bad "root refused: $(cat "$dir/out")"

if as_nobody "$dir/castor" ha status --socket "$sock" >"$dir/out" 2>&1; then
	bad "uid 65534 was served through a 0600 socket: $(cat "$dir/out")"
else
	grep -q "Permission denied" "$dir/out" && ok "uid 65534 stopped by the mode: $(cat "$dir/out")" ||
		bad "uid 65534: $(cat "$dir/out")"
fi

# the mode loosened (an operator's chmod, a shared directory's ACL): the
# credential check still refuses, and says who was refused
chmod 0666 "$sock"
for _ in 1 2 3; do
	if as_nobody "$dir/castor" ha status --socket "$sock" >"$dir/out" 2>&1; then
		bad "uid 65534 was served by castor-vmm: $(cat "$dir/out")"
	fi
done
grep -q "refused a control connection from uid 65534 pid [0-9]" "$dir/vmm.log" &&
	ok "uid 65534 refused by SO_PEERCRED: $(grep -m1 "refused a control connection" "$dir/vmm.log")" ||
	bad "no refusal logged: $(cat "$dir/vmm.log")"
n=$(grep -c "refused a control connection" "$dir/vmm.log")
[ "$n" -ge 1 ] && [ "$n" -le 3 ] && ok "$n refusal line(s) for 3 attempts" || bad "$n refusal lines for 3 attempts"
"$CLI" ha status --socket "$sock" >"$dir/out" 2>&1 && ok "root still served after the refusals" ||
	bad "root refused after the refusals: $(cat "$dir/out")"
# a second uid that is not root but owns nothing here is no different: 1
if setpriv --reuid=1 --regid=1 --clear-groups "$dir/castor" ha status --socket "$sock" >"$dir/out" 2>&1; then
	bad "uid 1 was served: $(cat "$dir/out")"
else
	ok "uid 1 refused: $(cat "$dir/out")"
fi

kill "$pid"; wait "$pid" 2>/dev/null; pid=
echo "$fails failure(s)"
[ "$fails" = 0 ]
