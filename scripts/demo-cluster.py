#!/usr/bin/env python3
"""Castor's cluster on one machine, and its failover measured (issue 13; docs/cluster.md).

Three hosts in network namespaces (a, b, c and a client on one LAN bridge), each with its
own corosync and castord. A protected test-guest VM is defined and started on a; castord
places its replica and syncs it. Then, per trial: a client opens one TCP connection to the
guest and sends numbered requests, the primary's whole host is killed (every process in its
namespace, kill -9 at once), the rest of the cluster promotes the twin and protects it
again on the third host by itself, the client's connection goes on (every request answered
once, in order), and the dead host comes back. Measured per trial:

  twin   kill -> every live node lists the twin's host as the VM's primary (polled every
         0.1 s through `castor vm list`, so up to ~0.1 s late)
  answer kill -> the client's first answer after it (tgclient.py --times): what a user sees
  wait   the client's longest wait for one answer over the trial (its request in flight);
         the two agree unless the client itself did not run (a starved emulated machine)

  scripts/demo-cluster.py BUILD_DIR [--trials N] [--token MS|default] [--json]

`make demo` runs one trial. The failover benchmark (docs/benchmarks.md) is 20 trials with
--token 300 and with --token default (corosync's own, 1000 ms + 650 ms per node above two).
Exit 0 when every trial passed, 1 on a failure (with the logs' tails), 77 when this machine
cannot run it (no root, corosync, namespaces or /dev/kvm; a failure under
CASTOR_REQUIRE_KVM=1). Everything it starts is stopped by PID, also on failure.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, wait_for  # noqa: E402
import castorcluster as cc  # noqa: E402

VM = "demo"
quiet = False


def say(*a):
    if not quiet:
        print(*a, flush=True)


def show(cl, n, *args):
    """Run a castor command on node n as the user would, and print it with its output."""
    r = cl.castor(n, *args)
    say(f"\n$ castor {' '.join(args)} --castord {n}.sock")
    say(r.stdout.rstrip())


def percentile(vals, p):
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    s = sorted(vals)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[k]


def status_vm(cl, n):
    return next(v for v in json.loads(cl.castor(n, "status", "--json").stdout)["vms"]
                if v["name"] == VM)


def figures(cl, n):
    """Node n shows the replication figures the primary's castord multicasts."""
    wait_for(f"{n}'s castor status showing {VM}'s epochs/s and lag",
             lambda: (status_vm(cl, n)["epochs"] or 0) > 0, timeout=ct.patience(20), step=0.2)


def trial(cl, d, k, primary):
    """Kill `primary`'s host under a client's connection; the twin's and the new replica's
    hosts, and the two times."""
    twin = cc.replica_of(cl, VM)
    third = ({"a", "b", "c"} - {primary, twin}).pop()
    live = (twin, third)
    with cc.TcpClient(d, f"client{k}", count=300, rate=50) as client:
        say(f"\n== trial {k + 1}: host {primary} (the primary) dies: kill -9 of its corosync, "
            f"castord and castor-vmm at once")
        t_kill = time.monotonic()
        cc.kill_host(cl, primary)
        wait_for(f"the twin promoted on {twin}",
                 lambda: all(cc.vm_state(cl, n, VM)[1] == twin for n in live),
                 timeout=ct.patience(60), step=0.1)
        t_twin = time.monotonic() - t_kill
        say(f"   {twin} and {third} saw {primary} leave; the twin runs on {twin} "
            f"({t_twin:.2f} s after the kill)")
        cc.expect_vm(cl, VM, "protected", twin, "protected again", timeout=ct.patience(90),
                     nodes=live)
        replica = cc.replica_of(cl, VM, nodes=live)
        say(f"   protected again, toward {replica} ({time.monotonic() - t_kill:.2f} s after "
            "the kill)")
        out = client.finish(f"the kill of host {primary}")
        answer = client.answer_after(t_kill)
    longest = ct.longest_wait_ms(out) / 1e3
    say(f"   the client's connection went on: {out}")
    say(f"   first answer after the kill: {answer * 1e3:.0f} ms; longest wait for an answer "
        f"{longest * 1e3:.0f} ms")
    for n in live:
        if not status_vm(cl, n)["last_failover_unix"]:
            raise Fail(f"{n}'s castor status shows no time for {VM}'s failover")
    figures(cl, third)
    show(cl, twin, "status")
    say(f"\n== host {primary} comes back (corosync and castord started again)")
    cl.start_corosync(primary)
    cl.start_castord(primary)
    for n in cc.NODES:
        cc.expect(cl, n, True, True, set(cc.NODES), f"{primary} back")
    on_it = [c for c in map(cc.cmdline, cc.netns_pids(primary))
             if "castor-vmm" in c and f" --name {VM} " in c + " "]
    if on_it:
        raise Fail(f"{primary} runs a copy of {VM} after its return: {on_it}")
    say(f"   {primary} rejoined; it runs no copy of {VM}")
    return twin, {"twin_s": round(t_twin, 3), "answer_s": round(answer, 3),
                  "longest_wait_s": round(longest, 3),
                  "killed": primary, "promoted_on": twin, "replica": replica}


