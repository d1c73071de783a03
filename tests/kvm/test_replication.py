#!/usr/bin/env python3
"""Checkpoint replication end to end, on loopback: a `castor-vmm replica` and a
`castor-vmm run --protect` of the test guest, driven through their control
sockets and event logs.

usage: test_replication.py VMM CASTOR TGCHECK_SNAP CASE
  verify   2 vCPUs dirtying as fast as they can, verify mode, 500 epochs:
           every RAM digest of the replica equals the primary's
  disk     the guest reads a read-only disk while protected (pages the VMM
           writes): digests still match
  diskrw   the guest writes a protected writable disk (the replica's copy
           starts different): kill -9 the primary at random moments, fail
           over, and the twin's disk holds exactly what its RAM says it
           wrote; the guest's own read-backs find every block right
  diskresync  re-protection sends only what changed: a replica whose copy equals
           the primary's image gets only the guest's workload area; the
           replica is killed, the primary unprotected and written on, and a
           new replica on the old copy gets only the ranges that changed (the
           primary's ha status counts both); then kill -9, failover, and the
           twin's disk holds what its RAM says it wrote
  diskverify  verify mode with the guest writing its disk as fast as it goes,
           500 epochs: at every commit the replica's copy has the digest of
           the primary's image at that epoch's pause (and RAM too); then a
           range of the copy is changed behind the replica's back and the
           next epoch's digest catches it (the primary degrades, the twin is
           marked unusable)
  diskbad  a replica copy that cannot be written is refused at start; one
           smaller than the primary's image ends the initial copy (the
           primary degrades, the replica says why and takes the next primary);
           a replica whose file system fills up (a 2 MiB tmpfs of its own)
           acks the epoch with ENOSPC: the primary degrades, its outputs held,
           and the twin is refused a failover (its copy is between epochs)
  output   output (Kemari) mode: outputs end epochs early; digests match
  async    async (disaster-recovery) mode: checkpoints every half RPO, no output
           ever held; the replica frozen (SIGSTOP): outputs still flow, the RPO
           grows past its target and an alert is logged; thawed: checkpoints
           commit again; castor dr status at both ends, castor dr failover refused
           while the primary streams; then kill -9 and castor dr failover from
           the last checkpoint
  asyncresume  async mode's link broken twice (the replica frozen past the
           primary's timeout): the session resumes from the replica's checkpoint
           with no full copy, verify mode digests every checkpoint after it,
           outputs flow meanwhile; then castor dr failover. Then every link cut
           after 48 MiB, inside a checkpoint: the lost one is taken back and its
           pages sent again, and every checkpoint after verifies
  asyncwan async mode across a WAN of namespaces (tests/net/linkemu.py: 100 ms RTT,
           1 % loss, 20 Mbit/s): checkpoints verify across it; the link down past
           the timeout, the session resumes; the DR copy takes over, answers a UDP
           client at the DR site, and its RAM verifies (tgcheck_snap)
  drtest   castor dr test: the DR replica's newest checkpoint (RAM, state, its
           replicated disk) copied while checkpoints go on, of one checkpoint
           (tgcheck: the disk holds what the RAM says was written); a second
           copy booted in a network namespace of its own reads its disk back
           right; the session never notices; refusals
  drbeside a DR session beside the synchronous twin: both verify, output commit
           follows the twin alone, the DR replica frozen does not slow the twin,
           castor dr unprotect stops only the DR session; then the twin takes over
  cap      the dirty-page cap ends long epochs early; bad command lines and an
           unreachable replica are refused with clear errors
  kill     20 trials: kill -9 the primary at a random moment (every other
           trial after cutting its connection mid-epoch with the test hook),
           failover, and check the twin against what the outside saw
Every case also checks the output-commit order in the primary's event log:
no output is released before the ack of the epoch that produced it.
Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm; a failure instead under
CASTOR_REQUIRE_KVM=1).
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

VMM, CASTOR, TGCHECK, CASE = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, castor, ha, vm_status, wait_for  # noqa: E402,F401
ct.CASTOR = CASTOR


class Pair:
    """A replica and a protected primary in `d`; stopped by PID in close()."""

    def __init__(self, d, guest, repl, disk=None, cut_after=None, replica_args=(), rw=None,
                 replica_wrap=(), primary_wrap=(), listen="127.0.0.1", key=None):
        self.d = d
        self.procs = []
        self.rsock, self.psock = f"{d}/r.sock", f"{d}/p.sock"
        self.rlog, self.plog = f"{d}/r.log", f"{d}/p.log"
        for f in (self.rlog, self.plog, self.rsock, self.psock):
            if os.path.exists(f):
                os.unlink(f)
        disk_args = ["--disk", f"{disk},ro"] if disk else []
        # rw: (the primary's image, the replica's copy), both writable
        rdisk_args = ["--disk", rw[1]] if rw else disk_args
        self.replica = self.spawn(
            [*replica_wrap, VMM, "replica", "--listen", f"{listen}:0", "--control", self.rsock,
             "--serial", "none", "--name", "twin", "--event-log", self.rlog,
             "--repl-timeout", "10000", *rdisk_args, *(["--key", key] if key else []),
             *replica_args],
            "replica")
        wait_for("the replica's control socket", lambda: os.path.exists(self.rsock))
        port = wait_for("the replica's port", lambda: ha(self.rsock)["port"])
        gp = []
        for kv in guest:
            gp += ["--guest-param", kv]
        # the test hook lives in the environment, not on the command line
        env = dict(os.environ, CASTOR_TEST_CUT_AFTER=str(cut_after)) if cut_after else None
        self.primary = self.spawn(
            [*primary_wrap, VMM, "run", "--mem", "32M", "--cpus", "2", "--test-guest", *gp,
             "--control", self.psock, "--serial", "none", "--name", "prim",
             "--protect", f"{listen}:{port}", "--event-log", self.plog,
             *(["--key", key] if key else []),
             # a silent peer is dead after 10 s, not 2: sanitizer builds on shared cores
             # have shown single epochs taking over a second (the kill trials see the
             # peer's reset at once, whatever the timeout)
             "--repl-timeout", "10000", *repl,
             *(["--disk", rw[0]] if rw else disk_args)], "primary", env)

    def spawn(self, argv, name, env=None):
        p = subprocess.Popen(argv, stdout=open(f"{self.d}/{name}.out", "w"),
                             stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def wait_protected(self, cut=False):
        wait_for("the primary's control socket", lambda: os.path.exists(self.psock))
        wait_for("protection", lambda: ha(self.psock)["state"] in ("protected", "degraded")
                 or self.dead(self.primary))
        if self.dead(self.primary):
            raise Fail("the primary exited: " + open(f"{self.d}/primary.out").read()[-2000:])
        p = ha(self.psock)
        if p["state"] != "protected" and not (cut and p["epochs"] > 0):
            r = ha(self.rsock)
            raise Fail(f"the primary is {p['state']}: {p['last_error']}; replica: "
                       f"{r['verify_bad']} digests differed, {r['last_error']}")

    @staticmethod
    def dead(p):
        return p.poll() is not None

    def close(self):
        ct.stop_procs(self.procs)


def read_log(path):
    try:
        return [l.split() for l in open(path).read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def check_order(path):
    """Output commit on the primary's log: outputs are released in queue order;
    'epoch E outputs N' says the next N queued outputs belong to epoch E, and
    each 'out' line must come after 'ack E' of its epoch. Returns, per vCPU, the
    highest (seq, counter) the outside saw."""
    pending = []  # [epoch, outputs not yet released]
    acked = -1
    seen = {}
    for f in read_log(path):
        if f[0] == "epoch":
            pending.append([int(f[1]), int(f[3])])
        elif f[0] == "ack":
            e = int(f[1])
            if e != acked + 1:
                raise Fail(f"{path}: ack {e} after ack {acked}")
            acked = e
        elif f[0] == "out":
            while pending and pending[0][1] == 0:
                pending.pop(0)
            if not pending:
                raise Fail(f"{path}: output {f[1:]} released but no epoch holds it")
            if pending[0][0] > acked:
                raise Fail(f"{path}: output {f[1:]} of epoch {pending[0][0]} released "
                           f"before its ack (last ack {acked})")
            pending[0][1] -= 1
            v, seq, ctr = int(f[1]), int(f[2]), int(f[3])
            if v in seen and seq != seen[v][0] + 1:
                raise Fail(f"{path}: vCPU {v} output {seq} after {seen[v][0]}")
            seen[v] = (seq, ctr)
    return acked, seen


def case_verify(d, guest, repl, epochs, disk=None):
    pair = Pair(d, guest, repl, disk)
    try:
        pair.wait_protected()
        def enough():
            p = ha(pair.psock)
            if p["state"] != "protected":
                r = ha(pair.rsock)
                raise Fail(f"the primary is {p['state']} after {p['epochs']} epochs: "
                           f"{p['last_error']}; replica: {r['verify_bad']} digests differed, "
                           f"{r['last_error']}")
            return p["epochs"] >= epochs
        wait_for(f"{epochs} epochs", enough, timeout=300, step=0.5)
        p, r = ha(pair.psock), ha(pair.rsock)
        if p["state"] != "protected" or r["state"] != "protected":
            raise Fail(f"states: primary {p['state']}, replica {r['state']}")
        if r["verify_bad"] or r["verify_ok"] < epochs:
            raise Fail(f"replica digests: {r['verify_ok']} matched, {r['verify_bad']} differed")
        if p["total_wire_bytes"] >= p["total_raw_bytes"]:
            raise Fail("encoding saved nothing")
        if not p["encode_p50_ns"] or r["encode_p50_ns"]:
            raise Fail(f"encode p50: primary {p['encode_p50_ns']} ns, replica "
                       f"{r['encode_p50_ns']} ns (the primary encodes, the replica does not)")
        st = vm_status(pair.psock)
        castor("vm", "quit", "--socket", pair.psock)
        pair.primary.wait(10)
        acked, seen = check_order(pair.plog)
        print(f"{epochs}+ epochs, {r['verify_ok']} digests matched; pause p50 "
              f"{p['pause_p50_ns'] / 1e6:.3f} ms; wire {p['total_wire_bytes']} of "
              f"{p['total_raw_bytes']} bytes; {sum(1 for _ in seen)} vCPUs emitted, "
              f"last ack {acked}; early ends {p['early_ends']}")
        return p, r, st
    finally:
        pair.close()


def case_disk(d):
    img = f"{d}/disk.img"
    with open(img, "wb") as f:
        f.write(os.urandom(8 << 20))
    guest = ["rate=50", "wss=1M", "outrate=50", "blkverify=1", "blkrate=3000",
             "blkfirst=0", "blkcount=1024"]
    p, r, st = case_verify(d, guest, ["--interval", "10", "--verify"], 100, disk=img)
    io = st.get("guest_io", {})
    reads = io.get("blk_verified", 0) + io.get("blk_bad", 0)
    if reads < 100:
        raise Fail(f"the guest read only {reads} blocks while protected: {io}")
    print(f"the guest read {reads} blocks of the read-only disk while protected")


def diskrw_trial(d, n, rng):
    """One writable-disk trial: protect, kill -9 the primary at a random moment,
    fail over, check the twin's disk against its RAM, and let it read back."""
    blocks, seed = 1024, 7
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    for path in (pimg, rimg):  # the replica's copy starts different: the initial copy counts
        with open(path, "wb") as f:
            f.write(os.urandom(8 << 20))
    guest = ["rate=50", "wss=1M", "outrate=50", "blkrate=800", "blkfirst=0",
             f"blkcount={blocks}", f"seed={seed}"]
    pair = Pair(d, guest, ["--interval", str(rng.choice([5, 10, 25])), "--verify"],
                rw=(pimg, rimg))
    try:
        pair.wait_protected()
        h = ha(pair.psock)
        # two random images share no range: the whole image is data to send
        if h["disk_copy_bytes"] != 8 << 20 or h["disk_copy_same_bytes"]:
            raise Fail(f"initial copy of a copy that differs everywhere: "
                       f"{h['disk_copy_bytes']} bytes sent, "
                       f"{h['disk_copy_same_bytes']} found equal (8 MiB and 0 expected)")
        w0 = vm_status(pair.psock)["guest_io"]["blk_written"]
        wait_for("the guest to write while protected",
                 lambda: vm_status(pair.psock)["guest_io"]["blk_written"] > w0 + 100,
                 timeout=ct.patience(30))
        time.sleep(rng.uniform(0.0, 1.0))
        p = ha(pair.psock)
        if p["state"] != "protected":
            raise Fail(f"the primary is {p['state']}: {p['last_error']}")
        pair.primary.send_signal(signal.SIGKILL)
        pair.primary.wait(10)
        wait_for("the replica to notice", lambda: ha(pair.rsock)["state"] == "primary-lost")
        r = ha(pair.rsock)
        if r["verify_bad"]:
            raise Fail(f"{r['verify_bad']} RAM digests differed: {r['last_error']}")
        fo = json.loads(castor("ha", "failover", "--socket", pair.rsock, "--json").stdout)
        if fo["state"] != "failed-over":
            raise Fail(f"failover: {fo}")
        io, v0 = ct.check_guest_disk(TGCHECK, pair.rsock, rimg, blocks, seed,
                                     f"{d}/twin.snap", f"the twin after epoch {fo['epoch']}")
        print(f"trial {n}: killed at epoch {p['epoch']}, twin at {fo['epoch']}, pass "
              f"{io['blk_generation']}: the disk matches the twin's RAM; "
              f"{io['blk_verified'] - v0} blocks read back right after the failover")
    finally:
        pair.close()


