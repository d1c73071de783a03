#!/usr/bin/env python3
"""A protected VM's disk writes against the same VM unprotected, in one run (issue 15).

usage: bench-disk.py BUILD [--runs N] [--secs S] [--interval MS] [--mem SIZE]
                           [--disk-size SIZE] [--blocks N] [--dir DIR] [--json]

For each run, in turn (runs interleaved: a mode is never compared with a baseline from
another sitting): the test guest's disk workload on a writable image, as fast as it goes
(one 4 KiB block at a time: write, read back, verify), under castor-vmm

  none        unprotected;
  protected   protected in interval mode toward a castor-vmm replica on loopback
              (its own copy of the image), every write travelling with its epoch;
  idle        the same protected VM with the disk workload off (blkrate=0): the
              checkpoint pause without disk writes, for comparison.

Each is measured over --secs once protected: blocks written per second (and MB/s), for
the protected runs the replication's disk bytes per epoch and the checkpoint pause p50 /
p99 (castor ha status). The guest verifies every block it reads back: a bad block fails
the run. The summary gives per mode the median over the runs, and the protected write
rate as a share of the unprotected one. The guest does one request at a time, so the
write rate is the inverse of a write's round trip (write + read back); per-write latency
percentiles are not measured (the guest keeps no per-request times).
Needs /dev/kvm; exits 77 (skipped) otherwise.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, wait_for  # noqa: E402

MODES = ("none", "protected", "idle")
BLOCK = 4096


def size_arg(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    n = t[:-1] if t and t[-1] in mult else t
    if not n.isdigit() or int(n) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (e.g. 256M)")
    return int(n) * mult.get(t[-1], 1)


def one(a, mode, d):
    """One mode once: the VM (and its replica), measured, everything stopped."""
    procs = []
    psock, rsock = f"{d}/p.sock", f"{d}/r.sock"
    pimg, rimg = f"{d}/p.img", f"{d}/r.img"
    for f in (psock, rsock, pimg, rimg):
        if os.path.exists(f):
            os.unlink(f)
    for img in (pimg, rimg):  # sparse: the initial copy sends zeroing records only
        with open(img, "wb") as f:
            f.truncate(a.disk_size)
    rate = 0 if mode == "idle" else 1000000
    try:
        prot = []
        if mode != "none":
            procs.append(subprocess.Popen(
                [a.vmm, "replica", "--listen", "127.0.0.1:0", "--control", rsock,
                 "--disk", rimg, "--serial", "none", "--name", "bench"],
                stdout=open(f"{d}/replica.out", "w"), stderr=subprocess.STDOUT))
            wait_for("the replica's control socket", lambda: os.path.exists(rsock))
            port = wait_for("the replica's port", lambda: ct.ha(rsock)["port"])
            prot = ["--protect", f"127.0.0.1:{port}", "--mode", "interval", "--interval",
                    str(a.interval)]
        procs.append(subprocess.Popen(
            [a.vmm, "run", "--mem", a.mem, "--cpus", "1", "--test-guest",
             "--guest-param", "blkfirst=0", "--guest-param", f"blkcount={a.blocks}",
             "--guest-param", f"blkrate={rate}", "--guest-param", "tick=0",
             "--disk", pimg, "--control", psock, "--serial", "none", "--name", "bench", *prot],
            stdout=open(f"{d}/primary.out", "w"), stderr=subprocess.STDOUT))
        wait_for("the VM's control socket", lambda: os.path.exists(psock))
        if prot:
            wait_for("protection", lambda: ct.ha(psock)["state"] == "protected",
                     timeout=ct.patience(120))
        io0, h0, t0 = ct.vm_status(psock)["guest_io"], ct.ha(psock), time.monotonic()
        time.sleep(a.secs)
        io1, h1, t1 = ct.vm_status(psock)["guest_io"], ct.ha(psock), time.monotonic()
        if io1["blk_bad"] or io1["blk_io_errors"]:
            raise Fail(f"{mode}: the guest found {io1['blk_bad']} bad blocks, "
                       f"{io1['blk_io_errors']} I/O errors")
        if prot and h1["state"] != "protected":
            raise Fail(f"{mode}: the VM stopped being protected: {h1['last_error']}")
        written = io1["blk_written"] - io0["blk_written"]
        if mode != "idle" and written <= 0:
            raise Fail(f"{mode}: the guest wrote nothing in {a.secs} s")
        out = {"mode": mode, "seconds": t1 - t0, "blocks_written": written,
               "blocks_per_s": written / (t1 - t0),
               "mb_per_s": written * BLOCK / (t1 - t0) / 1e6}
        if prot:
            epochs = h1["epochs"] - h0["epochs"]
            out.update({"epochs": epochs,
                        "disk_bytes_per_epoch": (h1["disk_bytes"] - h0["disk_bytes"]) /
                        max(epochs, 1),
                        "pause_p50_ms": h1["pause_p50_ns"] / 1e6,
                        "pause_p99_ms": h1["pause_p99_ns"] / 1e6})
        return out
    except Fail:
        ct.print_tails(d, ("primary.out", "replica.out"), mode)
        raise
    finally:
        ct.stop_procs(procs)


def summary(results):
    rows = []
    base = None
    for mode in MODES:
        runs = [r for r in results if r["mode"] == mode]
        row = {"mode": mode, "runs": len(runs)}
        for k in ("blocks_per_s", "mb_per_s", "disk_bytes_per_epoch", "pause_p50_ms",
                  "pause_p99_ms"):
            if runs and k in runs[0]:
                row[k] = statistics.median(r[k] for r in runs)
        if mode == "none":
            base = row.get("blocks_per_s")
        elif mode == "protected" and base:
            row["share_of_unprotected"] = row["blocks_per_s"] / base
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--interval", type=int, default=25)
    ap.add_argument("--mem", default="256M")
    ap.add_argument("--disk-size", type=size_arg, default=size_arg("256M"))
    ap.add_argument("--blocks", type=int, default=16384)
    ap.add_argument("--dir", default=None,
                    help="where the two images go (default: $TMPDIR or /tmp)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.runs < 1 or a.secs <= 0 or a.interval < 1 or a.blocks < 1:
        ap.error("--runs, --secs, --interval and --blocks must be positive")
    if a.blocks * BLOCK > a.disk_size:
        ap.error(f"--blocks {a.blocks} of 4 KiB do not fit in --disk-size {a.disk_size}")
    a.vmm = os.path.abspath(f"{a.build}/tools/vmm/castor-vmm")
    ct.CASTOR = os.path.abspath(f"{a.build}/tools/castor/castor")
    for path in (a.vmm, ct.CASTOR):
        if not os.access(path, os.X_OK):
            print(f"bench-disk: {path} is missing: build first (make build)", file=sys.stderr)
            return 2
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ct.skip("/dev/kvm is not usable here")
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="castor-bench-disk-", dir=a.dir) as d:
            for run in range(a.runs):
                for mode in MODES:
                    r = one(a, mode, d)
                    r["run"] = run + 1
                    results.append(r)
                    if a.json:
                        print(json.dumps(r), flush=True)
                        continue
                    extra = (f"; {r['disk_bytes_per_epoch'] / 1e6:.2f} MB of disk a epoch, "
                             f"pause p50 {r['pause_p50_ms']:.2f} ms p99 {r['pause_p99_ms']:.2f} ms"
                             if "epochs" in r else "")
                    print(f"run {run + 1} {mode:<9} {r['blocks_per_s']:9.0f} blocks/s "
                          f"({r['mb_per_s']:.1f} MB/s){extra}", flush=True)
    except Fail as e:
        print(f"bench-disk: {e}", file=sys.stderr)
        return 1
    rows = summary(results)
    if a.json:
        print(json.dumps({"summary": rows}))
        return 0
    print(f"\nmedians over {a.runs} run(s) of {a.secs:g} s; {a.interval} ms epochs; "
          f"{a.blocks} blocks of 4 KiB on a {a.disk_size >> 20} MiB image:")
    for r in rows:
        line = f"{r['mode']:<9} {r['blocks_per_s']:9.0f} blocks/s {r['mb_per_s']:7.1f} MB/s"
        if "share_of_unprotected" in r:
            line += f"  {100 * r['share_of_unprotected']:5.1f} % of unprotected"
        if "pause_p50_ms" in r:
            line += (f"  {r['disk_bytes_per_epoch'] / 1e6:.2f} MB/epoch  pause p50 "
                     f"{r['pause_p50_ms']:.2f} ms p99 {r['pause_p99_ms']:.2f} ms")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
