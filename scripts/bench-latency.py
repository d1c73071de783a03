#!/usr/bin/env python3
"""Request/response latency per protection mode, side by side in one run (issue 11).

usage: bench-latency.py BUILD [--runs N] [--count N] [--modes LIST] [--mem SIZE]
                              [--cpus N] [--json]

Builds tests/net/twohost.sh's hosts (namespaces only), and for each run goes through
every mode in turn -- runs interleaved, so that a mode is never measured in one sitting
and its baseline in another: the test guest (its default page pattern, serial tick off)
under castor-vmm on host a behind its tap, unprotected (`none`) or protected toward a
`castor-vmm replica` on host b (`interval:MS`, `output`, `output:MS` for a minimum
spacing), and `castor bench net` from the client namespace once the VM is protected:
one UDP and one TCP request at a time (latency), then 32 in flight on one connection.
The replication link is authenticated (a fresh key per run, as a deployment runs it).
Each answer is checked by castor bench net. Prints each run's figures and, per mode,
the median over the runs of p50, p99 and requests/s, with the p50 added to `none`'s.
Needs /dev/kvm and root (namespaces); says so and exits 77 otherwise.
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

GUEST_IP = "10.77.0.2"
REPLICA = "10.77.0.12:7040"
TESTS = ("udp", "tcp", "tcp-pipelined")


def parse_mode(text):
    """'none', 'interval:MS', 'output' or 'output:MS' -> castor-vmm's protection options."""
    kind, _, ms = text.partition(":")
    if kind == "none" and not ms:
        return []
    if kind == "interval" and ms.isdigit() and int(ms) > 0:
        return ["--mode", "interval", "--interval", ms]
    if kind == "output" and (not ms or ms.isdigit()):
        return ["--mode", "output"] + (["--min-spacing", ms] if ms else [])
    raise argparse.ArgumentTypeError(f"mode '{text}' is not none, interval:MS, output or "
                                     f"output:MS")


def ns(host, argv):
    return ["ip", "netns", "exec", f"{P}-{host}", *argv]


def one(a, mode, d):
    """One mode once: the VM (and its replica), castor bench net, everything stopped."""
    procs = []
    psock, rsock = f"{d}/p.sock", f"{d}/r.sock"
    for f in (psock, rsock):
        if os.path.exists(f):
            os.unlink(f)
    prot = parse_mode(mode)
    key = ["--key", f"{d}/pair.key"]  # an authenticated link, as a deployment runs it
    try:
        if prot:
            procs.append(subprocess.Popen(
                ns("b", [a.vmm, "replica", "--listen", REPLICA, "--control", rsock,
                         "--net", "tap=tap0", "--serial", "none", "--name", "bench", *key]),
                stdout=open(f"{d}/replica.out", "w"), stderr=subprocess.STDOUT))
            wait_for("the replica's control socket", lambda: os.path.exists(rsock))
        procs.append(subprocess.Popen(
            ns("a", [a.vmm, "run", "--mem", a.mem, "--cpus", str(a.cpus), "--test-guest",
                     "--guest-param", f"ip={GUEST_IP}", "--guest-param", "tick=0",
                     "--net", "tap=tap0", "--control", psock, "--serial", "none",
                     "--name", "bench",
                     *(["--protect", REPLICA, *prot, *key] if prot else [])]),
            stdout=open(f"{d}/primary.out", "w"), stderr=subprocess.STDOUT))
        wait_for("the VM's control socket", lambda: os.path.exists(psock))
        if prot:
            wait_for("protection", lambda: ct.ha(psock)["state"] == "protected",
                     timeout=ct.patience(120))
        wait_for("the guest answering ping", lambda: subprocess.run(
            ns("client", ["ping", "-c1", "-W1", GUEST_IP]), capture_output=True).returncode == 0,
            timeout=ct.patience(60))
        r = subprocess.run(ns("client", [a.castor, "bench", "net", "--target", GUEST_IP,
                                         "--count", str(a.count), "--timeout-ms", "10000",
                                         "--json"]),
                           capture_output=True, text=True, timeout=ct.patience(600))
        if r.returncode:
            raise Fail(f"castor bench net ({mode}): {r.stderr.strip()[-600:]}")
        out = {j["test"]: j for j in map(json.loads, r.stdout.splitlines())}
        if set(out) != set(TESTS):
            raise Fail(f"castor bench net ({mode}) reported {sorted(out)}")
        if prot and ct.ha(psock)["state"] != "protected":
            raise Fail(f"{mode}: the VM stopped being protected: {ct.ha(psock)['last_error']}")
        return out
    except Fail:
        ct.print_tails(d, ("primary.out", "replica.out"), mode)
        raise
    finally:
        ct.stop_procs(procs)


