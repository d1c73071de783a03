#!/bin/busybox sh
# /init of the Castor Linux guest image (castor mkguest; docs/guests.md).
# Runs as PID 1 from the initramfs, under busybox's sh, and must never exit
# (the kernel panics when init does).
#
#   1. mounts /proc, /sys, /dev (devtmpfs)
#   2. loads the modules listed in /lib/modules/<version>/castor.order, in
#      that order (dependencies first; mkguest.sh wrote it)
#   3. lo up; eth0 from the kernel command line:
#        castor.ip=A.B.C.D/NN   address of eth0 (default: none, eth0 left down)
#        castor.gw=A.B.C.D      default route (optional; needs castor.ip)
#        castor.disktest=1      the disk round trip of the Linux-guest tests (step 5)
#   4. castor-reqd on TCP port 7700 (listening before the next line)
#   5. prints, on the console:
#        CASTOR-GUEST-DEVICES <dev>:<driver>:<what> ...   (or "none")
#        CASTOR-GUEST-DISK <md5 of MiB 0> <md5 of MiB 1>  (castor.disktest=1: MiB 0
#          of /dev/vda as the host wrote it; MiB 1 after writing "castor-disk-pattern"
#          lines to it and reading it back from the device; "none" without /dev/vda)
#        CASTOR-GUEST-READY <kernel version> <ncpus> <memKiB>
#      one entry per /sys/bus/virtio/devices/<dev>; <what> is the network
#      interface or /dev node it made, "-" if none
#   6. a shell on the console, started again when it exits (or sleeps when
#      the console is not a terminal)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

log() {
	echo "castor-init: $*"
}

mount -t proc proc /proc
# only errors on the console from here on: the kernel's info lines (a link that came up)
# would land in the middle of the lines below, which the host reads
echo 4 >/proc/sys/kernel/printk
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts

kver=$(uname -r)
moddir=/lib/modules/$kver
if [ -f "$moddir/castor.order" ]; then
	while read -r mod; do
		[ -n "$mod" ] || continue
		insmod "$moddir/$mod.ko" || log "insmod $mod failed"
	done <"$moddir/castor.order"
else
	log "no $moddir/castor.order: no modules loaded"
fi

ip=
gw=
disktest=
for word in $(cat /proc/cmdline); do
	case $word in
	castor.ip=*) ip=${word#castor.ip=} ;;
	castor.gw=*) gw=${word#castor.gw=} ;;
	castor.disktest=*) disktest=${word#castor.disktest=} ;;
	esac
done

ip link set lo up
if [ -n "$ip" ]; then
	case $ip in
	*/*) ;;
	*) log "castor.ip=$ip has no /prefix length; taking /32" ;;
	esac
	if [ ! -e /sys/class/net/eth0 ]; then
		log "castor.ip=$ip given, but there is no eth0"
	elif ip addr add "$ip" dev eth0 && ip link set eth0 up; then
		log "eth0 $ip"
		if [ -n "$gw" ]; then
			ip route add default via "$gw" && log "default route via $gw"
		fi
	else
		log "cannot configure eth0 with castor.ip=$ip"
	fi
elif [ -n "$gw" ]; then
	log "castor.gw=$gw ignored: no castor.ip"
fi

castor-reqd --background || log "castor-reqd did not start"

# What each virtio device became: a network interface or a block device.
# devtmpfs makes /dev nodes in its own thread: wait a moment for them.
devices=
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d" ] || continue
	name=${d##*/}
	drv=none
	[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
	what=-
	for n in "$d"/net/*; do
		[ -e "$n" ] && what=${n##*/}
	done
	for b in "$d"/block/*; do
		[ -e "$b" ] || continue
		i=0
		while [ ! -e "/dev/${b##*/}" ] && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		[ -e "/dev/${b##*/}" ] && what=/dev/${b##*/} || what=${b##*/}-no-dev-node
	done
	devices="$devices $name:$drv:$what"
done
echo "CASTOR-GUEST-DEVICES${devices:- none}"

if [ "$disktest" = 1 ]; then
	if [ -b /dev/vda ]; then
		before=$(dd if=/dev/vda bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
		yes castor-disk-pattern | head -c 1048576 |
			dd of=/dev/vda bs=65536 seek=16 2>/dev/null && sync
		# read it back from the device, not from the page cache
		echo 3 >/proc/sys/vm/drop_caches
		after=$(dd if=/dev/vda bs=65536 skip=16 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
		echo "CASTOR-GUEST-DISK $before $after"
	else
		echo "CASTOR-GUEST-DISK none"
	fi
fi

ncpus=$(nproc)
memkib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
echo "CASTOR-GUEST-READY $kver $ncpus $memkib"

if [ -t 0 ]; then
	while :; do
		setsid cttyhack sh
		sleep 1
	done
fi
while :; do
	sleep 3600
done
