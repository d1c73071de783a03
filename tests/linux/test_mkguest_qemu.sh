#!/bin/sh
# The Linux guest image end to end, under QEMU TCG (no KVM needed):
#
#   test_mkguest_qemu.sh CASTOR WORKDIR TGCLIENT
#
# 1. castor mkguest builds WORKDIR/guest (the .debs cached in
#    $CASTOR_DEB_CACHE, default /var/cache/castor/debs, or WORKDIR/debs when
#    that is not writable); the outputs match the manifest's sha256 lines,
#    vmlinux is an ELF, the initramfs holds /init, busybox, the modules and
#    castor-reqd/castor-dirty.
# 2. Boot 1: microvm (ACPI describes its virtio-mmio devices, as castor-vmm
#    will) with virtio-net and virtio-blk, castor.ip=10.0.2.15/24; the
#    console shows CASTOR-GUEST-DEVICES with eth0 and /dev/vda and then
#    CASTOR-GUEST-READY; 20 requests over 2 TCP connections to castor-reqd
#    (through QEMU's user network) are answered with counts 1..20 in order
#    (tgclient.py).
# 3. Boot 2: virtio-blk only, no castor.ip: eth0 is absent and nothing is
#    configured; through the console's shell castor-dirty runs for 2 s and a
#    block written to /dev/vda arrives in the host's disk file.
#
# Skips (exit 77) only when apt-get download cannot reach a Debian mirror and
# the packages are not cached. Prints TIMING lines: image build, each boot to
# the marker, the whole test.
set -u

castor=$1
work=$2
tgclient=$3
. "$(dirname "$0")/../require.sh"

t_test=$(date +%s.%N)
mkdir -p "$work"
qpid=
cleanup() {
	[ -z "$qpid" ] || kill "$qpid" 2>/dev/null
	[ -z "$qpid" ] || wait "$qpid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fail() {
	echo "FAIL: $*"
	exit 1
}