def disk_copy_within(psock, size, area, what):
    """The primary's disks' initial copy sent at most `area` bytes and found the rest
    of the image already held (docs/disks.md); returns its ha status."""
    h = ha(psock)
    if h["disk_copy_bytes"] > area or h["disk_copy_same_bytes"] < size - area:
        raise Fail(f"{what} sent {h['disk_copy_bytes']} bytes and found "
                   f"{h['disk_copy_same_bytes']} equal (at most {area} differ)")
    print(f"{what}: {h['disk_copy_bytes']} bytes sent, {h['disk_copy_same_bytes']} the "
          f"replica held")
    return h


def case_diskresync(d):
    blocks, seed, size = 256, 9, 16 << 20
    area = blocks * 4096  # the guest's workload: the image's first MiB
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    data = os.urandom(size)
    for path in (pimg, rimg):  # the replica's copy seeded equal (castor disk sync would)
        with open(path, "wb") as f:
            f.write(data)
    guest = ["rate=50", "wss=1M", "outrate=50", "blkrate=400", "blkfirst=0",
             f"blkcount={blocks}", f"seed={seed}"]
    pair = Pair(d, guest, ["--interval", "10", "--verify"], rw=(pimg, rimg))
    try:
        pair.wait_protected()
        # the guest writes only its first MiB: the rest is the replica's already
        disk_copy_within(pair.psock, size, area, "protecting toward an equal copy")
        ct.blk_writes(pair.psock, 100, "the guest to write while protected")
        # the replica dies; the primary goes on unprotected and rewrites its area
        pair.replica.send_signal(signal.SIGKILL)
        pair.replica.wait(10)
        wait_for("degraded", lambda: ha(pair.psock)["state"] == "degraded", timeout=30)
        castor("ha", "unprotect", "--socket", pair.psock)
        ct.blk_writes(pair.psock, blocks, "a whole pass written unprotected")
        # a new replica on the old copy: only the area is sent again
        r2sock = f"{d}/r2.sock"
        pair.spawn([VMM, "replica", "--listen", "127.0.0.1:0", "--control", r2sock,
                    "--serial", "none", "--name", "twin2", "--event-log", f"{d}/r2.log",
                    "--repl-timeout", "10000", "--disk", rimg], "replica2")
        wait_for("the new replica's control socket", lambda: os.path.exists(r2sock))
        port = wait_for("the new replica's port", lambda: ha(r2sock)["port"])
        castor("ha", "protect", "--socket", pair.psock, "--peer", f"127.0.0.1:{port}",
               "--verify", "--interval", "10")
        wait_for("protected again", lambda: ha(pair.psock)["state"] == "protected",
                 timeout=ct.patience(60))
        h = disk_copy_within(pair.psock, size, area, "re-protection")
        if h["disk_copy_bytes"] < 64 << 10:
            raise Fail(f"re-protection sent {h['disk_copy_bytes']} bytes: the guest "
                       f"rewrote its whole area while unprotected")
        ct.blk_writes(pair.psock, 100, "the guest to write while protected again")
        pair.primary.send_signal(signal.SIGKILL)
        pair.primary.wait(10)
        wait_for("the replica to notice", lambda: ha(r2sock)["state"] == "primary-lost")
        r = ha(r2sock)
        if r["verify_bad"]:
            raise Fail(f"{r['verify_bad']} RAM digests differed: {r['last_error']}")
        fo = json.loads(castor("ha", "failover", "--socket", r2sock, "--json").stdout)
        if fo["state"] != "failed-over":
            raise Fail(f"failover: {fo}")
        io, v0 = ct.check_guest_disk(TGCHECK, r2sock, rimg, blocks, seed, f"{d}/twin.snap",
                                     f"the twin after epoch {fo['epoch']}")
        print(f"after failover at epoch {fo['epoch']}: the disk matches the twin's RAM; "
              f"{io['blk_verified'] - v0} blocks read back right")
    finally:
        pair.close()


