#!/bin/bash
# The test guest's virtio drivers, network stack and disk workload against
# QEMU's reference devices: QEMU's microvm machine (virtio-mmio transports)
# boots castor-tg.bin through its multiboot loader with a virtio-net NIC on a
# tap inside a network namespace of its own and a virtio-blk disk, then:
#
#   1. ping 20, tgclient udp 2000, tgclient tcp 2000 (answers once, in order,
#      counts consecutive; the guest closes when the client does);
#   2. TG_CMD_NET_RESET in the middle of a TCP run (the connection survives),
#      TG_CMD_BLK_RESET, an unknown command (rejected);
#   3. io_state counters, then the disk image against the disk rule and
#      io_state's blk_generation/blk_next (blkcheck.py);
#   4. a second boot, disk read-only, in verify-only mode, on a copy of the
#      image with one word changed: that block must count as bad, the rest
#      verified, nothing written;
#   5. a third boot, disk read-only, write mode: every write refused
#      (blk_io_errors), nothing counted written or bad.
#
# Mailbox commands go in through QEMU's gdbstub, io_state comes out through
# QMP (tgqemu.py). Nothing touches the root network namespace.
#
# usage: qemu_guest_net.sh <castor-tg.bin>
# exit:  0 pass, 1 fail, 77 skipped (no qemu-system-x86_64, /dev/kvm or ip netns;
#        a failure instead under CASTOR_REQUIRE_KVM=1, tests/require.sh)
set -u

image=${1:-}
here=$(cd "$(dirname "$0")" && pwd)
ns=castor-tg-$$
tap=tgtap0
host_ip=10.77.0.1
guest_ip=10.77.0.2
seed=0x5eed
blk_first=2048
blk_count=256

. "$here/../require.sh"
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	test_skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
fi
if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	test_skip "/dev/kvm is absent or not accessible"
fi
if ! command -v ip >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: needs ip (iproute2) and python3"
	exit 77
fi
if [ -z "$image" ] || [ ! -f "$image" ]; then
	echo "FAIL: no guest image '$image'"
	exit 1
fi

tmp=$(mktemp -d /tmp/castor-qemu-net.XXXXXX) || exit 1
qemu_pid=
ns_made=
# shellcheck disable=SC2317 # called by the EXIT trap
stop_qemu() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
		qemu_pid=
	fi
}
# shellcheck disable=SC2317
cleanup() {
	stop_qemu
	[ -n "$ns_made" ] && ip netns del "$ns" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if ! ip netns add "$ns" 2>"$tmp/netns.err"; then
	test_skip "cannot create a network namespace (ip netns add): $(cat "$tmp/netns.err")"
fi
ns_made=1
in_ns() { ip netns exec "$ns" "$@"; }
if ! { ip -n "$ns" link set lo up &&
	ip -n "$ns" tuntap add dev "$tap" mode tap &&
	ip -n "$ns" addr add "$host_ip/24" dev "$tap" &&
	ip -n "$ns" link set "$tap" up; }; then
	echo "FAIL: could not set up $tap in namespace $ns"
	exit 1
fi

fail() {
	echo "FAIL: $*"
	echo "--- serial log:"
	cat "$tmp/serial.log" 2>/dev/null
	echo "--- qemu output:"
	cat "$tmp/qemu.out" 2>/dev/null
	exit 1
}

# The guest's clock: the host's TSC rate (QEMU passes it through under KVM).
tsc_khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9]*\)\.\([0-9]\{3\}\).*/\1\2/p' | head -1)
[ -n "$tsc_khz" ] || tsc_khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9]\{3\}\) MHz.*/\1\2/p' | head -1)
[ -n "$tsc_khz" ] || tsc_khz=2000000

