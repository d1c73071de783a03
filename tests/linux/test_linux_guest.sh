#!/usr/bin/env bash
# A Linux guest under castor-vmm, end to end (ctest label "linux"): Debian's stock
# kernel (castor mkguest's image) boots to its marker with 1 and then 2 vCPUs, and
#   - the marker names as many CPUs as castor-vmm gave it and about its RAM;
#   - its NIC (virtio-mmio, found through our ACPI tables) answers ping and the TCP
#     request/response protocol from a client namespace (tgclient.py: every request
#     answered once, in order; 30 s without an answer is a failure: a nested, emulated
#     machine (tests/nested) has stalled a guest for over 5 s);
#   - its disk reads what the host wrote and the host finds what it wrote
#     (castor.disktest=1);
# then castor-vmm quits cleanly. Then the kernel (1 vCPU, no disk) is snapshotted, quit,
# restored and answers TCP; protected toward a replica on loopback (its tap on the
# same bridge), killed with kill -9 during a TCP conversation, failed over: the
# conversation goes on, every request answered once, in order.
# Needs hardware virtualization: on kvm_pvm (guest ring 0 emulated) the kernel never
# reaches init, so this skips there with the reason.
#
#   test_linux_guest.sh CASTOR_VMM CASTOR GUEST_DIR TGCLIENT
# exit: 0 pass, 1 fail, 77 skipped
set -u
VMM=$1
CLI=$2
GUEST=$3
TGCLIENT=$4
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../net/lan.sh"
. "$here/../require.sh"

grep -qE '\b(vmx|svm)\b' /proc/cpuinfo && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } ||
	test_not_here "no hardware virtualization (vmx/svm with kvm_intel or kvm_amd): a stock kernel cannot boot in useful time here (docs/guests.md)"
[ -c /dev/kvm ] || test_skip "/dev/kvm is absent"
why=$(lan_check) || test_skip "$why"
if [ ! -f "$GUEST/vmlinux" ] || [ ! -f "$GUEST/initramfs.cpio.gz" ]; then
	"$CLI" mkguest --out "$GUEST" || { echo "FAIL: castor mkguest --out $GUEST"; exit 1; }
fi

tag=clg$$
dir=$(mktemp -d /tmp/castor-linux-guest.XXXXXX)
pid=
twin=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; fi
	if [ -n "$twin" ] && kill -0 "$twin" 2>/dev/null; then kill -9 "$twin"; wait "$twin" 2>/dev/null; fi
	lan_down "$tag"
	rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
lan_up "$tag" || exit 1
H() { ip netns exec "$tag-host" "$@"; }
C() { ip netns exec "$tag-client" "$@"; }

md5_pattern=$(yes castor-disk-pattern | head -c 1048576 | md5sum | cut -d' ' -f1)
for cpus in 1 2; do
	disk=$dir/disk$cpus.raw
	truncate -s 16M "$disk"
	head -c 1048576 /dev/urandom | dd of="$disk" conv=notrunc 2>/dev/null
	md5_0=$(head -c 1048576 "$disk" | md5sum | cut -d' ' -f1)
	console=$dir/console$cpus
	ip netns exec "$tag-host" "$VMM" run --name linux$cpus --mem 512M --cpus "$cpus" --kernel "$GUEST/vmlinux" \
		--initrd "$GUEST/initramfs.cpio.gz" \
		--cmdline "console=ttyS0 castor.ip=$LAN_GUEST_IP/24 castor.disktest=1" \
		--net tap=tap0 --disk "$disk" --control "$dir/vm.sock" --serial "$console" \
		>"$dir/vmm$cpus.log" 2>&1 &
	pid=$!
	for _ in $(seq 600); do
		grep -q '^CASTOR-GUEST-READY ' "$console" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	# its fields only: a kernel message may land on the same line
	ready=$(grep -o -m1 '^CASTOR-GUEST-READY [^ ]* [0-9]* [0-9]*' "$console" 2>/dev/null)
	if [ -z "$ready" ]; then
		bad "$cpus vCPU(s): no CASTOR-GUEST-READY within 120 s"
		tail -n 30 "$console" "$dir/vmm$cpus.log"
		continue
	fi
	# shellcheck disable=SC2086 # its words on purpose
	set -- $ready
	[ "$3" = "$cpus" ] && ok "$cpus vCPU(s): the guest counts $3 CPUs" || bad "nproc says $3, not $cpus"
	[ "$4" -gt $((400 * 1024)) ] && [ "$4" -le $((512 * 1024)) ] &&
		ok "$cpus vCPU(s): MemTotal $4 KiB of 512 MiB" || bad "MemTotal $4 KiB"
	grep -E '^CASTOR-GUEST-DEVICES' "$console" | grep -q 'virtio_net:eth0' &&
		grep -E '^CASTOR-GUEST-DEVICES' "$console" | grep -q 'virtio_blk:/dev/vda' &&
		ok "virtio-net and virtio-blk found through ACPI" || bad "devices: $(grep DEVICES "$console")"
	C ping -c 5 -i 0.2 -W 2 "$LAN_GUEST_IP" >"$dir/ping" 2>&1 &&
		ok "ping: $(grep -o '[0-9]* received' "$dir/ping")" || bad "ping: $(tail -2 "$dir/ping")"
	C python3 "$TGCLIENT" tcp --host "$LAN_GUEST_IP" --count 1000 --timeout 30 >"$dir/tcp" 2>&1 &&
		ok "tcp: $(tail -1 "$dir/tcp")" || bad "tcp: $(tail -3 "$dir/tcp")"
	# the kernel's console messages may land on the same line: take the digests
	line=$(grep -o -m1 '^CASTOR-GUEST-DISK \(none\|[0-9a-f]\{32\} [0-9a-f]\{32\}\)' "$console")
	[ "$line" = "CASTOR-GUEST-DISK $md5_0 $md5_pattern" ] && ok "disk: read as the host wrote it" ||
		bad "disk: '$line', expected $md5_0 $md5_pattern"
	"$CLI" vm quit --socket "$dir/vm.sock" >/dev/null || bad "castor vm quit"
	wait "$pid"
	code=$?
	pid=
	[ "$code" = 0 ] && ok "castor-vmm exit 0" || bad "castor-vmm exit $code"
	[ "$(dd if="$disk" bs=1048576 skip=1 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$md5_pattern" ] &&
		ok "disk: the guest's write is in the image" || bad "disk: the guest's write is not in the image"
