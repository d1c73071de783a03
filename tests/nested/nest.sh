#!/usr/bin/env bash
# Runs a command on a nested test machine that has /dev/kvm, for hosts that
# have none (tests/README.md, "Without /dev/kvm").
#
#   tests/nested/nest.sh [--build DIR] [--cpus N] [--mem MIB] [--timeout S]
#                        [--retries N] [--env NAME]... -- COMMAND [ARG...]
#
# The machine is QEMU's TCG emulator with `-cpu max`, whose x86 model has SVM
# and nested paging; Debian's kernel (the cloud image of castor mkguest) loads
# kvm_amd on it, so /dev/kvm there is the real KVM, running our guests under
# emulated SVM. It sees this host's whole file tree through virtiofs and runs
# COMMAND in a chroot to it, in the current folder, as root, with its own
# /proc, /sys, /dev and a tmpfs on /tmp and /run (a folder of the command's
# under /tmp stays visible). Everything runs emulated: correct but slow, so
# nothing timed there means anything.
#
# --build DIR    the build folder (default build): castor-reqd and
#                castor-dirty come from there, the machine's image is
#                kept in DIR/nest and rebuilt when tests/nested/init.sh
#                changed
# --cpus N       its vCPUs (default: this host's CPUs)
# --mem MIB      its memory (default 6144)
# --timeout S    stop it after S seconds (default 3600)
# --env NAME     pass this variable on (PATH, HOME=/root, TERM and
#                CASTOR_REQUIRE_KVM always are)
# --retries N    when the machine freezes (no sign of life for
#                CASTOR_NEST_FREEZE_S seconds, default 75: 5 heartbeats), run the command
#                again on a fresh one, up to N times (default 0)
#
# Exit status: COMMAND's; 1 when the machine could not run it (the reason is
# printed); 2 for a usage error.
set -euo pipefail

me=nest
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=build
cpus=$(nproc)
mem=6144
limit=3600
retries=0
envs=(CASTOR_REQUIRE_KVM TERM)
MODULES="virtio_pci virtiofs kvm_amd tun veth bridge ifb sch_prio sch_tbf sch_htb sch_plug
sch_ingress cls_u32 cls_matchall act_mirred"

die() {
	echo "castor: $me: $*" >&2
	exit 1
}
usage_error() {
	echo "castor: $me: $*" >&2
	echo "usage: nest.sh [--build DIR] [--cpus N] [--mem MIB] [--timeout S] [--retries N] [--env NAME]... -- COMMAND [ARG...]" >&2
	exit 2
}
number() { # number OPT VALUE: VALUE is a positive decimal number
	[[ $2 =~ ^[1-9][0-9]{0,6}$ ]] || usage_error "$1 '$2': not a positive number"
}

while [ $# -gt 0 ]; do
	case $1 in
	--build | --cpus | --mem | --timeout | --env | --retries)
		[ $# -ge 2 ] || usage_error "option '$1' needs a value"
		case $1 in
		--build) build=$2 ;;
		--cpus) number "$1" "$2" && cpus=$2 ;;
		--mem) number "$1" "$2" && mem=$2 ;;
		--timeout) number "$1" "$2" && limit=$2 ;;
		--retries)
			[[ $2 =~ ^[0-9]$ ]] || usage_error "--retries '$2': not a number from 0 to 9"
			retries=$2
			;;
		--env)
			[[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || usage_error "--env '$2': not a variable name"
			envs+=("$2")
			;;
		esac
		shift 2
		;;
	--)
		shift
		break
		;;
	*) usage_error "unknown argument '$1' (the command goes after --)" ;;
	esac
