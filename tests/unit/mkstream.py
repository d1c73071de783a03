#!/usr/bin/env python3
"""Castor streams built by hand from docs/stream-format.md (revisions 1 and 2), valid
and broken, for test_stream_verify.sh. Nothing here comes from hypervisor/stream.c,
replication/codec*.c or the verifier: the point is a third reading of the spec.
Compressed zstd frames come from python3-zstandard, or the zstd command where that
module is missing; the malformed frames are put together by hand (RFC 8878).

usage: mkstream.py OUTDIR    write OUTDIR/NAME.cst for every case in CASES
       mkstream.py --list    print the case names, valid ones first
"""
import os
import struct
import subprocess
import sys

MAGIC = 0x4D52545352545343  # "CSTRSTRM" read as a little-endian u64
REC_F_OPTIONAL = 0x80000000
REC_MAX_LEN = 16 * 1024 * 1024 + 65536  # holds the largest PAGES record (revision 1, corrected)

HEADER, PAGES, PAGES_ZSTD, VCPU, VCPU_MSRS = 0x0001, 0x0002, 0x0003, 0x0010, 0x0011
IRQCHIP, PIT, CLOCK, DEVICE, END = 0x0020, 0x0021, 0x0022, 0x0030, 0x00FF
RAW, ZERO, XOR, PATCH = 0, 1, 2, 3

MEM = 16 << 20  # the standard test VM: 16 MiB, 4096 pages
NPAGES = MEM // 4096
SID = 0x5EED0000C0FFEE01
PARENT = 0x5EED0000C0FFEE00

# ---- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 -------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


# ---- records ----------------------------------------------------------------------


class Rec:
    """One record as bytes (header, body, padding) and the page entries it holds."""

    def __init__(self, rtype, body, pages=0, dirty_pad=False):
        padding = bytearray((8 - len(body) % 8) % 8)
        if dirty_pad:  # the last padding byte not 0
            padding[-1] = 1
        self.data = struct.pack("<II", rtype, len(body)) + body + bytes(padding)
        self.pages = pages


def header(kind=1, ver=1, ncpus=2, pgsz=4096, mem=MEM, sid=SID, parent=0,
           created=1795310000123456789, reserved=0, magic=MAGIC, extra=b""):
    body = struct.pack("<QIIIIQQQQQ", magic, ver, kind, ncpus, pgsz, mem, sid,
                       parent, created, reserved)
    assert len(body) == 64
    return Rec(HEADER, body + extra)


def page_payload(pfn):
    return bytes((pfn * 7 + i) & 0xFF for i in range(256)) * 16


def default_payload(pfn, enc):
    if enc == RAW:
        return page_payload(pfn)
    if enc == XOR:  # a sparse delta: a few bytes differ from the receiver's copy
        return bytes(1000) + bytes([pfn & 0xFF | 1]) * 24 + bytes(3072)
    if enc == PATCH:
        return patch([(3, [0x1111, 0x2222]), (100, [pfn])])
    return b""


def pages(entries, count=None, reserved=0, extra=b"", cut=0):
    """entries: (pfn, encoding[, reserved bits[, payload]]); RAW and XOR pages get a
    4096-byte payload, PATCH a small patch, unless the payload is given."""
    table = [struct.pack("<II", len(entries) if count is None else count, reserved)]
    payload = []
    for e in entries:
        pfn, enc = e[0], e[1]
        rsv = e[2] if len(e) > 2 else 0
        table.append(struct.pack("<Q", pfn | rsv << 52 | enc << 60))
        payload.append(e[3] if len(e) > 3 else default_payload(pfn, enc))
    body = b"".join(table + payload) + extra
    if cut:
        body = body[:-cut]
    return Rec(PAGES, body, pages=len(entries))


# ---- revision 2 (§9): PATCH payloads and PAGES_ZSTD ----------------------------------


def patch(runs, nruns=None, nwords=None, pad=0):
    """A PATCH payload: runs is [(first word, [new values])]; nruns and nwords override
    the counts written, pad the 4 padding bytes after an odd number of runs."""
    values = [v for _, vals in runs for v in vals]
    out = struct.pack("<II", len(runs) if nruns is None else nruns,
                      len(values) if nwords is None else nwords)
    for first, vals in runs:
        out += struct.pack("<HH", first, len(vals))
    if len(runs) % 2:
        out += struct.pack("<I", pad)
    return out + b"".join(struct.pack("<Q", v) for v in values)


def zstd_compress(data):
    """One zstd frame of data, with Frame_Content_Size and a content checksum."""
    try:
        import zstandard
        return zstandard.ZstdCompressor(level=3, write_content_size=True,
                                        write_checksum=True).compress(data)
    except ImportError:
        return subprocess.run(["zstd", "-q", "-c", "-3", "--stream-size=%d" % len(data)],
                              input=data, stdout=subprocess.PIPE, check=True).stdout


ZSTD_MAGIC = 0xFD2FB528


