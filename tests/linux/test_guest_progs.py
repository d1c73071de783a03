#!/usr/bin/env python3
"""The Linux guest image's programs, run on this host (they are static).

  test_guest_progs.py CASTOR_REQD CASTOR_DIRTY TGCLIENT

castor-reqd (the test guest's TCP protocol, docs/test-guest.md):
- two connections one after the other: counts 1..10, then 11..20 (one counter);
- two connections open at once, their requests interleaved: counts consecutive
  in the order answered;
- '\\r\\n' endings are accepted; 20 digits above 2^64-1, letters, an empty line
  and a 33-byte line without a newline each end the connection with no answer
  (answers before them are still delivered), and the counter does not move;
- a last line without '\\n' gets no answer, and the server closes after EOF;
- a client that sends and reads no answers: the server stops reading (its
  window closes) instead of dropping answers, and all are answered later;
- --background returns with the port already open and says the server's pid;
  bad options exit 2.
castor-dirty: a 2 s run at 500 pages/s prints progress lines near that rate and
exits 0; bad options exit 2 with a message.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REQD, DIRTY, TGCLIENT = sys.argv[1:4]
fails = 0


def check(cond, what):
    global fails
    if not cond:
        print("FAIL: " + what, flush=True)
        fails += 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s):
    """Everything until the server closes (or 5 s pass)."""
    parts = []
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                return b"".join(parts), True
            parts.append(d)
    except socket.timeout:
        return b"".join(parts), False


def ask(port, payload):
    """Send payload, close our side, return (answers, server closed)."""
    s = connect(port)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data, closed = read_all(s)
    s.close()
    return data, closed


def flood(port, cap=3000000):
    """Requests from a client that reads no answers, until the server stops
    reading them (0.5 s without progress) or cap; then the rest is sent while
    a thread reads every answer. Returns (requests, stalled, counts, closed)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a window that closes soon
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    seq, pend, since, stalled = 0, b"", None, False
    while seq < cap and not stalled:
        if not pend:
            pend = b"".join(b"%d\n" % i for i in range(seq, seq + 1000))
        try:
            k = s.send(pend)
        except BlockingIOError:
            k = 0
        pend = pend[k:]
        if not pend:
            seq += 1000
        if k:
            since = None
        elif since is None:
            since = time.monotonic()
        else:
            stalled = time.monotonic() - since > 0.5
            select.select([], [s], [], 0.1)
    if pend:
        seq += 1000
    s.settimeout(30)
    got = {}
    reader = threading.Thread(target=lambda: got.update(r=read_all(s)))
    reader.start()
    s.sendall(pend)
    s.shutdown(socket.SHUT_WR)
    reader.join()
    s.close()
    data, closed = got["r"]
    return seq, stalled, counts_of(data), closed


def counts_of(data):
    return [int(line.split()[1]) for line in data.decode().splitlines()]


def main():
    port = free_port()
    # the server keeps stderr: a file, not a pipe that would never reach EOF
    with tempfile.TemporaryFile(mode="w+") as err:
        r = subprocess.run([REQD, "--port", str(port), "--background"], stderr=err,
                           timeout=10)
        err.seek(0)
        r.stderr = err.read()
    check(r.returncode == 0, "castor-reqd --background exited %d: %s" % (r.returncode, r.stderr))
    # The port is open as soon as --background returns: no retry here.
    pid = None
    if "pid " in r.stderr:
        pid = int(r.stderr.split("pid ")[1].split()[0])
    check(pid is not None, "castor-reqd did not say its pid: %r" % r.stderr)
    try:
        s = connect(port)
        s.close()
        counter = 0

        for conn, start in ((1, 1), (2, 11)):
            r = subprocess.run([sys.executable, TGCLIENT, "tcp", "--host", "127.0.0.1",
                                "--port", str(port), "--count", "10", "--start",
                                str(conn * 100)], capture_output=True, text=True, timeout=30)
            check(r.returncode == 0 and "counts %d..%d" % (start, start + 9) in r.stdout,
                  "connection %d: %s%s" % (conn, r.stdout, r.stderr))
        counter = 20

        a, b = connect(port), connect(port)
        for i in range(10):
            (a if i % 2 == 0 else b).sendall(b"%d\n" % i)
            got = (a if i % 2 == 0 else b).recv(100)
            check(got == b"%d %d\n" % (i, counter + 1), "interleaved %d: %r" % (i, got))
            counter += 1
        a.close()
        b.close()

        data, closed = ask(port, b"7\r\n8\n")
        check(data == b"7 %d\n8 %d\n" % (counter + 1, counter + 2) and closed,
              "CRLF: %r closed=%s" % (data, closed))
        counter += 2

        for bad in (b"18446744073709551616\n", b"12a\n", b"\n", b"1" * 33):
            data, closed = ask(port, b"1\n" + bad + b"2\n")
            check(data == b"1 %d\n" % (counter + 1) and closed,
                  "bad request %r: answers %r closed=%s" % (bad, data, closed))
            counter += 1
        data, closed = ask(port, b"18446744073709551615\n")
        check(data == b"18446744073709551615 %d\n" % (counter + 1) and closed,
              "largest seq: %r" % data)
        counter += 1

        data, closed = ask(port, b"3\n4")
        check(data == b"3 %d\n" % (counter + 1) and closed,
              "last line without newline: %r closed=%s" % (data, closed))
        counter += 1

        n, stalled, counts, closed = flood(port)
        check(stalled, "castor-reqd read %d requests from a client that reads no answers, "
              "without stopping" % n)
        check(closed and len(counts) == n and counts == list(range(counts[0], counts[0] + n)),
              "%d pipelined requests: %d answers, closed=%s" % (n, len(counts), closed))
        check(counts[:1] == [counter + 1], "pipelined: first count %s, expected %d" %
              (counts[:1], counter + 1))
        counter += n
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)

    for args, what in ((["--port", "0"], "not a port"), (["--bogus"], "unknown option"),
                       (["extra"], "unexpected argument")):
        r = subprocess.run([REQD, *args], capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and what in r.stderr, "castor-reqd %s: %d %r" %
              (args, r.returncode, r.stderr))

    t0 = time.monotonic()
    r = subprocess.run([DIRTY, "--wss", "1M", "--rate", "500", "--seconds", "2"],
                       capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    lines = [l for l in r.stdout.splitlines() if " pages/s, " in l]
    rate = int(lines[0].split()[3]) if lines else 0
    check(r.returncode == 0 and 1.9 < took < 5 and 400 <= rate <= 600,
          "castor-dirty 2 s at 500 pages/s: rc %d in %.1f s, rate %d: %s" %
          (r.returncode, took, rate, r.stdout))
    for args, what in ((["--wss", "5X"], "not a size"), (["--rate", "0"], "pages per second"),
                       (["--seconds", "1K"], "not a number"), (["--wss"], "needs a value"),
                       (["--bogus"], "unknown option")):
        r = subprocess.run([DIRTY, *args], capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and what in r.stderr, "castor-dirty %s: %d %r" %
              (args, r.returncode, r.stderr))

    print("PASS" if not fails else "%d failures" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