done
[ $# -gt 0 ] || usage_error "no command given (after --)"
[ "$mem" -ge 1024 ] || usage_error "--mem $mem: the machine needs 1024 MiB at least"

qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 is missing (run scripts/install-deps.sh)"
vfsd=/usr/lib/qemu/virtiofsd
[ -x "$vfsd" ] || die "$vfsd is missing (Debian's qemu-system-common ships it; run scripts/install-deps.sh)"
[ "$(id -u)" = 0 ] || die "needs root (virtiofsd serves the whole file tree)"
build=$(cd "$build" 2>/dev/null && pwd) || die "no build folder '$build' (build Castor first)"

# ---- the machine's image, kept in $build/nest ------------------------------------

img=$build/nest
want="sha256 init $(sha256sum <"$here/init.sh" | cut -d' ' -f1)"
if [ ! -f "$img/manifest" ] || ! grep -qxF "$want" "$img/manifest" ||
	! grep -qxF "modules_requested $(echo $MODULES)" "$img/manifest"; then
	echo "$me: building the machine's image in $img"
	"$top/tools/guest/mkguest.sh" --progs "$build/tools/guest" --out "$img" \
		--modules "$MODULES" --init "$here/init.sh" >"$build/nest.log" 2>&1 || {
		sed 's/^/  /' "$build/nest.log" >&2
		die "cannot build the machine's image (mkguest.sh failed)"
	}
fi

# ---- the run: its folder, its command ---------------------------------------------

run=$(mktemp -d "$img/run.XXXXXX")
vpid=
qpid=
cleanup() {
	[ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
	[ -z "$vpid" ] || kill "$vpid" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

{
	echo '#!/bin/bash'
	echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root'
	echo 'export CASTOR_NESTED=1 # tests repeat their checks fewer times (tests/README.md)'
	for v in "${envs[@]}"; do
		[ -z "${!v+x}" ] || printf 'export %s=%q\n' "$v" "${!v}"
	done
	printf 'cd %q || exit 1\n' "$PWD"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$run/cmd.sh"
chmod 755 "$run/cmd.sh"

# A folder of ours under /tmp stays visible over the machine's own /tmp: the
# top of this tree's parent (a clean clone with ../shared beside it), or /tmp
# itself when that is the parent.
keep=
case $top in
/tmp/*)
	keep=$(dirname "$top")
	;;
esac

# ---- virtiofsd, then QEMU; a machine that froze is stopped (and run again) -------

# QEMU's TCG has been seen to stop making progress on this machine (both
# vCPU threads busy, the guest frozen, no kernel message), about once in a
# few long runs. The guest's /init writes $run/ps every 15 s: when it is
# older than $freeze seconds the machine is stopped, and --retries runs the
# whole command again on a fresh one.
freeze=${CASTOR_NEST_FREEZE_S:-75}

# stop_vfsd: virtiofsd is gone before another machine's starts (it holds a lock
# on a pid file named after the same socket)
stop_vfsd() {
	[ -n "$vpid" ] || return 0
	kill "$vpid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$vpid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$vpid" 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	vpid=
	rm -f "$run/vfs.sock"
}

# threads_cpu: how busy QEMU's threads are over 2 s (clock ticks used, per thread
# name), so a freeze says whether TCG spins (vCPU threads busy: the emulator's
# own freeze) or waits (every thread idle: the guest waits on I/O, virtiofs say)
threads_cpu() {
	local q t d tasks=() a=() n=0 busy=
	q=$(pgrep -P "$qpid" 2>/dev/null | head -n 1)
	[ -n "$q" ] || return 0
	tasks=(/proc/"$q"/task/*)
	for t in "${tasks[@]}"; do
		a+=("$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)")
	done
	sleep 2
	echo "$me: QEMU's threads, clock ticks used in 2 s (200 is one busy core):" >&2
	for t in "${tasks[@]}"; do
		d=$(($(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0) - ${a[n]}))
		n=$((n + 1))
		[ "$d" -gt 0 ] || continue
		echo "  $(cat "$t/comm" 2>/dev/null) $d" >&2
		busy=1
	done
	[ -n "$busy" ] || echo "  none: every thread idle" >&2
}

# boot_once: one machine runs the command; sets status; returns 0, or 3 when
# the machine froze or died under the command (the emulated machine's kernel
# has been seen to panic, "corrupted stack end detected inside scheduler", in
# a vCPU thread of a nested VM)
boot_once() {
	local t_boot rc=0 last
	rm -f "$run/rc" "$run/ps" "$run/vfs.sock"
	"$vfsd" --socket-path="$run/vfs.sock" -o source=/ -o cache=auto -o sandbox=chroot \
		>"$run/virtiofsd.log" 2>&1 &
	vpid=$!
	for _ in $(seq 100); do
		[ -S "$run/vfs.sock" ] && break
		kill -0 "$vpid" 2>/dev/null || break
		sleep 0.05
	done
	[ -S "$run/vfs.sock" ] || {
		cat "$run/virtiofsd.log" >&2
		die "virtiofsd did not start"
	}
	t_boot=$(date +%s)
	timeout --foreground -k 10 "$limit" "$qemu" -name castor-nest,debug-threads=on \
		-accel tcg,thread=multi -cpu max -smp "$cpus" \
		-m "$mem" -object memory-backend-memfd,id=mem,size="${mem}M",share=on -numa node,memdev=mem \
		-chardev socket,id=vfs,path="$run/vfs.sock" -device vhost-user-fs-pci,chardev=vfs,tag=hostroot \
		-kernel "$img/vmlinuz" -initrd "$img/initramfs.cpio.gz" \
		-append "console=ttyS0 quiet panic=-1 castor.nest=$run${keep:+ castor.keep=$keep}" \
		-display none -serial stdio -monitor none -nic none -no-reboot </dev/null &
	qpid=$!
	while kill -0 "$qpid" 2>/dev/null; do
		sleep 5
		last=$t_boot
		[ ! -f "$run/ps" ] || last=$(stat -c %Y "$run/ps")
		if [ $(($(date +%s) - last)) -gt "$freeze" ] && kill -0 "$qpid" 2>/dev/null; then
			echo "$me: the machine froze: no sign of life for $freeze s (QEMU TCG stopped" \
				"making progress); its processes then:" >&2
			cat "$run/ps" >&2 2>/dev/null || true
			threads_cpu
			# $qpid is timeout(1): a SIGKILL to it would leave QEMU spinning on
			# both cores beside the retry's machine, so QEMU goes first
			pkill -9 -P "$qpid" 2>/dev/null || true
			kill -9 "$qpid" 2>/dev/null || true
			wait "$qpid" 2>/dev/null || true
			qpid=
			stop_vfsd
			return 3
		fi
	done
	wait "$qpid" || rc=$?
	qpid=
	stop_vfsd
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		if [ -f "$run/ps" ]; then
			echo "$me: the machine's processes, at most 15 s before it was stopped:" >&2
			cat "$run/ps" >&2
		fi
		die "the machine ran past --timeout $limit s and was stopped"
	fi
	if [ ! -f "$run/rc" ]; then
		echo "$me: the machine stopped (QEMU status $rc) without the command's exit status;" \
			"its console is above" >&2
		return 3
	fi
	status=$(cat "$run/rc")
	return 0
}

echo "$me: a TCG machine with nested SVM ($cpus vCPUs, $mem MiB) runs: $*"
t0=$(date +%s)
try=0
while :; do
	if boot_once; then
		break
	fi
	try=$((try + 1))
	[ "$try" -le "$retries" ] ||
		die "the machine froze or died $try time(s); no retries left (--retries $retries)"
	echo "$me: running the command again on a fresh machine (retry $try of $retries)"
done
echo "$me: the command exited with status $status after $(($(date +%s) - t0)) s"
exit "$status"
