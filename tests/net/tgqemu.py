#!/usr/bin/env python3
"""Look at and poke the test guest under QEMU, for the net/disk tests.

  tgqemu.py iostate --qmp SOCK [--stop] [--get FIELD]...
  tgqemu.py mailbox --gdb SOCK --cmd N [--timeout S]

iostate: read struct tg_io_state (abi.h, at 0x3000) through QMP pmemsave and
print "field=value ..." on one line, or with --get just those values, one a
line. --stop pauses the VM first (QEMU drains the disk then), so counters
and the disk image agree; the VM stays stopped.

mailbox: send one mailbox command (abi.h struct tg_mailbox at 0x2000) through
QEMU's gdbstub (-gdb unix:SOCK,server=on,wait=off), which is the only way
QEMU lets a host write guest memory while it runs: attach (the VM stops),
write cmd and seq + 1, detach (it runs on), then poll until the vCPU 0 state
page says it is done; print the status. Exit 0 if the status is OK (0).
"""
import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import time

IO_STATE_GPA = 0x3000
MAILBOX_GPA = 0x2000
IMAGE_HDR_GPA = 0x100040
IO_FIELDS = ["net_up", "blk_up", "rx_frames", "tx_frames", "rx_dropped", "arp_replies",
             "icmp_replies", "udp_answered", "tcp_answered", "tcp_conns", "tcp_retransmits",
             "tcp_resets", "blk_written", "blk_verified", "blk_bad", "blk_io_errors",
             "blk_generation", "blk_next", "net_resets", "blk_resets"]
READY_MAGIC = 0x5944414552475443


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise OSError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        r = self._read()
        if "error" in r:
            raise OSError("QMP %s: %s" % (name, r["error"].get("desc")))
        return r.get("return")

    def read_mem(self, gpa, size):
        fd, path = tempfile.mkstemp(prefix="tgqemu.")
        os.close(fd)
        try:
            self.cmd("pmemsave", val=gpa, size=size, filename=path)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)


def io_state(qmp):
    words = struct.unpack("<%dQ" % len(IO_FIELDS), qmp.read_mem(IO_STATE_GPA, 8 * len(IO_FIELDS)))
    st = dict(zip(IO_FIELDS, words))
    for k in ("net_up", "blk_up"):
        st[k] = 1 if st[k] == READY_MAGIC else 0
    return st


def cmd_iostate(args):
    qmp = Qmp(args.qmp)
    if args.stop:
        qmp.cmd("stop")
    st = io_state(qmp)
    if args.get:
        for k in args.get:
            if k not in st:
                print("tgqemu: no field %s (have: %s)" % (k, " ".join(IO_FIELDS)))
                return 2
            print(st[k])
    else:
        print(" ".join("%s=%d" % (k, st[k]) for k in IO_FIELDS))
    return 0


class Gdb:
    """Just enough of the gdb remote protocol: m, M, c."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.buf = b""

    def _packet(self):
        while True:
            i = self.buf.find(b"$")
            j = self.buf.find(b"#", i + 1) if i >= 0 else -1
            if i >= 0 and j >= 0 and len(self.buf) >= j + 3:
                body, self.buf = self.buf[i + 1:j], self.buf[j + 3:]
                self.s.sendall(b"+")
                return body
            data = self.s.recv(4096)
            if not data:
                raise OSError("gdbstub closed the connection")
            self.buf += data

    def send(self, body):
        self.s.sendall(b"$" + body + b"#%02x" % (sum(body) & 0xff))
        r = self._packet()
        # Attaching to a running VM stops it, and QEMU reports that stop
        # (T02) on its own besides the answer to "?": skip such stop replies.
        while body != b"?" and r[:1] in (b"T", b"S"):
            r = self._packet()
        return r

    def close(self):
        """Detach (QEMU resumes the VM) and hang up."""
        try:
            self.send(b"D")
        finally:
            self.s.close()

    def read(self, addr, n):
        r = self.send(b"m%x,%x" % (addr, n))
        if r.startswith(b"E"):
            raise OSError("gdbstub: reading %#x: %s" % (addr, r.decode()))
        return bytes.fromhex(r.decode())

    def write(self, addr, data):
        r = self.send(b"M%x,%x:%s" % (addr, len(data), data.hex().encode()))
        if r != b"OK":
            raise OSError("gdbstub: writing %#x: %s" % (addr, r.decode()))


def cmd_mailbox(args):
    gdb = Gdb(args.gdb)  # attached: the VM is stopped now
    try:
        gdb.send(b"?")
        state_gpa = struct.unpack("<Q", gdb.read(IMAGE_HDR_GPA + 64, 8))[0]
        seq = struct.unpack("<Q", gdb.read(MAILBOX_GPA, 8))[0] + 1
        gdb.write(MAILBOX_GPA + 8, struct.pack("<I", args.cmd))  # cmd
        gdb.write(MAILBOX_GPA, struct.pack("<Q", seq))  # then seq
    finally:
        gdb.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        g = Gdb(args.gdb)
        try:
            g.send(b"?")
            done = struct.unpack("<Q", g.read(state_gpa + 40, 8))[0]
            status = struct.unpack("<I", g.read(MAILBOX_GPA + 12, 4))[0]
        finally:
            g.close()
        if done == seq:
            print("tgqemu: mailbox seq %d cmd %d: status %d" % (seq, args.cmd, status))
            return 0 if status == 0 else 1
    print("tgqemu: mailbox seq %d cmd %d: not done within %.1f s" % (seq, args.cmd, args.timeout))
    return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("iostate")
    a.add_argument("--qmp", required=True)
    a.add_argument("--stop", action="store_true")
    a.add_argument("--get", action="append")
    m = sub.add_parser("mailbox")
    m.add_argument("--gdb", required=True)
    m.add_argument("--cmd", type=int, required=True)
    m.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    try:
        return cmd_iostate(args) if args.what == "iostate" else cmd_mailbox(args)
    except OSError as e:
        print("tgqemu: %s" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
