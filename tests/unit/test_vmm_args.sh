#!/bin/sh
# castor-vmm's command line, checked without a VM (no /dev/kvm needed): every
# command refuses the options that mean nothing to it by name, a missing value
# is named as such, and what each command requires is asked for.
#   test_vmm_args.sh CASTOR_VMM
set -u
vmm=$1
tmp=$(mktemp -d /tmp/castor-test-vmm-args.XXXXXX)
fails=0
trap 'rm -rf "$tmp"' EXIT

# bad ARGS... -- EXPECTED: exit 2 and EXPECTED (fixed string) on stderr
bad() {
	args=
	while [ "$1" != "--" ]; do
		args="$args $1"
		shift
	done
	shift
	# shellcheck disable=SC2086
	"$vmm" $args >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" != 2 ]; then
		echo "FAIL: castor-vmm$args: exit status $rc, expected 2 ($(head -c 300 "$tmp/err"))"
		fails=$((fails + 1))
	elif ! grep -qF -- "$1" "$tmp/err"; then
		echo "FAIL: castor-vmm$args: stderr lacks '$1': $(head -c 300 "$tmp/err")"
		fails=$((fails + 1))
	fi
}

c="--control $tmp/c.sock"
r="replica --listen 127.0.0.1:0 $c"
g="run --mem 32M --cpus 1 --test-guest $c"

bad -- "missing command"
bad nonsense -- "unknown command 'nonsense'"
# the replica takes its guest and its session's options from the primary
bad $r --mode output -- "--mode does not apply to 'castor-vmm replica'"
bad $r --interval 10 -- "--interval does not apply to 'castor-vmm replica'"
bad $r --verify -- "--verify does not apply to 'castor-vmm replica'"
bad $r --min-spacing 2 -- "--min-spacing does not apply"
bad $r --max-dirty 100 -- "--max-dirty does not apply"
bad $r --exact-dirty -- "--exact-dirty does not apply"
bad $r --mem 32M -- "--mem does not apply to 'castor-vmm replica'"
bad $r --test-guest -- "--test-guest does not apply"
bad $r --protect 127.0.0.1:1 -- "--protect does not apply"
bad replica $c -- "--listen HOST:PORT is required"
bad replica --listen nocolon $c -- "--listen:"
# links off loopback need a key (or --insecure); a replica with valid arguments
# would start listening, so only the refusals are checked here
bad replica --listen 10.1.2.3:7000 $c -- "--listen 10.1.2.3:7000 is not a loopback address and there is no key"
bad replica --listen 0.0.0.0:7000 $c -- "is not a loopback address"
bad replica --listen [::]:7000 $c -- "is not a loopback address"
bad $g --protect 192.0.2.1:7000 -- "--protect 192.0.2.1:7000 is not a loopback address"
bad $r --encrypt -- "--encrypt needs --key FILE"
key=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
printf '%s\n' $key >"$tmp/k"
chmod 600 "$tmp/k"
bad $r --key "$tmp/k" --insecure -- "--insecure with --key"
bad $r --key "$tmp/none" -- "--key: key file $tmp/none"
cp "$tmp/k" "$tmp/k644"
chmod 644 "$tmp/k644"
bad $r --key "$tmp/k644" -- "key file $tmp/k644: mode 0644"
ln -s "$tmp/k" "$tmp/klink"
bad $r --key "$tmp/klink" -- "key file $tmp/klink: a symbolic link"
printf 'xyz\n' >"$tmp/kbad"
chmod 600 "$tmp/kbad"
bad $r --key "$tmp/kbad" -- "key file $tmp/kbad: not a key"
# run
bad $g --listen 127.0.0.1:1 -- "--listen does not apply to 'castor-vmm run'"
bad $g --interval 5 -- "need --protect HOST:PORT"
bad $g --verify -- "need --protect HOST:PORT"
bad $g --protect nocolon -- "--protect:"
bad $g --protect 127.0.0.1:1 --rpo 1000 -- "--rpo goes with --mode async"
bad $g --protect 127.0.0.1:1 --mode async --rpo 0 -- "--rpo"
bad $g --protect 127.0.0.1:1 --max-mbit 0 -- "--max-mbit: '0' is not a rate in Mbit/s (1-100000)"
bad $g --protect 127.0.0.1:1 --max-mbit 100001 -- "--max-mbit: '100001' is not a rate"
bad $g --max-mbit 20 -- "--max-mbit, --verify and --exact-dirty need --protect HOST:PORT"
bad $g --protect 127.0.0.1:1 --mode sync -- "--mode: 'sync' is not interval, output or async"
bad $g --protect 127.0.0.1:1 --mode output --interval 5 --min-spacing 10 -- \
	"--min-spacing is longer than --interval"
