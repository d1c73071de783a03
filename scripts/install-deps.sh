#!/bin/sh
# Install every Debian package Castor needs to build, test and benchmark.
# Idempotent and fast when nothing is missing: it asks dpkg first and only calls
# apt-get for what is absent. Must run as root on Debian 12.
set -eu

# castor mkguest (tools/guest/mkguest.sh) fetches Debian's kernel and
# busybox-static with apt-get download and never installs them; it needs cpio,
# lz4 / xz-utils (the kernel's compression), binutils (objcopy, readelf) and
# perl-base besides; qemu-system-x86 boots the image in its test.
PKGS="
build-essential cmake pkg-config git
clang llvm libclang-rt-14-dev clang-format
libevent-dev
libprotobuf-c-dev protobuf-c-compiler
libcmocka-dev
libzstd-dev
libsodium-dev
libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev libcorosync-common-dev libcfg-dev corosync
libibverbs-dev librdmacm-dev
qemu-system-x86
acpica-tools
cpio lz4 xz-utils gzip binutils apt dpkg perl-base
iproute2 procps psmisc iputils-ping ethtool
python3 python3-zstandard zstd
gnuplot-nox
"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run as root (or install them with apt-get)" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
