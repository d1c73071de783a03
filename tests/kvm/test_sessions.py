#!/usr/bin/env python3
"""Replication sessions on running VMs, end to end on loopback: protection is
started, stopped and pointed elsewhere with `castor ha protect|unprotect` while
the test guest runs.

usage: test_sessions.py VMM CASTOR CASE
  reprotect  an unprotected guest is protected (verify mode); its replica is
             killed: the primary goes degraded and holds its outputs; `castor ha
             unprotect` releases them and outputs flow again, the guest never
             stopped; `castor ha protect` toward a second replica: protected,
             every digest matches; the primary is killed and the second replica
             takes over; its twin is protected in turn toward a third; that
             one is killed and the degraded survivor is protected toward a
             fourth directly (no unprotect)
  busy       a second primary is refused by a busy replica with a reason, the
             first goes on; a primary refuses to protect twice
  scan       connect-and-close, garbage and a stalled connection before the
             real primary: the replica still takes it
  heartbeat  60 s epochs with the default 2 s replica timeout stay protected
             (heartbeats); a frozen replica (SIGSTOP) is noticed long before
             the next epoch would have noticed it
  refuse     failover is refused while the primary streams (unless --force),
             and after the primary stopped protecting on purpose (unless --force);
             a snapshot of the protected VM works beside the epochs
Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm; a failure instead under
CASTOR_REQUIRE_KVM=1).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

VMM, CASTOR, CASE = sys.argv[1:4]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, castor, ha, vm_status, wait_for  # noqa: E402
ct.CASTOR = CASTOR

GUEST = ["--guest-param", "rate=max", "--guest-param", "wss=1M", "--guest-param", "outrate=200"]


class Procs:
    """The castor-vmm processes of one case, stopped by PID in close()."""

    def __init__(self, d):
        self.d, self.procs = d, []

    def spawn(self, name, argv):
        p = subprocess.Popen([VMM, *argv, "--serial", "none", "--name", name],
                             stdout=open(f"{self.d}/{name}.out", "w"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def replica(self, name, *extra):
        sock = f"{self.d}/{name}.sock"
        p = self.spawn(name, ["replica", "--listen", "127.0.0.1:0", "--control", sock,
                              "--event-log", f"{self.d}/{name}.log", *extra])
        wait_for(f"{name}'s control socket", lambda: os.path.exists(sock))
        port = wait_for(f"{name}'s port", lambda: ha(sock)["port"])
        return p, sock, f"127.0.0.1:{port}"

    def primary(self, name, *extra):
        sock = f"{self.d}/{name}.sock"
        p = self.spawn(name, ["run", "--mem", "32M", "--cpus", "2", "--test-guest", *GUEST,
                              "--control", sock, "--event-log", f"{self.d}/{name}.log",
                              *extra])
        wait_for(f"{name}'s control socket", lambda: os.path.exists(sock) or p.poll() is not None)
        if p.poll() is not None:
            raise Fail(f"{name} exited: {self.tail(name)}")
        return p, sock

    def tail(self, name):
        try:
            return open(f"{self.d}/{name}.out").read()[-2000:]
        except FileNotFoundError:
            return ""

    def close(self):
        ct.stop_procs(self.procs)


def protect(sock, peer, *extra):
    r = castor("ha", "protect", "--socket", sock, "--peer", peer, "--wait", "--json", *extra,
               check=False)
    if r.returncode:
        raise Fail(f"castor ha protect --peer {peer}: {r.stderr.strip()}")
    h = json.loads(r.stdout)
    if h["state"] != "protected" or h["peer"] != peer:
        raise Fail(f"after protect --wait: {h}")
    return h


def outs(log):
    """The outputs the outside saw, in the event log: 'out V SEQ CTR' lines."""
    try:
        return sum(1 for l in open(log) if l.startswith("out "))
    except FileNotFoundError:
        return 0


def counter(sock):
    return vm_status(sock)["guest_counter"]


def verify_epochs(psock, rsock, n):
    n = ct.reps(n)  # a verify-mode pause digests all RAM: slow on the nested machine

    def enough():
        p = ha(psock)
        if p["state"] != "protected":
            raise Fail(f"primary {p['state']}: {p['last_error']}")
        return p["epochs"] >= n
    wait_for(f"{n} epochs", enough, timeout=120, step=0.2)
    r = ha(rsock)
    if r["verify_bad"] or r["verify_ok"] < n:
        raise Fail(f"replica digests: {r['verify_ok']} matched, {r['verify_bad']} differed")


def case_reprotect(pr):
    _, r1sock, r1 = pr.replica("r1")
    r2p, r2sock, r2 = pr.replica("r2")
    p, psock = pr.primary("prim")
    plog = f"{pr.d}/prim.log"
    # unprotected: outputs pass at once
    wait_for("outputs of the unprotected guest", lambda: outs(plog) > 20)
    if ha(psock)["role"] != "none":
        raise Fail(f"an unprotected VM reports {ha(psock)}")
    protect(psock, r1, "--verify", "--interval", "10")
    verify_epochs(psock, r1sock, 50)
    # the replica dies: degraded, outputs held
    r1p = pr.procs[0]
    r1p.kill()
    r1p.wait()
    wait_for("degraded", lambda: ha(psock)["state"] == "degraded", timeout=30)
    wait_for("held outputs", lambda: ha(psock)["outputs_held"] > 10, timeout=30)
    n0, c0 = outs(plog), counter(psock)
    time.sleep(0.5)
    if outs(plog) != n0:
        raise Fail("a degraded primary let outputs out")
    if counter(psock) <= c0:
        raise Fail("the guest stopped while degraded")
    held = ha(psock)["outputs_held"]
    r = castor("ha", "unprotect", "--socket", psock, "--json")
    released = json.loads(r.stdout)["outputs_released"]
    if released < held:
        raise Fail(f"unprotect released {released} of {held} held outputs")
    wait_for("outputs flowing again", lambda: outs(plog) > n0 + released + 20)
    h = ha(psock)
    if h["role"] != "none" or h["outputs_held"]:
        raise Fail(f"after unprotect: {h}")
    # protect again, toward the second replica
    protect(psock, r2, "--verify", "--interval", "10")
    verify_epochs(psock, r2sock, 50)
    if ha(psock)["sessions"] != 2:
        raise Fail(f"sessions: {ha(psock)['sessions']}")
    # the primary dies: the second replica takes over ...
    p.kill()
    p.wait()
    wait_for("primary lost", lambda: ha(r2sock)["state"] == "primary-lost", timeout=30)
    fo = json.loads(castor("ha", "failover", "--socket", r2sock, "--json").stdout)
    if fo["state"] != "failed-over" or not fo["failed_over"]:
        raise Fail(f"failover: {fo}")
    c1 = counter(r2sock)
    wait_for("the twin running", lambda: counter(r2sock) > c1)
    # ... and is protected in turn, toward a third replica
    r3p, r3sock, r3 = pr.replica("r3")
    protect(r2sock, r3, "--verify", "--interval", "10")
    verify_epochs(r2sock, r3sock, 30)
    # the third replica dies: the survivor goes degraded, and is protected toward a
    # fourth with no unprotect between: the new session's initial copy takes the
    # held outputs, released once it is acknowledged
    r3p.kill()
    r3p.wait()
    wait_for("the survivor degraded", lambda: ha(r2sock)["state"] == "degraded", timeout=30)
    wait_for("held outputs", lambda: ha(r2sock)["outputs_held"] > 10, timeout=30)
    held2 = ha(r2sock)["outputs_held"]
    _, r4sock, r4 = pr.replica("r4")
    protect(r2sock, r4, "--verify", "--interval", "10")
    verify_epochs(r2sock, r4sock, 30)
    h = ha(r2sock)
    if h["sessions"] != 2 or h["outputs_held"] >= held2:
        raise Fail(f"after protecting a degraded survivor again: sessions {h['sessions']}, "
                   f"{h['outputs_held']} outputs held (were {held2})")
    if r2p.poll() is not None:
        raise Fail("the survivor exited")
    print(f"protected, degraded, {released} held outputs released by unprotect, "
          f"re-protected, failed over, survivor protected again; its replica killed, "
          f"protected toward a fourth without unprotect ({held2} held outputs carried)")


def case_busy(pr):
    _, rsock, r = pr.replica("r")
    _, p1sock = pr.primary("p1", "--protect", r, "--interval", "10")
    wait_for("p1 protected", lambda: ha(p1sock)["state"] == "protected")
    _, p2sock = pr.primary("p2")
    res = castor("ha", "protect", "--socket", p2sock, "--peer", r, check=False)
    if res.returncode != 1 or "serves another primary" not in res.stderr:
        raise Fail(f"a second primary: exit {res.returncode}, {res.stderr.strip()!r}")
    e0 = ha(p1sock)["epochs"]
    wait_for("p1 going on", lambda: ha(p1sock)["epochs"] > e0 + 20)
    if ha(p1sock)["state"] != "protected" or ha(rsock)["state"] != "protected":
        raise Fail("the first pair was disturbed")
    if ha(p2sock)["role"] != "none":
        raise Fail(f"the refused primary: {ha(p2sock)}")
    res = castor("ha", "protect", "--socket", p1sock, "--peer", r, check=False)
    if res.returncode != 1 or "already protecting" not in res.stderr:
        raise Fail(f"protecting twice: exit {res.returncode}, {res.stderr.strip()!r}")
    print("a busy replica refused a second primary; a primary refused to protect twice")


def case_scan(pr):
    _, rsock, r = pr.replica("r")
    host, port = r.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.close()
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
    s.close()
    stalled = socket.create_connection((host, int(port)))  # says nothing, stays open
    try:
        _, psock = pr.primary("p", "--protect", r, "--interval", "10")
        wait_for("protected after the scan", lambda: ha(psock)["state"] == "protected")
        if ha(rsock)["state"] != "protected":
            raise Fail(f"replica: {ha(rsock)}")
    finally:
        stalled.close()
    print("port scan, garbage and a stalled connection did not disable the replica")


def case_heartbeat(pr):
    rp, rsock, r = pr.replica("r", "--repl-timeout", "2000")
    _, psock = pr.primary("p", "--protect", r, "--interval", "60000", "--repl-timeout", "2000")
    wait_for("protected", lambda: ha(psock)["state"] == "protected")
    time.sleep(6)  # three replica timeouts with no epoch
    p, rr = ha(psock), ha(rsock)
    if p["state"] != "protected" or rr["state"] != "protected" or p["heartbeats"] < 4:
        raise Fail(f"60 s epochs: primary {p['state']} ({p['heartbeats']} heartbeats), "
                   f"replica {rr['state']}: {rr['last_error']}")
    rp.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        # without heartbeats this would take the rest of the 60 s epoch
        wait_for("the frozen replica noticed", lambda: ha(psock)["state"] == "degraded",
                 timeout=20)
    finally:
        rp.send_signal(signal.SIGCONT)
    print(f"{p['heartbeats']} heartbeats kept 60 s epochs protected; a frozen replica "
          f"was noticed in {time.monotonic() - t0:.1f} s (bound: 1.25 x 2 s timeout)")


def case_refuse(pr):
    _, rsock, r = pr.replica("r")
    _, psock = pr.primary("p", "--protect", r, "--interval", "10")
    wait_for("protected", lambda: ha(psock)["state"] == "protected")
    res = castor("ha", "failover", "--socket", rsock, check=False)
    if res.returncode != 1 or "still streaming" not in res.stderr:
        raise Fail(f"failover under a live primary: {res.returncode}, {res.stderr.strip()!r}")
    # a snapshot of the protected VM: its own chain, beside replication's
    snap = f"{pr.d}/p.snap"
    e0 = ha(psock)["epochs"]
    castor("vm", "snapshot", "--socket", psock, "--file", snap)
    castor("stream", "verify", snap)
    wait_for("epochs after the snapshot", lambda: ha(psock)["epochs"] > e0 + 20)
    if ha(psock)["state"] != "protected":
        raise Fail(f"after a snapshot while protected: {ha(psock)}")
    out = json.loads(castor("ha", "unprotect", "--socket", psock, "--json").stdout)
    wait_for("released", lambda: ha(rsock)["state"] == "released", timeout=10)
    res = castor("ha", "failover", "--socket", rsock, check=False)
    if res.returncode != 1 or "stopped protecting on purpose" not in res.stderr:
        raise Fail(f"failover after unprotect: {res.returncode}, {res.stderr.strip()!r}")
    fo = json.loads(castor("ha", "failover", "--socket", rsock, "--force", "--json").stdout)
    if fo["state"] != "failed-over":
        raise Fail(f"forced failover: {fo}")
    res = castor("ha", "unprotect", "--socket", psock, check=False)
    if res.returncode != 1 or "not protected" not in res.stderr:
        raise Fail(f"unprotect twice: {res.returncode}, {res.stderr.strip()!r}")
    print(f"failover refused twice with reasons, forced once; unprotect released "
          f"{out['outputs_released']} outputs")


def main():
    cases = {"reprotect": case_reprotect, "busy": case_busy, "scan": case_scan,
             "heartbeat": case_heartbeat, "refuse": case_refuse}
    return ct.run_kvm_case(cases, CASE, "castor-sessions-", Procs)


if __name__ == "__main__":
    sys.exit(main())
