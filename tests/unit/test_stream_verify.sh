#!/bin/sh
# castor stream verify|dump against streams built by hand from docs/stream-format.md
# by mkstream.py -- never by hypervisor/stream.c nor replication/codec*.c. The valid streams must pass; each
# broken one breaks one rule of the spec and must be refused with the right message
# at the right place.
#   test_stream_verify.sh CASTOR
# Exit 0 when every check passes, 77 (skipped) without python3 (a failure under
# CASTOR_REQUIRE_KVM=1, tests/require.sh); each failure is printed.
set -u

castor=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../require.sh"
command -v python3 >/dev/null || test_skip "python3 is needed to build the streams"
tmp=$(mktemp -d /tmp/castor-test-stream.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
s=$tmp/streams
python3 "$here/mkstream.py" "$s" || { echo "FAIL: mkstream.py"; exit 1; }
fails=0
checked=" "

. "$(dirname "$0")/clitest.sh"

size() {
	wc -c <"$1" | tr -d ' '
}

# valid NAME [REVISION]: exit 0 and the summary line
valid() {
	checked="$checked$1 "
	run stream verify "$s/$1.cst"
	expect_rc 0
	expect_in out "$s/$1.cst: valid, revision ${2:-1} "
	expect_empty err
}

# invalid NAME OFFSET MESSAGE: exit 1, nothing on stdout, one error line on stderr
# saying where ("offset N: ", "-" to skip) and what (a fixed substring)
invalid() {
	checked="$checked$1 "
	invalid_file "$s/$1.cst" "$2" "$3"
}

invalid_file() {
	run stream verify "$1"
	expect_rc 1
	expect_empty out
	[ "$(wc -l <"$tmp/err")" = 1 ] || fail "not one error line"
	expect_in err "castor: $1: offset "
	[ "$2" = - ] || expect_in err "castor: $1: offset $2: "
	expect_in err "$3"
}

# ---- valid streams --------------------------------------------------------------
valid valid-full
expect_in out "ncpus 2, mem_bytes 16777216 (16.0 MiB), page entries 4098 (RAW 5, ZERO 4093), devices 4, records 16"
valid valid-incr
expect_in out "incremental snapshot, stream_id 0x5eed0000c0ffee01, parent_id 0x5eed0000c0ffee00"
valid valid-optional # unknown optional records in four places are skipped
expect_in out "records 20"
valid valid-tiny
valid valid-8cpu
valid valid-tail-only
valid valid-raw-max # the largest PAGES record: 4096 RAW pages, within REC_MAX_LEN

# ---- HEADER ---------------------------------------------------------------------
invalid empty 0 "empty input: no HEADER"
invalid not-a-stream 0 "the first record is not HEADER: not a Castor stream"
invalid header-first-missing 0 "record 0x0002(PAGES): the first record is not HEADER"
invalid bad-magic 0 "record 0x0001(HEADER): bad magic 0x4c52545352545343"
invalid rev-newer 0 "revision 3 is newer than this verifier's (2)"
invalid rev-zero 0 "revision 0 does not exist"
invalid bad-kind 0 "kind 3 unknown"
invalid ncpus-0 0 "ncpus 0 out of range 1-8"
invalid ncpus-9 0 "ncpus 9 out of range 1-8"
invalid bad-pgsz 0 "page size 8192, must be 4096"
invalid mem-zero 0 "mem_bytes 0 is not a non-zero multiple of 4096"
invalid mem-unaligned 0 "mem_bytes 16777728 is not a non-zero multiple of 4096"
invalid sid-zero 0 "stream_id is 0"
invalid full-with-parent 0 "full snapshot with parent_id 0x5eed0000c0ffee00, must be 0"
invalid incr-no-parent 0 "incremental snapshot with parent_id 0"
invalid incr-own-parent 0 "incremental snapshot whose parent_id is its own stream_id"
invalid header-reserved 0 "reserved field (offset 56) is 0x1, must be 0"
invalid header-long 0 "record 0x0001(HEADER): length 72, expected 64"
invalid header-twice 72 "record 0x0001(HEADER): a second HEADER"

# ---- framing, types ---------------------------------------------------------------
invalid unknown-mandatory 49256 "record 0x0777(unknown): unknown mandatory record type 0x0777"
invalid optional-on-known 49256 "REC_F_OPTIONAL set on PAGES, a mandatory type"
invalid bad-padding 63560 "record 0x0030(DEVICE): padding byte 6 is 0x01, must be 0"
invalid oversize-length 72 "length 4294967295 exceeds REC_MAX_LEN (16842752)"
invalid oversize-by-one 72 "length 16842753 exceeds REC_MAX_LEN (16842752)"
invalid max-length-truncated 72 "truncated: body and padding need 16842752 bytes, 100 present"

# ---- PAGES ------------------------------------------------------------------------
invalid pages-reserved 49256 "record 0x0002(PAGES): reserved field is 0x1, must be 0"
invalid pages-entry-reserved 49256 "entry 1 (pfn 4): reserved bits 52-59 are 0x80, must be 0"
invalid pages-count-0 49256 "count 0 out of range 1-4096"
invalid pages-count-4097 49256 "count 4097 out of range 1-4096"
invalid pfn-out-of-range 49256 "entry 0: pfn 4096 out of range (the RAM has 4096 pages)"
invalid pfn-huge 49256 "pfn 4503599627370495 out of range"
invalid enc-xor-rev1 49256 "entry 0 (pfn 3): encoding 2 (XOR) is reserved for revision 2, refused in revision 1"
invalid enc-patch-rev1 49256 "entry 0 (pfn 3): encoding 3 (PATCH) is reserved for revision 2, refused in revision 1"
invalid enc-unknown 49256 "entry 0 (pfn 3): unknown encoding 9"
invalid pages-length-long 49256 "length 24, but 1 entries and their payloads make 16"
invalid pages-length-short 49256 "length 4104, but 1 entries and their payloads make 4112"
invalid pages-entries-short 49256 "length 16 cannot hold 10 entries"
invalid pages-header-short 49256 "length 4 cannot hold count and reserved"
invalid missing-page - "record 0x00ff(END): full snapshot lacks 4 of 4096 pages: pfn 17, 100-102"
invalid missing-many-pages - "lacks 1996 of 4096 pages: pfn 9, 11, 13, 15, ..."
invalid no-pages-in-full - "lacks 4096 of 4096 pages: pfn 0-4095"
invalid pages-among-state 55440 "PAGES among the state records: expected VCPU_MSRS of vCPU 0"
invalid pages-before-device - "DEVICE after the PAGES that follow the state records"

# ---- VCPU, VCPU_MSRS ----------------------------------------------------------------
invalid vcpu-length 49256 "record 0x0010(VCPU): length 6168, expected 6176"
invalid vcpu-index-range 55536 "vCPU index 2 >= ncpus 2"
invalid vcpu-reserved-4 49256 "reserved field (offset 4) is 0x1, must be 0"
invalid vcpu-reserved-6172 49256 "reserved field (offset 6172) is 0x1, must be 0"
invalid vcpu-duplicate 55536 "record 0x0010(VCPU): vCPU 0 appears twice"
invalid vcpu-order 49256 "VCPU 1 out of order: expected VCPU 0"
invalid vcpu-missing 55536 "record 0x0020(IRQCHIP): IRQCHIP out of order: expected VCPU 1"
invalid msrs-missing 55440 "record 0x0010(VCPU): VCPU out of order: expected VCPU_MSRS of vCPU 0"
invalid msrs-count 55440 "record 0x0011(VCPU_MSRS): count 1025 over 1024"
invalid msrs-length 55440 "length 96, expected 8 + 16 x 5 = 88"
invalid msrs-index 55440 "VCPU_MSRS of vCPU 1 after VCPU 0"
invalid msrs-reserved 55440 "MSR entry 1 (0x174): reserved field is 0x1, must be 0"
invalid msrs-duplicate 55440 "MSR 0x174 listed twice"

# ---- IRQCHIP, PIT, CLOCK --------------------------------------------------------------
invalid irqchip-ids 61816 "chip 0 has chip_id 1, expected 0"
invalid irqchip-length 61816 "record 0x0020(IRQCHIP): length 1040, expected 1560"
invalid irqchip-missing 61816 "record 0x0021(PIT): PIT out of order: expected IRQCHIP"
invalid irqchip-twice 63560 "IRQCHIP appears twice"
invalid pit-length 63384 "record 0x0021(PIT): length 120, expected 112"
invalid clock-length 63504 "record 0x0022(CLOCK): length 40, expected 48"
invalid clock-missing 63504 "record 0x0030(DEVICE): DEVICE out of order: expected CLOCK"

# ---- DEVICE ---------------------------------------------------------------------------
invalid device-garbage 63560 "body does not decode as castor.DeviceState"
invalid device-empty-id 63560 "DeviceState.id is empty"
invalid device-empty-body 63560 "DeviceState.id is empty"
invalid device-duplicate-id 63592 "device id \"serial0\" appears twice (first at offset 63560)"
invalid device-before-clock 63504 "DEVICE out of order: expected CLOCK"
invalid device-after-tail - "DEVICE after the PAGES that follow the state records"

# ---- END --------------------------------------------------------------------------------
full=$(size "$s/valid-full.cst")
end=$((full - 32))
invalid missing-end "$end" "the stream ends without END, after 15 records"
invalid end-records "$end" "record 0x00ff(END): records 16, but 15 records precede END"
invalid end-pages "$end" "pages 4097, but the stream has 4098 page entries"
invalid end-reserved "$end" "reserved field (offset 12) is 0x1, must be 0"
invalid end-length "$end" "length 32, expected 24"
invalid end-early 72 "END too early: expected PAGES or VCPU 0"
invalid end-before-devices-done - "END too early: expected CLOCK"
invalid end-crc "$end" "checksum 0x"
invalid crc-flip "$end" "but the records before END have CRC-32C"
invalid data-after-end "$full" "data after END"
invalid record-after-end "$full" "data after END"

# ---- revision 2 (§9): valid -------------------------------------------------------------
valid valid-rev2-incr 2
expect_in out "page entries 9 (RAW 3, ZERO 3, XOR 2, PATCH 1; in PAGES_ZSTD records 1), devices 1, records 11"
valid valid-rev2-full 2 # RAW and ZERO in PAGES and PAGES_ZSTD cover every page
expect_in out "full snapshot"
expect_in out "page entries 4096 (RAW 4, ZERO 4092, XOR 0, PATCH 0; in PAGES_ZSTD records 1)"
valid valid-rev2-patch-edges 2 # runs 0; adjacent and odd runs; 4096 bytes; 256 runs
valid valid-rev2-bound 2       # decoded: wire + 8192 - 8 - the frame, within the bound
valid valid-rev1-optional-0003 # revision 1 does not define 0x0003: optional, it is skipped

# ---- revision 2: HEADER, types, entries (§9.1-§9.3) -----------------------------------------
invalid rev1-pages-zstd 49256 "record 0x0003(PAGES_ZSTD): record type 0x0003 (PAGES_ZSTD) is revision 2's, refused in revision 1"
invalid rev2-zstd-optional 72 "REC_F_OPTIONAL set on PAGES_ZSTD, a mandatory type"
invalid rev2-zstd-among-state 6256 "PAGES_ZSTD among the state records: expected VCPU_MSRS of vCPU 0"
invalid rev2-enc-unknown 72 "entry 0 (pfn 5): unknown encoding 4"
invalid rev2-xor-in-full 72 "record 0x0003(PAGES_ZSTD): entry 0 (pfn 9): XOR in a full snapshot"
invalid rev2-patch-in-full 72 "record 0x0002(PAGES): entry 0 (pfn 9): PATCH in a full snapshot"
invalid rev2-xor-pfn-range 72 "entry 0: pfn 4096 out of range (the RAM has 4096 pages)"
invalid rev2-xor-repeat 4192 "record 0x0003(PAGES_ZSTD): entry 0: pfn 5 is XOR-encoded but appeared earlier in the stream"
invalid rev2-patch-repeat 392 "record 0x0002(PAGES): entry 0: pfn 5 is PATCH-encoded but appeared earlier in the stream"
invalid rev2-xor-repeat-in-record 72 "entry 1: pfn 5 is XOR-encoded but appeared earlier"
invalid rev2-patch-twice 72 "entry 1: pfn 5 is PATCH-encoded but appeared earlier"
invalid rev2-patch-in-zstd 72 "entry 1 (pfn 5): PATCH in PAGES_ZSTD"

# ---- revision 2: PATCH payloads (§9.2) --------------------------------------------------------
invalid patch-runs-257 72 "entry 0 (pfn 5): PATCH runs 257 over 256"
invalid patch-words-512 72 "PATCH words 512 over 511"
invalid patch-runs-no-words 72 "PATCH of 1 runs and 0 words (words is 0 exactly when runs is 0)"
invalid patch-words-no-runs 72 "PATCH of 0 runs and 1 words"
invalid patch-too-big 72 "PATCH payload of 4104 bytes over 4096"
invalid patch-count-0 72 "PATCH run 1 has count 0"
invalid patch-overlap 72 "PATCH run 1 starts at word 2, before word 4"
invalid patch-order 72 "PATCH run 1 starts at word 0, before word 12"
invalid patch-past-page 72 "PATCH run 0 (words 510-512) ends past word 511"
invalid patch-padding 72 "PATCH padding after the runs is 0xabcd, must be 0"
invalid patch-sum 72 "PATCH runs cover 3 words, but words is 4"
invalid patch-cut 72 "length 48 ends inside the PATCH payload of entry 0 (pfn 5, 40 bytes)"
invalid patch-no-header 72 "length 16 ends inside the PATCH payload of entry 0 (pfn 5)"
invalid patch-length-long 72 "length 64, but 1 entries and their payloads make 56"

# ---- revision 2: PAGES_ZSTD (§9.3) ------------------------------------------------------------
invalid zstd-count-0 72 "record 0x0003(PAGES_ZSTD): count 0 out of range 1-4096"
invalid zstd-count-4097 72 "count 4097 out of range 1-4096"
invalid zstd-reserved 72 "reserved field is 0x1, must be 0"
invalid zstd-entry-reserved 72 "entry 1 (pfn 10): reserved bits 52-59 are 0x10, must be 0"
invalid zstd-short 72 "length 16 cannot hold 1 entries and raw_len"
invalid zstd-raw-len-wrong 72 "raw_len 4096, but the entries' payloads make 8192"
invalid zstd-raw-len-zero 72 "raw_len 0: a batch without payloads goes as PAGES"
invalid zstd-no-frame 72 "no zstd frame after raw_len: 0 bytes"
invalid zstd-skippable 72 "the frame starts with 0x184d2a50, not the zstd magic 0xfd2fb528"
invalid zstd-no-fcs 72 "the zstd frame header has no Frame_Content_Size"
invalid zstd-fcs-wrong 72 "the zstd frame's Frame_Content_Size is 12288, but raw_len 8192"
invalid zstd-dict 72 "the zstd frame needs dictionary 7 (none is allowed)"
invalid zstd-two-frames 72 "the zstd frame ends 21 bytes before the body does"
invalid zstd-cut 72 "the zstd frame is cut short or malformed"
invalid zstd-content-short 72 "the zstd frame does not decompress to raw_len 8192 bytes"
invalid zstd-checksum 72 "the zstd frame does not decompress to raw_len 8192 bytes"

# ---- revision 2: END over the wire bytes, the decoded bound (§9.4, §9.5) ----------------------
invalid rev2-end-pages - "record 0x00ff(END): pages 1, but the stream has 3 page entries"
invalid rev2-end-records - "record 0x00ff(END): records 5, but 9 records precede END"
invalid rev2-end-crc - "record 0x00ff(END): checksum 0x00000000, but the records before END"
invalid rev2-decoded-bound - "decoded, the stream would be 20456 bytes: over the wire size 8456 + 2 x mem_bytes"

# ---- captured replication connections (§8-§8.2) ----------------------------------
session_valid() {
	checked="$checked$1 "
	run stream verify "$s/$1.cst"
	expect_rc 0
	expect_in out "$s/$1.cst: valid replication session capture, session layer 2"
	expect_in out "16 MiB of RAM, 2 vCPUs; 3 epochs (the first full, the rest incremental, chained)"
	expect_empty err
}
session_valid session-valid
expect_in out "1 heartbeats, then BYE"
expect_in out ", no key"
session_valid session-keyed
expect_in out "keyed (sealed records read, tags not checked: that takes the key)"
session_valid session-no-bye
run stream verify --json "$s/session-valid.cst"
expect_rc 0
json_check 'j["kind"] == "session" and j["epochs"] == 3 and j["valid"]'
invalid session-cut - "epoch 2: the capture ends"
invalid session-unchained - "epoch 1: parent 0x5eed000000000a02, the previous epoch was 0x5eed000000000a00"
invalid session-first-incremental 64 "epoch 0 is not a full stream (the initial copy)"
invalid session-ping-length 72 "PING with a length of 4 (0 is the only one)"
invalid session-bad-frame 64 "frame with magic 0x4b43414252545343: not EPCH, DISK, POSTCOPY, PING or BYE"
invalid session-after-bye - "bytes after BYE: the connection closes there"
invalid session-encrypted 104 "the link is encrypted (the HELLO asked for it)"
invalid session-version1 8 "HELLO: session layer version 1; this verifier knows 2"
invalid session-reserved-flags 12 "HELLO: reserved flag bits 0x40"
# postcopy (§8.6): POSTCOPY before the switch's epoch, then PAGEs and END after SWITCH
session_valid session-postcopy
expect_in out "postcopy: 3 pages named at the switch, 3 PAGEs (1 zero), then END"
run stream verify --json "$s/session-postcopy.cst"
json_check 'j["postcopy"] and j["switched"] and j["postcopy_named"] == 3 and j["postcopy_pages"] == 3 and j["postcopy_zero"] == 1 and j["postcopy_end"]'
session_valid session-postcopy-cut
expect_in out "3 PAGEs (1 zero), the capture ends before END"
invalid session-postcopy-unnamed - "PAGE 0x9, which POSTCOPY did not name"
invalid session-postcopy-twice - "PAGE 0x5 sent twice"
invalid session-postcopy-end - "END says 2 pages, 3 PAGEs came"
invalid session-postcopy-after-end - "bytes after END: the source sends nothing more"
invalid session-postcopy-flags - "PAGE with flags 0x2 (bit 0, zero, is the only one)"
invalid session-postcopy-no-epoch - "SWITCH right after POSTCOPY: the switch's epoch (the state) is missing"
invalid session-postcopy-two-epochs - "a second epoch after POSTCOPY: the switch's is the last"
invalid session-postcopy-length - "POSTCOPY of 16 bytes; a VM of 4096 pages takes 520"
invalid session-postcopy-not-migrating - "POSTCOPY in a session that is no migration"
checked="${checked}session-resume "
run stream verify "$s/session-resume.cst"
expect_rc 0
expect_in out "postcopy resumed (RESUME: the names are the destination's): 0 pages named at the switch, 3 PAGEs (1 zero), then END"
invalid session-resume-sums 12 "HELLO: RESUME without MIGRATE, or with SUMS"
session_valid session-migration
run stream verify --json "$s/session-migration.cst"
json_check 'j["migration"] and j["switched"] and j["epochs"] == 3'
invalid session-switch-not-migrating - "SWITCH in a session that is no migration (its HELLO has no MIGRATE)"
invalid session-switch-first 64 "SWITCH before any epoch: nothing to run"
invalid session-after-switch - "bytes after SWITCH: the source sends nothing more"
invalid session-switch-length 72 "SWITCH with a length of 2 (0 is the only one)"
invalid session-migrate-disk 12 "HELLO: MIGRATE with DISK"
session_valid session-disks
run stream verify --json "$s/session-disks.cst"
json_check 'j["disk_frames"] == 3 and j["disk_records"] == 5 and j["disks"] == 1'
# a primary that asked for the replica's disk digests (SUMS, §8.5): the same stream follows
session_valid session-disks-sums
invalid session-sums-disk 12 "HELLO: SUMS with DISK"
invalid session-disk-unsealed - "epoch 1: disk records without a seal (disks 0x1)"
invalid session-disk-wrong-epoch - "a record of epoch 2 while epoch 1 is under way"
invalid session-disk-bad-type 80 "record type 0x0054 in a DISK frame"
invalid session-nonce-no-auth 32 "HELLO: a nonce without AUTH"
invalid session-seal-length - "sealed record 0: length 0 (1 to 1048576 bytes)"
invalid session-mem 64 "epoch 0: 16777216 bytes of RAM, the HELLO said 33554432"
invalid session-bad-epoch - "epoch 0, its offset"
invalid session-epoch-tail 67960 "epoch 0, its offset 67880: data after END"

# every case mkstream.py writes has been checked above
for name in $(python3 "$here/mkstream.py" --list); do
	case $checked in
	*" $name "*) ;;
	*) echo "FAIL: $name.cst is built but never checked"; fails=$((fails + 1)) ;;
	esac