def case_diskverify(d):
    blocks, seed = 1024, 11
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    data = os.urandom(8 << 20)
    for path in (pimg, rimg):  # equal: epoch 0's digest checks the copy that sent nothing
        with open(path, "wb") as f:
            f.write(data)
    guest = ["rate=50", "wss=1M", "outrate=50", "blkrate=3000", "blkfirst=0",
             f"blkcount={blocks}", f"seed={seed}"]
    epochs = ct.reps(500)
    pair = Pair(d, guest, ["--interval", "5", "--verify"], rw=(pimg, rimg))
    try:
        pair.wait_protected()
        w0 = vm_status(pair.psock)["guest_io"]["blk_written"]

        def enough():
            p = ha(pair.psock)
            if p["state"] != "protected":
                r = ha(pair.rsock)
                raise Fail(f"the primary is {p['state']} after {p['epochs']} epochs: "
                           f"{p['last_error']}; replica: {r['last_error']}")
            return p["epochs"] >= epochs
        wait_for(f"{epochs} epochs", enough, timeout=ct.patience(300), step=0.5)
        r = ha(pair.rsock)
        written = vm_status(pair.psock)["guest_io"]["blk_written"] - w0
        if r["verify_bad"] or r["disk_verify_ok"] < epochs or r["verify_ok"] < epochs:
            raise Fail(f"replica digests: {r['verify_ok']} epochs and {r['disk_verify_ok']} "
                       f"disk images matched, {r['verify_bad']} differed: {r['last_error']}")
        if written < epochs or not r["disk_bytes"]:
            raise Fail(f"the guest wrote {written} blocks in {epochs} epochs, the replica "
                       f"applied {r['disk_bytes']} bytes: the disk was not under load")
        print(f"{r['epochs']} epochs: {r['disk_verify_ok']} disk digests equal at commit; "
              f"{written} blocks written, {r['disk_bytes']} bytes applied to the copy")
        # a range of the copy changed behind the replica's back (outside the guest's area)
        with open(rimg, "r+b") as f:
            f.seek(7 << 20)
            f.write(bytes(b ^ 0xff for b in data[7 << 20:(7 << 20) + 4096]))
        wait_for("the changed copy to be caught", lambda: ha(pair.psock)["state"] != "protected",
                 timeout=ct.patience(30))
        p, r = ha(pair.psock), ha(pair.rsock)
        if (p["state"] != "degraded" or "disk digest differs" not in p["last_error"]
                or not r["verify_bad"] or "disk 0's digest" not in r["last_error"]
                or not r["twin_unusable"]):
            raise Fail(f"a changed copy: primary {p['state']} ({p['last_error']}); replica "
                       f"{r['verify_bad']} differed, unusable {r['twin_unusable']} "
                       f"({r['last_error']})")
        print(f"a changed copy caught: {r['last_error']}")
        castor("vm", "quit", "--socket", pair.psock)
        pair.primary.wait(10)
        check_order(pair.plog)
    finally:
        pair.close()


def case_diskbad(d):
    # a copy the replica cannot write: refused before it listens
    r = subprocess.run([VMM, "replica", "--listen", "127.0.0.1:0", "--control", f"{d}/b.sock",
                        "--serial", "none", "--disk", d], capture_output=True, text=True,
                       timeout=30)
    if r.returncode == 0 or "the replica cannot write its copy there" not in r.stderr:
        raise Fail(f"a replica copy that is a folder: exit {r.returncode}, {r.stderr.strip()!r}")
    # a copy smaller than the primary's image
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    with open(pimg, "wb") as f:
        f.write(os.urandom(4 << 20))
    with open(rimg, "wb") as f:
        f.truncate(1 << 20)
    pair = Pair(d, ["rate=50", "wss=1M", "outrate=50"], ["--interval", "10"], rw=(pimg, rimg))
    try:
        wait_for("the primary's control socket", lambda: os.path.exists(pair.psock))
        wait_for("the primary to give up", lambda: ha(pair.psock)["state"] == "degraded",
                 timeout=ct.patience(60))
        rs = ha(pair.rsock)
        if "larger than the replica's" not in rs["last_error"] or rs["state"] != "idle":
            raise Fail(f"the replica: {rs['state']}, {rs['last_error']!r}")
        print(f"refused: {r.stderr.strip()}; a smaller copy: the replica says "
              f"{rs['last_error']!r} and waits again, the primary says "
              f"{ha(pair.psock)['last_error']!r}")
    finally:
        pair.close()
    # the replica's file system fills up: its copy (sparse: the primary's image is all
    # zeros, sent as zeroings) takes nothing at first, then the guest's writes fill it
    os.unlink(pimg)
    with open(pimg, "wb") as f:
        f.truncate(8 << 20)
    small = f"{d}/small"
    os.makedirs(small)
    wrap = ["unshare", "-m", "sh", "-c",
            f'mount -t tmpfs -o size=2m none {small} && truncate -s 8M {small}/r.img && '
            'exec "$@"', "sh"]
    pair = Pair(d, ["rate=50", "wss=1M", "outrate=50", "blkrate=2000", "blkfirst=0",
                    "blkcount=2048"], ["--interval", "10"], rw=(pimg, f"{small}/r.img"),
                replica_wrap=wrap)
    try:
        pair.wait_protected(cut=True)  # it may fill up and degrade at once
        wait_for("the primary to degrade", lambda: ha(pair.psock)["state"] == "degraded",
                 timeout=ct.patience(60))
        p, rs = ha(pair.psock), ha(pair.rsock)
        if "No space left on device" not in rs["last_error"] or not rs["twin_unusable"]:
            raise Fail(f"the full replica: {rs['state']}, unusable {rs['twin_unusable']}, "
                       f"{rs['last_error']!r}")
        if not p["outputs_held"] and not p["outputs_queued"]:
            raise Fail(f"the degraded primary released its outputs: {p}")
        r = castor("ha", "failover", "--socket", pair.rsock, "--force", check=False)
        if r.returncode == 0:
            raise Fail("a failover to a twin whose disk is between epochs was allowed")
        print(f"a full replica: it says {rs['last_error']!r}; the primary says "
              f"{p['last_error']!r} and holds its outputs; failover refused: "
              f"{r.stderr.strip()}")
    finally:
        pair.close()


