#!/usr/bin/env python3
"""Client for the test guest's network services (docs/test-guest.md).

  tgclient.py ping --host IP [--count N] [--timeout S]
  tgclient.py udp  --host IP [--count N] [--timeout S] [--start SEQ] [--rate R]
  tgclient.py tcp  --host IP [--count N] [--timeout S] [--start SEQ] [--rate R] [--window W]
                   [--times FILE]

udp: requests "<seq>" for seq = start .. start+N-1, one at a time; every
answer "<seq> <count>" must arrive exactly once and in order, and the
counts must rise by exactly one from the first answer on.

tcp: one connection; requests "<seq>\\n", up to --window in flight; every
answer line "<seq> <count>" once, in order, counts consecutive. Then the
client closes its side and the guest must close too, with nothing more sent.
--times FILE writes when each answer arrived (time.monotonic(), one a line, also on
failure): a failover benchmark reads the first answer after its kill from it.

ping: `ping -c N -W 1`; every echo must be answered.

Exit 0 on success, 1 on the first violation (with a message), 2 on usage
errors. One summary line on success: requests, time, rate, p50/p99 latency.
Standard library only, so any test (and any machine) can use it.
"""
import argparse
import errno
import re
import select
import socket
import subprocess
import sys
import time

ANSWER = re.compile(rb"^([0-9]+) ([0-9]+)\n?$")


class Violation(Exception):
    pass


def percentile(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def summary(kind, n, elapsed, lat, extra=""):
    lat = sorted(lat)
    rate = n / elapsed if elapsed > 0 else 0.0
    print("tgclient %s: %d requests in %.3f s (%.0f/s), latency p50 %.3f ms p99 %.3f ms "
          "max %.3f ms%s" % (kind, n, elapsed, rate, percentile(lat, 50) * 1e3,
                             percentile(lat, 99) * 1e3, (lat[-1] if lat else 0) * 1e3, extra))


class Counts:
    """Answers must come in seq order with counts rising by one."""

    def __init__(self, start):
        self.next_seq = start
        self.last_count = None

    def check(self, line):
        m = ANSWER.match(line)
        if not m:
            raise Violation("malformed answer %r" % line)
        seq, count = int(m.group(1)), int(m.group(2))
        if seq != self.next_seq:
            if seq < self.next_seq:
                raise Violation("answer for seq %d again (or late) while expecting seq %d"
                                % (seq, self.next_seq))
            raise Violation("answer for seq %d while expecting seq %d (missing answers)"
                            % (seq, self.next_seq))
        if self.last_count is not None and count != self.last_count + 1:
            raise Violation("seq %d: count %d after count %d (not consecutive)"
                            % (seq, count, self.last_count))
        self.next_seq += 1
        self.last_count = count
        return seq, count


def pace(t0, i, rate):
    if rate > 0:
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_udp(args):
    port = args.port or 7701
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, port))
    counts = Counts(args.start)
    lat = []
    first_count = None
    t0 = time.monotonic()
    for i in range(args.count):
        pace(t0, i, args.rate)
        seq = args.start + i
        sent = time.monotonic()
        s.send(str(seq).encode())
        deadline = sent + args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                raise Violation("no answer to seq %d within %.1f s" % (seq, args.timeout))
            try:
                data = s.recv(2048)
            except ConnectionRefusedError:
                raise Violation("ICMP port unreachable from %s:%d" % (args.host, port))
            got, count = counts.check(data)
            if first_count is None:
                first_count = count
            if got == seq:
                lat.append(time.monotonic() - sent)
                break
    elapsed = time.monotonic() - t0
    # A duplicate of the last answers would come within a round trip or so.
    end = time.monotonic() + min(0.2, args.timeout)
    while time.monotonic() < end:
        if select.select([s], [], [], max(0.0, end - time.monotonic()))[0]:
            counts.check(s.recv(2048))  # any answer now is one too many
    summary("udp", args.count, elapsed, lat,
            ", counts %d..%d" % (first_count, counts.last_count) if args.count else "")


def run_tcp(args):
    arrived = []
    try:
        tcp_session(args, arrived)
    finally:
        if args.times:
            with open(args.times, "w") as f:
                f.write("".join("%.6f\n" % t for t in arrived))


