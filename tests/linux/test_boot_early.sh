#!/usr/bin/env bash
# castor-vmm boots Debian's stock kernel (castor mkguest's image) until the kernel
# has read everything castor-vmm built for it, and checks each item against what
# castor-vmm says it built:
#   - the banner ("Linux version ...") and our command line, verbatim;
#   - the e820 map: every "usable" range the kernel prints is one castor-vmm logged,
#     and every range castor-vmm reserved is reserved for the kernel too;
#   - the ACPI tables: RSDP at the address castor-vmm logged, XSDT, FACP, DSDT and APIC
#     found, no checksum or table complaint;
#   - the MADT: one enabled LAPIC per vCPU (the kernel's CPU count) and the IOAPIC.
# Under kvm_pvm (guest ring 0 emulated) this takes minutes: ctest label "slow".
#
#   test_boot_early.sh CASTOR_VMM CASTOR GUEST_DIR vmlinux|vmlinuz
# exit: 0 pass, 1 fail, 77 skipped (no /dev/kvm; a failure under CASTOR_REQUIRE_KVM=1)
set -u
VMM=$1
CLI=$2
GUEST=$3
KIND=$4
CPUS=2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../require.sh"
[ -c /dev/kvm ] || test_skip "/dev/kvm is absent"

if [ ! -f "$GUEST/$KIND" ]; then
	"$CLI" mkguest --out "$GUEST" || { echo "FAIL: castor mkguest --out $GUEST"; exit 1; }
fi
tmp=$(mktemp -d /tmp/castor-linux-early.XXXXXX) || exit 1
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

cmdline="console=ttyS0 earlyprintk=ttyS0,keep loglevel=8 ignore_loglevel noxsave castor.test=early$$"
"$VMM" run --name early --mem 256M --cpus "$CPUS" --kernel "$GUEST/$KIND" --cmdline "$cmdline" \
	--control "$tmp/vm.sock" --serial "$tmp/console" >"$tmp/vmm.log" 2>&1 &
pid=$!

# what the kernel must print, in any order
want=("Linux version " "Command line: $cmdline" "ACPI: RSDP 0x" "ACPI: XSDT 0x"
	"ACPI: FACP 0x" "ACPI: DSDT 0x" "ACPI: APIC 0x" "IOAPIC[0]: apic_id $CPUS")
# the MADT's LAPICs, counted as the kernel read them (Debian's 6.1 prints each
# entry only at debug level; prefill_possible_map prints the count, early)
want+=("smpboot: Allowing $CPUS CPUs, 0 hotplug CPUs")
deadline=$((SECONDS + ${LINUX_EARLY_TIMEOUT:-420}))
missing=("${want[@]}")
while [ "${#missing[@]}" -gt 0 ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$pid" 2>/dev/null; do
	sleep 2
	still=()
	for w in "${missing[@]}"; do grep -qF -- "$w" "$tmp/console" 2>/dev/null || still+=("$w"); done
	missing=("${still[@]}")
done
echo "after ${SECONDS}s: $(wc -l <"$tmp/console" 2>/dev/null || echo 0) console lines"
for w in "${want[@]}"; do
	grep -qF -- "$w" "$tmp/console" 2>/dev/null && ok "kernel printed: $w" || bad "kernel never printed: $w"
done
if grep -E 'ACPI (BIOS )?(Error|Warning)|Incorrect checksum|[Ii]nvalid (RSDP|XSDT|table)' "$tmp/console"; then
	bad "the kernel complained about our ACPI tables (lines above)"
else
	ok "no ACPI complaint"
fi

# the RSDP where castor-vmm put it
ours=$(grep -oE 'ACPI RSDP at 0x[0-9a-f]+' "$tmp/vmm.log" | grep -oE '0x[0-9a-f]+$')
theirs=$(grep -oE 'ACPI: RSDP 0x[0-9A-Fa-f]+' "$tmp/console" | head -1 | grep -oE '0x[0-9A-Fa-f]+$')
if [ -n "$ours" ] && [ -n "$theirs" ] && [ $((ours)) = $((theirs)) ]; then
	ok "RSDP at $ours, as castor-vmm built it"
else
	bad "RSDP: castor-vmm '$ours', kernel '$theirs'"
fi

# e820: the kernel's usable ranges are ours exactly; ours reserved are reserved for it
python3 - "$tmp/vmm.log" "$tmp/console" <<'PY' || fails=$((fails + 1))
import re, sys
rx = re.compile(r"\[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (usable|reserved)")
def ranges(path, tag):
    out = {"usable": set(), "reserved": set()}
    for line in open(path, errors="replace"):
        if tag in line:
            m = rx.search(line)
            if m:
                out[m.group(3)].add((int(m.group(1), 16), int(m.group(2), 16)))
    return out
ours, theirs = ranges(sys.argv[1], "e820: [mem"), ranges(sys.argv[2], "BIOS-e820:")
if not ours["usable"] or not theirs["usable"]:
    sys.exit(print(f"FAIL: e820 maps missing (castor-vmm {ours}, kernel {theirs})") or 1)
if ours["usable"] != theirs["usable"]:
    sys.exit(print(f"FAIL: usable RAM differs: castor-vmm {sorted(ours['usable'])}, "
                   f"kernel {sorted(theirs['usable'])}") or 1)
for lo, hi in ours["reserved"]:
    if not any(a <= lo and hi <= b for a, b in theirs["reserved"]):
        sys.exit(print(f"FAIL: {lo:#x}-{hi:#x} reserved by castor-vmm, not by the kernel") or 1)
print(f"ok: e820: {len(ours['usable'])} usable ranges identical, "
      f"{len(ours['reserved'])} reserved ranges kept reserved")
PY

[ "$fails" = 0 ] || { echo "--- console (tail)"; tail -40 "$tmp/console"; echo "--- castor-vmm"; tail -20 "$tmp/vmm.log"; }
echo "$fails failure(s)"
[ "$fails" = 0 ]