done

# ---- any truncation and any flipped byte of a valid stream is refused -------------------
for cut in 1 4 7 8 40 71 72 73 100 28000 $((end - 8)) $((end - 1)) $end $((end + 1)) $((full - 1)); do
	head -c "$cut" "$s/valid-full.cst" >"$tmp/cut.cst"
	last="truncated at $cut"
	case $cut in
	1 | 4 | 7) msg="truncated record header: $cut of 8 bytes" ;;
	73 | $((end + 1))) msg="truncated record header: 1 of 8 bytes" ;;
	72 | "$end") msg="the stream ends without END" ;;
	*) msg="truncated: body and padding need" ;;
	esac
	invalid_file "$tmp/cut.cst" - "$msg"
done
cut=0
while [ $cut -lt "$full" ]; do
	head -c "$cut" "$s/valid-full.cst" >"$tmp/cut.cst"
	run stream verify --quiet "$tmp/cut.cst"
	expect_rc 1
	cut=$((cut + 1999))
done
for pos in 9 20 30 40 60 90 200 20000 30000 50000 55000 58000 61900 63400 63520 63580 \
	$((end - 3)) $((end + 3)) $((end + 9)) $((end + 13)) $((end + 20)) $((full - 1)); do
	cp "$s/valid-full.cst" "$tmp/flip.cst"
	printf '\252' | dd of="$tmp/flip.cst" bs=1 seek="$pos" conv=notrunc 2>/dev/null
	cmp -s "$s/valid-full.cst" "$tmp/flip.cst" || {
		run stream verify "$tmp/flip.cst"
		last="byte $pos changed"
		expect_rc 1
	}
