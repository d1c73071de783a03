#!/usr/bin/env python3
"""List every entry of an initramfs as the kernel unpacks it: gzip'd newc
archives, possibly several concatenated (zero padding between them), where
GNU `cpio -t` stops at the first TRAILER!!!.

  cpio_list.py FILE.cpio.gz   ->  one line per entry: MODE(octal) NAME [MAJ:MIN]

Exit 1 with a message on a malformed archive.
"""
import gzip
import sys


def entries(data):
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding between archives
            pos += 1
            continue
        hdr = data[pos:pos + 110]
        if len(hdr) < 110 or hdr[:6] != b"070701":
            raise ValueError("no newc header at offset %d" % pos)
        f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
        if name != "TRAILER!!!":
            yield mode, name[2:] if name.startswith("./") else name, rmaj, rmin


def main():
    try:
        with gzip.open(sys.argv[1]) as f:
            data = f.read()
        for mode, name, rmaj, rmin in entries(data):
            dev = " %d:%d" % (rmaj, rmin) if mode & 0o170000 in (0o020000, 0o060000) else ""
            print("%o %s%s" % (mode, name, dev))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print("cpio_list.py: %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
