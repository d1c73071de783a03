#!/bin/sh
# The builder behind `castor mkguest` (tools/castor/mkguest.c; docs/guests.md):
# a Linux guest image from Debian's stock packages, for the Linux-guest tests.
#
#   mkguest.sh --progs DIR [--out DIR] [--kernel-package NAME] [--cache DIR]
#              [--modules "NAME ..."] [--init FILE]
#
# --progs DIR            where castor-reqd and castor-dirty were built (static)
# --out DIR              output folder (default build/guest)
# --kernel-package NAME  a linux-image-* package, or a metapackage that depends
#                        on one (default linux-image-cloud-amd64)
# --cache DIR            downloaded .debs (default /var/cache/castor/debs)
# --modules "NAME ..."   the modules /init loads, instead of the virtio-mmio
#                        net and block drivers (tests/nested/nest.sh asks for
#                        kvm_amd, virtiofs and the network ones)
# --init FILE            /init of the image, instead of init.sh beside this
#                        script
#
# Writes into the output folder:
#   vmlinuz            the package's bzImage, as shipped
#   vmlinux            the uncompressed ELF inside it (for a PVH entry)
#   initramfs.cpio.gz  busybox, the virtio-mmio net/blk modules, castor-reqd,
#                      castor-dirty and /init (init.sh beside this script)
#   manifest           kernel version, packages and versions, sha256 of each
#
# Packages are fetched with `apt-get download` (never installed on this host),
# checked against the SHA256 in apt's lists, kept in the cache and unpacked
# with `dpkg-deb -x`. Exit status: 0 built, 1 failed, 2 usage error.
set -eu

me=mkguest
here=$(cd "$(dirname "$0")" && pwd)
out=build/guest
pkg=linux-image-cloud-amd64
cache=/var/cache/castor/debs
progs=
init=
# virtio-mmio network and block devices; their dependencies (failover,
# net_failover, virtio, virtio_ring) come from each module's depends=.
MODULES="virtio_mmio virtio_net virtio_blk"
BUSYBOX_PKG=busybox-static

tmp=
stage=
dl=
cleanup() {
	[ -z "$tmp" ] || rm -rf "$tmp"
	[ -z "$stage" ] || rm -rf "$stage"
	[ -z "$dl" ] || rm -rf "$dl"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

die() {
	echo "castor: $me: $*" >&2
	exit 1
}

usage_error() {
	echo "castor: $me: $*" >&2
	echo "usage: mkguest.sh --progs DIR [--out DIR] [--kernel-package NAME] [--cache DIR]" \
		"[--modules \"NAME ...\"] [--init FILE]" >&2
	exit 2
}

say() {
	echo "$me: $*"
}

now() {
	date +%s.%N
}

# sha FILE: its SHA256, in hex
sha() {
	sha256sum <"$1" | cut -d' ' -f1
}

# since T0: seconds elapsed since T0 (from now), one decimal
since() {
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

while [ $# -gt 0 ]; do
	case $1 in
	--out | --kernel-package | --cache | --progs | --modules | --init)
		[ $# -ge 2 ] || usage_error "option '$1' needs a value"
		case $1 in
		--out) out=$2 ;;
		--kernel-package) pkg=$2 ;;
		--cache) cache=$2 ;;
		--progs) progs=$2 ;;
		--modules) MODULES=$2 ;;
		--init) init=$2 ;;
		esac
		shift 2
		;;
	*) usage_error "unknown argument '$1'" ;;
	esac
done
[ -n "$progs" ] || usage_error "--progs DIR is required"
[ -n "$out" ] || usage_error "--out: empty path"
[ -n "$cache" ] || usage_error "--cache: empty path"
[ -n "$(echo $MODULES)" ] || usage_error "--modules: no module named"
for m in $MODULES; do
	printf '%s' "$m" | LC_ALL=C grep -q '^[A-Za-z0-9_-]*$' ||
		usage_error "--modules: '$m' is not a module name"
done
[ -n "$init" ] || init=$here/init.sh
[ ! -e "$out" ] || [ -d "$out" ] || usage_error "--out '$out' exists and is not a folder"
[ ! -e "$cache" ] || [ -d "$cache" ] || usage_error "--cache '$cache' exists and is not a folder"
case $pkg in
linux-image-?*) ;;
*) usage_error "--kernel-package '$pkg': not a kernel image package (linux-image-...)" ;;
esac
# Debian policy: lower case letters, digits, + - . ; starts alphanumeric
if printf '%s' "$pkg" | LC_ALL=C grep -q '[^a-z0-9+.-]'; then
	usage_error "--kernel-package '$pkg': not a Debian package name"
fi