def case_async(d):
    rpo = 2000
    # a link cap well above what the guest needs: it is applied and said back
    pair = Pair(d, ["rate=50", "wss=1M", "outrate=100"],
                ["--mode", "async", "--rpo", str(rpo), "--verify", "--max-mbit", "500"])
    try:
        pair.wait_protected()
        wait_for("three checkpoints", lambda: ha(pair.psock)["epochs"] >= 3,
                 timeout=ct.patience(60))
        p = ha(pair.psock)
        if p["mode"] != "async" or p["rpo_target_ms"] != rpo or p["interval_ms"] != rpo // 2 \
                or p["max_mbit"] != 500:
            raise Fail(f"async session: mode {p['mode']}, target {p['rpo_target_ms']} ms, "
                       f"interval {p['interval_ms']} ms, cap {p['max_mbit']} Mbit/s")
        if p["outputs_held"]:
            raise Fail(f"async mode held {p['outputs_held']} outputs")
        # a replica that answers nothing: outputs flow on, the RPO grows past its target
        pair.replica.send_signal(signal.SIGSTOP)
        try:
            wait_for("the RPO past its target",
                     lambda: ha(pair.psock)["rpo_ns"] > 2 * rpo * 1000000,
                     timeout=ct.patience(30))
            # an ack the replica sent just before it stopped may still be read after the
            # stop: the frozen stretch is measured from here, once the RPO shows it
            p = ha(pair.psock)
            out0, e0 = p["outputs_released"], p["acked_epoch"]
            time.sleep(1.5)
            p = ha(pair.psock)
            out1 = p["outputs_released"]
            if p["acked_epoch"] != e0 or out1 <= out0 or p["outputs_held"]:
                raise Fail(f"the replica frozen: acked epoch {e0} -> {p['acked_epoch']}, "
                           f"outputs {out0} -> {out1}, {p['outputs_held']} held")
        finally:
            pair.replica.send_signal(signal.SIGCONT)
        wait_for("checkpoints again, and the alert",
                 lambda: (lambda h: h["acked_epoch"] > e0 + 1 and h["rpo_alerts"] >= 1)(
                     ha(pair.psock)), timeout=ct.patience(60))
        if "RPO alert" not in open(f"{d}/primary.out").read():
            raise Fail("no RPO alert in the primary's log")
        p, r = ha(pair.psock), ha(pair.rsock)
        if p["state"] != "protected" or r["verify_bad"]:
            raise Fail(f"after the thaw: primary {p['state']} ({p['last_error']}), "
                       f"{r['verify_bad']} digests differed")
        # castor dr at both ends: the RPO at the primary; at the replica its checkpoint,
        # and a failover refused while the primary streams
        dp = json.loads(castor("dr", "status", "--socket", pair.psock, "--json").stdout)
        dr = json.loads(castor("dr", "status", "--socket", pair.rsock, "--json").stdout)
        if not dp["dr_session"] or dp["rpo_target_ms"] != rpo or dp["role"] != "primary":
            raise Fail(f"castor dr status at the primary: {dp}")
        if dr["role"] != "replica" or dr["failover_ready"] or not dr["ckpt_age_ns"]:
            raise Fail(f"castor dr status at the replica: {dr}")
        r = castor("dr", "failover", "--socket", pair.rsock, check=False)
        if r.returncode != 1 or "still streams checkpoints" not in r.stderr:
            raise Fail(f"dr failover while the primary streams: exit {r.returncode}, "
                       f"{r.stderr.strip()}")
        # the primary's host dies: the replica runs from its last checkpoint
        pair.primary.send_signal(signal.SIGKILL)
        pair.primary.wait(10)
        wait_for("the replica to notice", lambda: ha(pair.rsock)["state"] == "primary-lost",
                 timeout=ct.patience(30))
        dr = json.loads(castor("dr", "status", "--socket", pair.rsock, "--json").stdout)
        if not dr["failover_ready"]:
            raise Fail(f"castor dr status with the primary lost: {dr}")
        fo = json.loads(castor("dr", "failover", "--socket", pair.rsock, "--json").stdout)
        if fo["state"] != "failed-over" or fo["epoch"] != dr["epoch"] or not fo["ckpt_age_ns"]:
            raise Fail(f"dr failover: {fo} (status before it: {dr})")
        c0 = vm_status(pair.rsock)["guest_counter"]
        wait_for("the twin's guest to go on", lambda: vm_status(pair.rsock)["guest_counter"] > c0,
                 timeout=ct.patience(20))
        print(f"async: RPO p50 {p['rpo_p50_ns'] / 1e9:.2f} s, p99 {p['rpo_p99_ns'] / 1e9:.2f} s "
              f"(target {rpo / 1e3:.1f} s), {p['rpo_alerts']} alert(s) while the replica was "
              f"frozen; outputs flowed ({out0} -> {out1}); castor dr failover started the "
              f"copy from checkpoint {fo['epoch']}, applied {fo['ckpt_age_ns'] / 1e9:.1f} s "
              "before")
    finally:
        pair.close()


def dr_takeover(pair, cli="dr"):
    """The primary's site dies (kill -9): castor dr failover (or, cli "ha", castor ha
    failover at a synchronous twin) starts the copy from its last checkpoint, and its
    guest goes on. The failover's JSON."""
    pair.primary.send_signal(signal.SIGKILL)
    pair.primary.wait(10)
    wait_for("the replica to notice", lambda: ha(pair.rsock)["state"] == "primary-lost",
             timeout=ct.patience(60))
    fo = json.loads(castor(cli, "failover", "--socket", pair.rsock, "--json").stdout)
    if fo["state"] != "failed-over":
        raise Fail(f"{cli} failover: {fo}")
    c0 = vm_status(pair.rsock)["guest_counter"]
    wait_for("the copy's guest to go on", lambda: vm_status(pair.rsock)["guest_counter"] > c0,
             timeout=ct.patience(20))
    return fo


