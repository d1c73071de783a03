#!/usr/bin/env bash
# castor-vmm and `castor vm` end to end: a real VM behind a real control socket.
#   vmm_cli.sh CASTOR_VMM CASTOR
# Checks status/pause/resume/dirty/quit in human and JSON form, bad command
# lines (clear error, non-zero exit), garbage on the control socket (the VMM
# answers or drops the connection, and keeps serving), and what it leaves on
# disk: 0600 files, no writing through a link at path.tmp, relative paths
# resolved by the CLI, another uid refused.
set -u
VMM=$1
CLI=$2
. "$(dirname "$0")/../require.sh"
[ -c /dev/kvm ] || test_skip "/dev/kvm is absent"

dir=$(mktemp -d /tmp/castor-vmmcli.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; fi
	rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_usage_error "what" "message pattern" args...
expect_error() {
	local what=$1 pattern=$2 code
	shift 2
	"$VMM" "$@" >"$dir/out" 2>"$dir/err"
	code=$?
	if [ "$code" -ne 0 ] && grep -qiE -- "$pattern" "$dir/err"; then
		ok "$what -> exit $code: $(head -1 "$dir/err")"
	else
		bad "$what: exit $code, stderr: $(cat "$dir/err")"
	fi
}

sock=$dir/vm.sock
base=(run --test-guest --control "$sock" --serial none)
expect_error "--mem 0" "below the minimum" "${base[@]}" --mem 0 --cpus 1
expect_error "--mem 1T" "exceeds the host" "${base[@]}" --mem 1T --cpus 1
expect_error "--mem abc" "not a size" "${base[@]}" --mem abc --cpus 1
expect_error "--cpus 0" "vCPU count 0" "${base[@]}" --mem 64M --cpus 0
expect_error "--cpus 99" "vCPU count 99" "${base[@]}" --mem 64M --cpus 99
expect_error "unknown flag" "unknown option '--frobnicate'" "${base[@]}" --mem 64M --cpus 1 --frobnicate
expect_error "missing --mem" "--mem is required" "${base[@]}" --cpus 1
expect_error "bad guest param" "unknown guest parameter" "${base[@]}" --mem 64M --cpus 1 --guest-param colour=red
expect_error "no /dev/kvm" "cannot open /nonexistent/kvm" "${base[@]}" --mem 64M --cpus 1 --kvm /nonexistent/kvm
expect_error "missing image" "No such file" "${base[@]}" --mem 64M --cpus 1 --guest-image /nonexistent.bin
expect_error "unknown command" "unknown command 'fly'" fly
[ ! -e "$sock" ] || bad "a failed start left the socket behind"

"$VMM" run --mem 128M --cpus 2 --test-guest --guest-param rate=50 --guest-param outrate=100 \
	--control "$sock" --serial "$dir/serial.log" --name clitest 2>"$dir/vmm.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { bad "control socket never appeared"; cat "$dir/vmm.log"; exit 1; }

if "$CLI" vm status --socket "$sock" >"$dir/st" && grep -q "state: running" "$dir/st" &&
	grep -q "vm: clitest" "$dir/st"; then ok "status (human)"; else bad "status: $(cat "$dir/st")"; fi

json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
"$CLI" vm status --socket "$sock" --json >"$dir/j1" || bad "status --json failed"
sleep 0.3
"$CLI" vm status --socket "$sock" --json >"$dir/j2" || bad "status --json failed"
c1=$(json_field "$dir/j1" 'd["guest_counter"]')
c2=$(json_field "$dir/j2" 'd["guest_counter"]')
n=$(json_field "$dir/j2" 'len(d["vcpu"])')
if [ "$n" = 2 ] && [ "$c2" -gt "$c1" ]; then ok "status --json: 2 vCPUs, counter $c1 -> $c2"; else bad "json status: n=$n c1=$c1 c2=$c2"; fi

"$CLI" vm pause --socket "$sock" >/dev/null || bad "pause failed"
"$CLI" vm pause --socket "$sock" >/dev/null || bad "second pause failed"
"$CLI" vm status --socket "$sock" --json >"$dir/p1"
sleep 0.1
"$CLI" vm status --socket "$sock" --json >"$dir/p2"
s=$(json_field "$dir/p1" 'd["run_state"]')
p1=$(json_field "$dir/p1" 'd["guest_counter"]')
p2=$(json_field "$dir/p2" 'd["guest_counter"]')
if [ "$s" = paused ] && [ "$p1" = "$p2" ]; then ok "paused: counter stays $p1"; else bad "pause: state=$s $p1 -> $p2"; fi
"$CLI" vm resume --socket "$sock" >/dev/null || bad "resume failed"
if "$CLI" vm resume --socket "$sock" 2>"$dir/err"; then bad "resume of a running VM succeeded"; else ok "resume when running: $(cat "$dir/err")"; fi
"$CLI" vm status --socket "$sock" --json >"$dir/r1"
[ "$(json_field "$dir/r1" 'd["run_state"]')" = running ] && ok "resumed" || bad "not running after resume"

"$CLI" vm dirty --socket "$sock" --harvest --json >"$dir/d1" || bad "dirty --harvest failed"
"$CLI" vm dirty --socket "$sock" --harvest --json >"$dir/d2" || bad "dirty --harvest failed"
h=$(json_field "$dir/d2" 'd["harvests"]')
t=$(json_field "$dir/d2" 'd["tracking"]')
[ "$h" = 2 ] && [ "$t" = True ] && ok "dirty: tracking, 2 harvests" || bad "dirty: harvests=$h tracking=$t"

# garbage on the socket: an oversized length, then undecodable bytes, then a truncated frame
python3 - "$sock" <<'PY' || bad "garbage test client failed"
import socket, struct, sys
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(sys.argv[1]); return s
s = conn(); s.sendall(struct.pack(">I", 0x7fffffff)); s.recv(100); s.close()
s = conn(); s.sendall(struct.pack(">I", 6) + b"\xff\xff\xff\xff\xff\xff"); s.recv(100); s.close()
s = conn(); s.sendall(struct.pack(">I", 100) + b"abc"); s.close()
s = conn(); s.sendall(b"\x00"); s.close()
PY
kill -0 "$pid" 2>/dev/null && "$CLI" vm status --socket "$sock" >/dev/null && ok "survives garbage" || bad "VMM died on garbage"

grep -q "castor-tg: boot=castor" "$dir/serial.log" && ok "serial banner" || bad "no serial banner"

# snapshots: full and incremental, each checked by the independent verifier
"$CLI" vm snapshot --socket "$sock" --file "$dir/full.snap" >"$dir/out" && ok "$(cat "$dir/out")" || bad "snapshot: $(cat "$dir/out")"
"$CLI" vm snapshot --socket "$sock" --file "$dir/inc.snap" --incremental --json >"$dir/out" || bad "incremental snapshot"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["parent_id"] != "0"*16' "$dir/out" && ok "incremental has a parent" || bad "incremental: $(cat "$dir/out")"
for f in full inc; do
	"$CLI" stream verify "$dir/$f.snap" >"$dir/out" 2>&1 && ok "stream verify $f: $(tail -1 "$dir/out")" || bad "stream verify $f: $(cat "$dir/out")"
done
[ ! -e "$dir/full.snap.tmp" ] && ok "no temporary file left" || bad "full.snap.tmp left behind"
"$CLI" vm snapshot --socket "$sock" --file /nonexistent-dir/x.snap 2>"$dir/err" && bad "snapshot into a missing directory succeeded" || ok "snapshot to a bad path: $(cat "$dir/err")"
"$CLI" vm snapshot --socket "$sock" 2>"$dir/err"; [ $? = 2 ] && ok "snapshot without --file: usage error" || bad "snapshot without --file"

# owner-only: the socket, the serial file and snapshots (guest RAM) are 0600
for f in "$sock" "$dir/serial.log" "$dir/full.snap" "$dir/inc.snap"; do
	m=$(stat -c %a "$f")
	[ "$m" = 600 ] && ok "$(basename "$f") is 0600" || bad "$(basename "$f") has mode $m"
done
# a symbolic link planted at path.tmp is refused, never written through
echo precious >"$dir/victim"
ln -s "$dir/victim" "$dir/linked.snap.tmp"
if "$CLI" vm snapshot --socket "$sock" --file "$dir/linked.snap" >"$dir/out" 2>"$dir/err"; then
	bad "snapshot through a symlink at path.tmp succeeded"
elif grep -q "linked.snap.tmp exists and is a symbolic link" "$dir/err" &&
	[ "$(cat "$dir/victim")" = precious ] && [ ! -e "$dir/linked.snap" ]; then
	ok "symlink at path.tmp refused, its target untouched: $(cat "$dir/err")"
else
	bad "symlink at path.tmp: $(cat "$dir/err"); victim: $(head -c 100 "$dir/victim")"
fi
# a stale path.tmp of ours (a crashed run's) is replaced by the new snapshot
echo "half a snapshot" >"$dir/stale.snap.tmp"
if "$CLI" vm snapshot --socket "$sock" --file "$dir/stale.snap" >"$dir/out" 2>&1 &&
	[ ! -e "$dir/stale.snap.tmp" ] && "$CLI" stream verify "$dir/stale.snap" >/dev/null 2>&1; then
	ok "a stale path.tmp of ours is replaced"
else
	bad "stale path.tmp: $(cat "$dir/out")"
fi
# a relative --file lands in the CLI's directory, not castor-vmm's
mkdir "$dir/rel"
if (cd "$dir/rel" && "$CLI" vm snapshot --socket "$sock" --file rel.snap) >"$dir/out" 2>&1 &&
	[ -f "$dir/rel/rel.snap" ]; then
	ok "relative --file: $(cat "$dir/out")"
else
	bad "relative --file: $(cat "$dir/out"); not in $dir/rel"
fi
# another uid: stopped by the socket's mode, and by SO_PEERCRED where the mode
# is loosened (unit_vmm_access checks the same without /dev/kvm)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 0755 "$dir"
	install -m 0755 "$CLI" "$dir/castor-copy"
	nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$dir/castor-copy" "$@"; }
	nobody vm status --socket "$sock" >"$dir/out" 2>&1 && bad "uid 65534 served: $(cat "$dir/out")" ||
		ok "uid 65534 refused by the socket's mode: $(cat "$dir/out")"
	chmod 0666 "$sock"
	nobody vm pause --socket "$sock" >"$dir/out" 2>&1 && bad "uid 65534 paused the VM" ||
		ok "uid 65534 refused with the mode loosened: $(cat "$dir/out")"
	chmod 0600 "$sock"
	grep -q "refused a control connection from uid 65534 pid [0-9]" "$dir/vmm.log" &&
		ok "the refusal is logged with uid and pid" || bad "no refusal in the log"
	[ "$(json_field <("$CLI" vm status --socket "$sock" --json) 'd["run_state"]')" = running ] &&
		ok "still running, root still served" || bad "after the refusals"
else
	echo "note: not root: the other-uid checks run in unit_vmm_access"
fi

"$CLI" vm quit --socket "$sock" >/dev/null || bad "quit failed"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then bad "VMM still running after quit"; else
	wait "$pid"; code=$?
	[ "$code" = 0 ] && ok "quit: exit 0" || bad "quit: exit $code"
fi
pid=
[ ! -e "$sock" ] && ok "socket removed" || bad "socket left behind"
"$CLI" vm status --socket "$sock" 2>"$dir/err" && bad "status on a dead socket succeeded" || ok "dead socket: $(cat "$dir/err")"

# restore: bad input is refused clearly; the good chain comes back up
rsock=$dir/r.sock
head -c 1000 "$dir/full.snap" >"$dir/trunc.snap"
expect_error "restore: truncated" "truncated" restore --snapshot "$dir/trunc.snap" --control "$rsock" --serial none
cp "$dir/full.snap" "$dir/flip.snap"
printf '\x55' | dd of="$dir/flip.snap" bs=1 seek=$(( $(stat -c %s "$dir/full.snap") / 2 )) conv=notrunc status=none
expect_error "restore: flipped byte" "checksum|malformed|bad" restore --snapshot "$dir/flip.snap" --control "$rsock" --serial none
expect_error "restore: incremental alone" "starts with a full snapshot" restore --snapshot "$dir/inc.snap" --control "$rsock" --serial none
expect_error "restore: missing file" "No such file" restore --snapshot "$dir/none.snap" --control "$rsock" --serial none
expect_error "restore: with --mem" "--mem does not apply to .castor-vmm restore." restore --snapshot "$dir/full.snap" --mem 64M --control "$rsock"
"$VMM" restore --snapshot "$dir/full.snap" --snapshot "$dir/inc.snap" --control "$rsock" --serial none 2>"$dir/r.log" &
pid=$!
for _ in $(seq 100); do [ -S "$rsock" ] && break; sleep 0.1; done
if "$CLI" vm status --socket "$rsock" --json >"$dir/rst" 2>/dev/null &&
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["run_state"] == "running" and d["vcpus"] == 2' "$dir/rst"; then
	ok "restored the chain full + incremental"
else
	bad "restore of the chain: $(tail -3 "$dir/r.log")"
fi
"$CLI" vm quit --socket "$rsock" >/dev/null 2>&1
wait "$pid"; pid=
"$VMM" restore --lazy --snapshot "$dir/full.snap" --snapshot "$dir/inc.snap" --control "$rsock" --serial none 2>"$dir/r.log" &
pid=$!
for _ in $(seq 100); do [ -S "$rsock" ] && break; sleep 0.1; done
sleep 0.5
if "$CLI" vm status --socket "$rsock" --json >"$dir/rst" 2>/dev/null &&
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["run_state"] == "running" and d["guest_counter"] > 0' "$dir/rst" &&
	grep -q "lazy restore done" "$dir/r.log"; then
	ok "lazy restore of the chain: running, all pages loaded"
else
	bad "lazy restore: $(tail -3 "$dir/r.log")"
fi
"$CLI" vm quit --socket "$rsock" >/dev/null 2>&1
wait "$pid"; pid=

# a guest that dirties every page of a large working set: full 4096-page batches
"$VMM" run --mem 64M --cpus 1 --test-guest --guest-param wss=24M --guest-param rate=max \
	--control "$sock" --serial none 2>"$dir/big.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
sleep 0.5
"$CLI" vm snapshot --socket "$sock" --file "$dir/big.snap" >"$dir/out" 2>&1 && ok "snapshot of a heavily dirtying guest" || bad "big snapshot: $(cat "$dir/out")"
"$CLI" stream verify "$dir/big.snap" >"$dir/out" 2>&1 && ok "stream verify big: $(tail -1 "$dir/out")" || bad "stream verify big: $(cat "$dir/out")"
"$CLI" vm quit --socket "$sock" >/dev/null 2>&1
wait "$pid"; pid=

# standby: bad command lines, then refusals that leave it ready, then the chain
ssock=$dir/s.sock
expect_error "standby: no --mem" "needs --mem and --cpus" standby --cpus 2 --control "$ssock"
expect_error "standby: --test-guest" "--test-guest does not apply to 'castor-vmm standby'" standby --mem 128M --cpus 2 --test-guest --control "$ssock"
expect_error "standby: --paused" "give --paused to 'castor vm restore'" standby --mem 128M --cpus 2 --paused --control "$ssock"
expect_error "standby: --snapshot" "--snapshot does not apply to 'castor-vmm standby'" standby --mem 128M --cpus 2 --snapshot "$dir/full.snap" --control "$ssock"
expect_error "run: --lazy" "--lazy does not apply to 'castor-vmm run'" run --test-guest --mem 64M --cpus 1 --lazy --control "$ssock"
# expect_cli_error "what" "pattern" cli-args...: castor fails, naming the problem
expect_cli_error() {
	local what=$1 pattern=$2
	shift 2
	if "$CLI" "$@" >"$dir/out" 2>"$dir/err"; then
		bad "$what succeeded: $(cat "$dir/out")"
	elif grep -qiE -- "$pattern" "$dir/err"; then
		ok "$what: $(head -1 "$dir/err")"
	else
		bad "$what: $(cat "$dir/err")"
	fi
}
for lazy in "" --lazy; do
	"$VMM" standby --mem 128M --cpus 2 $lazy --control "$ssock" --serial none 2>"$dir/s.log" &
	pid=$!
	for _ in $(seq 100); do [ -S "$ssock" ] && break; sleep 0.1; done
	expect_cli_error "standby$lazy: status before a restore" "standby waiting" vm status --socket "$ssock"
	expect_cli_error "standby$lazy: restore without --snapshot" "missing --snapshot" vm restore --socket "$ssock"
	expect_cli_error "standby$lazy: flipped byte" "checksum|malformed|bad" vm restore --socket "$ssock" --snapshot "$dir/flip.snap"
	expect_cli_error "standby$lazy: incremental alone" "starts with a full snapshot" vm restore --socket "$ssock" --snapshot "$dir/inc.snap"
	expect_cli_error "standby$lazy: missing file" "No such file" vm restore --socket "$ssock" --snapshot "$dir/none.snap"
	expect_cli_error "standby$lazy: big.snap's RAM size" "RAM size mismatch" vm restore --socket "$ssock" --snapshot "$dir/big.snap"
	# the eager standby comes back paused (--paused), the lazy one running
	paused=; want=running
	[ -z "$lazy" ] && paused=--paused && want=paused
	if (cd "$dir" && "$CLI" vm restore --socket "$ssock" --snapshot full.snap --snapshot inc.snap $paused --json) >"$dir/out" 2>"$dir/err" &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["snapshots"] == 2 and d["restore_ns"] > 0 and d["lazy"] == (sys.argv[2] == "--lazy")' "$dir/out" "$lazy" &&
		"$CLI" vm status --socket "$ssock" --json >"$dir/rst" &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["run_state"] == sys.argv[2] and d["vcpus"] == 2 and d["guest_counter"] > 0' "$dir/rst" "$want" &&
		{ [ -z "$paused" ] || { "$CLI" vm resume --socket "$ssock" >/dev/null &&
			"$CLI" vm status --socket "$ssock" --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["run_state"] == "running"'; }; }; then
		ok "standby$lazy: restored full + incremental (relative paths), $want${paused:+, then resumed}: $(cat "$dir/out")"
	else
		bad "standby$lazy restore: $(cat "$dir/err") $(tail -3 "$dir/s.log")"
	fi
	expect_cli_error "standby$lazy: a second restore" "has taken a snapshot chain already" vm restore --socket "$ssock" --snapshot "$dir/full.snap"
	"$CLI" vm quit --socket "$ssock" >/dev/null 2>&1
	wait "$pid"; pid=
done

echo "$fails failure(s)"
[ "$fails" = 0 ]
