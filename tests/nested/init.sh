#!/bin/busybox sh
# /init of the nested test machine (tests/nested/nest.sh; tests/README.md).
# Runs as PID 1 from the initramfs of `mkguest.sh --init` under QEMU's TCG,
# whose emulated CPU has SVM with nested paging, so that kvm_amd gives this
# machine a real /dev/kvm.
#
#   1. mounts /proc, /sys, /dev; loads the modules in castor.order; lo up
#   2. mounts the host's root folder (virtiofs, tag "hostroot") on /host,
#      and inside it fresh /proc, /sys, /dev, /dev/pts, /dev/shm, and tmpfs
#      on /tmp and /run (sockets and scratch files stay in this machine);
#      castor.keep=DIR, a folder under /tmp, stays the host's over that tmpfs
#   3. runs castor.nest=DIR/cmd.sh in a chroot to /host, output on the
#      console, and writes its exit status to DIR/rc; meanwhile the
#      processes every 15 s to DIR/ps
#   4. powers off (PID 1 must never exit: the kernel would panic)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

say() {
	echo "castor-nest: $*"
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

kver=$(uname -r)
if [ -f "/lib/modules/$kver/castor.order" ]; then
	while read -r mod; do
		[ -f "/lib/modules/$kver/$mod.ko" ] || continue
		insmod "/lib/modules/$kver/$mod.ko" || say "cannot load module $mod"
	done <"/lib/modules/$kver/castor.order"
fi

ip link set lo up || say "cannot bring up lo"

dir=$(sed -n 's/.*castor\.nest=\([^ ]*\).*/\1/p' /proc/cmdline)
keep=$(sed -n 's/.*castor\.keep=\([^ ]*\).*/\1/p' /proc/cmdline)
h=/host
mkdir -p $h
if [ -z "$dir" ]; then
	say "no castor.nest= on the kernel command line"
elif ! mount -t virtiofs hostroot $h; then
	say "cannot mount the host's folders (virtiofs tag hostroot)"
elif [ ! -f "$h$dir/cmd.sh" ]; then
	say "$dir/cmd.sh is missing"
else
	mount -t proc proc $h/proc
	mount -t sysfs sysfs $h/sys
	mount -t devtmpfs devtmpfs $h/dev
	mkdir -p $h/dev/pts $h/dev/shm
	mount -t devpts devpts $h/dev/pts
	mount -t tmpfs tmpfs $h/dev/shm
	if [ "$keep" != /tmp ]; then
		mkdir -p /hosttmp
		mount --bind $h/tmp /hosttmp
		mount -t tmpfs tmpfs $h/tmp
		case $keep in
		/tmp/?*)
			mkdir -p "$h$keep"
			mount --bind "/hosttmp/${keep#/tmp/}" "$h$keep" || say "cannot keep $keep"
			;;
		esac
	fi
	mount -t tmpfs tmpfs $h/run
	# what udev would make
	ln -sf /proc/self/fd $h/dev/fd
	ln -sf /proc/self/fd/0 $h/dev/stdin
	ln -sf /proc/self/fd/1 $h/dev/stdout
	ln -sf /proc/self/fd/2 $h/dev/stderr
	if [ -c /dev/kvm ]; then
		say "/dev/kvm is here; running $dir/cmd.sh"
	else
		say "no /dev/kvm (kvm_amd did not load?); running $dir/cmd.sh anyway"
	fi
	# what runs, every 15 s: nest.sh prints it when the command times out
	(while sleep 15; do
		{ uptime; ps -o pid,ppid,stat,args; } >"$h$dir/ps.new" 2>&1
		mv "$h$dir/ps.new" "$h$dir/ps"
	done) &
	watch=$!
	chroot $h "$dir/cmd.sh" </dev/null
	rc=$?
	kill $watch
	echo "$rc" >"$h$dir/rc"
	sync
	say "exit status $rc"
fi
poweroff -f