def summary(a, results):
    """Per mode and test: medians over the runs, and p50 added to none's."""
    rows = []
    base = {}
    for mode in a.modes:
        for t in TESTS:
            runs = [r[t] for m, r in results if m == mode]
            row = {"mode": mode, "test": t, "runs": len(runs),
                   "p50_us": statistics.median(x["p50_us"] for x in runs),
                   "p99_us": statistics.median(x["p99_us"] for x in runs),
                   "requests_per_s": statistics.median(x["requests_per_s"] for x in runs)}
            if mode == "none":
                base[t] = row["p50_us"]
            if t in base and t != "tcp-pipelined":
                row["p50_added_us"] = row["p50_us"] - base[t]
            rows.append(row)
    return rows


def main():
    global P
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--modes", default="none,interval:10,interval:25,output",
                    type=lambda s: [m for m in s.split(",") if parse_mode(m) is not None])
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.runs < 1 or a.count < 1:
        ap.error("--runs and --count must be at least 1")
    a.vmm = os.path.abspath(f"{a.build}/tools/vmm/castor-vmm")
    a.castor = os.path.abspath(f"{a.build}/tools/castor/castor")
    ct.CASTOR = a.castor
    for path in (a.vmm, a.castor):
        if not os.access(path, os.X_OK):
            print(f"bench-latency: {path} is missing: build first (make build)", file=sys.stderr)
            return 2
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ct.skip("/dev/kvm is not usable here")
    P = f"cbl{os.getpid() % 100000}"
    rc = ct.twohost_up(P)
    if rc is not None:
        return rc
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="castor-bench-latency-") as d:
            subprocess.run([a.castor, "key", "generate", f"{d}/pair.key"], check=True,
                           capture_output=True)
            for run in range(a.runs):
                for mode in a.modes:
                    t0 = time.monotonic()
                    out = one(a, mode, d)
                    results.append((mode, out))
                    for t in TESTS:
                        x = out[t]
                        line = {"run": run + 1, "mode": mode, **x}
                        if a.json:
                            print(json.dumps(line), flush=True)
                        else:
                            lat = (f"  p50 {x['p50_us']:9.1f} µs  p99 {x['p99_us']:9.1f} µs"
                                   if t != "tcp-pipelined" else "  (32 in flight)")
                            print(f"run {run + 1} {mode:<12} {t:<14} "
                                  f"{x['requests_per_s']:9.0f} req/s{lat}", flush=True)
                    if not a.json:
                        print(f"run {run + 1} {mode}: {time.monotonic() - t0:.0f} s in all",
                              flush=True)
    except Fail as e:
        print(f"bench-latency: {e}", file=sys.stderr)
        return 1
    finally:
        ct.twohost_down(P)
    rows = summary(a, results)
    if a.json:
        print(json.dumps({"summary": rows}))
        return 0
    print(f"\nmedians over {a.runs} run(s), {a.count} requests each, {a.mem} and {a.cpus} "
          f"vCPUs:")
    print(f"{'mode':<12} {'test':<14} {'req/s':>9} {'p50 µs':>10} {'p99 µs':>10} "
          f"{'p50 added':>10}")
    for r in rows:
        added = f"{r['p50_added_us']:10.1f}" if "p50_added_us" in r else f"{'-':>10}"
        lat = (f"{r['p50_us']:10.1f} {r['p99_us']:10.1f}" if r["test"] != "tcp-pipelined"
               else f"{'-':>10} {'-':>10}")
        print(f"{r['mode']:<12} {r['test']:<14} {r['requests_per_s']:9.0f} {lat} {added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
