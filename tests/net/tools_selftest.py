#!/usr/bin/env python3
"""Self-test of the net tests' own checkers, without a VM: they must pass a
correct guest and catch a broken one, or the VM tests prove nothing.

- tgclient.py udp/tcp against a fake guest on 127.0.0.1 that answers
  correctly, then with one fault each: a duplicate answer, a skipped count, a
  reordered answer, a connection the server never closes.
- blkcheck.py on images built by the disk rule: a prefix at pass g and the
  rest at g - 1 (with and without matching io_state values), the pass
  boundary transient, a changed word, passes out of order, a block that
  disagrees with io_state.
Exit 0 if every case behaves, 1 otherwise.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import blkcheck  # noqa: E402

failures = []


def expect(name, rc, want):
    ok = rc == want
    print("%s: %s (exit %d, want %d)" % ("ok  " if ok else "FAIL", name, rc, want))
    if not ok:
        failures.append(name)


# ---- a fake guest ------------------------------------------------------------


class FakeGuest:
    """UDP and TCP answering like the guest, with one optional fault."""

    def __init__(self, fault=None):
        self.fault = fault
        self.count = 0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(1)
        for target in (self.serve_udp, self.serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def answer(self, seq):
        self.count += 1
        if self.fault == "skip" and seq == 5:
            self.count += 1
        return b"%d %d" % (seq, self.count)

    def serve_udp(self):
        while True:
            data, peer = self.udp.recvfrom(100)
            seq = int(data)
            ans = self.answer(seq)
            self.udp.sendto(ans, peer)
            if self.fault == "dup" and seq == 5:
                self.udp.sendto(ans, peer)

    def serve_tcp(self):
        c, _ = self.tcp.accept()
        buf = b""
        held = None
        while True:
            data = c.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                ans = self.answer(int(line)) + b"\n"
                if self.fault == "reorder" and int(line) == 5:
                    held = ans
                    continue
                c.sendall(ans)
                if held:
                    c.sendall(held)
                    held = None
        if self.fault != "noclose":
            c.close()
        else:
            threading.Event().wait(30)


def client(mode, port, count=20, extra=()):
    cmd = [sys.executable, os.path.join(HERE, "tgclient.py"), mode, "--host", "127.0.0.1",
           "--port", str(port), "--count", str(count), "--timeout", "1"] + list(extra)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in r.stdout.decode().splitlines():
        print("      " + line)
    return r.returncode


def test_tgclient():
    g = FakeGuest()
    expect("udp, correct guest", client("udp", g.udp.getsockname()[1]), 0)
    expect("tcp, correct guest", client("tcp", g.tcp.getsockname()[1], extra=["--window", "4"]), 0)
    for fault, modes in (("dup", ["udp"]), ("skip", ["udp", "tcp"]), ("reorder", ["tcp"]),
                         ("noclose", ["tcp"])):
        for mode in modes:
            g = FakeGuest(fault)
            port = (g.udp if mode == "udp" else g.tcp).getsockname()[1]
            expect("%s, guest with fault '%s'" % (mode, fault), client(mode, port), 1)


# ---- disk images -----------------------------------------------------------------

FIRST, COUNT, SEED = 16, 12, 0x77


def block_bytes(b, g):
    return struct.pack("<512Q", *blkcheck.expected(b, g, SEED))


def image(passes, path):
    with open(path, "wb") as f:
        f.truncate((FIRST + 8 * COUNT) * 512)
        for b, g in enumerate(passes):
            f.seek((FIRST + 8 * b) * 512)
            f.write(block_bytes(b, g))


def blk(path, gen=None, nxt=None):
    cmd = [sys.executable, os.path.join(HERE, "blkcheck.py"), path, "--first", str(FIRST),
           "--count", str(COUNT), "--seed", hex(SEED)]
    if gen is not None:
        cmd += ["--generation", str(gen), "--next", str(nxt)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print("      " + r.stdout.decode().strip())
    return r.returncode


def test_blkcheck(tmp):
    p = os.path.join(tmp, "d.img")
    image([0] * COUNT, p)
    expect("blkcheck, fresh disk", blk(p), 0)
    expect("blkcheck, fresh disk, pass 1 begun", blk(p, 1, 0), 0)
    image([3] * 5 + [2] * 7, p)
    expect("blkcheck, prefix at 3, rest at 2", blk(p), 0)
    expect("blkcheck, io_state next 5", blk(p, 3, 5), 0)
    expect("blkcheck, io_state next 4 (block 4 in flight)", blk(p, 3, 4), 0)
    expect("blkcheck, io_state next 6", blk(p, 3, 6), 1)
    expect("blkcheck, io_state generation 4", blk(p, 4, 5), 1)
    image([3] * COUNT, p)
    expect("blkcheck, pass 3 done, boundary transient (3, 0)", blk(p, 3, 0), 0)
    expect("blkcheck, pass 3 done, next pass begun (4, 0)", blk(p, 4, 0), 0)
    image([3] * 5 + [2] * 7, p)
    with open(p, "r+b") as f:
        f.seek((FIRST + 8 * 9) * 512 + 8 * 100)
        f.write(b"\xff")
    expect("blkcheck, one changed byte", blk(p), 1)
    image([3, 3, 2, 3] + [2] * 8, p)
    expect("blkcheck, passes out of order", blk(p), 1)
    image([4] + [2] * 11, p)
    expect("blkcheck, passes two apart", blk(p), 1)


def main():
    test_tgclient()
    with tempfile.TemporaryDirectory() as tmp:
        test_blkcheck(tmp)
    if failures:
        print("FAIL: %d case(s): %s" % (len(failures), ", ".join(failures)))
        return 1
    print("PASS: tgclient.py and blkcheck.py pass a correct guest and catch a broken one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
