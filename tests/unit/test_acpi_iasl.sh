#!/bin/sh
# The ACPI tables castor gives a Linux guest (hypervisor/boot/acpi.c), read by an
# independent reader: ACPICA's iasl, the disassembler Linux's own ACPI code comes with.
# For a few machine sizes, acpi_dump writes each table to a file, and
#  - iasl -d disassembles each one with exit status 0 and no error, warning or
#    checksum complaint, on its terminal or in the .dsl;
#  - the DSDT lists every virtio window as a LNRO0005 device with its Memory32Fixed
#    base and size and its interrupt (level, active high), and COM1 when asked;
#  - the MADT has one enabled Local APIC per vCPU and the IOAPIC; the FADT is
#    hardware-reduced and points at the DSDT; the XSDT at the FADT and MADT;
#  - each .dsl compiled back by iasl gives the same bytes after the header (for the
#    DSDT: our AML encoder agrees with iasl's on every PkgLength and integer).
# iasl will not load a standalone RSDP ("Loading an RSDP is not supported",
# acpica's acfileio.c), so the RSDP's checksums and XSDT pointer are checked here.
#
# Accepted from iasl: its banner and progress lines, nothing else -- our tables
# reference nothing outside themselves, so not even the usual warnings about
# unresolved external methods are expected.
#
#   test_acpi_iasl.sh ACPI_DUMP
# Exit 0 when every check passes, 1 otherwise (each failure printed), 77 when iasl
# is missing (a failure under CASTOR_REQUIRE_KVM=1, tests/require.sh).
set -u

dump=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../require.sh"
command -v iasl >/dev/null ||
	test_skip "iasl is missing (Debian package acpica-tools; scripts/install-deps.sh installs it)"