done

# ---- lengths are capped before anything is allocated --------------------------------------
# A 12 MiB address-space limit leaves no room for a 16 MiB (let alone 4 GiB) buffer.
# Skipped where the binary cannot run in it (sanitizer builds reserve terabytes).
if (ulimit -v 12288 && "$castor" --help) >/dev/null 2>&1; then
	for name in oversize-length max-length-truncated; do
		last="$name under ulimit -v 12288"
		(ulimit -v 12288 && exec "$castor" stream verify "$s/$name.cst") >"$tmp/out" 2>"$tmp/err"
		rc=$?
		expect_rc 1
		expect_in err "offset 72: record "
	done
else
	echo "note: address-space limit checks skipped (the binary does not start under ulimit -v)"
fi

# ---- --json, --quiet, standard input ------------------------------------------------------
run stream verify --json "$s/valid-full.cst"
expect_rc 0
expect_empty err
[ "$(wc -l <"$tmp/out")" = 1 ] || fail "--json is not one line"
json_check 'j["valid"] is True and j["error"] is None and j["offset"] is None'
json_check 'j["records"] == 16 and j["pages"] == 4098 and j["kind"] == 1 and j["ncpus"] == 2'
json_check 'j["mem_bytes"] == 16 << 20 and j["stream_id"] == 0x5eed0000c0ffee01 and j["parent_id"] == 0'
json_check 'j["devices"] == [{"id": "serial0", "kind": "serial"}, {"id": "testdev", "kind": "testdev"}, {"id": "net0", "kind": "virtio-net"}, {"id": "blk0", "kind": "virtio-blk"}]'
run stream verify "$s/valid-incr.cst" --json
expect_rc 0
json_check 'j["kind"] == 2 and j["parent_id"] == 0x5eed0000c0ffee00 and j["records"] == 9'
run stream verify --json "$s/msrs-index.cst"
expect_rc 1
expect_in err "castor: $s/msrs-index.cst: offset 55440: record 0x0011(VCPU_MSRS): "
json_check 'j["valid"] is False and j["offset"] == 55440 and "after VCPU 0" in j["error"]'
json_check 'j["kind"] == 1 and j["ncpus"] == 2 and j["records"] == 4 and j["devices"] == []'
run stream verify --json --quiet "$s/bad-magic.cst"
expect_rc 1
expect_empty err
json_check 'j["valid"] is False and j["offset"] == 0 and j["kind"] is None and j["records"] == 0'
run stream verify -q "$s/valid-full.cst"
expect_rc 0
expect_empty out
expect_empty err
run stream verify --quiet "$s/end-crc.cst"
expect_rc 1
expect_empty out
expect_empty err