missing=
for tool in apt-get apt-cache dpkg-deb lz4 cpio gzip objcopy readelf sha256sum od awk; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || die "missing tools:$missing (run scripts/install-deps.sh)"
for p in castor-reqd castor-dirty; do
	[ -x "$progs/$p" ] || die "$progs/$p is missing (build Castor first: cmake --build build)"
done
[ -r "$init" ] || die "$init is missing"

t_start=$(now)

# ---- which packages ---------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/castor-mkguest.XXXXXX")

# apt_show PKG...: the record of each PKG's candidate version in apt's lists,
# kept in $tmp/PKG.apt (one apt-cache call: about a second, whatever the
# number of packages); true when PKG's record is there
apt_show() {
	apt-cache show --no-all-versions "$@" 2>/dev/null | awk -v dir="$tmp" '
		/^Package: / { f = dir "/" $2 ".apt"; skip = (f in seen); seen[f] = 1 }
		f && !skip { print > f }'
	[ -s "$tmp/$1.apt" ]
}
# field PKG FIELD: a field of that record
field() {
	sed -n "s/^$2: //p" "$tmp/$1.apt" | head -n 1
}

apt_show "$pkg" "$BUSYBOX_PKG" ||
	die "package '$pkg' is unknown to apt (misspelt, or apt's lists are missing: apt-get update)"
[ -s "$tmp/$BUSYBOX_PKG.apt" ] || die "package '$BUSYBOX_PKG' is unknown to apt (apt-get update?)"
image=$pkg
# a metapackage (linux-image-cloud-amd64) depends on the versioned image
dep=$(field "$pkg" Depends | tr ',' '\n' |
	sed -n 's/^ *\(linux-image-[a-z0-9.+-]*\).*/\1/p' | head -n 1)
if [ -n "$dep" ]; then
	say "$pkg depends on $dep"
	image=$dep
	apt_show "$image" || die "package '$image' (needed by $pkg) is unknown to apt"
fi

# ---- fetching (cache) -------------------------------------------------------------

mkdir -p "$cache" 2>/dev/null ||
	die "cannot create the cache folder '$cache' (not root? give --cache DIR)"
[ -w "$cache" ] || die "cannot write to the cache folder '$cache' (not root? give --cache DIR)"

# fetch PKG: sets fetched to the path of PKG's candidate .deb in the cache,
# downloaded unless it is there with the SHA256 that apt's lists give
fetched=
fetch() {
	f_ver=$(field "$1" Version)
	f_arch=$(field "$1" Architecture)
	f_sha=$(field "$1" SHA256)
	[ -n "$f_ver" ] && [ -n "$f_arch" ] && [ -n "$f_sha" ] ||
		die "apt knows no downloadable version of '$1' (apt-get update?)"
	# apt-get download's own file name (an epoch's ':' becomes %3a)
	fetched=$cache/${1}_$(printf '%s' "$f_ver" | sed 's/:/%3a/g')_${f_arch}.deb
	if [ -f "$fetched" ] && [ "$(sha "$fetched")" = "$f_sha" ]; then
		say "$1 $f_ver: cached ($fetched)"
		return
	fi
	dl=$(mktemp -d "$cache/.download.XXXXXX")
	# apt drops root to _apt for downloads: let it write there
	if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
		chown _apt "$dl"
	fi
	f_t0=$(now)
	say "$1 $f_ver: downloading"
	if ! (cd "$dl" && apt-get download -q "$1=$f_ver") >"$dl/apt.log" 2>&1; then
		sed 's/^/  /' "$dl/apt.log" >&2
		die "cannot download $1 $f_ver: apt-get download failed (no Debian mirror reachable?)"
	fi
	set -- "$dl"/*.deb
	[ -f "$1" ] || die "apt-get download left no .deb in $dl"
	[ "$(sha "$1")" = "$f_sha" ] || die "$1: SHA256 differs from apt's lists"
	mv -f "$1" "$fetched"
	rm -rf "$dl"
	dl=
	say "$(basename "$fetched"): downloaded $(($(stat -c %s "$fetched") / 1048576)) MiB in $(since "$f_t0") s"
}

t_fetch=$(now)
fetch "$image"
image_deb=$fetched
image_ver=$f_ver
fetch "$BUSYBOX_PKG"
busybox_deb=$fetched
busybox_ver=$f_ver
say "packages ready in $(since "$t_fetch") s"

# ---- unpacking --------------------------------------------------------------------

t_unpack=$(now)
dpkg-deb -x "$image_deb" "$tmp/kernel"
dpkg-deb -x "$busybox_deb" "$tmp/busybox"
say "packages unpacked in $(since "$t_unpack") s"

set -- "$tmp"/kernel/boot/vmlinuz-*
[ $# = 1 ] && [ -f "$1" ] || die "$image ships no single /boot/vmlinuz-* (not a kernel image package?)"
vmlinuz=$1
kver=${vmlinuz##*/vmlinuz-}
kmods=$tmp/kernel/lib/modules/$kver
[ -d "$kmods/kernel" ] || die "$image ships no /lib/modules/$kver/kernel"
say "kernel $kver from $image $image_ver"
[ -x "$tmp/busybox/bin/busybox" ] || die "$BUSYBOX_PKG ships no /bin/busybox"

