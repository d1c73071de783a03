#!/bin/sh
# The castor CLI as a user meets it.
#   test_cli.sh args   CASTOR              argument errors: exit 2 + message; no socket: exit 1
#   test_cli.sh output CASTOR FAKE_VMM     output against cli_fake_vmm (scripted replies)
# Exit 0 when every check passes; each failure is printed.
set -u

mode=$1
castor=$2
fake=${3:-}
tmp=$(mktemp -d /tmp/castor-test-cli.XXXXXX)
fails=0
fake_pid=

cleanup() {
	[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

. "$(dirname "$0")/clitest.sh"

# expect_usage_error ARGS... : exit 2, a "castor: " message on stderr, nothing on stdout
expect_usage_error() {
	run "$@"
	expect_rc 2
	expect_in err "castor: "
	expect_empty out
}

start_fake() {
	sock=$1
	"$fake" "$sock" "$2" &
	fake_pid=$!
	i=0
	while [ ! -S "$sock" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -S "$sock" ] || { echo "FAIL: cli_fake_vmm did not create $sock"; exit 1; }
}

stop_fake() {
	wait "$fake_pid"
	fake_pid=
}

case $mode in
args)
	run
	expect_rc 2
	expect_in err "castor: missing group"
	expect_in err "usage: castor <group> <command>"

	for h in --help -h help; do
		run $h
		expect_rc 0
		expect_in out "usage: castor <group> <command>"
		expect_in out "vm "
		expect_empty err
	done
	run help vm
	expect_rc 0
	expect_in out "usage: castor vm <command>"
	run vm --help
	expect_rc 0
	expect_in out "usage: castor vm <command>"
	run vm status --help
	expect_rc 0
	expect_in out "--socket PATH"

	expect_usage_error help nosuchgroup
	expect_in err "unknown group 'nosuchgroup'"

	expect_usage_error nosuchgroup status --socket "$tmp/s"
	expect_in err "castor: unknown group 'nosuchgroup'"
	expect_in err "usage: castor <group> <command>"

	expect_usage_error --bogus
	expect_in err "unknown option '--bogus'"

	expect_usage_error vm
	expect_in err "castor: vm: missing command"
	expect_in err "usage: castor vm <command>"

	expect_usage_error vm frobnicate --socket "$tmp/s"
	expect_in err "castor: vm: unknown command 'frobnicate'"
	expect_in err "usage: castor vm <command>"

	for cmd in status pause resume quit dirty; do
		expect_usage_error vm $cmd
		expect_in err "castor: vm $cmd: missing --socket PATH"
	done

	expect_usage_error vm status --socket "$tmp/s" --bogus
	expect_in err "castor: vm status: unknown option '--bogus'"
	expect_usage_error vm pause -x --socket "$tmp/s"
	expect_in err "castor: vm pause: unknown option '-x'"
	expect_usage_error vm status --json=yes --socket "$tmp/s"
	expect_in err "option '--json=yes' takes no argument"
	expect_usage_error vm status --socket
	expect_in err "castor: vm status: option '--socket' needs a value"
	expect_usage_error vm snapshot --socket "$tmp/s" -f
	expect_in err "castor: vm snapshot: option '-f' needs a value"
	# every group words a missing value the same way, never as an unknown option
	for a in "bench pause --cpus" "bench checkpoint --intervals" "bench net --target" \
		"bench net --count" "bench dr --link-mbit"; do
		# shellcheck disable=SC2086
		expect_usage_error $a
		expect_in err "castor: ${a% *}: option '${a##* }' needs a value"
	done
	expect_usage_error bench dr --link-mbit 20,fast
	expect_in err "castor: bench dr: bad list '20,fast'"
	expect_usage_error bench dr --rpo 0
	expect_in err "castor: bench dr: --rpo wants 1-600000, not '0'"
	expect_usage_error bench pause --frobnicate
	expect_in err "castor: bench pause: unknown option '--frobnicate'"
	for n in 0 51 x -1; do
		expect_usage_error bench checkpoint --repeat "$n"
		expect_in err "castor: bench checkpoint: --repeat wants 1-50, not '$n'"
	done
	expect_usage_error vm start
	expect_in err "castor: vm start: VM is required"
	expect_usage_error vm stop vm1 --host a
	expect_in err "castor: stop: --host does not apply here"
	# castor ha without --socket: a cluster VM, through castord
	expect_usage_error ha protect
	expect_in err "castor: ha protect: VM is required (or --socket PATH for one castor-vmm)"
	expect_usage_error ha unprotect vm1 --host a
	expect_in err "castor: ha unprotect: --host goes with 'ha protect'"
	expect_usage_error ha protect vm1 --force
	expect_in err "castor: ha protect: --force goes with 'ha failover'"
	expect_usage_error ha failover vm1 extra
	expect_in err "castor: ha failover: unexpected argument 'extra'"
	expect_usage_error stream verify --json=1 "$tmp/f"
	expect_in err "castor: stream verify: option '--json=1' takes no argument"
	expect_usage_error vm status --socket ""
	expect_in err "--socket wants a path"
	expect_usage_error vm status --socket "$tmp/s" --harvest
	expect_in err "--harvest applies to 'vm dirty' only"
	for t in 0 -1 abc 1x nan 0x1p3 1e3 1.2.3 .5; do
		expect_usage_error vm status --socket "$tmp/s" --timeout "$t"
		expect_in err "--timeout wants a positive number of seconds"
	done
	expect_usage_error vm status --socket "$tmp/s" extra
	expect_in err "unexpected argument 'extra'"

	# well-formed commands that cannot reach a VMM: exit 1, one clear line
	run vm status --socket "$tmp/missing.sock"
	expect_rc 1
	expect_empty out
	[ "$(cat "$tmp/err")" = "castor: cannot connect to $tmp/missing.sock: No such file or directory" ] ||
		fail "wrong message"
	run vm dirty --harvest --json --timeout 0.5 --socket "$tmp/missing.sock"
	expect_rc 1
	expect_in err "castor: cannot connect to $tmp/missing.sock: No such file or directory"
	: >"$tmp/regular"
	run vm pause --socket "$tmp/regular"
	expect_rc 1
	expect_in err "castor: cannot connect to $tmp/regular: Connection refused"
	run vm pause --socket "/$(printf '%0200d' 0)"
	expect_rc 1
	expect_in err "File name too long"
	
	# castor ha: each command's options, and what they need
	expect_usage_error ha protect --socket /nonexistent
	expect_in err "--peer HOST:PORT (the replica) is required"
	expect_usage_error ha protect --socket /x --peer a:1 --force
	expect_in err "--force does not apply to 'castor ha protect'"
	expect_usage_error ha unprotect --socket /x --peer a:1
	expect_in err "--peer does not apply to 'castor ha unprotect'"
	expect_usage_error ha failover --socket /x --mode output
	expect_in err "--mode does not apply to 'castor ha failover'"
	expect_usage_error ha status --socket /x --force
	expect_in err "--force does not apply to 'castor ha status'"
	expect_usage_error ha protect --socket /x --peer a:1 --interval 0
	expect_in err "--interval: '0' is not a number of milliseconds"
	expect_usage_error ha protect --socket /x --peer a:1 --mode fast
	expect_in err "--mode: 'fast' is not interval, output or async"
	expect_usage_error ha protect --socket /x --peer a:1 --max-mbit 0
	expect_in err "castor: ha protect: --max-mbit: '0' is not a rate in Mbit/s (1-100000)"
	expect_usage_error ha unprotect --socket /x --max-mbit 10
	expect_in err "--max-mbit does not apply to 'castor ha unprotect'"
	expect_usage_error dr protect vm1 --to a:1 --max-mbit x
	expect_in err "castor: dr protect: --max-mbit: 'x' is not a rate in Mbit/s (1-100000)"
	expect_usage_error dr status vm1 --max-mbit 5
	expect_in err "castor: dr status: --max-mbit goes with 'dr protect'"
	expect_usage_error ha protect --socket /x --peer a:1 --mode async --rpo 0
	expect_in err "--rpo: '0' is not a number of milliseconds"
	expect_usage_error ha unprotect --socket /x --rpo 100
	expect_in err "--rpo does not apply to 'castor ha unprotect'"
	expect_usage_error ha protect --socket /x --peer
	expect_in err "option '--peer' needs a value"

	# castor dr
	expect_usage_error dr fly
	expect_in err "castor: dr: unknown command 'fly' (status, failover, test, unprotect, protect)"
	expect_usage_error dr test --socket /x
	expect_in err "castor: dr test: --dir DIR is required (where the copy goes)"
	expect_usage_error dr test --socket /x --dir /tmp --vmm /bin/true
	expect_in err "castor: dr test: --vmm goes with --boot"
	expect_usage_error dr status --socket /x --boot
	expect_in err "castor: dr status: --boot applies to 'castor dr test' only"
	expect_usage_error dr failover --socket /x --dir /tmp
	expect_in err "castor: dr failover: --dir applies to 'castor dr test' only"
	run dr test --socket /x --dir /nonexistent/a/b
	expect_rc 1
	expect_in err "castor: dr test: cannot create /nonexistent/a/b: No such file or directory"
	expect_usage_error dr status
	expect_in err "castor: dr status: --socket PATH is required"
	expect_usage_error dr status --socket /x --force
	expect_in err "--force applies to 'castor dr failover' and 'unprotect' only"
	expect_usage_error dr failover --socket /x extra
	expect_in err "castor: dr failover: it runs at the DR site, against the DR replica: give its --socket PATH, not a VM ('extra')"
	expect_usage_error dr status --socket /x extra
	expect_in err "castor: dr status: unexpected argument 'extra'"
	expect_usage_error dr test vm1 --dir /tmp
	expect_in err "give its --socket PATH, not a VM ('vm1'): the DR site is outside the cluster"
	# castor dr through castord (a VM's name, no --socket)
	expect_usage_error dr protect vm1
	expect_in err "castor: dr protect: --to HOST:PORT (the DR replica) is required"
	expect_usage_error dr protect --to a:1
	expect_in err "castor: dr protect: VM is required"
	expect_usage_error dr protect vm1 --to a:1 --rpo 0
	expect_in err "castor: dr protect: --rpo: '0' is not a number of milliseconds (1-600000)"
	expect_usage_error dr protect vm1 --to a:1 --rpo 600001
	expect_in err "--rpo: '600001' is not a number of milliseconds"
	expect_usage_error dr unprotect vm1 --to a:1
	expect_in err "castor: dr unprotect: --to goes with 'dr protect'"
	expect_usage_error dr status vm1 --rpo 5
	expect_in err "castor: dr status: --rpo goes with 'dr protect'"
	expect_usage_error dr protect vm1 vm2 --to a:1
	expect_in err "castor: dr protect: unexpected argument 'vm2'"
	expect_usage_error dr protect vm1 --to a:1 --socket /x
	expect_in err "castor: dr protect: unknown option '--socket'"
	run dr status vm1 --castord "$tmp/none.sock"
	expect_rc 1
	expect_in err "no reply from castord at $tmp/none.sock"
	expect_usage_error dr failover --socket /x --rpo 5
	expect_in err "castor: dr failover: unknown option '--rpo'"
	run dr failover --socket /nonexistent/sock
	expect_rc 1
	expect_in err "no reply from /nonexistent/sock"

	# castor migrate: postcopy's switches
	expect_usage_error migrate --socket /x --switch-to-postcopy --to a:1
	expect_in err "--switch-to-postcopy takes no other option than --socket"
	expect_usage_error migrate --socket /x --cancel --switch-to-postcopy
	expect_in err "--cancel takes no other option than --socket"
	expect_usage_error migrate --socket /x --cancel --postcopy
	expect_in err "--cancel takes no other option than --socket"
	expect_usage_error migrate --socket /x --resume --postcopy
	expect_in err "--resume takes no other option than --socket and --json"
	expect_usage_error migrate --socket /x --switch-to-postcopy --json
	expect_in err "--switch-to-postcopy takes no other option than --socket"
	expect_usage_error migrate --socket /x --postcopy
	expect_in err "--to HOST:PORT (the destination's castor-vmm incoming) is required"
	run migrate --socket /nonexistent/sock --switch-to-postcopy
	expect_rc 1
	expect_in err "no reply from /nonexistent/sock"
	run ha protect --socket /nonexistent/sock --peer 127.0.0.1:1
	expect_rc 1
	expect_in err "no reply from /nonexistent/sock"
	run ha unprotect --socket /nonexistent/sock --force
	expect_rc 1
	expect_in err "no reply from /nonexistent/sock"

	# castor key generate: 0600, 65 bytes, never overwritten
	expect_usage_error key
	expect_usage_error key generate
	expect_usage_error key rotate "$tmp/k"
	run key generate "$tmp/k"
	expect_rc 0
	expect_in out "$tmp/k"
	[ "$(stat -c %a "$tmp/k")" = 600 ] || fail "key file mode $(stat -c %a "$tmp/k"), not 600"
	[ "$(stat -c %s "$tmp/k")" = 65 ] || fail "key file of $(stat -c %s "$tmp/k") bytes, not 65"
	run key generate "$tmp/k"
	expect_rc 1
	expect_in err "never overwritten"
	expect_usage_error bench seal --size 1

	# the cluster commands (through castord)
	expect_usage_error vm define
	expect_in err "vm define: FILE is required"
	expect_usage_error vm show
	expect_in err "vm show: VM is required"
	expect_usage_error vm list extra
	expect_in err "vm list: unexpected argument 'extra'"
	expect_usage_error vm undefine a b
	expect_in err "unexpected argument 'b'"
	expect_usage_error vm list --castord
	expect_in err "option '--castord' needs a value"
	expect_usage_error node list --frob
	expect_in err "unknown option '--frob'"
	expect_usage_error node list extra
	expect_in err "node list: unexpected argument 'extra'"
	expect_usage_error node show
	expect_in err "node: unknown command 'show'"
	expect_usage_error status extra
	expect_in err "status: unexpected argument 'extra'"
	run status --castord "$tmp/none.sock"
	expect_rc 1
	expect_in err "no reply from castord at $tmp/none.sock"
	run vm list --castord "$tmp/none.sock"
	expect_rc 1
	expect_in err "is castord running?"
	run vm define "$tmp/missing.conf" --castord "$tmp/none.sock"
	expect_rc 1
	expect_in err "vm define: $tmp/missing.conf: No such file or directory"

	# castor mkguest: refusals before anything is fetched or written
	run mkguest --help
	expect_rc 0
	expect_in out "--kernel-package NAME"
	expect_usage_error mkguest --bogus
	expect_in err "mkguest: unknown option '--bogus'"
	expect_usage_error mkguest --out
	expect_in err "option '--out' needs a value"
	expect_usage_error mkguest extra
	expect_in err "mkguest: unexpected argument 'extra'"
	: >"$tmp/afile"
	expect_usage_error mkguest --out "$tmp/afile"
	expect_in err "--out '$tmp/afile' exists and is not a folder"
	expect_usage_error mkguest --out ""
	expect_in err "--out: empty path"
	expect_usage_error mkguest --cache "$tmp/afile"
	expect_in err "--cache '$tmp/afile' exists and is not a folder"
	for bad in 'Linux-image-amd64' 'linux-image-amd64;reboot' 'busybox-static' 'linux-image-'; do
		expect_usage_error mkguest --kernel-package "$bad" --out "$tmp/g" --cache "$tmp/c"
		expect_in err "--kernel-package '$bad': not a Debian kernel image package name"
	done
	# well formed, unknown to apt: the builder says so (apt-cache only, no network)
	if command -v apt-cache >/dev/null; then
		run mkguest --kernel-package linux-image-castor-nosuch --out "$tmp/g" --cache "$tmp/c"
		expect_rc 1
		expect_in err "castor: mkguest: package 'linux-image-castor-nosuch' is unknown to apt"
		[ ! -e "$tmp/g" ] || fail "mkguest made $tmp/g for an unknown package"
		[ ! -e "$tmp/c" ] || fail "mkguest made $tmp/c for an unknown package"
	fi
;;

output)
	s="$tmp/vmm.sock"
	start_fake "$s" normal

	run vm status --socket "$s"
	expect_rc 0
	cat >"$tmp/want" <<'EOF'