bad run --mem 32M --cpus 1 $c -- "give the guest: --test-guest or --kernel FILE"
bad run --cpus 1 --test-guest $c -- "--mem is required"
bad run --mem 32M --cpus 1 --test-guest -- "--control PATH is required"
bad $g --mem -- "option '--mem' needs a value"
bad $g --test-cut-after 5 -- "unknown option '--test-cut-after'"
bad $g --repl-nice 20 -- "--repl-nice: '20' is not a nice value"
bad $g --repl-rt 100 -- "--repl-rt: '100' is not a real-time priority"
bad $g --interval 0 -- "is not a number of milliseconds"
bad $g extra -- "unexpected argument 'extra'"
# run --kernel: the files are read and checked before any VM exists
k="run --mem 64M --cpus 1 $c --kernel"
bad $g --kernel /x -- "--test-guest and --kernel exclude each other"
bad $g --initrd /x -- "--initrd and --cmdline go with --kernel"
bad $g --cmdline quiet -- "--initrd and --cmdline go with --kernel"
bad restore --snapshot x $c --kernel /x -- "--kernel does not apply to 'castor-vmm restore'"
bad $k "$tmp/none" -- "kernel $tmp/none: No such file or directory"
bad $k "$tmp" -- "kernel $tmp: not a regular file"
: >"$tmp/empty"
bad $k "$tmp/empty" -- "kernel $tmp/empty: the file is empty"
head -c 8192 /dev/urandom >"$tmp/junk"
printf 'not a kernel' | dd of="$tmp/junk" conv=notrunc 2>/dev/null
bad $k "$tmp/junk" -- "neither an ELF vmlinux nor a bzImage"
# kernels made to the boot protocol and the ELF spec (python3 is a build dependency)
python3 - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
b = bytearray(64 * 1024)
b[0x1f1] = 4                                   # setup_sects
struct.pack_into("<H", b, 0x1fe, 0xaa55)
b[0x201] = 0x6a
b[0x202:0x206] = b"HdrS"
struct.pack_into("<H", b, 0x206, 0x020f)       # protocol 2.15
b[0x211] = 1                                   # LOADED_HIGH
struct.pack_into("<I", b, 0x22c, 0x7fffffff)   # initrd_addr_max
struct.pack_into("<H", b, 0x236, 1)            # XLF_KERNEL_64
struct.pack_into("<I", b, 0x238, 2047)         # cmdline_size
struct.pack_into("<Q", b, 0x258, 0x1000000)    # pref_address
struct.pack_into("<I", b, 0x260, 1 << 20)      # init_size
open(d + "/bz", "wb").write(b)
open(d + "/bz-cut", "wb").write(b[:0x240])
old = bytearray(b); struct.pack_into("<H", old, 0x206, 0x020a)
open(d + "/bz-old", "wb").write(old)
k32 = bytearray(b); struct.pack_into("<H", k32, 0x236, 0)
open(d + "/bz-32", "wb").write(k32)
e = bytearray(4096)
e[0:4] = b"\x7fELF"; e[4] = 1; e[5] = 1       # ELFCLASS32
open(d + "/elf32", "wb").write(e)
PY
bad $k "$tmp/bz-cut" -- "the setup header ends at byte 620, past the end of the file (576 bytes): truncated"
bad $k "$tmp/bz-old" -- "boot protocol 2.10 is older than 2.12"
bad $k "$tmp/bz-32" -- "XLF_KERNEL_64 unset"
bad $k "$tmp/elf32" -- "not a 64-bit little-endian file"
truncate -s 80M "$tmp/initrd"
bad $k "$tmp/bz" --initrd "$tmp/initrd" -- "the initrd (80 MiB) is larger than the guest's RAM (64 MiB)"
bad $k "$tmp/bz" --initrd "$tmp/empty" -- "initrd $tmp/empty: the file is empty"
bad $k "$tmp/bz" --cmdline "$(head -c 3000 /dev/zero | tr '\0' x)" -- \
	"the command line is 3000 bytes; this kernel takes at most 2047"