# ---- vmlinux: the ELF inside the bzImage ------------------------------------------

# u8 / u32 FILE OFFSET: a little-endian number from FILE
u8() {
	od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '
}
u32() {
	od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '
}
# The boot protocol's setup header says where the compressed kernel is:
# setup_sects at 0x1f1, payload_offset at 0x248, payload_length at 0x24c
# (offset from the protected-mode code, which starts after setup_sects+1
# sectors). The last 4 bytes of the payload are the uncompressed size that
# the kernel's build appends; lz4 would read them as another block.
# Debian 12 compresses its cloud kernel with LZ4, its generic one with XZ.
[ "$(od -An -c -j $((0x202)) -N4 "$vmlinuz" | tr -d ' ')" = HdrS ] ||
	die "$vmlinuz is not a bzImage (no HdrS)"
pl_off=$((($(u8 "$vmlinuz" $((0x1f1))) + 1) * 512 + $(u32 "$vmlinuz" $((0x248)))))
pl_len=$(u32 "$vmlinuz" $((0x24c)))
magic=$(od -An -tx1 -j "$pl_off" -N4 "$vmlinuz" | tr -d ' ')
case $magic in
02214c18) unpack="lz4 -dc" ;; # LZ4 legacy frame
fd377a58) unpack="xz -dc --single-stream" ;;
28b52ffd) unpack="zstd -qdc" ;;
1f8b*) unpack="gzip -dc" ;;
*) die "the payload of $vmlinuz at $pl_off has magic $magic: not LZ4, XZ, zstd or gzip" ;;
esac
command -v "${unpack%% *}" >/dev/null || die "${unpack%% *} is missing (run scripts/install-deps.sh)"
tail -c +$((pl_off + 1)) "$vmlinuz" | head -c $((pl_len - 4)) | $unpack >"$tmp/vmlinux" ||
	die "$unpack could not decompress the kernel in $vmlinuz (offset $pl_off)"
[ "$(od -An -tx1 -N4 "$tmp/vmlinux" | tr -d ' ')" = 7f454c46 ] ||
	die "the decompressed kernel is not an ELF file"
# XEN_ELFNOTE_PHYS32_ENTRY (type 18): the 32-bit PVH entry point
pvh=$(readelf -nW "$tmp/vmlinux" | awk '
	$1 == "Xen" && /\(0x00000012\)|PHYS32_ENTRY/ { want = 1 }
	want && /description data:/ {
		sub(/.*description data: */, "")
		printf "0x%s%s%s%s", $4, $3, $2, $1
		exit
	}')
if [ -n "$pvh" ]; then
	say "vmlinux: ELF, $(($(stat -c %s "$tmp/vmlinux") / 1048576)) MiB, PVH entry (Xen note 18) at $pvh"
else
	pvh=none
	say "vmlinux: ELF, no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): boot vmlinuz instead"
fi

# ---- modules, dependencies first --------------------------------------------------

# modfile NAME: the module's file in the package (.ko, or compressed), or "";
# a file may spell the name with '-' where depends= has '_'
find "$kmods/kernel" -type f -name '*.ko*' >"$tmp/modules.list"
modfile() {
	grep -E "/($1|$(echo "$1" | tr _ -))\.ko(\.xz|\.zst|\.gz)?\$" "$tmp/modules.list" | head -n 1
}

# is_builtin NAME: the kernel has NAME built in (modules.builtin)
is_builtin() {
	[ -f "$kmods/modules.builtin" ] &&
		grep -q "/$1\.ko\$\|/$(echo "$1" | tr _ -)\.ko\$" "$kmods/modules.builtin"
}

mods=$tmp/root/lib/modules/$kver
mkdir -p "$mods"
order=
# add_module NAME: NAME's dependencies, then NAME, as a plain .ko
add_module() {
	case " $order " in *" $1 "*) return ;; esac
	if is_builtin "$1"; then
		say "module $1: built into the kernel"
		order="$order $1"
		return
	fi
	m_file=$(modfile "$1")
	[ -n "$m_file" ] ||
		die "$image does not ship the module $1 (nor has it built in): asked for by --modules or needed by one; try --kernel-package linux-image-amd64"
	case $m_file in
	*.ko) cp "$m_file" "$mods/$1.ko" ;;
	*.ko.xz) xz -dc "$m_file" >"$mods/$1.ko" ;;
	*.ko.zst) zstd -qdc "$m_file" >"$mods/$1.ko" ;;
	*.ko.gz) gzip -dc "$m_file" >"$mods/$1.ko" ;;
	esac
	objcopy -O binary -j .modinfo "$mods/$1.ko" "$tmp/modinfo" ||
		die "$m_file: no .modinfo section"
	m_deps=$(tr '\0' '\n' <"$tmp/modinfo" | sed -n 's/^depends=//p' | tr , ' ')
	for m_dep in $m_deps; do
		add_module "$m_dep"
	done
	order="$order $1"
	echo "$1" >>"$mods/castor.order"
}
for m in $MODULES; do
	add_module "$m"