since() {
	awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

command -v qemu-system-x86_64 >/dev/null ||
	fail "qemu-system-x86_64 is missing (scripts/install-deps.sh installs qemu-system-x86)"
command -v python3 >/dev/null || fail "python3 is missing (scripts/install-deps.sh)"

# ---- 1. the image -----------------------------------------------------------------

cache=${CASTOR_DEB_CACHE:-/var/cache/castor/debs}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=$work/debs
fi
guest=$work/guest
t0=$(date +%s.%N)
"$castor" mkguest --out "$guest" --cache "$cache" >"$work/mkguest.out" 2>"$work/mkguest.err"
rc=$?
cat "$work/mkguest.out" "$work/mkguest.err"
if [ $rc != 0 ]; then
	if grep -q "apt-get download failed" "$work/mkguest.err"; then
		test_skip "apt-get download cannot reach a Debian mirror and $cache lacks the packages"
	fi
	fail "castor mkguest exited $rc"
fi
echo "TIMING: castor mkguest (cache $cache): $(since "$t0") s"

for f in vmlinuz vmlinux initramfs.cpio.gz manifest; do
	[ -s "$guest/$f" ] || fail "castor mkguest left no $guest/$f"
done
for f in vmlinuz vmlinux initramfs.cpio.gz; do
	want=$(sed -n "s/^sha256 $f //p" "$guest/manifest")
	have=$(sha256sum <"$guest/$f" | cut -d' ' -f1)
	[ "$want" = "$have" ] || fail "$f: sha256 $have, the manifest says '$want'"
done
kver=$(sed -n 's/^kernel_version //p' "$guest/manifest")
[ -n "$kver" ] || fail "the manifest has no kernel_version"
[ "$(od -An -tx1 -N4 "$guest/vmlinux" | tr -d ' ')" = 7f454c46 ] || fail "vmlinux is not an ELF file"
echo "manifest: $(grep -E '^(kernel_package|pvh_entry|modules) ' "$guest/manifest" | tr '\n' ';')"
python3 "$(dirname "$0")/cpio_list.py" "$guest/initramfs.cpio.gz" >"$work/initramfs.list" ||
	fail "initramfs.cpio.gz is not what the kernel can unpack"
# MODE NAME [MAJ:MIN]: /dev/console before /init runs, /init executable
for entry in "20600 dev/console 5:1" "100755 init" "100755 bin/busybox" "120777 bin/sh" \
	"120777 sbin/insmod" "100755 bin/castor-reqd" "100755 bin/castor-dirty" \
	"100644 lib/modules/$kver/castor.order" "100644 lib/modules/$kver/virtio_mmio.ko" \
	"100644 lib/modules/$kver/virtio_net.ko" "100644 lib/modules/$kver/virtio_blk.ko"; do
	grep -qxF "$entry" "$work/initramfs.list" || fail "the initramfs lacks '$entry'"
done

# ---- booting ----------------------------------------------------------------------

# TCG cannot calibrate the TSC against the PIT, and microvm has no HPET or
# ACPI PM timer: without tsc_early_khz the kernel stops at "tsc: Marking TSC
# unstable" with its clock at 0. Under TCG the guest's TSC is the host's.
khz=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
[ -n "$khz" ] || khz=2000000
disk=$work/disk.raw
rm -f "$disk"
truncate -s 8M "$disk"
# MiB 0: bytes the guest must read as the host wrote them (castor.disktest=1)
head -c 1048576 /dev/urandom | dd of="$disk" conv=notrunc 2>/dev/null
md5_0=$(head -c 1048576 "$disk" | md5sum | cut -d' ' -f1)
md5_pattern=$(yes castor-disk-pattern | head -c 1048576 | md5sum | cut -d' ' -f1)

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# boot CONSOLE_LOG SERIAL_ARGS APPEND DEVICE_ARGS...: QEMU in the background ($qpid)
boot() {
	b_log=$1
	b_serial=$2
	b_append=$3
	shift 3
	rm -f "$b_log"
	# shellcheck disable=SC2086 # b_serial is two words
	qemu-system-x86_64 -M microvm,acpi=on -accel tcg -cpu max -m 256 -smp 1 \
		-nodefaults -nographic -no-reboot $b_serial \
		-kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
		-append "console=ttyS0 panic=-1 tsc_early_khz=$khz $b_append" \
		"$@" </dev/null >"$work/qemu.out" 2>&1 &
	qpid=$!
}

stop() {
	kill "$qpid" 2>/dev/null
	wait "$qpid" 2>/dev/null
	qpid=
}

# wait_line LOG PATTERN SECONDS: until a line of LOG matches PATTERN (grep
# -E); fails with the last console lines when it does not come
wait_line() {
	w_end=$(($(date +%s) + $3))
	while ! grep -qE "$2" "$1" 2>/dev/null; do
		if ! kill -0 "$qpid" 2>/dev/null; then
			echo "--- QEMU: $(cat "$work/qemu.out")"
			echo "--- last console lines ($1):"
			tail -n 40 "$1" 2>/dev/null
			fail "QEMU exited before the console showed '$2'"
		fi
		if [ "$(date +%s)" -ge "$w_end" ]; then
			echo "--- last console lines ($1):"
			tail -n 40 "$1" 2>/dev/null
			fail "no '$2' on the console within $3 s"
		fi
		sleep 0.2
	done
}

# ---- 2. network and disk ----------------------------------------------------------

port=$(free_port)
log1=$work/console1.log
t0=$(date +%s.%N)
boot "$log1" "-serial file:$log1" "castor.ip=10.0.2.15/24 castor.gw=10.0.2.2 castor.disktest=1" \
	-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:7700" -device virtio-net-device,netdev=n0 \
	-drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0
wait_line "$log1" '^CASTOR-GUEST-READY ' 180
echo "TIMING: boot 1 (TCG, net + blk) to CASTOR-GUEST-READY: $(since "$t0") s"
grep -E '^(CASTOR-GUEST-|castor-init:|castor-reqd:)' "$log1"

ready=$(grep -o -m1 '^CASTOR-GUEST-READY [^ ]* [0-9]* [0-9]*' "$log1")
# shellcheck disable=SC2086 # split into its words on purpose
set -- $ready
[ "$2" = "$kver" ] || fail "READY names kernel '$2', the manifest '$kver'"
[ "$3" = 1 ] || fail "READY says $3 CPUs, QEMU has 1"
[ "$4" -gt 200000 ] && [ "$4" -le 262144 ] || fail "READY says $4 KiB, QEMU has 256 MiB"
devices=$(grep -m1 '^CASTOR-GUEST-DEVICES' "$log1" | tr -d '\r')
echo "$devices" | grep -qE ' virtio[0-9]+:virtio_net:eth0( |$)' ||
	fail "no virtio-net device bound to virtio_net as eth0: $devices"
echo "$devices" | grep -qE ' virtio[0-9]+:virtio_blk:/dev/vda( |$)' ||
	fail "no virtio-blk device bound to virtio_blk as /dev/vda: $devices"
grep -q '^castor-init: eth0 10.0.2.15/24' "$log1" || fail "eth0 was not configured from castor.ip"
# the kernel's console messages may land on the same line: take the digests
disk_line=$(grep -o -m1 '^CASTOR-GUEST-DISK \(none\|[0-9a-f]\{32\} [0-9a-f]\{32\}\)' "$log1")
[ "$disk_line" = "CASTOR-GUEST-DISK $md5_0 $md5_pattern" ] ||
	fail "disk round trip: '$disk_line', expected MiB 0 $md5_0 and the pattern $md5_pattern"
[ "$(dd if="$disk" bs=1048576 skip=1 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$md5_pattern" ] ||
	fail "the pattern the guest wrote is not in MiB 1 of $disk"
echo "disk round trip: MiB 0 read as written by the host, MiB 1 written by the guest found in the file"

# One counter across connections: 1..10 on the first, 11..20 on the second.
first=1
for conn in 1 2; do
	out=$(python3 "$tgclient" tcp --host 127.0.0.1 --port "$port" --count 10 \
		--start $((conn * 100)) --timeout 30) || fail "connection $conn: $out"
	echo "$out"
	counts=$(echo "$out" | sed -n 's/.*counts \([0-9]*\)\.\.\([0-9]*\)$/\1 \2/p')
	[ "$counts" = "$first $((first + 9))" ] ||
		fail "connection $conn: counts '$counts', expected $first..$((first + 9))"
	first=$((first + 10))
done
stop

# ---- 3. disk only, no address; castor-dirty from the console ------------------------

log2=$work/console2.log
sock=$work/console2.sock
rm -f "$sock"
t0=$(date +%s.%N)
boot "$log2" "-chardev socket,id=s0,path=$sock,server=on,wait=off,logfile=$log2 -serial chardev:s0" \
	"" -drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0
wait_line "$log2" '^CASTOR-GUEST-READY ' 180
echo "TIMING: boot 2 (TCG, blk) to CASTOR-GUEST-READY: $(since "$t0") s"
devices=$(grep -m1 '^CASTOR-GUEST-DEVICES' "$log2" | tr -d '\r')
echo "$devices" | grep -qE '^CASTOR-GUEST-DEVICES virtio0:virtio_blk:/dev/vda$' ||
	fail "boot 2 (one disk): $devices"
! grep -q '^castor-init: eth0' "$log2" || fail "boot 2 configured eth0 without castor.ip"

cmd='castor-dirty --wss 8M --seconds 2 && printf CASTOR-BLK-OK | dd of=/dev/vda conv=fsync 2>/dev/null; echo CASTOR-CMD-EXIT $?'
sleep 1 # the shell's prompt
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
time.sleep(0.5)' "$sock" "$cmd" || fail "cannot type into the console socket $sock"
wait_line "$log2" '^CASTOR-CMD-EXIT [0-9]' 60
grep -E '^castor-dirty: ' "$log2"
grep -q '^CASTOR-CMD-EXIT 0' "$log2" || fail "castor-dirty or dd failed in the guest"
grep -qE '^castor-dirty: 1 s: [1-9][0-9]* pages/s' "$log2" || fail "castor-dirty printed no progress"
stop
[ "$(head -c 13 "$disk")" = CASTOR-BLK-OK ] || fail "the block written to /dev/vda is not in $disk"

echo "TIMING: whole test: $(since "$t_test") s"
echo "PASS: e2e_mkguest_qemu"