vm: fake-vm  state: running  vcpus: 2  memory: 1.0 GiB  uptime: 12.3 s
guest counter: 123456  outputs: 789  exits: 4567  pauses: 3
vcpu  state    counter  out_seq  exits  io    mmio
0     running  61728    394      2300   2000  12
1     parked   61728    395      2267   1999  0
EOF
	cmp -s "$tmp/out" "$tmp/want" || fail "status text differs: $(diff "$tmp/want" "$tmp/out")"
	expect_empty err

	run vm status --socket "$s" --json
	expect_rc 0
	[ "$(wc -l <"$tmp/out")" = 1 ] || fail "--json is not one line"
	json_check 'j["name"] == "fake-vm" and j["vcpus"] == 2 and j["mem_bytes"] == 1 << 30'
	json_check 'j["run_state"] == "running" and j["guest_counter"] == 123456'
	json_check 'j["exits"] == 4567 and j["uptime_ns"] == 12300000000 and j["pauses"] == 3'
	json_check 'j["outputs"] == 789 and len(j["vcpu"]) == 2'
	json_check 'j["vcpu"][1] == {"index": 1, "state": "parked", "counter": 61728, "out_seq": 395, "exits": 2267, "io_exits": 1999, "mmio_exits": 0}'

	run vm pause --socket "$s"
	expect_rc 0
	[ "$(cat "$tmp/out")" = ok ] || fail "pause did not print ok"
	run vm pause --socket "$s" --json
	expect_rc 0
	[ "$(cat "$tmp/out")" = '{"ok":true}' ] || fail "pause --json"

	# an error reply: its message and errno text, exit 1
	run vm resume --socket "$s"
	expect_rc 1
	expect_empty out
	[ "$(cat "$tmp/err")" = "castor: vm is not paused (Operation already in progress)" ] ||
		fail "wrong error line"
	run vm resume --socket "$s" --json
	expect_rc 1
	expect_empty out

	run vm dirty --socket "$s"
	expect_rc 0
	expect_in out "dirty tracking: off  harvests: 0  guest RAM: 262144 pages (1.0 GiB)"
	expect_in out "last harvest: none"
	run vm dirty --harvest --socket "$s"
	expect_rc 0
	expect_in out "dirty tracking: on  harvests: 1"
	expect_in out "last harvest: 345 dirty pages (3 from VMM writes) in 1.235 ms"
	run vm dirty --harvest --json --socket "$s"
	expect_rc 0
	json_check 'j == {"tracking": True, "harvests": 1, "last_dirty_pages": 345, "last_harvest_ns": 1234567, "vmm_dirty_pages": 3, "ram_pages": 262144}'

	# paths go to castor-vmm absolute: its working directory is not ours
	mkdir -p "$tmp/sub/dir"
	: >"$tmp/sub/dir/old.snap"
	ln -s dir "$tmp/sub/link"
	(cd "$tmp/sub" && "$castor" vm snapshot --socket "$s" --file new.snap >"$tmp/out" 2>"$tmp/err")
	rc=$?
	last="(in $tmp/sub) castor vm snapshot --file new.snap"
	expect_rc 0
	expect_in out "snapshot $tmp/sub/new.snap: full"
	run vm snapshot --socket "$s" --file "$tmp/abs.snap" --json
	expect_rc 0
	json_check "j['path'] == '$tmp/abs.snap'"
	(cd "$tmp/sub" && "$castor" vm restore --socket "$s" --snapshot link/old.snap \
		--snapshot ../missing.snap >"$tmp/out" 2>"$tmp/err")
	rc=$?
	last="(in $tmp/sub) castor vm restore --snapshot link/old.snap --snapshot ../missing.snap"
	expect_rc 1
	expect_in err "fake: restore of $tmp/sub/dir/old.snap $tmp/sub/../missing.snap"

	run vm quit --socket "$s"
	expect_rc 0
	[ "$(cat "$tmp/out")" = ok ] || fail "quit did not print ok"
	stop_fake

	# server strings with quotes, control bytes and invalid UTF-8
	start_fake "$s" weird
	run vm status --socket "$s" --json
	expect_rc 0
	json_check 'j["name"] == "we\"ird\\\n\x01\ufffd \u00e9"'
	run vm status --socket "$s"
	expect_rc 0
	head -n 1 "$tmp/out" | grep -q "$(printf '\001')" && fail "control byte reached the terminal"
	expect_in out 'vm: we"ird\??'
	run vm quit --socket "$s"
	stop_fake

	# a VMM that could not read the request answers with id 0 and an error
	start_fake "$s" id0
	run vm pause --socket "$s"
	expect_rc 1
	[ "$(cat "$tmp/err")" = "castor: malformed request (Bad message)" ] || fail "wrong error line"
	stop_fake

	# a VMM that never answers
	start_fake "$s" silent
	run vm status --socket "$s" --timeout 0.2
	expect_rc 1
	expect_in err "castor: no valid reply from $s: Connection timed out"
	stop_fake

	# castor dr: the primary of an async session, its replica with the primary lost,
	# and with the primary still streaming (a failover refused unless forced)
	start_fake "$s" dr-primary
	run dr status --socket "$s"
	expect_rc 0
	expect_in out "DR primary, protected, toward 192.0.2.7:7000: the replica's newest checkpoint is 1.2 s old (target 5.0 s; p50 2.6 s, p99 4.9 s; 2 alerts); checkpoint 42 acknowledged"
	run dr status --socket "$s" --json
	expect_rc 0
	json_check 'j["role"] == "primary" and j["dr_session"] and j["rpo_ns"] == 1200000000'
	json_check 'j["rpo_target_ms"] == 5000 and j["rpo_alerts"] == 2 and "failover" not in j'
	run dr failover --socket "$s"
	expect_rc 1
	expect_in err "castor: dr failover: $s is a primary, not a DR replica"
	run dr test --socket "$s" --dir "$tmp/drill0"
	expect_rc 1
	expect_in err "castor: dr test: this castor-vmm is not a replica: a DR copy comes from one"
	run dr unprotect --socket "$s"
	expect_rc 0
	expect_in out "the DR session stopped; the DR replica keeps its last checkpoint"
	run dr unprotect --socket "$s" --json
	json_check 'j == {"stopped": True}'
	run vm quit --socket "$s"
	stop_fake

	start_fake "$s" dr-replica
	run dr status --socket "$s"
	expect_rc 0
	printf '%s\n' "replica, primary-lost: checkpoint 42, applied whole 3.5 s ago (43 applied)" \
		"failover: ready: it would start from checkpoint 42" >"$tmp/want"
	cmp -s "$tmp/out" "$tmp/want" || fail "dr status text differs: $(diff "$tmp/want" "$tmp/out")"
	run dr status --socket "$s" --json
	json_check 'j["failover_ready"] and j["ckpt_age_ns"] == 3500000000 and j["epoch"] == 42'
	run dr failover --socket "$s"
	expect_rc 0
	printf '%s\n' "starting the copy from checkpoint 42, applied whole 3.5 s ago" \
		"the copy runs from checkpoint 42 (state failed-over)" >"$tmp/want"
	cmp -s "$tmp/out" "$tmp/want" || fail "dr failover text differs: $(diff "$tmp/want" "$tmp/out")"
	run dr failover --socket "$s" --json
	expect_rc 0
	json_check 'j == {"state": "failed-over", "epoch": 42, "ckpt_age_ns": 3500000000, "forced": False}'
	# castor dr test: the directory made (0700) and sent absolute; the boot line printed
	(cd "$tmp" && "$castor" dr test --socket "$s" --dir drill) >"$tmp/out" 2>"$tmp/err"
	rc=$?
	last="castor dr test --socket $s --dir drill (in $tmp)"
	expect_rc 0
	[ "$(stat -c %a "$tmp/drill")" = 700 ] || fail "the drill directory is $(stat -c %a "$tmp/drill")"
	d=$(cd "$tmp/drill" && pwd -P)
	printf '%s\n' "checkpoint 42 (applied whole 0.4 s before) copied to $d in 35 ms: RAM and state 32.0 MiB, disks 8.0 MiB; replication went on" \
		"boot it isolated (its NICs on taps bridged nowhere) with:" \
		"  castor-vmm restore --snapshot $d/checkpoint.snap --disk $d/disk0.img --disk /srv/base.img,ro --net tap=drtest0,mac=52:54:00:12:34:56 --name drtest --control $d/test.sock --serial $d/serial.log" >"$tmp/want"
	cmp -s "$tmp/out" "$tmp/want" || fail "dr test text differs: $(diff "$tmp/want" "$tmp/out")"
	run dr test --socket "$s" --dir "$tmp/drill" --json
	expect_rc 0
	json_check 'j["epoch"] == 42 and j["disks"][1] == "/srv/base.img" and j["copy_ns"] == 35000000'
	json_check 'j["boot"][0] == "castor-vmm" and "--disk" in j["boot"] and "pid" not in j'
	# --boot with a castor-vmm that cannot run: said, with where its log is (its
	# network namespace and tap need root)
	if [ "$(id -u)" = 0 ]; then
		# an earlier drill's socket left in the directory does not pass for this one's
		python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
			"$tmp/drill/test.sock"
		run dr test --socket "$s" --dir "$tmp/drill" --boot --vmm /nonexistent/castor-vmm
		expect_rc 1
		expect_in err "castor: dr test: castor-vmm restore ended (status 127) before it ran; its log is $d/vmm.log"
		grep -q "cannot run /nonexistent/castor-vmm" "$tmp/drill/vmm.log" ||
			fail "vmm.log: $(cat "$tmp/drill/vmm.log")"
	fi
	run vm quit --socket "$s"
	stop_fake

	start_fake "$s" dr-streaming
	run dr status --socket "$s" --json
	json_check 'not j["failover_ready"] and "still streams checkpoints" in j["failover"]'
	run dr failover --socket "$s"
	expect_rc 1
	expect_in err "castor: dr failover: refused without --force: the primary still streams checkpoints (state protected); fence it first"
	expect_empty out
	run dr failover --socket "$s" --force
	expect_rc 0
	expect_in out "starting the copy from checkpoint 42, applied whole 3.5 s ago (forced)"
	run vm quit --socket "$s"
	stop_fake
	;;

*)
	echo "usage: test_cli.sh args|output CASTOR [FAKE_VMM]" >&2
	exit 2
	;;
esac

if [ "$fails" != 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