done
say "modules (load order):$order"

# ---- initramfs --------------------------------------------------------------------

root=$tmp/root
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/proc" "$root/sys" \
	"$root/tmp" "$root/run" "$root/root" "$root/etc"
cp "$tmp/busybox/bin/busybox" "$root/bin/busybox"
# Applet links as busybox lists them (bin/sh, sbin/insmod, usr/bin/awk, ...)
# -- the binary is static, so it runs here as well. perl (perl-base is
# Essential in Debian) makes the ~400 links in one process, not ~400 ln.
"$root/bin/busybox" --list-full | (cd "$root" &&
	perl -ne 'chomp; -l $_ or -e $_ or symlink("/bin/busybox", $_) or die "$_: $!\n"') ||
	die "cannot make busybox's applet links"
cp "$progs/castor-reqd" "$progs/castor-dirty" "$root/bin/"
cp "$init" "$root/init"
chmod 755 "$root/init" "$root/bin/castor-reqd" "$root/bin/castor-dirty"

# cpio_node NAME MODE MAJOR MINOR: one newc entry (a device node or a folder)
# written without mknod, so no root is needed. /dev/console must exist before
# /init runs: the kernel opens it for init's stdin, stdout and stderr. These
# entries form a second archive after cpio's: the kernel unpacks concatenated
# archives (GNU `cpio -t` lists only the first).
cpio_node() {
	namesize=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		0 "$2" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0
	printf '%s\000' "$1"
	pad=$(((4 - (110 + namesize) % 4) % 4))
	[ "$pad" = 0 ] || head -c "$pad" /dev/zero
}

t_cpio=$(now)
epoch=${SOURCE_DATE_EPOCH:-0}
find "$root" -exec touch -h -d "@$epoch" {} +
{
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet)
	cpio_node dev $((0040755)) 0 0
	cpio_node dev/console $((0020600)) 5 1
	cpio_node TRAILER!!! 0 0 0
} | gzip -9 -n >"$tmp/initramfs.cpio.gz"
say "initramfs: $(($(stat -c %s "$tmp/initramfs.cpio.gz") / 1024)) KiB in $(since "$t_cpio") s"

# ---- output -----------------------------------------------------------------------

mkdir -p "$out" || die "cannot create '$out'"
stage=$(mktemp -d "$out/.mkguest.XXXXXX")
cp "$vmlinuz" "$stage/vmlinuz"
mv "$tmp/vmlinux" "$stage/vmlinux"
mv "$tmp/initramfs.cpio.gz" "$stage/initramfs.cpio.gz"
{
	echo "# castor mkguest: the Linux guest image (docs/guests.md)"
	echo "kernel_version $kver"
	echo "kernel_package $image $image_ver"
	echo "kernel_package_requested $pkg"
	echo "busybox_package $BUSYBOX_PKG $busybox_ver"
	echo "modules_requested $(echo $MODULES)"
	echo "modules$order"
	echo "pvh_entry $pvh"
	echo "sha256 vmlinuz $(sha "$stage/vmlinuz")"
	echo "sha256 vmlinux $(sha "$stage/vmlinux")"
	echo "sha256 initramfs.cpio.gz $(sha "$stage/initramfs.cpio.gz")"
	echo "sha256 castor-reqd $(sha "$progs/castor-reqd")"
	echo "sha256 castor-dirty $(sha "$progs/castor-dirty")"
	echo "sha256 init $(sha "$init")"
} >"$stage/manifest"
for f in vmlinuz vmlinux initramfs.cpio.gz manifest; do
	mv -f "$stage/$f" "$out/$f"
done
rmdir "$stage"
stage=
say "built $out (vmlinuz vmlinux initramfs.cpio.gz manifest) in $(since "$t_start") s"
