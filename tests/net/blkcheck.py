#!/usr/bin/env python3
"""Check a disk image against the test guest's disk rule (abi.h tg_blk_word()).

  blkcheck.py IMAGE --first SECTOR --count N --seed S [--generation G --next B]

Block b (TG_BLK_BLOCK = 4096 bytes at sector first + 8 b) written in pass g
holds 512 little-endian words: w0 = b ^ seed, w1 = g, w[i] = tg_mix(seed ^
b << 24 ^ g << 8 ^ i); pass 0 is an all-zero block. Every block must hold
some pass, and the passes must read "a prefix at pass G, the rest at G - 1".

With --generation/--next (io_state's blk_generation and blk_next, read while
the guest was stopped) the check is exact: blocks before B at pass G, blocks
after B at pass G - 1, block B at either; and, since the guest stores
blk_next = 0 before blk_generation = G + 1, B = 0 also allows every block at
pass G.

Exit 0 with a one-line summary, 1 with the first bad block, 2 on usage errors.
"""
import argparse
import struct
import sys

BLOCK = 4096
WORDS = BLOCK // 8
M64 = (1 << 64) - 1


def tg_mix(x):
    x = (x + 0x9e3779b97f4a7c15) & M64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def expected(b, g, seed):
    if g == 0:
        return [0] * WORDS
    key = seed ^ ((b << 24) & M64) ^ ((g << 8) & M64)
    return [b ^ seed, g] + [tg_mix(key ^ i) for i in range(2, WORDS)]


def block_pass(words, b, seed):
    """The pass the block holds, or an error message."""
    g = 0 if not any(words) else words[1]
    want = expected(b, g, seed)
    for i, (have, w) in enumerate(zip(words, want)):
        if have != w:
            return None, "word %d = %#x, want %#x for pass %d" % (i, have, w, g)
    return g, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image")
    ap.add_argument("--first", type=int, required=True, help="first sector of the area")
    ap.add_argument("--count", type=int, required=True, help="blocks")
    ap.add_argument("--seed", type=lambda s: int(s, 0), required=True)
    ap.add_argument("--generation", type=int, help="io_state blk_generation")
    ap.add_argument("--next", type=int, help="io_state blk_next")
    args = ap.parse_args()
    if (args.generation is None) != (args.next is None):
        ap.error("--generation and --next go together")
    if args.count < 1 or args.first < 0:
        ap.error("bad --first or --count")

    passes = []
    with open(args.image, "rb") as f:
        for b in range(args.count):
            f.seek((args.first + 8 * b) * 512)
            data = f.read(BLOCK)
            if len(data) != BLOCK:
                print("blkcheck: FAIL: block %d: the image ends at %d bytes" % (b, f.tell()))
                return 1
            g, why = block_pass(struct.unpack("<%dQ" % WORDS, data), b, args.seed)
            if why:
                print("blkcheck: FAIL: block %d (sector %d): %s"
                      % (b, args.first + 8 * b, why))
                return 1
            passes.append(g)

    top = max(passes)
    # "A prefix at pass top, the rest at top - 1": non-increasing, two values at most.
    for b, g in enumerate(passes):
        if g not in (top, top - 1) or (b and g > passes[b - 1]):
            print("blkcheck: FAIL: block %d holds pass %d after block %d at pass %d "
                  "(highest pass %d)" % (b, g, b - 1 if b else 0,
                                         passes[b - 1] if b else g, top))
            return 1
    prefix = sum(1 for g in passes if g == top)

    if args.generation is not None:
        G, B = args.generation, args.next
        transient = B == 0 and all(g == G for g in passes)
        for b, g in enumerate(passes):
            if transient:
                break
            want = (G,) if b < B else (G - 1,) if b > B else (G, G - 1)
            if G - 1 < 0 or g not in want:
                print("blkcheck: FAIL: block %d holds pass %d; io_state (generation %d, "
                      "next %d) says %s" % (b, g, G, B, " or ".join(map(str, want))))
                return 1

    rest = "" if prefix == args.count else ", blocks %d..%d at pass %d" % (
        prefix, args.count - 1, top - 1)
    print("blkcheck: %d blocks OK: blocks 0..%d at pass %d%s%s" % (
        args.count, prefix - 1, top, rest,
        "" if args.generation is None else
        " (io_state: generation %d, next %d)" % (args.generation, args.next)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
