#!/bin/sh
# Debian's stock kernel, as castor mkguest fetched it, is what castor-vmm's loader
# expects (no VM needed): the vmlinux is an ELF with the PVH entry note, at the
# address binutils' readelf finds in the same note; the vmlinuz is a bzImage of boot
# protocol 2.12 or later with a 64-bit entry; both fit a 256 MiB guest with the image's
# initramfs above them; and the kernel's own limit on the command line is read.
#
#   test_linux_images.sh CASTOR LINUX_INSPECT WORKDIR
# exit: 0 pass, 1 fail, 77 skipped (no Debian mirror reachable and nothing cached)
set -u
castor=$1
inspect=$2
work=$3
. "$(dirname "$0")/../require.sh"
g=$work/guest
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

if [ ! -f "$g/vmlinux" ] || [ ! -f "$g/vmlinuz" ] || [ ! -f "$g/initramfs.cpio.gz" ]; then
	mkdir -p "$work"
	cache=${CASTOR_DEB_CACHE:-/var/cache/castor/debs}
	{ mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; } || cache=$work/debs
	if ! "$castor" mkguest --out "$g" --cache "$cache" >"$work/mkguest.log" 2>&1; then
		grep -qiE 'cannot (download|reach)|Temporary failure|Could not resolve' "$work/mkguest.log" &&
			test_skip "no Debian mirror reachable and the packages are not cached"
		cat "$work/mkguest.log"
		echo "FAIL: castor mkguest"
		exit 1
	fi
fi
mem=$((256 << 20))

# vmlinux: PVH
out=$("$inspect" "$g/vmlinux" "$mem" "$g/initramfs.cpio.gz" 2>&1) || bad "vmlinux refused: $out"
echo "$out" | grep -qx 'kind=ELF vmlinux' && ok "vmlinux: an ELF vmlinux" || bad "vmlinux: $out"
pvh=$(echo "$out" | sed -n 's/^pvh_entry=//p')
[ -n "$pvh" ] && [ "$pvh" != 0x0 ] && ok "vmlinux: PVH entry $pvh" || bad "vmlinux: no PVH entry ($out)"
echo "$out" | grep -qx 'plan_entry=pvh' && ok "vmlinux: entered through PVH" || bad "vmlinux plan: $out"
# the same note as binutils reads it: Xen, type 0x12, a 4- or 8-byte address
note=$(readelf -W -n "$g/vmlinux" 2>/dev/null | awk '
	/^ *Xen / && /\(0x00000012\)/ { sub(/.*description data: */, ""); print; exit }')
if [ -n "$note" ]; then
	# little-endian bytes "50 08 00 01 00 00 00 00" -> 0x1000850
	addr=$(echo "$note" | awk '{ s = ""; for (i = NF; i >= 1; i--) s = s $i; print "0x" s }')
	[ $((addr)) = $((pvh)) ] && ok "PVH entry matches readelf ($addr)" ||
		bad "PVH entry: ours $pvh, readelf $addr"
else
	bad "readelf finds no Xen PHYS32_ENTRY note in vmlinux"
fi

# vmlinuz: bzImage, 64-bit entry
out=$("$inspect" "$g/vmlinuz" "$mem" "$g/initramfs.cpio.gz" 2>&1) || bad "vmlinuz refused: $out"
echo "$out" | grep -qx 'kind=bzImage' && ok "vmlinuz: a bzImage" || bad "vmlinuz: $out"
proto=$(echo "$out" | sed -n 's/^protocol=//p')
[ -n "$proto" ] && [ $((proto)) -ge $((0x020c)) ] && ok "vmlinuz: boot protocol $proto" ||
	bad "vmlinuz: protocol '$proto'"
echo "$out" | grep -qx 'entry64=0x100200' && ok "vmlinuz: 64-bit entry at 1 MiB + 0x200" ||
	bad "vmlinuz: entry ($out)"
echo "$out" | grep -qx 'cmdline_max=2047' && ok "vmlinuz: command lines up to 2047 bytes" ||
	bad "vmlinuz: cmdline_max ($out)"
initrd=$(echo "$out" | sed -n 's/^initrd_gpa=//p')
hi=$(echo "$out" | sed -n 's/^hi=//p')
[ -n "$initrd" ] && [ $((initrd)) -ge $((hi)) ] && [ $((initrd)) -lt "$mem" ] &&
	ok "initramfs at $initrd, above the unpacked kernel (up to $hi)" || bad "initrd placement: $out"

# too small a guest is refused with the reason, not loaded
if out=$("$inspect" "$g/vmlinuz" $((16 << 20)) 2>&1); then
	bad "a 16 MiB guest accepted the stock kernel: $out"
else
	echo "$out" | grep -q 'give it more --mem' && ok "16 MiB refused: ${out#plan refused: }" ||
		bad "16 MiB: $out"
fi

echo "$fails failure(s)"
[ "$fails" = 0 ]
