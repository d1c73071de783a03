#!/usr/bin/env bash
# A Linux guest under castor-vmm, end to end (ctest label "linux"): Debian's stock
# kernel (castor mkguest's image) boots to its marker with 1 and then 2 vCPUs, and
#   - the marker names as many CPUs as castor-vmm gave it and about its RAM;
#   - its NIC (virtio-mmio, found through our ACPI tables) answers ping and the TCP
#     request/response protocol from a client namespace (tgclient.py: every request
#     answered once, in order);
#   - its disk reads what the host wrote and the host finds what it wrote
#     (castor.disktest=1);
# then castor-vmm quits cleanly.
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
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; fi
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
	H "$VMM" run --name linux$cpus --mem 512M --cpus "$cpus" --kernel "$GUEST/vmlinux" \
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
	ready=$(grep -m1 '^CASTOR-GUEST-READY ' "$console" 2>/dev/null | tr -d '\r')
	if [ -z "$ready" ]; then
		bad "$cpus vCPU(s): no CASTOR-GUEST-READY within 120 s"
		tail -30 "$console" "$dir/vmm$cpus.log"
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
	C python3 "$TGCLIENT" tcp --host "$LAN_GUEST_IP" --count 1000 >"$dir/tcp" 2>&1 &&
		ok "tcp: $(tail -1 "$dir/tcp")" || bad "tcp: $(tail -3 "$dir/tcp")"
	line=$(grep -m1 '^CASTOR-GUEST-DISK ' "$console" | tr -d '\r')
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
echo "$fails failure(s)"
[ "$fails" = 0 ]
