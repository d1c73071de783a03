#!/usr/bin/env python3
"""A WAN between two interfaces, in user space: these machines have no netem
(../shared/notes/link-shaping.md), so a test that needs latency, loss or a bandwidth cap
puts this program in the path. It forwards every Ethernet frame that arrives on one
interface out of the other, both ways, after a delay (with optional jitter, never
reordering), dropping each with a probability, and no faster than a rate (frames queue
behind one another as on a real link; past the queue's bound they are dropped, as a
router's tail drop). The interfaces are typically the two ends, in a namespace of their
own, of veth pairs whose other ends are the two hosts.

usage: linkemu.py --a IF --b IF [--delay-ms D] [--jitter-ms J] [--loss PCT]
                  [--rate-kbit R] [--queue FRAMES] [--seed N] [--duration S]
                  [--stats FILE]

Runs until --duration seconds have passed (default 600: bounded like every test tool) or
SIGTERM/SIGINT (it says "linkemu: forwarding ..." on stderr once its sockets are
open), then writes its counts as one JSON object to --stats (or stdout):
per direction frames in, forwarded, dropped by loss, dropped by a full queue, bytes
forwarded. Needs root (AF_PACKET). Exit 0, or 2 for bad arguments, 1 when an interface
cannot be opened.
"""
import argparse
import json
import os
import random
import select
import signal
import socket
import sys
import time
from collections import deque

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # our own sends, seen again on the interface: never forwarded
MAX_FRAME = 65536


class Direction:
    """Frames from one interface, on their way out of the other."""

    def __init__(self, name, rx, tx, args, rng):
        self.name, self.rx, self.tx, self.args, self.rng = name, rx, tx, args, rng
        self.q = deque()  # (due, frame), due never decreasing
        self.last_due = 0.0
        self.link_free = 0.0  # when the emulated wire has sent what is queued
        self.n_in = self.n_fwd = self.n_loss = self.n_full = self.bytes = 0

    def arrive(self, frame, now):
        self.n_in += 1
        a = self.args
        if a.loss and self.rng.random() * 100.0 < a.loss:
            self.n_loss += 1
            return
        if len(self.q) >= a.queue:
            self.n_full += 1
            return
        start = now
        if a.rate_kbit:
            # serialisation: the frame goes on the wire once the ones before it are off
            start = max(now, self.link_free) + len(frame) * 8 / (a.rate_kbit * 1000.0)
            self.link_free = start
        due = start + a.delay_ms / 1000.0
        if a.jitter_ms:
            due += self.rng.uniform(0.0, a.jitter_ms / 1000.0)
        due = max(due, self.last_due)  # jitter never reorders
        self.last_due = due
        self.q.append((due, frame))

    def flush(self, now):
        while self.q and self.q[0][0] <= now:
            _, frame = self.q.popleft()
            try:
                self.tx.send(frame)
            except OSError:
                continue  # the interface went down: the frame is lost, as on a wire
            self.n_fwd += 1
            self.bytes += len(frame)

    def next_due(self):
        return self.q[0][0] if self.q else None

    def stats(self):
        return {"frames_in": self.n_in, "forwarded": self.n_fwd, "dropped_loss": self.n_loss,
                "dropped_queue": self.n_full, "bytes_forwarded": self.bytes}


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setblocking(False)
    return s


def parse(argv):
    p = argparse.ArgumentParser(description="a WAN between two interfaces (user space)")
    p.add_argument("--a", required=True, help="one interface")
    p.add_argument("--b", required=True, help="the other")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="percent of frames dropped")
    p.add_argument("--rate-kbit", type=float, default=0.0, help="0: no cap")
    p.add_argument("--queue", type=int, default=1000, help="frames queued at most")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--stats", default=None, help="file for the final counts (JSON)")
    a = p.parse_args(argv)
    bad = [f"--{k.replace('_', '-')} {v}" for k, v in
           (("delay_ms", a.delay_ms), ("jitter_ms", a.jitter_ms), ("rate_kbit", a.rate_kbit))
           if v < 0 or v > 1e7]
    if not 0 <= a.loss <= 100:
        bad.append(f"--loss {a.loss} (a percentage)")
    if a.queue < 1 or a.queue > 1000000:
        bad.append(f"--queue {a.queue}")
    if not 0 < a.duration <= 86400:
        bad.append(f"--duration {a.duration}")
    if a.a == a.b:
        bad.append("--a and --b name the same interface")
    if bad:
        p.error("out of range: " + ", ".join(bad))
    return a


def main(argv):
    a = parse(argv)
    rng = random.Random(a.seed)
    try:
        sa, sb = open_if(a.a), open_if(a.b)
    except OSError as e:
        print(f"linkemu: cannot open {a.a} and {a.b}: {e}", file=sys.stderr)
        return 1
    dirs = {sa.fileno(): Direction("a_to_b", sa, sb, a, rng),
            sb.fileno(): Direction("b_to_a", sb, sa, a, rng)}
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    end = time.monotonic() + a.duration
    print(f"linkemu: forwarding between {a.a} and {a.b}", file=sys.stderr, flush=True)
    poller = select.poll()
    for fd in dirs:
        poller.register(fd, select.POLLIN)
    while not stop:
        now = time.monotonic()
        if now >= end:
            break
        for d in dirs.values():
            d.flush(now)
        dues = [t for t in (d.next_due() for d in dirs.values()) if t is not None]
        # at most 0.2 s: a signal does not end poll() (PEP 475 retries it), the loop does
        wait = min([end, now + 0.2] + dues) - now
        try:
            events = poller.poll(max(0, int(wait * 1000) + 1))
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd, _ in events:
            d = dirs[fd]
            while True:
                try:
                    frame, addr = d.rx.recvfrom(MAX_FRAME)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # the interface went away: nothing more from it
                if addr[2] == PACKET_OUTGOING:
                    continue
                d.arrive(frame, now)
    out = {d.name: d.stats() for d in dirs.values()}
    text = json.dumps(out)
    if a.stats:
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, a.stats)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