def zstd_raw_frame(data, fcs=None, with_fcs=True, dict_id=0, magic=ZSTD_MAGIC):
    """A frame by hand (RFC 8878 §3.1.1): raw blocks of up to 128 KiB, no checksum.
    fcs: the Frame_Content_Size written (default len(data)); with_fcs False leaves it out
    (a Window_Descriptor of 16 MiB instead); dict_id: a 1-byte Dictionary_ID."""
    fhd = 1 if dict_id else 0
    if with_fcs:
        head = bytes([2 << 6 | 1 << 5 | fhd])  # 4-byte FCS, Single_Segment
        head += bytes([dict_id]) if dict_id else b""
        head += struct.pack("<I", len(data) if fcs is None else fcs)
    else:
        head = bytes([fhd, 14 << 3]) + (bytes([dict_id]) if dict_id else b"")
    blocks = b""
    chunks = [data[i:i + 128 * 1024] for i in range(0, len(data), 128 * 1024)] or [b""]
    for i, chunk in enumerate(chunks):
        last = 1 if i == len(chunks) - 1 else 0
        blocks += struct.pack("<I", len(chunk) << 3 | last)[:3] + chunk
    return struct.pack("<I", magic) + head + blocks


def pages_zstd(entries, count=None, reserved=0, raw_len=None, frame=None, tail=b"",
               rtype=PAGES_ZSTD):
    """entries: (pfn, encoding[, reserved bits]); the payloads of RAW and XOR entries,
    compressed as one frame unless frame is given; tail follows the frame."""
    table = struct.pack("<II", len(entries) if count is None else count, reserved)
    raw = b""
    for e in entries:
        rsv = e[2] if len(e) > 2 else 0
        table += struct.pack("<Q", e[0] | rsv << 52 | e[1] << 60)
        if e[1] != PATCH:
            raw += default_payload(e[0], e[1])
    frame = zstd_compress(raw) if frame is None else frame
    body = table + struct.pack("<Q", len(raw) if raw_len is None else raw_len) + frame + tail
    return Rec(rtype, body, pages=len(entries))


def header2(**hdr):
    """A revision-2 incremental HEADER unless told otherwise."""
    hdr.setdefault("ver", 2)
    hdr.setdefault("kind", 2)
    hdr.setdefault("parent", PARENT if hdr["kind"] == 2 else 0)
    hdr.setdefault("ncpus", 1)
    return header(**hdr)


def epoch2(*batches, **hdr):
    """A revision-2 epoch: HEADER, the batches, one vCPU's state and a serial port."""
    h = header2(**hdr)
    return [h] + list(batches) + state(hdr.get("ncpus", 1), [device("serial0")])


def zbatch(*entries, **kw):
    return epoch2(pages_zstd(list(entries), **kw))


def pbatch(*entries, **kw):
    return epoch2(pages(list(entries), **kw))


def patched(payload, pfn=5):
    return pbatch((pfn, PATCH, 0, payload))


TWO_RAW = [(9, RAW), (10, RAW)]


def full2():
    """A revision-2 full stream: the first half of the pages in PAGES, the rest in PAGES_ZSTD."""
    ents = [(p, RAW if p in (0, 1, 2, 4095) else ZERO) for p in range(NPAGES)]
    half = len(ents) // 2
    return ([header2(kind=1, ncpus=2), pages(ents[:half]), pages_zstd(ents[half:])] +
            state(2))


def bound(n):
    """A one-page VM whose stream sends pfn 0 n times in one frame: decoded, it grows by
    4096 x n less the frame, against a bound of the wire size + 2 x 4096."""
    return stream([header2(kind=1, mem=4096), pages_zstd([(0, RAW)] * n)] + state(1, []))


def vcpu(index, length=6176, rsvd1=0, rsvd2=0):
    b = bytearray(6176)
    struct.pack_into("<II", b, 0, index, rsvd1)
    regs, sregs = 8, 152
    struct.pack_into("<QQ", b, regs + 128, 0x100000 + 0x10 * index, 0x2)  # rip, rflags
    struct.pack_into("<Q", b, sregs + 224, 0x80000011)  # cr0: PG, ET, PE
    struct.pack_into("<Q", b, sregs + 264, 0x500)  # efer: LMA, LME
    struct.pack_into("<H", b, sregs + 0 + 12, 0x08)  # cs.selector
    struct.pack_into("<H", b, sregs + 120 + 12, 0x10)  # ss.selector; ss.dpl (+16) stays 0
    struct.pack_into("<I", b, 6168, 0)  # mp_state: RUNNABLE
    struct.pack_into("<I", b, 6172, rsvd2)
    if length < 6176:
        b = b[:length]
    else:
        b += bytes(length - 6176)
    return Rec(VCPU, bytes(b))


STD_MSRS = [(0x10, 123456789), (0x174, 0x8), (0xC0000080, 0x500), (0xC0000081, 0),
            (0xC0000082, 0xFFFFFFFF81000000)]


def msrs(index, entries=None, count=None, rsvd=0, extra=b""):
    entries = STD_MSRS if entries is None else entries
    body = struct.pack("<II", index, len(entries) if count is None else count)
    for i, (msr, val) in enumerate(entries):
        body += struct.pack("<IIQ", msr, rsvd if i == 1 else 0, val)
    return Rec(VCPU_MSRS, body + extra)


