#!/bin/bash
# Boots the test guest under QEMU/KVM through its multiboot entry and checks
# that it parses its command line, reaches ring 3 and dirties pages: the
# banner must echo the parameters passed, and two tick lines must show vCPU 0's
# page counter advancing.
#
# usage: qemu_multiboot.sh <castor-tg.bin>
# exit:  0 pass, 1 fail, 77 skipped (no qemu-system-x86_64 or no /dev/kvm;
#        a failure instead under CASTOR_REQUIRE_KVM=1, tests/require.sh)
set -u

image=${1:-}
timeout_s=${QEMU_MULTIBOOT_TIMEOUT:-60}

. "$(dirname "$0")/../require.sh"
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	test_skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
fi
if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	test_skip "/dev/kvm is absent or not accessible"
fi
if [ -z "$image" ] || [ ! -f "$image" ]; then
	echo "FAIL: no guest image '$image'"
	exit 1
fi

tmp=$(mktemp -d /tmp/castor-qemu-mb.XXXXXX) || exit 1
qemu_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

log=$tmp/serial.log
: >"$log"
# Parameters that differ from the defaults, so the banner proves the parsing.
append="wss=2M rate=20 outrate=5 seed=0x2a window=32 flags=1"
want_banner="castor-tg: boot=multiboot vcpus=1 wss_pages=512 rate=20 outrate=5 seed=42 window=32"

# The default CPU model first; Debian's QEMU on kvm_pvm may need the host
# model without ARCH_CAPABILITIES (MSR 0x10a cannot be set there).
for cpu in "" "host,-arch-capabilities"; do
	qemu-system-x86_64 -enable-kvm ${cpu:+-cpu "$cpu"} -m 256 -smp 1 \
		-display none -monitor none -no-reboot \
		-kernel "$image" -append "$append" \
		-serial "file:$log" >"$tmp/qemu.out" 2>&1 &
	qemu_pid=$!
	sleep 1
	if kill -0 "$qemu_pid" 2>/dev/null; then
		break
	fi
	wait "$qemu_pid" 2>/dev/null
	qemu_pid=
	echo "note: qemu with cpu '${cpu:-default}' exited at once:"
	sed 's/^/  /' "$tmp/qemu.out"
done
if [ -z "$qemu_pid" ]; then
	echo "FAIL: qemu did not start"
	exit 1
fi

# Counters (c0=) of the tick lines so far, one per line.
ticks() {
	sed -n 's/^castor-tg: t=[0-9]* c0=\([0-9]*\) o0=[0-9]*$/\1/p' "$log"
}

deadline=$((SECONDS + timeout_s))
result=
while [ $SECONDS -lt $deadline ]; do
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		result="qemu exited early"
		break
	fi
	if grep -q '^castor-tg: \(stopped\|exception\|bad parameter\)' "$log"; then
		result="the guest reported an error"
		break
	fi
	if grep -qxF "$want_banner" "$log"; then
		# First and last counters: the last must exceed the first.
		mapfile -t counts < <(ticks)
		if [ ${#counts[@]} -ge 2 ] && [ "${counts[-1]}" -gt "${counts[0]}" ]; then
			result=pass
			break
		fi
	fi
	sleep 0.5
done

if [ "$result" = pass ]; then
	echo "PASS: banner and ${#counts[@]} tick lines, c0 ${counts[0]} -> ${counts[-1]}"
	exit 0
fi
echo "FAIL: ${result:-no banner and two advancing tick lines within ${timeout_s} s}"
echo "expected banner: $want_banner"
echo "--- serial log:"
cat "$log"
echo "--- qemu output:"
cat "$tmp/qemu.out"
exit 1