# launch <in netns: 0|1> <append> <extra qemu args...>: boot the guest and wait
# for its device lines; sets qemu_pid. The default CPU model first, then the
# host model without ARCH_CAPABILITIES (kvm_pvm cannot set MSR 0x10a).
launch() {
	local netns=$1 append=$2 cpu deadline
	shift 2
	rm -f "$tmp/qmp.sock" "$tmp/gdb.sock"
	for cpu in "" "host,-arch-capabilities"; do
		: >"$tmp/serial.log"
		local cmd=(qemu-system-x86_64 -M microvm -enable-kvm ${cpu:+-cpu "$cpu"} -m 256 -smp 1
			-nodefaults -no-user-config -display none -no-reboot
			-serial "file:$tmp/serial.log"
			-global virtio-mmio.force-legacy=false
			-qmp "unix:$tmp/qmp.sock,server=on,wait=off"
			-gdb "unix:$tmp/gdb.sock,server=on,wait=off"
			-kernel "$image" -append "$append" "$@")
		if [ "$netns" = 1 ]; then
			ip netns exec "$ns" "${cmd[@]}" >"$tmp/qemu.out" 2>&1 &
		else
			"${cmd[@]}" >"$tmp/qemu.out" 2>&1 &
		fi
		qemu_pid=$!
		sleep 1
		kill -0 "$qemu_pid" 2>/dev/null && break
		wait "$qemu_pid" 2>/dev/null
		qemu_pid=
		echo "note: qemu with cpu '${cpu:-default}' exited at once:"
		sed 's/^/  /' "$tmp/qemu.out"
	done
	[ -n "$qemu_pid" ] || fail "qemu did not start"
	deadline=$((SECONDS + 30))
	while [ $SECONDS -lt $deadline ]; do
		kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited early"
		if grep -q '^castor-tg: \(stopped\|exception\|bad parameter\|net at\|blk at\)' \
			"$tmp/serial.log"; then
			fail "the guest reported an error"
		fi
		if grep -q '^castor-tg: blk mmio=' "$tmp/serial.log" &&
			{ [ "$netns" = 0 ] || grep -q '^castor-tg: net mmio=' "$tmp/serial.log"; }; then
			return 0
		fi
		sleep 0.2
	done
	fail "no device lines on the serial console within 30 s"
}

iostate() { "$here/tgqemu.py" iostate --qmp "$tmp/qmp.sock" "$@"; }
mailbox() { "$here/tgqemu.py" mailbox --gdb "$tmp/gdb.sock" --cmd "$1"; }
field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" "$tmp/state"; }
# expect <field> eq|ge <value>, on the io_state snapshot in $tmp/state
expect() {
	local v ok=
	v=$(field "$1")
	if [ -n "$v" ]; then
		case $2 in
		eq) [ "$v" -eq "$3" ] && ok=1 ;;
		ge) [ "$v" -ge "$3" ] && ok=1 ;;
		esac
	fi
	[ -n "$ok" ] || fail "io_state $1 = ${v:-?}, expected $2 $3 ($(cat "$tmp/state"))"
}
# Wait until the disk workload has started pass $1 (so an earlier one is complete).
wait_pass() {
	local deadline=$((SECONDS + 30)) g
	while [ $SECONDS -lt $deadline ]; do
		g=$(iostate --get blk_generation 2>/dev/null)
		[ -n "$g" ] && [ "$g" -ge "$1" ] && return 0
		sleep 0.3
	done
	fail "the disk workload did not reach pass $1 within 30 s"
}

# ---- 1. NIC and disk, services ------------------------------------------------
truncate -s 8M "$tmp/disk.img"
append="net=auto blk=auto ip=$guest_ip mask=255.255.255.0 seed=$seed tsckhz=$tsc_khz flags=0"
append="$append blkfirst=$blk_first blkcount=$blk_count blkrate=400"
launch 1 "$append" \
	-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device virtio-net-device,netdev=n0 \
	-drive "file=$tmp/disk.img,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0
grep '^castor-tg: \(net\|blk\) ' "$tmp/serial.log"

in_ns "$here/tgclient.py" ping --host "$guest_ip" --count 20 || fail "ping"
in_ns "$here/tgclient.py" udp --host "$guest_ip" --count 2000 || fail "udp"
in_ns "$here/tgclient.py" tcp --host "$guest_ip" --count 2000 || fail "tcp"