def run(d, args):
    key = f"{d}/cluster.key"
    subprocess.run([cc.CASTOR, "key", "generate", key], check=True, capture_output=True)
    token = None if args.token == "default" else int(args.token)
    cl = cc.Cluster(d, extra_conf=f"key_file = {key}\n", token=token)
    results = []
    try:
        say(f"== three hosts a, b, c in namespaces; corosync on each (token "
            f"{args.token} ms), castord on each; replication links authenticated")
        cl.up()
        show(cl, "a", "node", "list")
        say(f"\n== a protected VM (the test guest, a NIC on the LAN, guest address "
            f"{cc.GUEST_IP}), defined once, started on a")
        say("".join("   " + line + "\n" for line in cc.NIC_VM.replace("vm7", VM).splitlines()))
        replica = cc.start_protected(cl, d, VM, on="a")
        say(f"   castord on a asked for a replica; {replica} runs it; synced: protected")
        figures(cl, "b")
        show(cl, "b", "status")
        primary = "a"
        for k in range(args.trials):
            cc.expect_vm(cl, VM, "protected", primary, "protected before the kill",
                         timeout=ct.patience(90))
            primary, r = trial(cl, d, k, primary)
            results.append(r)
        cl.castor("a", "vm", "stop", VM)
        cc.expect_vm(cl, VM, "defined", "", "stopped", timeout=ct.patience(60))
        cl.castor("a", "vm", "undefine", VM)
    finally:
        cl.close()
    return results


def summary(results, args):
    twin = [r["twin_s"] for r in results]
    ans = [r["answer_s"] for r in results]
    wait = [r["longest_wait_s"] for r in results]
    out = {"trials": len(results), "token": args.token, "results": results,
           "twin_p50_s": percentile(twin, 50), "twin_p99_s": percentile(twin, 99),
           "answer_p50_s": percentile(ans, 50), "answer_p99_s": percentile(ans, 99),
           "wait_p50_s": percentile(wait, 50), "wait_p99_s": percentile(wait, 99)}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"\n== summary: {len(results)} host kill(s), corosync token {args.token}"
          f"{' ms' if args.token != 'default' else ''}; no request lost, duplicated or "
          "reordered")
    print(f"   kill -> twin running:       p50 {out['twin_p50_s']:.2f} s, "
          f"p99 {out['twin_p99_s']:.2f} s (as polled, every 0.1 s)")
    print(f"   kill -> client's next answer: p50 {out['answer_p50_s'] * 1e3:.0f} ms, "
          f"p99 {out['answer_p99_s'] * 1e3:.0f} ms")
    print(f"   client's longest wait for an answer: p50 {out['wait_p50_s'] * 1e3:.0f} ms, "
          f"p99 {out['wait_p99_s'] * 1e3:.0f} ms")
    if ct.NESTED:
        print("   (on the emulated test machine, whose processes starve while the dead host's "
              "VM is re-protected: not a benchmark)")


def main():
    global quiet
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", help="the build folder (castord, castor, castor-vmm)")
    ap.add_argument("--trials", type=int, default=1, help="host kills (default 1)")
    ap.add_argument("--token", default="1000",
                    help="corosync's token in ms, or 'default' (default 1000)")
    ap.add_argument("--json", action="store_true", help="only the results, as JSON")
    args = ap.parse_args()
    if args.trials < 1 or not (args.token == "default" or
                               (args.token.isdigit() and 100 <= int(args.token) <= 60000)):
        ap.error("--trials must be at least 1, --token 100..60000 or 'default'")
    quiet = args.json
    b = os.path.abspath(args.build)
    cc.configure(f"{b}/clusterd/castord", f"{b}/tools/castor/castor",
                 f"{b}/tools/vmm/castor-vmm")
    for path in (cc.CASTORD, cc.CASTOR, cc.VMM):
        if not os.access(path, os.X_OK):
            print(f"demo-cluster: {path} is missing: build first (make build)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        return ct.skip("needs root (network namespaces)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ct.skip("/dev/kvm is not usable here: Castor's VMs need KVM")
    if subprocess.run(["sh", "-c", "command -v corosync"], capture_output=True).returncode:
        return ct.skip("corosync is not installed (scripts/install-deps.sh installs it)")
    rc, results = cc.run_on_hosts("castor-demo-cluster-", lambda d: run(d, args))
    if rc:
        return rc
    summary(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