def case_drtest(d):
    """castor dr test: the DR replica's newest checkpoint -- RAM, state and its replicated
    disk -- copied while checkpoints go on; the copy is of one checkpoint (tgcheck: its
    disk holds what its RAM says the guest wrote); a second copy boots (--boot) in a
    network namespace of its own and reads its disk back right; refusals."""
    blocks, seed = 1024, 7
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    for path in (pimg, rimg):
        with open(path, "wb") as f:
            f.write(os.urandom(8 << 20))
    guest = ["rate=50", "wss=1M", "outrate=50", "blkrate=800", "blkfirst=0",
             f"blkcount={blocks}", f"seed={seed}"]
    pair = Pair(d, guest, ["--mode", "async", "--rpo", "1000", "--verify"], rw=(pimg, rimg))
    pid = None
    try:
        # at once: refused until the initial copy is there (which may be quick)
        r = castor("dr", "test", "--socket", pair.rsock, "--dir", f"{d}/early", check=False)
        if r.returncode and (r.returncode != 1 or "no checkpoint yet" not in r.stderr):
            raise Fail(f"dr test before the initial copy: exit {r.returncode}, "
                       f"{r.stderr.strip()}")
        pair.wait_protected()
        wait_for("three checkpoints", lambda: ha(pair.psock)["acked_epoch"] >= 3,
                 timeout=ct.patience(60))
        ct.blk_writes(pair.psock, 100, "the guest to write while protected")
        r = castor("dr", "test", "--socket", pair.psock, "--dir", f"{d}/x", check=False)
        if r.returncode != 1 or "not a replica" not in r.stderr:
            raise Fail(f"dr test at the primary: exit {r.returncode}, {r.stderr.strip()}")
        # a copy, checked whole: RAM and disk of one checkpoint
        one = json.loads(castor("dr", "test", "--socket", pair.rsock, "--dir", f"{d}/one",
                                "--json").stdout)
        copy = f"{d}/one/disk0.img"
        if one["disks"] != [copy] or one["snapshot"] != f"{d}/one/checkpoint.snap" or \
                one["disk_bytes"] != 8 << 20 or one["epoch"] < 3:
            raise Fail(f"dr test: {one}")
        for f in (one["snapshot"], copy):
            if os.stat(f).st_mode & 0o777 != 0o600:
                raise Fail(f"{f} is {oct(os.stat(f).st_mode & 0o777)}, not 0600")
        if [f for f in os.listdir(f"{d}/one") if f.endswith(".tmp")]:
            raise Fail(f"leftovers: {os.listdir(d + '/one')}")
        chk = subprocess.run([TGCHECK, "--disk", f"{copy},0,{blocks},{seed}", one["snapshot"]],
                             capture_output=True, text=True, timeout=120)
        if chk.returncode:
            raise Fail(f"the copy of checkpoint {one['epoch']}: {chk.stdout.strip()} "
                       f"{chk.stderr.strip()}")
        castor("stream", "verify", one["snapshot"])  # a full snapshot as any other
        again = castor("dr", "test", "--socket", pair.rsock, "--dir", f"{d}/one", check=False)
        if again.returncode != 1 or "exists already" not in again.stderr:
            raise Fail(f"dr test into a used directory: exit {again.returncode}, "
                       f"{again.stderr.strip()}")
        # checkpoints went on through the copy; a second copy boots, isolated
        e1 = one["epoch"]
        wait_for("a checkpoint after the copy", lambda: ha(pair.rsock)["epoch"] > e1,
                 timeout=ct.patience(60))
        two = json.loads(castor("dr", "test", "--socket", pair.rsock, "--dir", f"{d}/two",
                                "--boot", "--vmm", VMM, "--json").stdout)
        pid, tsock = two["pid"], two["control"]
        if two["epoch"] <= e1 or tsock != f"{d}/two/test.sock":
            raise Fail(f"dr test --boot: {two} (the first copy was of checkpoint {e1})")
        st = vm_status(tsock)
        if st["run_state"] != "running":
            raise Fail(f"the test copy is {st['run_state']}")
        if subprocess.run(["ip", "link", "show", "drtest0"], capture_output=True).returncode == 0:
            raise Fail("the test copy's tap is in the host's namespace")
        io0 = st["guest_io"]
        wait_for("the test copy to read a whole pass back",
                 lambda: vm_status(tsock)["guest_io"]["blk_verified"] >= io0["blk_verified"] +
                 blocks, timeout=ct.patience(60))
        io = vm_status(tsock)["guest_io"]
        if io["blk_bad"] or io["blk_io_errors"]:
            raise Fail(f"the test copy found {io['blk_bad']} bad blocks, "
                       f"{io['blk_io_errors']} I/O errors")
        castor("vm", "quit", "--socket", tsock)
        wait_for("the test copy to end", lambda: not os.path.exists(f"/proc/{pid}"),
                 timeout=ct.patience(30))
        pid = None
        # the DR session never noticed
        e2 = two["epoch"]
        wait_for("a checkpoint after the boot", lambda: ha(pair.rsock)["epoch"] > e2,
                 timeout=ct.patience(60))
        p, r = ha(pair.psock), ha(pair.rsock)
        if p["state"] != "protected" or r["verify_bad"] or not r["verify_ok"]:
            raise Fail(f"the session after the drill: primary {p['state']} "
                       f"({p['last_error']}), {r['verify_ok']} digests matched, "
                       f"{r['verify_bad']} differed")
        print(f"dr test: checkpoint {e1} copied in {one['copy_ns'] / 1e6:.0f} ms "
              f"({one['snapshot_bytes'] >> 20} MiB RAM and state, 8 MiB disk), its disk "
              f"matches its RAM; checkpoint {e2} booted isolated and read {blocks} blocks "
              f"back right; the session went on to checkpoint {r['epoch']}, "
              f"{r['verify_ok']} digests matched")
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pair.close()


def case_drbeside(d):
    """A DR session beside the synchronous twin: both verify; output commit follows the
    twin's acks alone; the DR replica frozen, the twin's epochs and outputs go on while
    the DR RPO grows; a second DR session and a migration are refused meanwhile; castor
    dr unprotect stops the DR session only; then the twin takes over as usual."""
    pair = Pair(d, ["rate=50", "wss=1M", "outrate=100"], ["--interval", "20", "--verify"])
    drsock = f"{d}/dr.sock"
    try:
        pair.wait_protected()
        dr = pair.spawn([VMM, "replica", "--listen", "127.0.0.1:0", "--control", drsock,
                         "--serial", "none", "--name", "drcopy", "--event-log", f"{d}/dr.log",
                         "--repl-timeout", "10000"], "dr")
        wait_for("the DR replica's control socket", lambda: os.path.exists(drsock))
        port = wait_for("the DR replica's port", lambda: ha(drsock)["port"])
        castor("ha", "protect", "--socket", pair.psock, "--peer", f"127.0.0.1:{port}",
               "--mode", "async", "--rpo", "1000", "--verify", "--wait")
        h = ha(pair.psock)
        if h["mode"] != "interval" or h["state"] != "protected" or \
                h.get("dr", {}).get("state") != "protected":
            raise Fail(f"ha status with both sessions: {h}")
        ds = json.loads(castor("dr", "status", "--socket", pair.psock, "--json").stdout)
        if not ds["dr_session"] or ds["rpo_target_ms"] != 1000 or ds["state"] != "protected":
            raise Fail(f"castor dr status beside the twin: {ds}")
        r = castor("ha", "protect", "--socket", pair.psock, "--peer", "127.0.0.1:9",
                   "--mode", "async", check=False)
        if r.returncode != 1 or "already keeping a DR copy" not in r.stderr:
            raise Fail(f"a second DR session: exit {r.returncode}, {r.stderr.strip()}")
        r = castor("migrate", "--socket", pair.psock, "--to", "127.0.0.1:9", check=False)
        if r.returncode != 1 or "keeps a DR copy" not in r.stderr:
            raise Fail(f"migrate with a DR session: exit {r.returncode}, {r.stderr.strip()}")
        wait_for("three DR checkpoints", lambda: ha(pair.psock)["dr"]["acked_epoch"] >= 3,
                 timeout=ct.patience(60))
        # the DR site stops answering: the twin's session does not notice
        dr.send_signal(signal.SIGSTOP)
        try:
            wait_for("the DR RPO past twice its target",
                     lambda: ha(pair.psock)["dr"]["rpo_ns"] > 2000000000,
                     timeout=ct.patience(30))
            p0 = ha(pair.psock)
            time.sleep(2.0)
            p1 = ha(pair.psock)
            # the emulated test machine acks only a few 20 ms epochs a second: any will do
            if p1["state"] != "protected" or p1["acked_epoch"] <= p0["acked_epoch"] or \
                    p1["outputs_released"] <= p0["outputs_released"]:
                raise Fail(f"the DR replica frozen: the twin's session acked "
                           f"{p0['acked_epoch']} -> {p1['acked_epoch']}, outputs "
                           f"{p0['outputs_released']} -> {p1['outputs_released']}, "
                           f"state {p1['state']}")
            de = p1["dr"]["acked_epoch"]
        finally:
            dr.send_signal(signal.SIGCONT)
        wait_for("DR checkpoints again", lambda: ha(pair.psock)["dr"]["acked_epoch"] > de + 1,
                 timeout=ct.patience(60))
        castor("dr", "unprotect", "--socket", pair.psock)
        h = ha(pair.psock)
        if "dr" in h or h["state"] != "protected" or h["mode"] != "interval":
            raise Fail(f"after castor dr unprotect: {h}")
        r = castor("dr", "unprotect", "--socket", pair.psock, check=False)
        if r.returncode != 1 or "no DR session" not in r.stderr:
            raise Fail(f"dr unprotect twice: exit {r.returncode}, {r.stderr.strip()}")
        for who, sock in (("twin", pair.rsock), ("DR replica", drsock)):
            s_ = ha(sock)
            if s_["verify_bad"] or not s_["verify_ok"]:
                raise Fail(f"the {who}: {s_['verify_ok']} digests matched, "
                           f"{s_['verify_bad']} differed: {s_['last_error']}")
        nd = ha(drsock)["verify_ok"]
        # output commit followed the twin's acks (the DR session's lines are apart)
        check_order(pair.plog)
        if not any(f[:2] == ["dr", "ack"] for f in read_log(pair.plog)):
            raise Fail("no DR ack in the primary's event log")
        fo = dr_takeover(pair, "ha")
        print(f"DR beside the twin: both verified (DR {nd} digests); the DR replica frozen, "
              f"the twin's session acked {p0['acked_epoch']} -> {p1['acked_epoch']} and "
              f"released {p1['outputs_released'] - p0['outputs_released']} outputs "
              f"meanwhile; dr unprotect left the twin protected; the twin took over at "
              f"epoch {fo['epoch']}")
    finally:
        pair.close()