bad run --mem 16M --cpus 1 $c --kernel "$tmp/bz" -- "the kernel needs RAM up to 17 MiB"
# restore and standby
bad restore $c -- "--snapshot FILE is required"
bad restore --snapshot x $c --mem 32M -- "--mem does not apply to 'castor-vmm restore'"
bad standby --mem 32M --cpus 1 $c --snapshot x -- "--snapshot does not apply to 'castor-vmm standby'"
bad standby --mem 32M --cpus 1 $c --paused -- "give --paused to 'castor vm restore'"
bad standby $c -- "a standby needs --mem and --cpus"
# the test hook is not an option; a bad value in the environment is still refused
CASTOR_TEST_CUT_AFTER=lots bad $g -- "CASTOR_TEST_CUT_AFTER: 'lots' is not a byte count"
CASTOR_TEST_POSTCOPY_CUT=0 bad $g -- "CASTOR_TEST_POSTCOPY_CUT: '0' is not a page count"

# disks are locked for the process's life, before any VM exists: a writable one exclusively
# (another writer or reader is refused), a read-only one shared (readers may share it)
: >"$tmp/img"
truncate -s 1M "$tmp/img"
# locked(MODE EXPECT ARGS...): castor-vmm with ARGS while flock MODE holds $tmp/img
locked() {
	mode=$1 expect=$2
	shift 2
	# the holder is the process that holds the lock: killing it frees the image
	(
		exec 9<"$tmp/img"
		flock "$mode" 9
		exec sleep 30
	) &
	holder=$!
	sleep 0.3
	"$vmm" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
	if [ "$expect" = busy ] && { [ "$rc" != 1 ] || ! grep -qF "disk $tmp/img is in use" "$tmp/err"; }; then
		echo "FAIL: castor-vmm $* with flock $mode held: exit $rc, $(head -c 300 "$tmp/err")"
		fails=$((fails + 1))
	elif [ "$expect" = free ] && grep -qF "is in use" "$tmp/err"; then
		echo "FAIL: castor-vmm $* with flock $mode held: refused: $(head -c 300 "$tmp/err")"
		fails=$((fails + 1))
	fi
}
# shellcheck disable=SC2086
locked -s busy $g --disk "$tmp/img"
# shellcheck disable=SC2086
locked -x busy $g --disk "$tmp/img,ro"
# shellcheck disable=SC2086
locked -s free $g --disk "$tmp/img,ro"
# shellcheck disable=SC2086
locked -x busy $r --disk "$tmp/img"

"$vmm" --help >"$tmp/out" 2>&1 && grep -qF "castor ha protect" "$tmp/out" ||
	{ echo "FAIL: castor-vmm --help"; fails=$((fails + 1)); }

[ "$fails" = 0 ] && echo "castor-vmm arguments: all checks passed" && exit 0
echo "$fails failed"
exit 1