done

# ---- the same kernel snapshotted, restored, protected and failed over ----------------
# 1 vCPU, no disk (a protected VM has read-only disks only). The replica's twin gets its
# own tap on the same bridge; the link is loopback (no key needed there).
MAC=52:54:00:c4:57:02
# the guest's address had another MAC in the boots above: forget it
C ip neigh flush all
H ip tuntap add dev tap1 mode tap && H ip link set tap1 master lan0 && H ip link set tap1 up ||
	bad "cannot add tap1 to the LAN"
wait_ready() { # wait_ready CONSOLE PID: the guest's marker, or fail
	for _ in $(seq 600); do
		grep -q '^CASTOR-GUEST-READY ' "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
tcp() { # tcp N WHAT: N requests over one connection, every one answered once, in order
	C python3 "$TGCLIENT" tcp --host "$LAN_GUEST_IP" --count "$1" --timeout 30 >"$dir/tcp" 2>&1 &&
		ok "$2: tcp: $(tail -1 "$dir/tcp")" || bad "$2: tcp: $(tail -3 "$dir/tcp")"
}
ip netns exec "$tag-host" "$VMM" run --name lx --mem 256M --cpus 1 --kernel "$GUEST/vmlinux" \
	--initrd "$GUEST/initramfs.cpio.gz" --cmdline "console=ttyS0 castor.ip=$LAN_GUEST_IP/24" \
	--net "tap=tap0,mac=$MAC" --control "$dir/lx.sock" --serial "$dir/lx.console" \
	>"$dir/lx.log" 2>&1 &
pid=$!
if ! wait_ready "$dir/lx.console" "$pid"; then
	bad "snapshot phase: no CASTOR-GUEST-READY"
	tail -n 20 "$dir/lx.console" "$dir/lx.log"
else
	tcp 200 "before the snapshot"
	"$CLI" vm snapshot --socket "$dir/lx.sock" --file "$dir/lx.snap" >"$dir/snap.out" 2>&1 &&
		ok "snapshot: $(head -c 120 "$dir/snap.out")" || bad "snapshot: $(cat "$dir/snap.out")"
	"$CLI" vm quit --socket "$dir/lx.sock" >/dev/null || bad "castor vm quit"
	wait "$pid"
	pid=
	ip netns exec "$tag-host" "$VMM" restore --snapshot "$dir/lx.snap" --net "tap=tap0,mac=$MAC" \
		--control "$dir/rs.sock" --serial "$dir/rs.console" >"$dir/rs.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do [ -S "$dir/rs.sock" ] && break; sleep 0.1; done
	tcp 200 "restored from the snapshot"
	ip netns exec "$tag-host" "$VMM" replica --listen 127.0.0.1:7801 --net "tap=tap1,mac=$MAC" \
		--control "$dir/tw.sock" --serial none >"$dir/tw.log" 2>&1 &
	twin=$!
	for _ in $(seq 100); do [ -S "$dir/tw.sock" ] && break; sleep 0.1; done
	"$CLI" ha protect --socket "$dir/rs.sock" --peer 127.0.0.1:7801 --interval 50 --wait \
		>"$dir/protect.out" 2>&1 && ok "the restored Linux guest protected" ||
		bad "protect: $(cat "$dir/protect.out")"
	C python3 "$TGCLIENT" tcp --host "$LAN_GUEST_IP" --count 2000 --rate 200 --timeout 60 \
		>"$dir/fo.tcp" 2>&1 &
	client=$!
	sleep 3
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	pid=$twin
	for _ in $(seq 300); do
		"$CLI" ha status --socket "$dir/tw.sock" --json 2>/dev/null |
			grep -q '"state": *"primary-lost"' && break
		sleep 0.1
	done
	"$CLI" ha failover --socket "$dir/tw.sock" >"$dir/fo.out" 2>&1 &&
		ok "failover: $(head -1 "$dir/fo.out")" || bad "failover: $(cat "$dir/fo.out")"
	wait "$client" && ok "one TCP connection across the kill and the failover: $(tail -1 "$dir/fo.tcp")" ||
		bad "the TCP client across the failover: $(tail -3 "$dir/fo.tcp"); twin: $(tail -5 "$dir/tw.log")"
	[ -z "$twin" ] || kill -0 "$twin" 2>/dev/null || bad "the twin exited"
	"$CLI" vm quit --socket "$dir/tw.sock" >/dev/null || bad "castor vm quit on the twin"
	wait "$twin"
	pid=
	twin=
fi
echo "$fails failure(s)"
[ "$fails" = 0 ]