def tcp_session(args, arrived):
    port = args.port or 7700
    # a guest whose answers wait for their epoch's ack may miss the kernel's three ARP
    # tries ("No route to host"): tried again until --timeout, as a real client would
    give_up = time.monotonic() + args.timeout
    while True:
        try:
            s = socket.create_connection((args.host, port), timeout=args.timeout)
            break
        except OSError as e:
            if e.errno != errno.EHOSTUNREACH or time.monotonic() > give_up:
                raise Violation("connect to %s:%d: %s" % (args.host, port, e))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    counts = Counts(args.start)
    sent_at = {}
    lat = []
    first_count = None
    buf = b""
    sent = answered = 0
    t0 = last_progress = time.monotonic()
    while answered < args.count:
        now = time.monotonic()
        while sent < args.count and sent - answered < args.window:
            if args.rate > 0 and now < t0 + sent / args.rate:
                break
            seq = args.start + sent
            line = b"%d\n" % seq
            try:
                n = s.send(line)
            except BlockingIOError:
                n = 0
            except OSError as e:
                raise Violation("send of seq %d: %s" % (seq, e))
            if n != len(line):  # tiny lines: a short send means a full socket buffer
                raise Violation("socket buffer full at seq %d" % seq)
            sent_at[seq] = now
            sent += 1
        wait = args.timeout - (now - last_progress)
        if wait <= 0:
            raise Violation("no answer for %.1f s; %d of %d answered, next seq %d"
                            % (args.timeout, answered, args.count, counts.next_seq))
        if args.rate > 0 and sent < args.count:
            wait = min(wait, max(0.0, t0 + sent / args.rate - now))
        if not select.select([s], [], [], wait)[0]:
            continue
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError as e:
            raise Violation("receive after %d answers: %s" % (answered, e))
        if not data:
            raise Violation("the guest closed the connection after %d of %d answers"
                            % (answered, args.count))
        now = time.monotonic()
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            seq, count = counts.check(line)
            if first_count is None:
                first_count = count
            if seq not in sent_at:
                raise Violation("answer for seq %d, which was never sent" % seq)
            lat.append(now - sent_at.pop(seq))
            arrived.append(now)
            answered += 1
            last_progress = now
    elapsed = time.monotonic() - t0
    # Close our side; the guest must answer with its FIN and nothing else.
    s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + args.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            raise Violation("the guest did not close within %.1f s of our FIN" % args.timeout)
        try:
            data = s.recv(65536)
        except OSError as e:
            raise Violation("after our FIN: %s" % e)
        if not data:
            break
        buf += data
    if buf:
        raise Violation("unexpected data after the last answer: %r" % buf[:80])
    s.close()
    summary("tcp", args.count, elapsed, lat,
            ", counts %d..%d" % (first_count, counts.last_count) if args.count else "")


def run_ping(args):
    cmd = ["ping", "-n", "-q", "-c", str(args.count), "-W", "1", "-i", "0.2", args.host]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=args.count * 0.2 + args.timeout + 5).stdout.decode()
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Violation("%s: %s" % (" ".join(cmd), e))
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not m:
        raise Violation("cannot read ping's output:\n" + out)
    tx, rx = int(m.group(1)), int(m.group(2))
    if rx != args.count or tx != args.count:
        raise Violation("%d of %d echo requests answered\n%s" % (rx, args.count, out))
    rtt = re.search(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)/", out)
    print("tgclient ping: %d/%d echo replies%s" % (
        rx, tx, ", rtt min/avg/max %s/%s/%s ms" % rtt.groups() if rtt else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["ping", "udp", "tcp"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=0, help="default 7701 (udp), 7700 (tcp)")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds without progress before failing")
    ap.add_argument("--start", type=int, default=1, help="first seq")
    ap.add_argument("--rate", type=float, default=0, help="requests per second (0: no limit)")
    ap.add_argument("--window", type=int, default=16, help="tcp: requests in flight")
    ap.add_argument("--times", help="tcp: write each answer's arrival (time.monotonic())")
    args = ap.parse_args()
    if args.count < 0 or args.window < 1 or args.timeout <= 0 or args.start < 0:
        ap.error("bad --count, --window, --timeout or --start")
    try:
        {"ping": run_ping, "udp": run_udp, "tcp": run_tcp}[args.mode](args)
    except Violation as e:
        print("tgclient %s: FAIL: %s" % (args.mode, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