def irqchip(ids=(0, 1, 2), length=1560):
    b = bytearray(1560)
    for i, cid in enumerate(ids):
        struct.pack_into("<I", b, 520 * i, cid)
    struct.pack_into("<Q", b, 1040 + 8, 0xFEC00000)  # IOAPIC base_address
    return Rec(IRQCHIP, bytes(b[:length]) + bytes(max(0, length - 1560)))


def pit(length=112):
    b = bytearray(112)
    struct.pack_into("<I", b, 0, 0x10000)  # channel 0 count
    b[13] = 2  # channel 0 mode
    return Rec(PIT, bytes(b[:length]) + bytes(max(0, length - 112)))


def clock(length=48):
    b = struct.pack("<QI", 987654321000, 0) + bytes(36)
    return Rec(CLOCK, b[:length] + bytes(max(0, length - 48)))


# ---- protobuf, by hand: just enough of castor.DeviceState ---------------------------


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_varint(field, n):
    return varint(field << 3 | 0) + varint(n)


def pb_bytes(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def device_body(dev_id, kind="serial"):
    body = pb_bytes(1, dev_id.encode()) if dev_id is not None else b""
    if kind == "serial":  # SerialState: ier, lcr, mcr
        body += pb_bytes(10, pb_varint(1, 1) + pb_varint(2, 3) + pb_varint(3, 0xB))
    elif kind == "testdev":  # TestDevState: vcpu { next_seq, ready }, mbox_seq
        body += pb_bytes(11, pb_bytes(1, pb_varint(1, 42) + pb_varint(4, 1)) + pb_varint(4, 7))
    elif kind in ("net", "blk"):  # VirtioMmioState with a queue and its device model
        queue = pb_bytes(10, pb_varint(1, 256) + pb_varint(2, 1) + pb_varint(5, 0x123000))
        if kind == "net":
            model = pb_bytes(20, pb_bytes(1, bytes.fromhex("525400123456")))
            base = pb_varint(1, 1) + pb_varint(2, 0xD0000000)
        else:
            model = pb_bytes(21, pb_varint(1, 131072))
            base = pb_varint(1, 2) + pb_varint(2, 0xD0001000)
        body += pb_bytes(12, base + pb_varint(3, 0xF) + queue + model)
    return body


def device(dev_id, kind="serial", body=None, dirty_pad=False):
    return Rec(DEVICE, device_body(dev_id, kind) if body is None else body,
               dirty_pad=dirty_pad)


# ---- streams ------------------------------------------------------------------------


def end(records, crc, pages_, reserved=0, length=24):
    body = struct.pack("<QIIQ", records, crc, reserved, pages_)
    return Rec(END, body[:length] + bytes(max(0, length - 24)))


def stream(recs, records=None, crc=None, pages_=None, reserved=0, end_length=24,
           with_end=True):
    """The records, then an END computed from them (or with the fields given)."""
    data = b"".join(r.data for r in recs)
    if not with_end:
        return data
    e = end(len(recs) if records is None else records,
            crc32c(data) if crc is None else crc,
            sum(r.pages for r in recs) if pages_ is None else pages_,
            reserved, end_length)
    return data + e.data


def full_pages(skip=()):
    """Every page of the 16 MiB VM in two batches; a few RAW, the rest ZERO."""
    ents = [(p, RAW if p in (0, 1, 2, 4095) else ZERO) for p in range(NPAGES) if p not in skip]
    half = len(ents) // 2
    return [pages(ents[:half]), pages(ents[half:])]


def state(ncpus=2, devices=None):
    out = []
    for i in range(ncpus):
        out += [vcpu(i), msrs(i)]
    out += [irqchip(), pit(), clock()]
    if devices is None:
        devices = [device("serial0", "serial"), device("testdev", "testdev"),
                   device("net0", "net"), device("blk0", "blk")]
    return out + devices


def full(**hdr):
    """HEADER, every page, the state, and two pages sent again after it (later copy wins)."""
    ncpus = hdr.get("ncpus", 2)
    return [header(**hdr)] + full_pages() + state(ncpus) + [pages([(1, RAW), (7, ZERO)])]


def incremental(**hdr):
    hdr.setdefault("kind", 2)
    hdr.setdefault("parent", PARENT)
    hdr.setdefault("ncpus", 1)
    return ([header(**hdr)] + state(hdr["ncpus"], [device("serial0")]) +
            [pages([(5, RAW), (9, RAW), (100, ZERO)])])


def replace(recs, index, *new):
    return recs[:index] + list(new) + recs[index + 1:]


def insert(recs, index, *new):
    return recs[:index] + list(new) + recs[index:]


# Positions in full(): 0 HEADER, 1-2 PAGES, 3 VCPU0, 4 MSRS0, 5 VCPU1, 6 MSRS1,
# 7 IRQCHIP, 8 PIT, 9 CLOCK, 10-13 DEVICE, 14 PAGES
F = full()
I_VCPU0, I_MSRS0, I_VCPU1, I_MSRS1, I_IRQ, I_PIT, I_CLOCK, I_DEV0, I_TAIL = \
    3, 4, 5, 6, 7, 8, 9, 10, 14


def opt_rec(body=b"future\x00"):
    return Rec(REC_F_OPTIONAL | 0x0777, body)


def flip_in_raw_payload():
    data = bytearray(stream(F))
    # the first RAW payload of the first PAGES record: after HEADER (72), its
    # 8-byte record header, count/reserved and 2048 entries
    pos = 72 + 8 + 8 + 8 * 2048 + 100
    data[pos] ^= 0x01
    return bytes(data)


def raw_batch(n):
    return stream([header(), pages([(p, RAW) for p in range(n)])], with_end=False)


# ---- captured replication connections (§8-§8.2): the primary's side ------------------

HELLO_MAGIC, PROOF_MAGIC = 0x4F4C454852545343, 0x464F525052545343
EPCH, PING, BYE = 0x4843504552545343, 0x474E495052545343, 0x2145594252545343
SWITCH = 0x4843575352545343  # "CSTRSWCH": a live migration's handover (§8.3)
S0, S1, S2 = 0x5EED000000000A00, 0x5EED000000000A01, 0x5EED000000000A02


def hello(flags=0, version=2, mem=MEM, ncpus=2, reserved=0, nonce=None):
    if nonce is None:
        nonce = bytes(range(1, 33)) if flags & 1 else bytes(32)
    return struct.pack("<QIIQII", HELLO_MAGIC, version, flags, mem, ncpus, reserved) + nonce


def frame(magic, body=b"", length=None):
    return struct.pack("<QQ", magic, len(body) if length is None else length) + body


def epochs(parent1=S0, first_kind=1):
    """Epoch 0 the full stream (the initial copy), then two incrementals, chained."""
    e0 = stream(full(sid=S0, kind=first_kind, parent=0 if first_kind == 1 else PARENT))
    e1 = stream(incremental(sid=S1, parent=parent1, ncpus=2))
    e2 = stream(incremental(sid=S2, parent=S1, ncpus=2))
    return [frame(EPCH, e0), frame(PING), frame(EPCH, e1), frame(EPCH, e2)]


DISK = 0x4B53494452545343  # "CSTRDISK": a protected VM's disk writes (§8.4)


def drec(rtype, epoch, disk, tail=b""):
    """A §10 record: {u32 type, u32 length, body, zero pad to 8}."""
    body = struct.pack("<QI", epoch, disk) + tail
    return struct.pack("<II", rtype, len(body)) + body + bytes((8 - len(body) % 8) % 8)


def dwrite(epoch, disk=0, offset=0, data=b"\xaa" * 512):
    return drec(0x50, epoch, disk, struct.pack("<IQ", 0, offset) + data)


def dseal(epoch, disk=0, ops=1, nbytes=512):
    return drec(0x53, epoch, disk, struct.pack("<IQQ", 0, ops, nbytes))


def disk_epochs(seal1=True, epoch_of_write1=1):
    """epochs() with a disk: epoch 0 its initial copy and seal, epoch 1 a write, epoch 2 none."""
    e = epochs()
    return [frame(DISK, dwrite(0) + dseal(0)), e[0], e[1],
            frame(DISK, dwrite(epoch_of_write1, offset=4096) + (dseal(1) if seal1 else b"")),
            e[2], frame(DISK, dseal(2, ops=0, nbytes=0)), e[3]]


# ---- postcopy (§8.6): POSTCOPY before the switch's epoch, PAGEs and END after SWITCH ----
PCPY, PAGE, PEND = 0x5950435052545343, 0x4547415052545343, 0x444E455052545343


def pcmsg(magic, value, flags=0, data=b""):
    return struct.pack("<QQII", magic, value, flags, 0) + data


def postcopy_frame(named, pages=MEM // 4096):
    words = [0] * ((pages + 63) // 64)
    for p in named:
        words[p // 64] |= 1 << (p % 64)
    return frame(PCPY, struct.pack("<Q", pages) + b"".join(struct.pack("<Q", w) for w in words))


def pc_pages(sent, zero=()):
    return b"".join(pcmsg(PAGE, p, 1) if p in zero else pcmsg(PAGE, p, 0, bytes([p & 0xFF]) * 4096)
                    for p in sent)


def postcopy(named=(3, 5, 700), sent=None, zero=(5,), end=None, pc=None, flags=8, order=None,
             tail=True):
    """A migration that switches to postcopy before its last epoch: e0, e1, POSTCOPY, e2,
    SWITCH, the named pages (zero pages as a flag), END."""
    e = epochs()
    sent = named if sent is None else sent
    pcf = postcopy_frame(named) if pc is None else pc
    frames = order(e, pcf) if order else [e[0], e[1], e[2], pcf, e[3], frame(SWITCH)]
    out = hello(flags) + b"".join(frames)
    if tail:
        out += pc_pages(sent, zero) + pcmsg(PEND, len(sent) if end is None else end)
    return out


def session(frames, flags=0, bye=True, switch=False, **kw):
    return (hello(flags, **kw) + b"".join(frames) + (frame(BYE) if bye else b"") +
            (frame(SWITCH) if switch else b""))


def sealed(frames, flags=1, chunk=1000, bad_length=None):
    """A keyed session: PROOF, then the frames as one byte stream cut into sealed records
    (u32 length, body, a 16-byte tag -- zeros here: checking tags takes the key)."""
    data = b"".join(frames) + frame(BYE)
    out = hello(flags) + struct.pack("<Q", PROOF_MAGIC) + bytes(32)
    for i in range(0, len(data), chunk):
        body = data[i:i + chunk]
        n = len(body) if bad_length is None or i else bad_length
        out += struct.pack("<I", n) + body + bytes(16)
    return out


CASES = {
    # ---- valid ----
    "valid-full": lambda: stream(F),
    "valid-incr": lambda: stream(incremental()),
    "valid-optional": lambda: stream(
        insert(insert(insert(insert(F, len(F), opt_rec(b"x" * 13)), I_CLOCK + 1, opt_rec()),
                      I_MSRS0, opt_rec(b"")), 1, opt_rec())),
    "valid-tiny": lambda: stream([header(ncpus=1, mem=4096), pages([(0, ZERO)])] +
                                 state(1, [])),
    "valid-8cpu": lambda: stream([header(ncpus=8, mem=8192), pages([(1, RAW), (0, ZERO)])] +
                                 state(8)),
    "valid-tail-only": lambda: stream([header()] + state() + full_pages()),
    "valid-raw-max": lambda: stream([header(mem=4096 * 4096, ncpus=1)] +
                                    [pages([(p, RAW) for p in range(4096)])] + state(1)),
    # ---- HEADER ----
    "empty": lambda: b"",
    "not-a-stream": lambda: b"#!/bin/sh\necho this is no stream\n" * 3,
    "bad-magic": lambda: stream(replace(F, 0, header(magic=MAGIC ^ 1 << 56))),
    "rev-newer": lambda: stream(replace(F, 0, header(ver=3, extra=bytes(16)))),
    "rev-zero": lambda: stream(replace(F, 0, header(ver=0))),
    "bad-kind": lambda: stream(replace(F, 0, header(kind=3))),
    "ncpus-0": lambda: stream(replace(F, 0, header(ncpus=0))),
    "ncpus-9": lambda: stream(replace(F, 0, header(ncpus=9))),
    "bad-pgsz": lambda: stream(replace(F, 0, header(pgsz=8192))),
    "mem-zero": lambda: stream(replace(F, 0, header(mem=0))),
    "mem-unaligned": lambda: stream(replace(F, 0, header(mem=MEM + 512))),
    "sid-zero": lambda: stream(replace(F, 0, header(sid=0))),
    "full-with-parent": lambda: stream(replace(F, 0, header(parent=PARENT))),
    "incr-no-parent": lambda: stream(incremental(parent=0)),
    "incr-own-parent": lambda: stream(incremental(parent=SID)),
    "header-reserved": lambda: stream(replace(F, 0, header(reserved=1))),
    "header-long": lambda: stream(replace(F, 0, header(extra=bytes(8)))),
    "header-first-missing": lambda: stream(F[1:]),
    "header-twice": lambda: stream(insert(F, 1, header())),
    # ---- framing and types ----
    "unknown-mandatory": lambda: stream(insert(F, 3, Rec(0x0777, b"new"))),
    "optional-on-known": lambda: stream(insert(F, 3, Rec(REC_F_OPTIONAL | PAGES,
                                                         pages([(3, ZERO)]).data[8:]))),
    "bad-padding": lambda: stream(replace(F, I_DEV0, device("serial0", dirty_pad=True))),
    "oversize-length": lambda: stream([header()], with_end=False) +
    struct.pack("<II", PAGES, 0xFFFFFFFF) + bytes(64),
    "oversize-by-one": lambda: stream([header()], with_end=False) +
    struct.pack("<II", DEVICE, REC_MAX_LEN + 1) + bytes(64),
    "max-length-truncated": lambda: stream([header()], with_end=False) +
    struct.pack("<II", DEVICE, REC_MAX_LEN) + bytes(100),
    # ---- PAGES ----
    "pages-reserved": lambda: stream(insert(F, 3, pages([(3, ZERO)], reserved=1))),
    "pages-entry-reserved": lambda: stream(insert(F, 3, pages([(3, ZERO), (4, ZERO, 0x80)]))),
    "pages-count-0": lambda: stream(insert(F, 3, pages([]))),
    "pages-count-4097": lambda: stream(insert(F, 3, pages([(p % NPAGES, ZERO)
                                                            for p in range(4097)]))),
    "pfn-out-of-range": lambda: stream(insert(F, 3, pages([(NPAGES, ZERO)]))),
    "pfn-huge": lambda: stream(insert(F, 3, pages([((1 << 52) - 1, ZERO)]))),
    "enc-xor-rev1": lambda: stream(insert(F, 3, pages([(3, XOR)]))),
    "enc-patch-rev1": lambda: stream(insert(F, 3, pages([(3, PATCH)]))),
    "enc-unknown": lambda: stream(insert(F, 3, pages([(3, 9)]))),
    "pages-length-long": lambda: stream(insert(F, 3, pages([(3, ZERO)], extra=bytes(8)))),
    "pages-length-short": lambda: stream(insert(F, 3, pages([(3, RAW)], cut=8))),
    "pages-entries-short": lambda: stream(insert(F, 3, pages([(3, ZERO)], count=10))),
    "pages-header-short": lambda: stream(insert(F, 3, Rec(PAGES, struct.pack("<I", 1)))),
    "missing-page": lambda: stream([header()] + full_pages(skip=(17, 100, 101, 102)) +
                                   state()),
    "missing-many-pages": lambda: stream([header()] + full_pages(skip=range(9, 4000, 2)) +
                                         state()),
    "no-pages-in-full": lambda: stream([header()] + state()),
    "pages-among-state": lambda: stream(insert(F, I_MSRS0, pages([(3, ZERO)]))),
    "pages-before-device": lambda: stream(insert(F, I_DEV0, pages([(3, ZERO)]))),
    # ---- VCPU, VCPU_MSRS ----
    "vcpu-length": lambda: stream(replace(F, I_VCPU0, vcpu(0, length=6168))),
    "vcpu-index-range": lambda: stream(replace(F, I_VCPU1, vcpu(2))),
    "vcpu-reserved-4": lambda: stream(replace(F, I_VCPU0, vcpu(0, rsvd1=1))),
    "vcpu-reserved-6172": lambda: stream(replace(F, I_VCPU0, vcpu(0, rsvd2=1))),
    "vcpu-duplicate": lambda: stream(replace(replace(F, I_VCPU1, vcpu(0)), I_MSRS1, msrs(0))),
    "vcpu-order": lambda: stream(F[:I_VCPU0] + F[I_VCPU1:I_MSRS1 + 1] +
                                 F[I_VCPU0:I_MSRS0 + 1] + F[I_IRQ:]),
    "vcpu-missing": lambda: stream(F[:I_VCPU1] + F[I_IRQ:]),
    "msrs-missing": lambda: stream(F[:I_MSRS0] + F[I_VCPU1:]),
    "msrs-count": lambda: stream(replace(F, I_MSRS0, msrs(0, [(i, 0) for i in range(1025)]))),
    "msrs-length": lambda: stream(replace(F, I_MSRS0, msrs(0, extra=bytes(8)))),
    "msrs-index": lambda: stream(replace(F, I_MSRS0, msrs(1))),
    "msrs-reserved": lambda: stream(replace(F, I_MSRS0, msrs(0, rsvd=1))),
    "msrs-duplicate": lambda: stream(replace(F, I_MSRS0, msrs(0, STD_MSRS + [(0x174, 9)]))),
    # ---- IRQCHIP, PIT, CLOCK ----
    "irqchip-ids": lambda: stream(replace(F, I_IRQ, irqchip(ids=(1, 0, 2)))),
    "irqchip-length": lambda: stream(replace(F, I_IRQ, irqchip(length=1040))),
    "irqchip-missing": lambda: stream(F[:I_IRQ] + F[I_PIT:]),
    "irqchip-twice": lambda: stream(insert(F, I_DEV0, irqchip())),
    "pit-length": lambda: stream(replace(F, I_PIT, pit(length=120))),
    "clock-length": lambda: stream(replace(F, I_CLOCK, clock(length=40))),
    "clock-missing": lambda: stream(F[:I_CLOCK] + F[I_DEV0:]),
    # ---- DEVICE ----
    "device-garbage": lambda: stream(replace(F, I_DEV0, device(None, body=b"\xff\xff\xff"))),
    "device-empty-id": lambda: stream(replace(F, I_DEV0, device(None))),
    "device-empty-body": lambda: stream(replace(F, I_DEV0, device(None, body=b""))),
    "device-duplicate-id": lambda: stream(replace(F, I_DEV0 + 1, device("serial0", "testdev"))),
    "device-before-clock": lambda: stream(insert(F, I_CLOCK, device("extra0"))),
    "device-after-tail": lambda: stream(F + [device("late0")]),
    # ---- revision 2 (§9): valid ----
    "valid-rev2-incr": lambda: stream(epoch2(
        pages([(5, PATCH), (6, XOR), (7, RAW), (8, ZERO)]),
        pages_zstd([(9, RAW), (10, XOR), (11, ZERO)]),
        pages([(5, RAW), (9, ZERO)]))),  # a later RAW or ZERO copy of any pfn is fine
    "valid-rev2-full": lambda: stream(full2()),
    "valid-rev2-patch-edges": lambda: stream(epoch2(pages([
        (1, PATCH, 0, patch([])),  # runs 0, words 0: the page is unchanged
        (2, PATCH, 0, patch([(0, [1, 2]), (2, [3]), (511, [4])])),  # adjacent runs, odd count
        (3, PATCH, 0, patch([(2, list(range(510)))])),  # 4096 bytes, the largest
        (4, PATCH, 0, patch([(i * 2, [i]) for i in range(256)]))]))),  # 256 runs
    # revision 1 does not define 0x0003: with the optional flag, it is skipped (§1)
    "valid-rev1-optional-0003": lambda: stream(insert(F, 3, Rec(REC_F_OPTIONAL | PAGES_ZSTD,
                                                                b"x"))),
    "valid-rev2-bound": lambda: bound(2),
    # ---- revision 2: HEADER, types, entries ----
    "rev1-pages-zstd": lambda: stream(insert(F, 3, pages_zstd([(3, RAW)]))),
    "rev2-zstd-optional": lambda: stream(zbatch((9, RAW), rtype=REC_F_OPTIONAL | PAGES_ZSTD)),
    "rev2-zstd-among-state": lambda: stream(insert(epoch2(), 2, pages_zstd([(9, RAW)]))),
    "rev2-enc-unknown": lambda: stream(pbatch((5, 4))),
    "rev2-xor-in-full": lambda: stream(epoch2(pages_zstd([(9, XOR)]), kind=1)),
    "rev2-patch-in-full": lambda: stream(epoch2(pages([(9, PATCH)]), kind=1)),
    "rev2-xor-pfn-range": lambda: stream(pbatch((NPAGES, XOR))),
    "rev2-xor-repeat": lambda: stream(epoch2(pages([(5, RAW)]), pages_zstd([(5, XOR)]))),
    "rev2-patch-repeat": lambda: stream(epoch2(pages_zstd([(5, ZERO), (6, RAW)]),
                                               pages([(5, PATCH)]))),
    "rev2-xor-repeat-in-record": lambda: stream(pbatch((5, ZERO), (5, XOR))),
    "rev2-patch-twice": lambda: stream(pbatch((5, PATCH), (5, PATCH))),
    "rev2-patch-in-zstd": lambda: stream(zbatch((9, RAW), (5, PATCH))),
    # ---- revision 2: PATCH payloads ----
    "patch-runs-257": lambda: stream(patched(patch([(i * 2, [i]) for i in range(257)]))),
    "patch-words-512": lambda: stream(patched(patch([(0, list(range(512)))]))),
    "patch-runs-no-words": lambda: stream(patched(patch([(3, [7])], nwords=0))),
    "patch-words-no-runs": lambda: stream(patched(patch([], nwords=1) + bytes(8))),
    "patch-too-big": lambda: stream(patched(patch([(0, list(range(170))), (171, [0] * 170),
                                                    (342, [0] * 170)]))),
    "patch-count-0": lambda: stream(patched(patch([(3, [7]), (9, [])], nwords=1))),
    "patch-overlap": lambda: stream(patched(patch([(0, [1, 2, 3, 4]), (2, [5, 6])]))),
    "patch-order": lambda: stream(patched(patch([(10, [1, 2]), (0, [3, 4])]))),
    "patch-past-page": lambda: stream(patched(patch([(510, [1, 2, 3])]))),
    "patch-padding": lambda: stream(patched(patch([(3, [7])], pad=0xABCD))),
    "patch-sum": lambda: stream(patched(patch([(3, [7, 8, 9])], nwords=4) + bytes(8))),
    "patch-cut": lambda: stream(patched(patch([(3, [7, 8, 9])])[:-8])),
    "patch-no-header": lambda: stream(patched(b"")),
    "patch-length-long": lambda: stream(pbatch((5, PATCH), extra=bytes(8))),
    # ---- revision 2: PAGES_ZSTD ----
    "zstd-count-0": lambda: stream(zbatch(raw_len=0, frame=zstd_raw_frame(b""))),
    "zstd-count-4097": lambda: stream(zbatch(*[(p, ZERO) for p in range(4096)], (1, RAW))),
    "zstd-reserved": lambda: stream(zbatch((9, RAW), reserved=1)),
    "zstd-entry-reserved": lambda: stream(zbatch((9, RAW), (10, ZERO, 0x10))),
    "zstd-short": lambda: stream(epoch2(Rec(PAGES_ZSTD, struct.pack("<IIQ", 1, 0, 9)))),
    "zstd-raw-len-wrong": lambda: stream(zbatch(*TWO_RAW, raw_len=4096)),
    "zstd-raw-len-zero": lambda: stream(zbatch((9, ZERO), frame=zstd_raw_frame(b""))),
    "zstd-no-frame": lambda: stream(zbatch(*TWO_RAW, frame=b"")),
    "zstd-skippable": lambda: stream(zbatch(*TWO_RAW, frame=zstd_raw_frame(
        bytes(8192), magic=0x184D2A50))),
    "zstd-no-fcs": lambda: stream(zbatch(*TWO_RAW, frame=zstd_raw_frame(
        bytes(8192), with_fcs=False))),
    "zstd-fcs-wrong": lambda: stream(zbatch(*TWO_RAW, frame=zstd_raw_frame(bytes(12288)))),
    "zstd-dict": lambda: stream(zbatch(*TWO_RAW, frame=zstd_raw_frame(bytes(8192), dict_id=7))),
    "zstd-two-frames": lambda: stream(zbatch(*TWO_RAW, tail=zstd_compress(b"x" * 100))),
    "zstd-cut": lambda: stream(zbatch(*TWO_RAW, frame=zstd_compress(bytes(8192))[:-5])),
    "zstd-content-short": lambda: stream(zbatch(*TWO_RAW, frame=zstd_raw_frame(
        bytes(4096), fcs=8192))),
    "zstd-checksum": lambda: stream(zbatch(*TWO_RAW, frame=zstd_compress(
        page_payload(9) + page_payload(10))[:-1] + b"\x00")),
    # ---- revision 2: END over the wire bytes, and §9.5's bound ----
    "rev2-end-pages": lambda: stream(epoch2(pages([(5, PATCH)]), pages_zstd(TWO_RAW)),
                                     pages_=1),
    "rev2-end-records": lambda: stream(epoch2(pages([(5, PATCH)]), pages_zstd(TWO_RAW)),
                                       records=5),
    "rev2-end-crc": lambda: stream(epoch2(pages_zstd(TWO_RAW)), crc=0),
    "rev2-decoded-bound": lambda: bound(3),
    # ---- END ----
    "missing-end": lambda: stream(F, with_end=False),
    "end-records": lambda: stream(F, records=len(F) + 1),
    "end-pages": lambda: stream(F, pages_=NPAGES + 1),
    "end-reserved": lambda: stream(F, reserved=1),
    "end-length": lambda: stream(F, end_length=32),
    "end-early": lambda: stream(F[:1]),
    "end-before-devices-done": lambda: stream(F[:I_CLOCK]),
    "end-crc": lambda: stream(F, crc=crc32c(b"".join(r.data for r in F)) ^ 1),
    "crc-flip": flip_in_raw_payload,
    "data-after-end": lambda: stream(F) + b"\0",
    "record-after-end": lambda: stream(F) + device("ghost0").data,
    # ---- session captures (§8.1): valid first ----
    "session-valid": lambda: session(epochs()),
    "session-keyed": lambda: sealed(epochs()),
    "session-no-bye": lambda: session(epochs(), bye=False),
    "session-cut": lambda: session(epochs(), bye=False)[:-3000],
    "session-unchained": lambda: session(epochs(parent1=S2)),
    "session-first-incremental": lambda: session(epochs(first_kind=2)),
    "session-ping-length": lambda: session([frame(PING, length=4)]),
    "session-bad-frame": lambda: session([frame(0x4B43414252545343)]),
    "session-after-bye": lambda: session(epochs()) + b"\0",
    "session-encrypted": lambda: sealed(epochs(), flags=3),
    "session-version1": lambda: session(epochs(), version=1),
    "session-reserved-flags": lambda: session(epochs(), flags=64),
    "session-postcopy": lambda: postcopy(),
    "session-postcopy-cut": lambda: postcopy()[:-24],  # the link broke before END
    "session-postcopy-unnamed": lambda: postcopy(sent=(3, 5, 9, 700)),
    "session-postcopy-twice": lambda: postcopy(sent=(3, 5, 5, 700)),
    "session-postcopy-end": lambda: postcopy(end=2),
    "session-postcopy-after-end": lambda: postcopy() + pcmsg(PAGE, 7, 1),
    "session-postcopy-flags": lambda: postcopy(sent=())[:-24] + pcmsg(PAGE, 3, 2),
    "session-postcopy-no-epoch": lambda: postcopy(
        order=lambda e, pcf: [e[0], e[1], e[2], e[3], pcf, frame(SWITCH)], tail=False),
    "session-postcopy-two-epochs": lambda: postcopy(
        order=lambda e, pcf: [e[0], pcf, e[2], e[3], frame(SWITCH)], tail=False),
    "session-postcopy-length": lambda: postcopy(pc=frame(PCPY, bytes(16)), tail=False),
    "session-postcopy-not-migrating": lambda: postcopy(flags=0, tail=False),
    "session-resume": lambda: hello(8 | 32) + pc_pages((1, 2, 4000), zero=(2,)) + pcmsg(PEND, 3),
    "session-resume-sums": lambda: hello(8 | 32 | 16) + pc_pages((1,)),
    # ---- a live migration's capture (§8.3) ----
    "session-migration": lambda: session(epochs(), flags=8, bye=False, switch=True),
    "session-switch-not-migrating": lambda: session(epochs(), bye=False, switch=True),
    "session-switch-first": lambda: session([], flags=8, bye=False, switch=True),
    "session-after-switch": lambda: session(epochs(), flags=8, bye=False, switch=True) + b"\0",
    "session-switch-length": lambda: session([frame(SWITCH, length=2)], flags=8, bye=False),
    "session-migrate-disk": lambda: session(epochs(), flags=12),
    # ---- DISK frames (§8.4) ----
    "session-disks": lambda: session(disk_epochs()),
    "session-disks-sums": lambda: session(disk_epochs(), flags=16),  # SUMS (§8.5)
    "session-sums-disk": lambda: session(epochs(), flags=20),
    "session-disk-unsealed": lambda: session(disk_epochs(seal1=False)),
    "session-disk-wrong-epoch": lambda: session(disk_epochs(epoch_of_write1=2)),
    "session-disk-bad-type": lambda: session([frame(DISK, drec(0x54, 0, 0, bytes(8)))]),
    "session-nonce-no-auth": lambda: session(epochs(), nonce=b"\1" * 32),
    "session-seal-length": lambda: sealed(epochs(), bad_length=0),
    "session-mem": lambda: session(epochs(), mem=MEM * 2),
    "session-bad-epoch": lambda: session([frame(EPCH, stream(F, crc=0))]),
    "session-epoch-tail": lambda: session([frame(EPCH, stream(F) + bytes(8))]),
}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, build in CASES.items():
        with open(os.path.join(out, name + ".cst"), "wb") as f:
            f.write(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