def case_asyncresume(d):
    """A DR session whose link breaks (the replica frozen past the primary's timeout)
    resumes from the replica's checkpoint, twice, with no full copy; verify mode
    digests every checkpoint after it; then the DR copy takes over."""
    pair = Pair(d, ["rate=50", "wss=1M", "outrate=100"],
                ["--mode", "async", "--rpo", "1000", "--verify", "--repl-timeout", "3000"])
    cycles = 2
    try:
        pair.wait_protected()
        wait_for("three checkpoints", lambda: ha(pair.psock)["epochs"] >= 3,
                 timeout=ct.patience(60))
        rng = random.Random()
        for n in range(cycles):
            pair.replica.send_signal(signal.SIGSTOP)
            try:
                wait_for(f"cut {n}: the primary degraded",
                         lambda: ha(pair.psock)["state"] == "degraded",
                         timeout=ct.patience(30), step=0.05)
                # outputs flow while the link is down (async holds none)
                out0 = ha(pair.psock)["outputs_released"]
                time.sleep(rng.uniform(0.2, 1.5))
                if ha(pair.psock)["outputs_released"] <= out0:
                    raise Fail(f"cut {n}: no output flowed while the link was down")
            finally:
                pair.replica.send_signal(signal.SIGCONT)
            wait_for(f"cut {n}: resumed", lambda: ha(pair.psock)["state"] == "protected"
                     and ha(pair.rsock)["state"] == "protected", timeout=ct.patience(60))
            v0 = ha(pair.rsock)["verify_ok"]
            wait_for(f"cut {n}: three checkpoints verified after the resume",
                     lambda: ha(pair.rsock)["verify_ok"] >= v0 + 3, timeout=ct.patience(60))
            r = ha(pair.rsock)
            if r["verify_bad"] or r["twin_unusable"]:
                raise Fail(f"cut {n}: after the resume {r['verify_bad']} digests differed: "
                           f"{r['last_error']}")
        plog = open(f"{d}/primary.out").read()
        resumed = [ln for ln in plog.splitlines() if "async: resumed toward" in ln]
        if len(resumed) != cycles or plog.count("initial copy:") != 1:
            raise Fail(f"{len(resumed)} resumes and {plog.count('initial copy:')} initial "
                       f"copies in the primary's log (want {cycles} and 1)")
        rlog = open(f"{d}/replica.out").read()
        if rlog.count("the primary resumes from checkpoint") != cycles:
            raise Fail("the replica did not log each resume")
        fo = dr_takeover(pair)
        how = [("lost in flight" if "was lost" in ln else "ack lost") for ln in resumed]
        print(f"asyncresume: {cycles} link breaks resumed without a full copy ({', '.join(how)}); "
              f"{ha(pair.rsock)['verify_ok']} checkpoints verified; the DR copy took over at "
              f"checkpoint {fo['epoch']}")
    finally:
        pair.close()
    # every link cut after 48 MiB (CASTOR_TEST_CUT_AFTER), inside a checkpoint of a guest
    # rewriting 2 x 4 MiB: the replica keeps the one before, the primary takes the lost one
    # back and sends its pages again; verify mode checks every checkpoint applied after
    pair = Pair(d, ["rate=max", "wss=4M", "outrate=100"],
                ["--mode", "async", "--rpo", "400", "--verify", "--repl-timeout", "3000"],
                cut_after=48 << 20)
    try:
        pair.wait_protected(cut=True)

        def lost_twice():
            r = ha(pair.rsock)
            if r["verify_bad"] or r["twin_unusable"]:
                raise Fail(f"after a cut mid-checkpoint: {r['verify_bad']} digests differed: "
                           f"{r['last_error']}")
            return open(f"{d}/primary.out").read().count("the one in flight was lost") >= 2

        wait_for("two checkpoints lost in flight and resumed", lost_twice,
                 timeout=ct.patience(120), step=0.5)
        v0 = ha(pair.rsock)["verify_ok"]
        wait_for("a checkpoint verified after them", lambda: ha(pair.rsock)["verify_ok"] > v0,
                 timeout=ct.patience(60))
        lost_twice()
        plog = open(f"{d}/primary.out").read()
        if plog.count("initial copy:") != 1 or "taken back" not in plog:
            raise Fail("cuts mid-checkpoint: want one initial copy and a snapshot taken back")
        print(f"asyncresume: links cut mid-checkpoint {plog.count('was lost')} times, each "
              f"resumed with the lost checkpoint's pages sent again; "
              f"{ha(pair.rsock)['verify_ok']} checkpoints verified")
    finally:
        pair.close()


WAN_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net", "wan.sh")
WAN_B_IP = "10.98.0.2"  # wan.sh's host b
GUEST_NET = "10.97.0"  # the guest's own network at either site (a tap per site)
TGCLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net", "tgclient.py")


def wan(cmd, tag):
    """tests/net/wan.sh up|down TAG: two hosts joined through TAG-link (net_linkemu's)."""
    r = subprocess.run([WAN_SH, cmd, tag], capture_output=True, text=True)
    if r.returncode and cmd == "up":
        raise Fail(f"wan.sh up: {r.stderr.strip()}")