tmp=$(mktemp -d /tmp/castor-test-acpi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() {
	echo "FAIL [$cfg]: $*"
	fails=$((fails + 1))
}

# Complaints iasl prints while still exiting 0: a bad checksum is only a
# "Firmware Warning", a bad name an "ACPI Warning". In a .dsl (where "Checksum"
# is a field name), the disassembler notes "Incorrect checksum, should be" and
# marks what it could not decode with "/****".
BAD_LOG='error|warning|checksum|invalid|incorrect|unknown|abort|could not|corrupt'
BAD_DSL='error|warning|invalid|incorrect|should be|unknown|^ */\*\*\*\*'

# the bytes of FILE from offset OFF (0-based) on, one decimal number per line
bytes() {
	od -An -v -tu1 -j "$2" "$1" | tr -s ' ' '\n' | grep -v '^$'
}

# sum of the bytes of FILE (the first N of them if given), mod 256
checksum() {
	if [ $# -gt 1 ]; then
		head -c "$2" "$1" >"$tmp/cs"
	else
		cp "$1" "$tmp/cs"
	fi
	bytes "$tmp/cs" 0 | awk '{ s += $1 } END { print s % 256 }'
}

# little-endian u64 at OFF of FILE, as 16 upper-case hex digits (as iasl prints them)
le64() {
	od -An -v -tx1 -j "$2" -N 8 "$1" | awk '{ for (i = NF; i >= 1; i--) printf "%s", toupper($i) } END { print "" }'
}

# the gpa acpi_dump reported for a table, as 16 upper-case hex digits
gpa_of() {
	awk -v sig="$1" '$1 == "table" && $2 == sig { print $3 }' "$dir/layout" |
		sed 's/^0x//' | tr a-f A-F | awk '{ printf "%016s\n", $1 }' | tr ' ' 0
}

# the lines of DSDT.dsl that belong to Device (NAME)
device_block() {
	awk -v dev="Device ($1)" 'index($0, dev) { on = 1; next } on && /Device \(/ { on = 0 } on' \
		"$dir/DSDT.dsl"
}

# one configuration: NCPUS NVIRTIO [nocom1]
check() {
	ncpus=$1
	nvirtio=$2
	cfg="$*"
	dir=$tmp/$(echo "$cfg" | tr ' ' _)
	mkdir -p "$dir"
	if ! "$dump" "$dir" "$@" >"$dir/layout" 2>"$dir/dump.err"; then
		fail "acpi_dump: $(cat "$dir/dump.err")"
		return
	fi
	[ "$(grep -c '^virtio ' "$dir/layout")" -eq "$nvirtio" ] ||
		fail "acpi_dump listed $(grep -c '^virtio ' "$dir/layout") virtio devices, not $nvirtio"

	for t in XSDT FACP APIC DSDT; do
		if [ ! -s "$dir/$t.dat" ]; then
			fail "no $t.dat"
			continue
		fi
		(cd "$dir" && iasl -d "$t.dat") >"$dir/$t.log" 2>&1
		rc=$?
		[ $rc -eq 0 ] || fail "iasl -d $t.dat: exit status $rc"
		grep -iE "$BAD_LOG" "$dir/$t.log" | sed "s/^/iasl -d $t.dat: /" >"$dir/bad"
		grep -iE "$BAD_DSL" "$dir/$t.dsl" 2>/dev/null | sed "s/^/$t.dsl: /" >>"$dir/bad"
		[ -s "$dir/bad" ] && fail "$(cat "$dir/bad")"
		[ -s "$dir/$t.dsl" ] || { fail "iasl wrote no $t.dsl"; continue; }
		# round trip: compile the disassembly back (-on: keep \_SB as written)
		(cd "$dir" && iasl -on -p "rt_$t" "$t.dsl") >"$dir/rt_$t.log" 2>&1 ||
			fail "iasl $t.dsl: $(grep -iE 'error|warning' "$dir/rt_$t.log")"
		grep -q ' 0 Errors, 0 Warnings' "$dir/rt_$t.log" ||
			fail "iasl $t.dsl: $(grep -iE 'errors|warnings' "$dir/rt_$t.log")"
		if [ ! -f "$dir/rt_$t.aml" ]; then
			fail "iasl compiled no rt_$t.aml"
		elif ! cmp -s "$dir/$t.dat" "$dir/rt_$t.aml" 36 36 ||
			[ "$(wc -c <"$dir/$t.dat")" -ne "$(wc -c <"$dir/rt_$t.aml")" ]; then
			fail "$t compiled back by iasl differs from ours after the header"
		fi
	done

	# RSDP: signature, revision 2, both checksums, the XSDT where acpi_dump found it
	r=$dir/RSDP.dat
	[ "$(head -c 8 "$r")" = "RSD PTR " ] || fail "RSDP signature"
	[ "$(bytes "$r" 15 | head -n 1)" = 2 ] || fail "RSDP revision is not 2"
	[ "$(checksum "$r" 20)" = 0 ] || fail "RSDP checksum (first 20 bytes)"
	[ "$(checksum "$r")" = 0 ] || fail "RSDP extended checksum"
	[ "$(le64 "$r" 24)" = "$(gpa_of XSDT)" ] || fail "RSDP's XSDT address"

	grep -q "ACPI Table Address   0 : $(gpa_of FACP)" "$dir/XSDT.dsl" ||
		fail "XSDT entry 0 is not the FADT at $(gpa_of FACP)"
	grep -q "ACPI Table Address   1 : $(gpa_of APIC)" "$dir/XSDT.dsl" ||
		fail "XSDT entry 1 is not the MADT at $(gpa_of APIC)"

	grep -q 'Hardware Reduced (V5) : 1' "$dir/FACP.dsl" || fail "FADT is not hardware-reduced"
	grep -q "DSDT Address : $(gpa_of DSDT)" "$dir/FACP.dsl" ||
		fail "FADT's X_DSDT is not $(gpa_of DSDT)"

	n=$(grep -c 'Subtable Type : 00 \[Processor Local APIC\]' "$dir/APIC.dsl")
	[ "$n" -eq "$ncpus" ] || fail "MADT has $n Local APICs, not $ncpus"
	n=$(grep -c 'Processor Enabled : 1' "$dir/APIC.dsl")
	[ "$n" -eq "$ncpus" ] || fail "MADT has $n enabled processors, not $ncpus"
	grep -q "I/O Apic ID : $(printf %02X "$ncpus")" "$dir/APIC.dsl" ||
		fail "MADT has no IOAPIC with id $ncpus"
	grep -q 'Address : FEC00000' "$dir/APIC.dsl" || fail "MADT has no IOAPIC at 0xfec00000"

	n=$(grep -c '"LNRO0005"' "$dir/DSDT.dsl")
	[ "$n" -eq "$nvirtio" ] || fail "DSDT has $n LNRO0005 devices, not $nvirtio"
	grep '^virtio ' "$dir/layout" | while read -r _ i base size gsi; do
		b=$(device_block "VIO$i")
		want_base=$(printf '0x%08X,' "$base")
		want_size=$(printf '0x%08X,' "$size")
		want_gsi=$(printf '0x%08X,' "$gsi")
		echo "$b" | grep -q '_HID, "LNRO0005"' || echo "VIO$i is not a LNRO0005 device"
		echo "$b" | grep -A 3 'Memory32Fixed (ReadWrite,' | grep -q "$want_base" ||
			echo "VIO$i has no Memory32Fixed at $want_base"
		echo "$b" | grep -A 3 'Memory32Fixed (ReadWrite,' | grep -q "$want_size" ||
			echo "VIO$i's window is not $want_size long"
		echo "$b" | grep -q 'Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive' ||
			echo "VIO$i's interrupt is not a level, active-high, exclusive consumer"
		echo "$b" | grep -A 2 'Interrupt (' | grep -q "$want_gsi" ||
			echo "VIO$i's interrupt is not $want_gsi"
	done >"$dir/dev_fails"
	[ -s "$dir/dev_fails" ] && fail "$(cat "$dir/dev_fails")"

	b=$(device_block COM1)
	if [ "${3:-}" = nocom1 ]; then
		[ -z "$b" ] || fail "COM1 is described though not asked for"
	else
		echo "$b" | grep -q 'EisaId ("PNP0501")' || fail "COM1 is not a PNP0501"
		echo "$b" | grep -A 2 'IO (Decode16,' | grep -q '0x03F8,' || fail "COM1 is not at 0x3f8"
		echo "$b" | grep -A 1 'IRQNoFlags ()' | grep -q '{4}' || fail "COM1 is not on IRQ 4"
	fi
}

check 1 0
check 2 1
check 8 8
check 2 3 nocom1

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "ACPI tables: iasl agrees on 4 configurations"
exit 0