last="castor stream verify - <valid-full.cst"
"$castor" stream verify - <"$s/valid-full.cst" >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc 0
expect_in out "-: valid"
last="cat valid-full.cst | castor stream verify -"
cat "$s/valid-full.cst" | "$castor" stream verify - >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc 0
last="cat crc-flip.cst | castor stream verify -"
cat "$s/crc-flip.cst" | "$castor" stream verify - >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc 1
expect_in err "castor: -: offset $end: record 0x00ff(END): checksum"

# ---- dump ----------------------------------------------------------------------------------
run stream dump "$s/valid-full.cst"
expect_rc 0
expect_empty err
[ "$(wc -l <"$tmp/out")" = 16 ] || fail "dump: not one line per record"
expect_in out "0x0001(HEADER)"
expect_in out "revision 1, kind 1 (full), ncpus 2, pgsz 4096, mem_bytes 16777216 (16.0 MiB), stream_id 0x5eed0000c0ffee01"
expect_in out "count 2048: RAW 3 ZERO 2045"
expect_in out "vcpu 1, rip 0x100010, cpl 0, long mode"
expect_in out "vcpu 0, 5 MSRs"
expect_in out "id net0, kind virtio-net"
expect_in out "kvmclock 987654321000 ns"
expect_in out "records 15, checksum 0x"
grep -q "^ *49256  0x0010(VCPU) *6176  vcpu 0, rip 0x100000" "$tmp/out" || fail "dump: VCPU line"
run stream dump "$s/valid-optional.cst"
expect_rc 0
expect_in out "0x80000777(unknown, optional)"
run stream dump "$s/valid-rev2-incr.cst"
expect_rc 0
expect_in out "revision 2, kind 2 (incremental)"
expect_in out "0x0002(PAGES)               8272  count 4: RAW 1 ZERO 1 XOR 1 PATCH 1 (3 words)"
grep -q "0x0003(PAGES_ZSTD) .*count 3: RAW 1 ZERO 1 XOR 1, raw_len 8192 in a zstd frame of [0-9]* bytes" \
	"$tmp/out" || fail "dump: PAGES_ZSTD line"