def case_asyncwan(d):
    """Async mode over a WAN (linkemu.py: 50 ms each way, 1 % loss, 20 Mbit/s): the
    primary in one namespace, the DR replica in another. Checkpoints commit and verify
    across it; the link dies (the emulator stopped) for longer than the timeout: the
    primary goes degraded and the replica keeps its last checkpoint; the link back, the
    session resumes without a full copy; then the DR copy takes over and its RAM verifies
    against the guest's own rule (tgcheck_snap on a snapshot of it)."""
    tag = f"castor-wan{os.getpid()}"
    emu_argv = ["ip", "netns", "exec", f"{tag}-link", sys.executable,
                os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net",
                             "linkemu.py"), "--a", "a1", "--b", "b1", "--delay-ms", "50",
                "--loss", "1", "--rate-kbit", "20000", "--queue", "5000", "--duration", "600"]
    emu = pair = None

    def start_emu():
        p = subprocess.Popen(emu_argv, stderr=subprocess.PIPE, text=True)
        if "linkemu: forwarding" not in p.stderr.readline():
            raise Fail("linkemu.py did not start")
        return p

    def stop_emu(p):
        if p and p.poll() is None:
            p.terminate()
            p.wait(10)

    wan("up", tag)
    try:
        emu = start_emu()
        key = f"{d}/wan.key"
        castor("key", "generate", key)
        # each site gives the guest a NIC on a tap of its own, host side GUEST_NET.1
        for site in ("a", "b"):
            for cmd in (["tuntap", "add", "gtap", "mode", "tap"],
                        ["addr", "add", f"{GUEST_NET}.1/24", "dev", "gtap"],
                        ["link", "set", "gtap", "up"]):
                subprocess.run(["ip", "-n", f"{tag}-{site}", *cmd], check=True)
        pair = Pair(d, ["rate=50", "wss=1M", "outrate=100", f"ip={GUEST_NET}.2"],
                    ["--mode", "async", "--rpo", "3000", "--verify", "--repl-timeout", "4000",
                     "--net", "tap=gtap"],
                    replica_wrap=["ip", "netns", "exec", f"{tag}-b"],
                    primary_wrap=["ip", "netns", "exec", f"{tag}-a"],
                    listen=WAN_B_IP, key=key, replica_args=["--net", "tap=gtap"])
        # the initial copy, about 10 MB on the wire, crawls: 1 % loss at 100 ms RTT holds
        # TCP near 1.4 Mbit/s (Mathis), whatever the cap
        wait_for("the primary's control socket", lambda: pair.dead(pair.primary) or
                 os.path.exists(pair.psock))
        wait_for("protection across the WAN", lambda: pair.dead(pair.primary) or
                 ha(pair.psock)["state"] in ("protected", "degraded"), timeout=ct.patience(200))
        if pair.dead(pair.primary) or ha(pair.psock)["state"] != "protected":
            raise Fail("the initial copy across the WAN did not complete")
        wait_for("five checkpoints verified across the WAN",
                 lambda: ha(pair.rsock)["verify_ok"] >= 5, timeout=ct.patience(120))
        p = ha(pair.psock)
        rtt = p["ack_rtt_p50_ns"] / 1e6
        if rtt < 100:
            raise Fail(f"an ack round trip of {rtt:.1f} ms through a 100 ms RTT link")
        # the link dies past the timeout: degraded; the replica stays at its checkpoint
        stop_emu(emu)
        wait_for("the primary degraded", lambda: ha(pair.psock)["state"] == "degraded",
                 timeout=ct.patience(60))
        held = ha(pair.rsock)["epoch"]
        time.sleep(1.0)
        if ha(pair.rsock)["epoch"] != held or ha(pair.rsock)["twin_unusable"]:
            raise Fail(f"the replica moved or broke while its link was down: {ha(pair.rsock)}")
        emu = start_emu()
        wait_for("resumed across the WAN", lambda: ha(pair.psock)["state"] == "protected"
                 and ha(pair.rsock)["state"] == "protected", timeout=ct.patience(120))
        v0 = ha(pair.rsock)["verify_ok"]
        wait_for("three checkpoints verified after the resume",
                 lambda: ha(pair.rsock)["verify_ok"] >= v0 + 3, timeout=ct.patience(120))
        r, p = ha(pair.rsock), ha(pair.psock)
        if r["verify_bad"]:
            raise Fail(f"{r['verify_bad']} digests differed: {r['last_error']}")
        plog = open(f"{d}/primary.out").read()
        if plog.count("initial copy:") != 1 or "async: resumed toward" not in plog:
            raise Fail("want one initial copy and a resume in the primary's log")
        # the primary's site is lost: the DR copy takes over, answers a client at the DR
        # site, and its RAM is the guest's
        fo = dr_takeover(pair)
        cl = subprocess.run(["ip", "netns", "exec", f"{tag}-b", sys.executable, TGCLIENT, "udp",
                             "--host", f"{GUEST_NET}.2", "--count", "20", "--timeout",
                             str(ct.patience(10))], capture_output=True, text=True, timeout=300)
        if cl.returncode:
            raise Fail(f"a client at the DR site: {cl.stdout.strip()} {cl.stderr.strip()}")
        snap = f"{d}/dr.snap"
        castor("vm", "pause", "--socket", pair.rsock)
        castor("vm", "snapshot", "--socket", pair.rsock, "--file", snap)
        chk = subprocess.run([TGCHECK, "--nics", "1", snap], capture_output=True, text=True,
                             timeout=120)
        if chk.returncode:
            raise Fail(f"the DR copy's RAM: {chk.stdout.strip()} {chk.stderr.strip()}")
        print(f"asyncwan: 100 ms RTT, 1 % loss, 20 Mbit/s: ack rtt p50 {rtt:.0f} ms, RPO p50 "
              f"{p['rpo_p50_ns'] / 1e9:.2f} s p99 {p['rpo_p99_ns'] / 1e9:.2f} s (target 3 s, "
              f"{p['rpo_alerts']} alerts); the link down past the timeout, resumed, "
              f"{r['verify_ok']} checkpoints verified; the DR copy took over at checkpoint "
              f"{fo['epoch']}, answered a client there ({cl.stdout.strip()[:60]}) and its "
              f"RAM verifies ({chk.stdout.strip()[:80]})")
    finally:
        if pair:
            pair.close()
        stop_emu(emu)
        wan("down", tag)


def case_output(d):
    guest = ["rate=max", "wss=1M", "outrate=100"]
    # an interval far longer than an epoch's pause and ack, even on the nested
    # test machine (tests/README.md): every epoch that ends is ended by an output
    p, _, _ = case_verify(d, guest, ["--mode", "output", "--interval", "2000",
                                     "--min-spacing", "2", "--verify"], ct.reps(100))
    if p["early_ends"] < ct.reps(100) // 2:
        raise Fail(f"output mode: only {p['early_ends']} epochs ended by output")


def thread_cpu_ticks(pid, comm):
    """utime + stime (clock ticks) of the threads of `pid` named `comm`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if name == comm:
            total += int(fields[11]) + int(fields[12])
    return total


def thread_sched(pid, comm):
    """(nice, real-time priority, policy) of each thread of `pid` named `comm`
    (proc(5): fields 19, 40, 41; policy 0 is SCHED_OTHER, 1 SCHED_FIFO)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:  # a short-lived thread ended after the listing
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] == comm:
            fields = stat[stat.rindex(")") + 2:].split()
            out.append((int(fields[16]), int(fields[37]), int(fields[38])))
    return out


def check_idle_wait(d):
    """Between epochs the replication thread sleeps: it does not spin on the clock.
    And --repl-nice and --repl-rt schedule both replication threads: SCHED_FIFO 1
    unless told otherwise."""
    pair = Pair(d, ["rate=1", "wss=64K", "outrate=1"], ["--interval", "200", "--repl-nice", "-3"],
                replica_args=["--repl-nice", "4", "--repl-rt", "0"])
    try:
        pair.wait_protected()
        repl, twin = (thread_sched(pair.primary.pid, "castor-repl"),
                      thread_sched(pair.replica.pid, "castor-twin"))
        if repl != [(-3, 1, 1)] or twin != [(4, 0, 0)]:
            raise Fail(f"--repl-nice/--repl-rt: castor-repl {repl}, castor-twin {twin} "
                       f"(nice, rt priority, policy)")
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = thread_cpu_ticks(pair.primary.pid, "castor-repl"), time.monotonic()
        time.sleep(2)
        c1, t1 = thread_cpu_ticks(pair.primary.pid, "castor-repl"), time.monotonic()
        busy = (c1 - c0) / hz / (t1 - t0)
        if busy > 0.10:
            raise Fail(f"the replication thread was busy {busy:.0%} of 2 s of 200 ms epochs "
                       f"of an idle guest: it spins between epochs")
        print(f"replication thread busy {busy:.1%} between 200 ms epochs")
    finally:
        pair.close()