# ---- 2. mailbox: NIC reset under a TCP connection, disk reset, unknown -----------
in_ns "$here/tgclient.py" tcp --host "$guest_ip" --count 1000 --rate 500 --start 1000001 \
	>"$tmp/tcp_reset.out" 2>&1 &
client=$!
sleep 1
mailbox 2 || fail "TG_CMD_NET_RESET"
wait "$client"
rc=$?
cat "$tmp/tcp_reset.out"
[ $rc -eq 0 ] || fail "the TCP connection did not survive the NIC reset"
mailbox 3 || fail "TG_CMD_BLK_RESET"
out=$(mailbox 99)
echo "$out"
case $out in *"status 1") ;; *) fail "an unknown mailbox command was not rejected" ;; esac

# ---- 3. counters and the disk image ------------------------------------------------
wait_pass 3
iostate --stop >"$tmp/state" || fail "cannot read io_state"
cat "$tmp/state"
expect net_up eq 1
expect blk_up eq 1
expect icmp_replies ge 20
expect arp_replies ge 1
expect udp_answered eq 2000
expect tcp_answered eq 3000
expect tcp_conns eq 2
expect tcp_resets eq 0
expect net_resets eq 1
expect blk_resets eq 1
expect blk_bad eq 0
expect blk_io_errors eq 0
expect blk_verified ge $((2 * blk_count))
"$here/blkcheck.py" "$tmp/disk.img" --first $blk_first --count $blk_count --seed $seed \
	--generation "$(field blk_generation)" --next "$(field blk_next)" || fail "disk rule"
stop_qemu

# ---- 4. read-only disk, verify-only, one corrupted block ----------------------------
cp "$tmp/disk.img" "$tmp/bad.img"
bad_block=7
printf '\x01' | dd of="$tmp/bad.img" bs=1 seek=$(((blk_first + 8 * bad_block) * 512 + 1000)) \
	conv=notrunc status=none
if "$here/blkcheck.py" "$tmp/bad.img" --first $blk_first --count $blk_count --seed $seed \
	>"$tmp/blkcheck.out"; then
	fail "blkcheck.py did not notice the changed block"
fi
cat "$tmp/blkcheck.out"
sum_before=$(cksum <"$tmp/bad.img")
launch 0 "blk=auto seed=$seed tsckhz=$tsc_khz flags=0 blkfirst=$blk_first blkcount=$blk_count blkrate=5000 blkverify=1" \
	-drive "file=$tmp/bad.img,format=raw,if=none,id=d0,readonly=on" -device virtio-blk-device,drive=d0
grep '^castor-tg: blk ' "$tmp/serial.log"
grep -q '^castor-tg: blk .* ro=1 .*mode=verify' "$tmp/serial.log" || fail "no ro=1 / mode=verify"
wait_pass 3
iostate --stop >"$tmp/state" || fail "cannot read io_state"
cat "$tmp/state"
expect blk_written eq 0
expect blk_io_errors eq 0
expect blk_bad ge 2
expect blk_verified ge $((2 * (blk_count - 1)))
[ "$(field blk_bad)" -le $(($(field blk_generation))) ] || fail "more bad blocks than passes"
stop_qemu
[ "$(cksum <"$tmp/bad.img")" = "$sum_before" ] || fail "verify-only mode changed the image"

# ---- 5. read-only disk, write mode: refused writes ----------------------------------
launch 0 "blk=auto seed=$seed tsckhz=$tsc_khz flags=0 blkfirst=$blk_first blkcount=$blk_count blkrate=5000" \
	-drive "file=$tmp/bad.img,format=raw,if=none,id=d0,readonly=on" -device virtio-blk-device,drive=d0
wait_pass 2
iostate --stop >"$tmp/state" || fail "cannot read io_state"
cat "$tmp/state"
expect blk_written eq 0
expect blk_bad eq 0
expect blk_verified eq 0
expect blk_io_errors ge $blk_count
stop_qemu
[ "$(cksum <"$tmp/bad.img")" = "$sum_before" ] || fail "a read-only disk changed"

echo "PASS: net services, NIC/disk resets, disk rule, verify-only and read-only disk"
exit 0