expect_in out "records 10, checksum 0x"
run stream dump "$s/msrs-index.cst"
expect_rc 1
[ "$(wc -l <"$tmp/out")" = 4 ] || fail "dump: the records before the error"
expect_in err "offset 55440: record 0x0011(VCPU_MSRS): VCPU_MSRS of vCPU 1 after VCPU 0"

# ---- the command line ------------------------------------------------------------------------
run stream
expect_rc 2
expect_in err "castor: stream: missing command"
run stream verify
expect_rc 2
expect_in err "castor: stream verify: missing FILE"
run stream verify a b
expect_rc 2
expect_in err "unexpected argument 'b'"
run stream verify --bogus "$s/valid-full.cst"
expect_rc 2
expect_in err "unknown option '--bogus'"
run stream frob "$s/valid-full.cst"
expect_rc 2
expect_in err "castor: stream: unknown command 'frob'"
run stream dump --json "$s/valid-full.cst"
expect_rc 2
expect_in err "--json applies to 'stream verify' only"
run stream verify "$tmp/nonexistent"
expect_rc 1
expect_in err "castor: cannot open $tmp/nonexistent: No such file or directory"
run stream --help
expect_rc 0
expect_in out "usage: castor stream <command> FILE"
run --help
expect_in out "stream "

if [ "$fails" != 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