def case_cap(d):
    check_idle_wait(d)
    guest = ["rate=max", "wss=2M", "outrate=10"]
    # as in case_output: the interval never ends an epoch before the cap does
    p, _, _ = case_verify(d, guest, ["--interval", "5000", "--max-dirty", "64", "--verify"], 20)
    if p["early_ends"] < 10:
        raise Fail(f"the dirty cap ended only {p['early_ends']} epochs early")
    img = f"{d}/rw.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    base = [VMM, "run", "--mem", "32M", "--cpus", "1", "--test-guest", "--control",
            f"{d}/x.sock", "--serial", "none"]
    bad = [
        (base + ["--protect", "127.0.0.1:1", "--mode", "sideways"], 2,
         "is not interval, output or async"),
        (base + ["--protect", "127.0.0.1:1", "--interval", "0"], 2, "milliseconds"),
        (base + ["--verify"], 2, "need --protect"),
        (base + ["--protect", "127.0.0.1:1", "--repl-nice", "40"], 2, "not a nice value"),
        (base + ["--protect", "127.0.0.1:1", "--repl-rt", "100"], 2, "not a real-time priority"),
        (base + ["--protect", "127.0.0.1:1"], 1, "cannot reach the replica"),
        ([VMM, "replica", "--control", f"{d}/y.sock"], 2, "--listen"),
        ([VMM, "replica", "--listen", "127.0.0.1:0", "--control", f"{d}/y.sock", "--mem",
          "32M"], 2, "--mem does not apply to 'castor-vmm replica'"),
        ([VMM, "replica", "--listen", "127.0.0.2:1", "--control", f"{d}/y.sock", "--mode",
          "output"], 2, "--mode does not apply to 'castor-vmm replica'"),
    ]
    for argv, want_rc, want in bad:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != want_rc or want not in r.stderr:
            raise Fail(f"{' '.join(argv[1:])}: exit {r.returncode}, {r.stderr.strip()!r}; "
                       f"want exit {want_rc} and '{want}'")
    # a replica refuses VM requests until failover, and failover before any copy
    r = subprocess.Popen([VMM, "replica", "--listen", "127.0.0.1:0", "--control",
                          f"{d}/z.sock", "--serial", "none"], stderr=subprocess.DEVNULL)
    try:
        wait_for("the replica", lambda: os.path.exists(f"{d}/z.sock"))
        st = castor("vm", "status", "--socket", f"{d}/z.sock", check=False)
        fo = castor("ha", "failover", "--socket", f"{d}/z.sock", check=False)
        if st.returncode == 0 or "replica waiting for a failover" not in st.stderr:
            raise Fail(f"vm status on a replica: {st.stderr.strip()}")
        if fo.returncode == 0 or "initial copy never arrived" not in fo.stderr:
            raise Fail(f"failover without a twin: {fo.stderr.strip()}")
    finally:
        r.terminate()
        r.wait(10)
    print(f"dirty cap: {p['early_ends']} early epochs; {len(bad)} bad command lines refused")


def trial(d, n, rng):
    cut = None
    if n % 2:
        cut = rng.randint(24 << 20, 40 << 20)  # past the initial copy (mostly), inside an epoch
    mode = ["--mode", "output", "--min-spacing", "2", "--interval", "50"] if n % 4 == 3 \
        else ["--interval", str(rng.choice([5, 10, 20]))]
    pair = Pair(d, ["rate=max", "wss=1M", "outrate=300"], mode, cut_after=cut)
    try:
        if cut:
            # the connection may even die inside the initial copy: then there is no twin
            wait_for("the cut", lambda: ha(pair.rsock)["state"] == "primary-lost", 60)
            if ha(pair.rsock)["epochs"] == 0:
                r = castor("ha", "failover", "--socket", pair.rsock, check=False)
                if r.returncode == 0 or "initial copy never arrived" not in r.stderr:
                    raise Fail(f"failover without a twin: {r.returncode} {r.stderr.strip()}")
                if any(l[0] == "out" for l in read_log(pair.plog)):
                    raise Fail("outputs released before the initial copy was acked")
                print(f"trial {n}: cut at {cut} B inside the initial copy: failover refused, "
                      "nothing released: ok")
                return
        pair.wait_protected(cut=bool(cut))
        if cut:
            wait_for("the cut", lambda: ha(pair.rsock)["state"] == "primary-lost", 60)
        else:
            time.sleep(rng.uniform(0.2, 1.0))
        pair.primary.send_signal(signal.SIGKILL)
        pair.primary.wait(10)
        wait_for("the replica to notice", lambda: ha(pair.rsock)["state"] == "primary-lost")
        acked, seen = check_order(pair.plog)
        r = json.loads(castor("ha", "failover", "--socket", pair.rsock, "--json").stdout)
        if r["state"] != "failed-over":
            raise Fail(f"failover: {r}")
        if not (acked <= r["epoch"] <= acked + 1):
            raise Fail(f"the twin is at epoch {r['epoch']}, the primary's last ack was {acked}")
        time.sleep(0.3)  # the twin runs and emits
        snap = f"{d}/twin.snap"
        castor("vm", "pause", "--socket", pair.rsock)
        castor("vm", "snapshot", "--socket", pair.rsock, "--file", snap)
        chk = subprocess.run([TGCHECK, snap], capture_output=True, text=True)
        if chk.returncode:
            raise Fail(f"the twin's RAM: {chk.stdout.strip()} {chk.stderr.strip()}")
        twin = json.loads(chk.stdout)
        for v, (seq, ctr) in seen.items():
            if twin["out_seq"][v] <= seq or twin["counter"][v] < ctr:
                raise Fail(f"vCPU {v}: the outside saw output {seq} (counter {ctr}); the twin "
                           f"is at output {twin['out_seq'][v]}, counter {twin['counter'][v]}")
        # exactly once, seen from outside: the twin's outputs carry on after the primary's
        first = {}
        for f in read_log(pair.rlog):
            if f[0] == "out":
                first.setdefault(int(f[1]), int(f[2]))
        for v, s in first.items():
            if v in seen and s != seen[v][0] + 1 and s <= seen[v][0]:
                raise Fail(f"vCPU {v}: the twin re-emitted output {s}; the primary had "
                           f"released up to {seen[v][0]}")
        print(f"trial {n}: {'cut at ' + str(cut) + ' B, ' if cut else ''}primary acked "
              f"{acked}, twin at {r['epoch']}, outputs seen {dict((v, s[0]) for v, s in seen.items())}"
              f", twin out_seq {twin['out_seq']}: ok")
        os.unlink(snap)
    finally:
        pair.close()


def trials(d, one):
    """CASTOR_TRIALS (20, a fifth nested) runs of one(d, n, rng), seeded by CASTOR_SEED."""
    rng = random.Random(int(os.environ.get("CASTOR_SEED", time.time())))
    for n in range(int(os.environ.get("CASTOR_TRIALS", ct.reps(20)))):
        one(d, n, rng)


def main():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ct.skip("/dev/kvm is not usable here")
    with tempfile.TemporaryDirectory(prefix="castor-repl-") as d:
        try:
            if CASE == "verify":
                case_verify(d, ["rate=max", "wss=2M", "outrate=200"],
                            ["--interval", "5", "--verify"], ct.reps(500))
            elif CASE == "disk":
                case_disk(d)
            elif CASE == "diskverify":
                case_diskverify(d)
            elif CASE == "diskbad":
                case_diskbad(d)
            elif CASE == "diskresync":
                case_diskresync(d)
            elif CASE == "diskrw":
                trials(d, diskrw_trial)
            elif CASE == "output":
                case_output(d)
            elif CASE == "async":
                case_async(d)
            elif CASE == "asyncresume":
                case_asyncresume(d)
            elif CASE == "asyncwan":
                case_asyncwan(d)
            elif CASE == "drtest":
                case_drtest(d)
            elif CASE == "drbeside":
                case_drbeside(d)
            elif CASE == "cap":
                case_cap(d)
            elif CASE == "kill":
                trials(d, trial)
            else:
                print(f"unknown case {CASE}")
                return 2
        except Fail as e:
            print(f"FAIL: {e}")
            for name in ("primary.out", "replica.out"):
                try:
                    print(f"--- {name} (tail)\n" + open(f"{d}/{name}").read()[-3000:])
                except FileNotFoundError:
                    pass
            return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
