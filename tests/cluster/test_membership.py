#!/usr/bin/env python3
"""castord on real corosync: three hosts in network namespaces (tests/net/twohost.sh's
castor-a, -b, -c on one LAN bridge), each with its own corosync (knet over the
namespaces' addresses, token 1000 ms, consensus 1200, token_coefficient 0 -- not the 300 ms
that issue 13 suggests: on two loaded cores that token made knet drop links and the group
flap every few seconds, see docs/architecture.md) and its own castord. `castor node list` and each castord's Prometheus endpoint (scraped and parsed
as the text exposition format) must follow corosync as daemons stop and start:

  - all three up: each castord lists a, b and c by name, members, quorate (3 of 3 votes);
  - c's corosync killed (kill -9): a and b list c as gone and stay quorate (2 of 3);
    c's castord reports corosync lost and is not quorate;
  - b's corosync killed too: a alone is not quorate;
  - b's corosync started again: a and b quorate again, b's castord reconnected by itself.

Also the cluster's VM definitions (the same everywhere, changed only with quorum, caught
up by a node that was away) and starting and stopping VMs: castord on the chosen host
runs castor-vmm, and every node sees its state; a castor-vmm that cannot start or that
dies is reported at once with its exit status and last words, on every node. Without
/dev/kvm (castor-vmm cannot create a VM) the start is seen failing that way; with it, the
VM is seen running, killed (kill -9), started again and stopped; protected VMs through
their replicas' and primaries' faults and a partition; a VM with restart = on-failure
started again by the cluster after each death, up to its limit. The harness is
tests/pylib/castorcluster.py; the whole-host kill under a client's connection, twice, is
scripts/demo-cluster.py's (`make demo`; ctest cluster_failover).

usage: test_membership.py CASTORD CASTOR CASTOR_VMM
Exit 0 pass, 1 fail, 77 skip (not root, no corosync, no namespaces; a failure instead
under CASTOR_REQUIRE_KVM=1). Everything it starts is stopped by PID, and the corosync
daemons' /dev/shm leftovers are removed, also when it fails.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASTORD, CASTOR, VMM = sys.argv[1:4]
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, wait_for  # noqa: E402
import castorcluster as cc  # noqa: E402
from castorcluster import (NODES, P, Cluster, TcpClient, expect, expect_vm,  # noqa: E402
                           ns, replica_of, scrape, vm_json, vm_state, vmm_pid)
cc.configure(CASTORD, CASTOR, VMM)

VM1 = """# a protected test guest
name = vm1
guest = test
mem = 64M
cpus = 1
protection = interval
interval = 20
hosts = a, b
"""


def definitions(cl, d):
    """VM definitions are the same on every node, change only with quorum, and a node that
    was away catches up -- a removal made meanwhile included -- and keeps them on disk."""
    with open(f"{d}/vm1.conf", "w") as f:
        f.write(VM1)
    with open(f"{d}/vm2.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm2"))
    with open(f"{d}/bad.conf", "w") as f:
        f.write(VM1.replace("mem = 64M", "mem = 8M"))
    cl.castor("a", "vm", "define", f"{d}/vm1.conf")
    for n in NODES:
        wait_for(f"vm1 defined on {n}", lambda: cl.vms(n) == {"vm1"})
    r = cl.castor("b", "vm", "define", f"{d}/bad.conf", check=False)
    if r.returncode != 1 or f"{d}/bad.conf:4: mem: '8M' is not a size" not in r.stderr:
        raise Fail(f"a bad definition: {r.returncode}, {r.stderr.strip()!r}")
    r = cl.castor("c", "vm", "define", f"{d}/vm1.conf", check=False)
    if r.returncode != 1 or "defined already" not in r.stderr:
        raise Fail(f"vm1 defined twice: {r.returncode}, {r.stderr.strip()!r}")
    show = json.loads(cl.castor("c", "vm", "show", "vm1", "--json").stdout)
    if show["text"] != VM1 or show["mem_bytes"] != 64 << 20 or show["hosts"] != ["a", "b"]:
        raise Fail(f"vm show on c: {show}")
    # c is cut off: the others change the definitions; c cannot
    cl.kill_corosync("c")
    expect(cl, "a", True, True, {"a", "b"}, "c away")
    cl.castor("a", "vm", "undefine", "vm1")
    cl.castor("b", "vm", "define", f"{d}/vm2.conf")
    for n in ("a", "b"):
        wait_for(f"vm2 only on {n}", lambda: cl.vms(n) == {"vm2"})
    if cl.vms("c") != {"vm1"}:
        raise Fail(f"c changed while cut off: {cl.vms('c')}")
    r = cl.castor("c", "vm", "undefine", "vm1", check=False)
    if r.returncode != 1 or "no quorum" not in r.stderr:
        raise Fail(f"a change without quorum: {r.returncode}, {r.stderr.strip()!r}")
    # c returns: it catches up, the removal of vm1 included
    cl.start_corosync("c")
    expect(cl, "c", True, True, {"a", "b", "c"}, "c back")
    wait_for("c caught up", lambda: cl.vms("c") == {"vm2"})
    for n in ("a", "b"):
        if cl.vms(n) != {"vm2"}:
            raise Fail(f"{n} after c's return: {cl.vms(n)} (c's stale vm1 came back?)")
    # two VMs listed at once: each with its own hosts
    with open(f"{d}/vm3.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm3").replace("hosts = a, b", "hosts = c"))
    cl.castor("a", "vm", "define", f"{d}/vm3.conf")
    wait_for("vm3 on b", lambda: cl.vms("b") == {"vm2", "vm3"})
    hosts = {v["name"]: v["hosts"]
             for v in json.loads(cl.castor("b", "vm", "list", "--json").stdout)["vms"]}
    if hosts != {"vm2": ["a", "b"], "vm3": ["c"]}:
        raise Fail(f"vm list's hosts: {hosts}")
    cl.castor("b", "vm", "undefine", "vm3")
    wait_for("vm3 gone on b", lambda: cl.vms("b") == {"vm2"})
    st = json.loads(cl.castor("b", "status", "--json").stdout)
    if ([v["name"] for v in st["vms"]] != ["vm2"] or not st["quorate"]
            or sorted(n["name"] for n in st["nodes"] if n["member"]) != ["a", "b", "c"]):
        raise Fail(f"castor status on b: {st}")
    # --watch: a snapshot a second, each after a dated line when not on a terminal
    r = subprocess.run(["timeout", str(ct.patience(5)), CASTOR, "status", "--watch",
                        "--castord", f"{d}/b.sock"], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 124 or r.stdout.count("--- castor status at ") < 2 or \
            r.stdout.count("vm2 ") < 2:
        raise Fail(f"castor status --watch: {r.returncode} {r.stdout!r} {r.stderr!r}")
    # c's castord restarts: it still knows them, from its state directory
    cl.restart_castord("c")
    if cl.vms("c") != {"vm2"}:
        raise Fail(f"c's castord after a restart: {cl.vms('c')}")
    print("definitions: the same on every node, refused without quorum, a bad file refused "
          "by line, a node cut off caught up (a removal included), kept across a restart")


def start_fails(cl, name, on, reason, what):
    """Start `name` from node `on` and see it fail on every node with `reason`. The test
    corosync (on two loaded cores, more so with a short token) may lose a node for a moment; a
    start that such a partition overtook fails with another reason (the VM was placed on
    a host that never heard of it: "no castor-vmm of it runs on its host"). That is
    castord doing its job, so the start is tried again, up to three times."""
    for attempt in range(3):
        r = cl.castor(on, "vm", "start", name, check=False)
        if r.returncode:
            if attempt < 2 and ("quorum" in r.stderr or "syncing" in r.stderr):
                time.sleep(2)
                continue
            raise Fail(f"castor vm start {name}: {r.stderr.strip()!r}")
        try:
            expect_vm(cl, name, "defined", "", what, "start-failed")
        except Fail:
            if attempt == 2:
                raise
            continue
        got = vm_state(cl, "a", name)[2]
        if reason in got and all(vm_state(cl, n, name)[2] == got for n in NODES):
            return
        print(f"note: start of {name} overtaken by a membership change ({got!r}); again")
        time.sleep(2)
    raise Fail(f"{name}: never failed with {reason!r}: {vm_state(cl, 'a', name)}")


def vm_runs(cl, d):
    """castor vm start|stop: the chosen host's castord runs castor-vmm and every node
    follows its state; a castor-vmm that cannot start or dies is reported at once."""
    with open(f"{d}/vm5.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm5").replace("hosts = a, b", "hosts = b")
                .replace("protection = interval\ninterval = 20\n", ""))
    cl.castor("a", "vm", "define", f"{d}/vm5.conf")
    wait_for("vm5 defined on c", lambda: "vm5" in cl.vms("c"))
    for args, words in ((("vm", "start", "vm9"), "no VM named 'vm9' is defined"),
                        (("vm", "start", "vm5", "--host", "zz"), "host 'zz' is not a live"),
                        (("vm", "stop", "vm5"), "vm5 is defined: nothing to stop"),
                        (("ha", "protect", "vm5"), "vm5 is not running: castor vm start vm5"),
                        (("ha", "unprotect", "vm5"), "vm5 is not running"),
                        (("ha", "failover", "vm5"), "vm5 is not running"),
                        (("migrate", "vm5"), "vm5 is not running"),
                        (("ha", "protect", "vm9"), "no VM named 'vm9' is defined")):
        r = cl.castor("c", *args, check=False)
        if r.returncode != 1 or words not in r.stderr:
            raise Fail(f"castor {' '.join(args)}: {r.returncode} {r.stderr.strip()!r}")
    # a linux guest: castord passes its kernel to castor-vmm, which checks it before any VM
    with open(f"{d}/lx.conf", "w") as f:
        f.write("name = lx\nguest = linux\nmem = 128M\ncpus = 1\nhosts = c\n"
                f"kernel = {d}/no-such-vmlinux\ncmdline = console=ttyS0 quiet\n")
    cl.castor("a", "vm", "define", f"{d}/lx.conf")
    wait_for("lx defined on c", lambda: "lx" in cl.vms("c"))
    start_fails(cl, "lx", "b", f"start-failed: castor-vmm on c exited with status 2: "
                f"castor-vmm: kernel {d}/no-such-vmlinux: No such file", "its kernel is missing")
    cl.castor("a", "vm", "undefine", "lx")
    if not os.path.exists("/dev/kvm"):
        # castor-vmm on b cannot create a VM here: every node hears why, at once
        start_fails(cl, "vm5", "a", "start-failed: castor-vmm on b exited with status 1: "
                    "castor-vmm: cannot create the VM: /dev/kvm does not exist",
                    "castor-vmm could not start")
        st = {v["name"]: v for v in json.loads(cl.castor("c", "status", "--json").stdout)["vms"]}
        if st["vm5"]["state"] != "defined" or "start-failed" not in st["vm5"]["last_event"]:
            raise Fail(f"castor status on c: {st['vm5']}")
        m = scrape("b")
        if (m[("castor_vm_state", 'node="b",vm="vm5",state="defined",host=""')],
                m[("castor_vm_state", 'node="b",vm="vm5",state="starting",host=""')],
                m[("castor_vm_failovers_total", 'node="b",vm="vm5"')]) != (1, 0, 0):
            raise Fail(f"b's per-VM metrics: {m}")
        print("vm start: castor-vmm on b failed to start (no /dev/kvm here); every node "
              "showed why at once")
        cl.castor("a", "vm", "undefine", "vm5")
        return
    r = cl.castor("a", "vm", "start", "vm5")
    if r.stdout.strip() != "vm5 starting on b":
        raise Fail(f"castor vm start: {r.stdout.strip()!r}")
    expect_vm(cl, "vm5", "unprotected", "b", "castor-vmm runs")
    r = cl.castor("c", "vm", "start", "vm5", check=False)
    if r.returncode != 1 or "vm5 is unprotected on b: stop it first" not in r.stderr:
        raise Fail(f"a second start: {r.returncode} {r.stderr.strip()!r}")
    r = cl.castor("c", "vm", "undefine", "vm5", check=False)
    if r.returncode != 1 or "stop it first" not in r.stderr:
        raise Fail(f"undefine while it runs: {r.returncode} {r.stderr.strip()!r}")
    os.kill(vmm_pid(cl, "b", "vm5"), signal.SIGKILL)
    expect_vm(cl, "vm5", "defined", "", "castor-vmm killed",
              "primary-lost: castor-vmm on b killed by signal 9")
    cl.castor("b", "vm", "start", "vm5", "--host", "c")
    expect_vm(cl, "vm5", "unprotected", "c", "started again, on c")
    # live migration through castord, c -> a: the same guest runs on there
    csock = f"{cl.d}/c-state/run/vm5.sock"
    wait_for("vm5's guest on c", lambda: ct.vm_status(csock)["guest_counter"] > 0)
    c0 = ct.vm_status(csock)["guest_counter"]
    r = cl.castor("b", "migrate", "vm5", "--to", "c", check=False)
    if r.returncode != 1 or "cannot take vm5" not in r.stderr:
        raise Fail(f"a migration to its own host: {r.returncode} {r.stderr.strip()!r}")
    r = cl.castor("b", "migrate", "vm5", "--to", "a")
    if not r.stdout.startswith("vm5 on c: migrating to a"):
        raise Fail(f"castor migrate vm5: {r.stdout.strip()!r}")
    expect_vm(cl, "vm5", "unprotected", "a", "migrated to a", "migrated: runs on a",
              timeout=ct.patience(60))
    asock = f"{cl.d}/a-state/run/vm5.incoming.sock"
    c1 = ct.vm_status(asock)["guest_counter"]
    if c1 < c0:
        raise Fail(f"vm5's guest counter on a is {c1}, it was {c0} on c before")
    wait_for("vm5's guest on a to go on", lambda: ct.vm_status(asock)["guest_counter"] > c1)
    wait_for("c's castor-vmm of vm5 to end", lambda: not os.path.exists(csock), timeout=30)
    cl.castor("a", "vm", "stop", "vm5")
    expect_vm(cl, "vm5", "defined", "", "stopped", "stopped: castor-vmm on a exited")
    cl.castor("a", "vm", "undefine", "vm5")
    print("vm start/stop: ran on b, a kill -9 seen at once everywhere, started on c, "
          "migrated live to a (castor migrate vm5), stopped")


def retire(cl, name):
    """Stop VM `name` (from c) and undefine it (from a), once every node saw it stop."""
    cl.castor("c", "vm", "stop", name)
    expect_vm(cl, name, "defined", "", "stopped", timeout=60)
    cl.castor("a", "vm", "undefine", name)


# vm6's writable disk: 8 MiB per host, the test guest rewriting its first MiB
DISK_BYTES, DISK_AREA = 8 << 20, 256 * 4096
DISK_WORKLOAD = ("blkrate=300", "blkfirst=0", "blkcount=256", "seed=5")


def disk_copied(sock, what):
    """The primary's disks' initial copy sent at most the guest's area and found the
    rest of the image already held by the replica (docs/disks.md)."""
    h = ct.ha(sock)
    if h["disk_copy_bytes"] > DISK_AREA or h["disk_copy_same_bytes"] < DISK_BYTES - DISK_AREA:
        raise Fail(f"{what}: the disk's initial copy sent {h['disk_copy_bytes']} bytes and "
                   f"found {h['disk_copy_same_bytes']} held (at most {DISK_AREA} differ)")


def disk_reads_back(sock, what):
    """The guest reads a whole pass of its disk area back, every block right."""
    v0 = ct.vm_status(sock)["guest_io"]["blk_verified"]
    ct.wait_guest(sock, f"{what}: the guest reading its disk back",
                  lambda: ct.vm_status(sock)["guest_io"]["blk_verified"] >= v0 + 256,
                  ct.patience(60))
    io = ct.vm_status(sock)["guest_io"]
    if io["blk_bad"] or io["blk_io_errors"]:
        raise Fail(f"{what}: the guest found {io['blk_bad']} bad blocks, "
                   f"{io['blk_io_errors']} I/O errors: {io}")


def vm_protected(cl, d):
    """A protected VM through castord, with real VMs and real replication between the
    namespaces: started on a, its replica placed on another host and synced; the
    primary's castor-vmm killed -> the twin promoted on the replica's host, then
    protected again (a's castor-vmm died, a did not: it may take the replica); that
    replica's castor-vmm killed -> the degraded primary protected again; the next
    replica's castor-vmm frozen -> the same, reported by the primary's castord;
    unprotected by hand (castor ha unprotect: held, not protected again); stopped."""
    # a writable disk, a copy per host (%n: the node's name), seeded equal as an operator
    # would with castor disk sync: every initial copy sends only what differs
    data = os.urandom(DISK_BYTES)
    for n in NODES:
        with open(f"{cl.d}/{n}-vm6.img", "wb") as f:
            f.write(data)
    with open(f"{d}/vm6.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm6").replace("hosts = a, b", "hosts = a, b, c") +
                f"disk = {cl.d}/%n-vm6.img\n" +
                "".join(f"guest_param = {p}\n" for p in DISK_WORKLOAD))
    cl.castor("a", "vm", "define", f"{d}/vm6.conf")
    wait_for("vm6 defined on c", lambda: "vm6" in cl.vms("c"))
    cl.castor("b", "vm", "start", "vm6", "--host", "a")
    expect_vm(cl, "vm6", "protected", "a", "its replica synced", timeout=ct.patience(60))
    first = replica_of(cl, "vm6")
    if first not in ("b", "c"):
        raise Fail(f"vm6's replica is on '{first}'")
    disk_copied(f"{cl.d}/a-state/run/vm6.sock", "vm6's first protection")
    # the primary's castord exports what its castor-vmm reports (a scrape, once a tick
    # has read an acknowledged epoch)
    key = 'node="a",vm="vm6"'
    m = wait_for("a's replication metrics for vm6",
                 lambda: (lambda m: m if m.get(("castor_vm_epochs_total", key), 0) > 0
                          else None)(scrape("a")), timeout=ct.patience(20), step=0.5)
    if not (m[("castor_vm_wire_bytes_total", key)] > 0 and
            ("castor_vm_pause_seconds", key + ',quantile="0.99"') in m and
            ("castor_vm_outputs_held", key) in m):
        raise Fail(f"a's replication metrics for vm6: {m}")
    os.kill(vmm_pid(cl, "a", "vm6"), signal.SIGKILL)
    expect_vm(cl, "vm6", "protected", first, "promoted, then protected again",
              timeout=ct.patience(60))
    second = replica_of(cl, "vm6")
    if second == first:
        raise Fail(f"after the failover vm6's replica is on its primary's host {first}")
    # the twin's disk is what its RAM expects (the guest reads its passes back right), and
    # the re-protection -- toward a's old image too -- sent only the guest's area
    psock = f"{cl.d}/{first}-state/run/vm6.replica.sock"
    disk_reads_back(psock, f"vm6 promoted on {first}")
    disk_copied(psock, f"vm6's re-protection from {first} to {second}")
    m = scrape(first)
    if m[("castor_vm_failovers_total", f'node="{first}",vm="vm6"')] != 1:
        raise Fail(f"{first}'s failover count for vm6: {m}")
    # the replica's castor-vmm dies: the primary goes degraded, and castord protects
    # it again (toward any live host but its own) without letting its outputs out
    pid = vmm_pid(cl, second, "vm6")
    os.kill(pid, signal.SIGKILL)
    wait_for("vm6's replica lost", lambda: vm_state(cl, first, "vm6")[0] != "protected",
             timeout=30, step=0.05)
    expect_vm(cl, "vm6", "protected", first, "protected again after its replica died",
              timeout=ct.patience(60))
    released = [line for line in open(f"{cl.d}/{first}-castord.out").read().splitlines()
                if "vm vm6: unprotected;" in line]
    if released:
        raise Fail(f"castord let vm6's held outputs out to protect it again: {released}")
    # the replica's castor-vmm freezes (SIGSTOP: its host and process live on, it acks
    # nothing): castor-vmm on the primary goes degraded, its castord tells the cluster
    # the replica is lost, the frozen one is stopped and the VM protected again
    third = replica_of(cl, "vm6")
    frozen = vmm_pid(cl, third, "vm6")
    os.kill(frozen, signal.SIGSTOP)
    wait_for("vm6's frozen replica noticed", lambda: vm_state(cl, first, "vm6")[0] != "protected",
             timeout=ct.patience(30), step=0.1)
    expect_vm(cl, "vm6", "protected", first, "protected again after its replica froze",
              timeout=ct.patience(90))
    if f"stopped replicating to {third}" not in open(f"{cl.d}/{first}-castord.out").read():
        raise Fail(f"{first}'s castord did not say its castor-vmm stopped replicating")
    wait_for(f"the frozen replica (pid {frozen}) stopped by {third}'s castord",
             lambda: not os.path.exists(f"/proc/{frozen}"), timeout=ct.patience(30))
    disk_reads_back(psock, f"vm6 on {first} after three re-protections")
    # the operator's unprotect through castord (the hold crosses the wire): unprotected,
    # and castord does not protect it again by itself
    cl.castor("b", "ha", "unprotect", "vm6")
    expect_vm(cl, "vm6", "unprotected", first, "castor ha unprotect vm6")
    time.sleep(3)
    for n in NODES:
        v = vm_json(cl, n, "vm6")
        if v["state"] != "unprotected" or not v["held"]:
            raise Fail(f"vm6 on {n} 3 s after castor ha unprotect: {v}")
    retire(cl, "vm6")
    print(f"protected vm6 (a writable disk, each initial copy only what differed): synced to "
          f"{first}; its primary killed -> promoted on {first} and "
          f"protected again toward {second}; that replica killed -> degraded, then protected "
          f"again; its next replica frozen (SIGSTOP) -> reported lost by the primary's "
          f"castord, stopped, protected again; stopped")


def restarted(cl, d):
    """restart = on-failure: vm7 (it writes a disk) started on c, its second preferred
    host; its castor-vmm killed three times -> started again each time by the cluster, on
    c (its disk's writes are there; b, first in its hosts, would be chosen otherwise);
    killed a fourth time inside the window -> it stays defined, and castor vm list says
    why; castor vm start runs it again with a fresh count; stopped -> not restarted."""
    for n in NODES:
        with open(f"{cl.d}/{n}-vm7.img", "wb") as f:
            f.truncate(1 << 20)
    with open(f"{d}/vm7.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm7").replace("protection = interval\ninterval = 20\n", "")
                .replace("hosts = a, b", "hosts = b, c") +
                f"disk = {cl.d}/%n-vm7.img\nrestart = on-failure\n")
    cl.castor("a", "vm", "define", f"{d}/vm7.conf")
    wait_for("vm7 defined on c", lambda: "vm7" in cl.vms("c"))
    if vm_json(cl, "b", "vm7")["restart"] != "on-failure":
        raise Fail(f"vm7's restart policy on b: {vm_json(cl, 'b', 'vm7')}")
    cl.castor("a", "vm", "start", "vm7", "--host", "c")
    expect_vm(cl, "vm7", "unprotected", "c", "started on c")
    lost = "primary-lost: castor-vmm on c killed by signal 9"
    for i in (1, 2, 3):
        pid = vmm_pid(cl, "c", "vm7")
        os.kill(pid, signal.SIGKILL)
        # the reason goes on with castor-vmm's last words, then ")-> starting"
        line = f"vm7: defined -(restart: {i} of 3 in 10 min, on c, after {lost}"
        wait_for(f"vm7's restart {i} in a's log",
                 lambda: line in open(f"{cl.d}/a-castord.out").read(), timeout=ct.patience(30))
        wait_for(f"a new castor-vmm of vm7 on c (restart {i})",
                 lambda: vmm_pid(cl, "c", "vm7") != pid, timeout=ct.patience(30))
        expect_vm(cl, "vm7", "unprotected", "c", f"restarted ({i})", timeout=ct.patience(60))
        if vm_json(cl, "b", "vm7")["restarts"] != i:
            raise Fail(f"vm7's restart count on b after restart {i}: {vm_json(cl, 'b', 'vm7')}")
    os.kill(vmm_pid(cl, "c", "vm7"), signal.SIGKILL)
    expect_vm(cl, "vm7", "defined", "", "killed a fourth time", lost)
    note = "restarted 3 times in 10 minutes: not again until castor vm start vm7"
    time.sleep(3)  # three ticks: a restart would have been sent by now
    for n in NODES:
        v = vm_json(cl, n, "vm7")
        if v["state"] != "defined" or v["restart_note"] != note or v["restarts"] != 3:
            raise Fail(f"vm7 on {n} after its fourth death: {v}")
    out = cl.castor("b", "vm", "list").stdout
    if f"restart: {note}" not in out:
        raise Fail(f"castor vm list on b does not say why vm7 is not restarted:\n{out}")
    cl.castor("b", "vm", "start", "vm7", "--host", "c")
    expect_vm(cl, "vm7", "unprotected", "c", "started by hand")
    if vm_json(cl, "a", "vm7")["restarts"] != 0:
        raise Fail(f"vm7's restart count after castor vm start: {vm_json(cl, 'a', 'vm7')}")
    cl.castor("c", "vm", "stop", "vm7")
    expect_vm(cl, "vm7", "defined", "", "stopped", timeout=60)
    time.sleep(3)
    v = vm_json(cl, "b", "vm7")
    if v["state"] != "defined" or v["restart_note"]:
        raise Fail(f"vm7 3 s after castor vm stop: {v}")
    cl.castor("a", "vm", "undefine", "vm7")
    print("restart = on-failure: vm7's castor-vmm killed three times -> started again on c "
          "(its disk's host) each time; a fourth time -> defined, with the reason in castor "
          "vm list; castor vm start ran it again; stopped: not restarted")


DR_ADDR = "10.77.0.100:7990"  # the DR site: the client's namespace, outside the cluster


def dr_replica(cl, d, what):
    """A castor-vmm replica at the DR site (the client namespace), as its operator starts
    it: not castord's, keyed like the cluster's links."""
    sock = f"{d}/dr.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen(ns("client") + [VMM, "replica", "--name", "vm3", "--listen", DR_ADDR,
                                         "--control", sock, "--key", f"{d}/cluster.key"],
                         stdout=open(f"{d}/dr-replica.log", "a"), stderr=subprocess.STDOUT)
    wait_for(f"the DR replica ({what})", lambda: os.path.exists(sock))
    return p


def dr_of(cl, n, name):
    """VM `name` as `castor status --json` on n shows it."""
    st = json.loads(cl.castor(n, "status", "--json").stdout)
    return next(v for v in st["vms"] if v["name"] == name)


def dr_site(cl, d):
    """A DR copy through castord (docs/dr.md): `castor dr protect vm3 --to` a DR replica
    outside the cluster; the primary's castord keeps the DR session beside the twin, every
    node shows its state and RPO in castor status, the primary's /metrics has it; after a
    failover the twin's castord asks again from the new primary and is told why not (the
    DR replica holds the old primary's copy) until the DR site starts a fresh replica,
    which it then fills by itself; castor dr unprotect stops the session."""
    with open(f"{d}/vm3.conf", "w") as f:
        f.write(VM1.replace("vm1", "vm3"))
    cl.castor("a", "vm", "define", f"{d}/vm3.conf")
    wait_for("vm3 defined on c", lambda: "vm3" in cl.vms("c"))
    for args, words in ((("dr", "protect", "vm3", "--to", DR_ADDR), "vm3 is not running"),
                        (("dr", "unprotect", "vm3"), "vm3 is not running")):
        r = cl.castor("c", *args, check=False)
        if r.returncode != 1 or words not in r.stderr:
            raise Fail(f"castor {' '.join(args)}: {r.returncode} {r.stderr.strip()!r}")
    cl.castor("b", "vm", "start", "vm3", "--host", "a")
    expect_vm(cl, "vm3", "protected", "a", "its replica synced", timeout=ct.patience(60))
    twin = replica_of(cl, "vm3")
    dr = dr_replica(cl, d, "first")
    try:
        for args, words in ((("dr", "protect", "vm3", "--to", "nohost"), "is not HOST:PORT"),
                            (("dr", "unprotect", "vm3"), "vm3 keeps no DR copy")):
            r = cl.castor("c", *args, check=False)
            if r.returncode != 1 or words not in r.stderr:
                raise Fail(f"castor {' '.join(args)}: {r.returncode} {r.stderr.strip()!r}")
        r = cl.castor("b", "dr", "protect", "vm3", "--to", DR_ADDR, "--rpo", "3000",
                      "--max-mbit", "200")
        if not r.stdout.startswith(f"vm3 on a: a DR copy at {DR_ADDR} (RPO target 3.0 s, link "
                                   "capped at 200 Mbit/s)"):
            raise Fail(f"castor dr protect: {r.stdout.strip()!r}")
        r = cl.castor("c", "dr", "protect", "vm3", "--to", DR_ADDR, check=False)
        if r.returncode != 1 or "keeps a DR copy at" not in r.stderr:
            raise Fail(f"a second dr protect: {r.returncode} {r.stderr.strip()!r}")
        # every node: the DR session protected, its RPO measured (the DR replica acked)
        for n in NODES:
            v = wait_for(f"vm3's DR copy protected, seen from {n}",
                         lambda: (lambda v: v if v["dr_state"] == "protected" else None)(
                             dr_of(cl, n, "vm3")), timeout=ct.patience(60), step=0.5)
            if v["dr_addr"] != DR_ADDR or v["dr_rpo_target_ms"] != 3000 or \
                    v["dr_max_mbit"] != 200 or \
                    v["dr_rpo_ms"] is None or v["state"] != "protected":
                raise Fail(f"castor status on {n}: {v}")
        line = cl.castor("c", "dr", "status", "vm3").stdout.strip()
        if not line.startswith(f"vm3, protected on a: DR copy at {DR_ADDR}, protected: the "
                               "newest checkpoint is"):
            raise Fail(f"castor dr status vm3: {line!r}")
        text = cl.castor("b", "status").stdout
        if f"DR copy at {DR_ADDR}, protected" not in text:
            raise Fail(f"castor status on b has no DR line: {text}")
        key = f'node="a",vm="vm3",dr="{DR_ADDR}"'
        m = wait_for("a's DR metrics for vm3",
                     lambda: (lambda m: m if m.get(("castor_vm_dr_checkpoints_total", key), 0) > 0
                              else None)(scrape("a")), timeout=ct.patience(30), step=0.5)
        if (m[("castor_vm_dr_up", key)], m[("castor_vm_dr_rpo_target_seconds", key)]) != (1, 3) \
                or ("castor_vm_dr_rpo_seconds", key) not in m:
            raise Fail(f"a's DR metrics for vm3: {m}")
        h = ct.ha(f"{d}/dr.sock")
        if h["role"] != "replica" or h["epoch"] < 1:
            raise Fail(f"the DR replica: {h}")
        # the primary's DR session runs with the cap (castor dr status at its socket)
        h = json.loads(ct.castor("dr", "status", "--socket", f"{cl.d}/a-state/run/vm3.sock",
                                 "--json").stdout)
        if h.get("max_mbit") != 200:
            raise Fail(f"a's DR session: {h}")
        # the primary's castor-vmm dies: the twin takes over on its host and is protected
        # again; its castord asks for the DR copy from there, which the DR replica refuses
        os.kill(vmm_pid(cl, "a", "vm3"), signal.SIGKILL)
        expect_vm(cl, "vm3", "protected", twin, "promoted, then protected again",
                  timeout=ct.patience(60))
        v = wait_for(f"{twin}'s castord told why the DR replica refuses",
                     lambda: (lambda v: v if v["dr_state"] and
                              "another primary" in v["dr_state"] else None)(
                                  dr_of(cl, "c", "vm3")), timeout=ct.patience(60), step=0.5)
        if v["dr_addr"] != DR_ADDR or v["host"] != twin:
            raise Fail(f"vm3 after the failover: {v}")
        refusal = v["dr_state"]
        # the DR site starts a fresh replica: the new primary's castord fills it by itself
        ct.stop_procs([dr])
        dr = dr_replica(cl, d, "a fresh one")
        wait_for("vm3's DR copy protected again, from the new primary",
                 lambda: dr_of(cl, "c", "vm3")["dr_state"] == "protected",
                 timeout=ct.patience(90), step=0.5)
        wait_for("the fresh DR replica's first checkpoint",
                 lambda: ct.ha(f"{d}/dr.sock")["epoch"] >= 1, timeout=ct.patience(30))
        # castor dr unprotect: the cluster forgets the target, the session stops
        psock = f"{cl.d}/{twin}-state/run/vm3.replica.sock"
        cl.castor("a", "dr", "unprotect", "vm3")
        wait_for(f"{twin}'s castor-vmm without a DR session",
                 lambda: ct.ha(psock)["mode"] != "async" and "dr" not in ct.ha(psock),
                 timeout=ct.patience(30), step=0.5)
        v = dr_of(cl, "b", "vm3")
        if v["dr_addr"] or v["state"] != "protected":
            raise Fail(f"vm3 after castor dr unprotect: {v}")
        if f"its DR session toward {DR_ADDR} stopped" not in \
                open(f"{cl.d}/{twin}-castord.out").read():
            raise Fail(f"{twin}'s castord did not say it stopped the DR session")
    finally:
        ct.stop_procs([dr])
    retire(cl, "vm3")
    print(f"vm3's DR copy through castord at {DR_ADDR}: protected beside its twin, its RPO on "
          f"every node and in a's metrics; after the failover to {twin} the DR replica "
          f"refused the new primary ({refusal[:70]}...), a fresh one was filled by "
          f"itself; castor dr unprotect stopped the session")


def partitioned(cl, d):
    """The primary's host is cut off (its LAN link down: corosync, the replication link and
    the guest's tap all behind it) under a client's TCP connection: the isolated host loses
    quorum, and its castor-vmm, whose replica went silent, releases not one output more;
    the majority promotes the twin and protects it again; the client's connection goes on
    with the twin. When the link comes back the old primary rejoins and castord stops its
    castor-vmm (the pairs place the VM elsewhere): never a second primary."""
    twin = cc.start_protected(cl, d, "vm8")
    asock = f"{cl.d}/a-state/run/vm8.sock"
    old_pid = vmm_pid(cl, "a", "vm8")
    with TcpClient(d, "client8") as client:
        subprocess.run(["ip", "-n", f"{P}-a", "link", "set", "eth0", "down"], check=True)
        expect(cl, "a", True, False, {"a"}, "a cut off")
        wait_for("a's castor-vmm degraded", lambda: ct.ha(asock)["state"] == "degraded",
                 timeout=ct.patience(30))
        released = ct.ha(asock)["outputs_released"]
        live = ("b", "c")
        expect_vm(cl, "vm8", "protected", twin, "promoted and protected again by b and c",
                  timeout=ct.patience(60), nodes=live)
        if vm_state(cl, "a", "vm8")[1] != "a":
            raise Fail(f"a, without quorum, changed vm8's pair: {vm_state(cl, 'a', 'vm8')}")
        h = ct.ha(asock)
        if h["outputs_released"] != released or h["state"] != "degraded":
            raise Fail(f"a's castor-vmm without its replica and without quorum: {h['state']}, "
                       f"{h['outputs_released'] - released} outputs released meanwhile")
        out = client.finish("the partition")
    # the link comes back: a rejoins, learns vm8 runs on the twin, stops its castor-vmm
    subprocess.run(["ip", "-n", f"{P}-a", "link", "set", "eth0", "up"], check=True)
    for n in NODES:
        expect(cl, n, True, True, {"a", "b", "c"}, "the partition healed")
    wait_for("a's castor-vmm of vm8 stopped by its castord",
             lambda: not os.path.exists(f"/proc/{old_pid}"), timeout=ct.patience(30))
    if "vm vm8: its castor-vmm here is not wanted any more" not in \
            open(f"{cl.d}/a-castord.out").read():
        raise Fail("a's castord did not say why it stopped vm8's castor-vmm")
    expect_vm(cl, "vm8", "protected", twin, "the partition healed, vm8 where it went")
    retire(cl, "vm8")
    print(f"a cut off under vm8: a lost quorum, its castor-vmm degraded and released no "
          f"output; b and c promoted the twin on {twin} and protected it again; client: {out}; "
          f"healed: a's castor-vmm stopped by its castord, vm8 stays on {twin}")


def ex_primary_resynced(d):
    """Two VM hosts and a witness: vm9 (a writable disk, a copy per host) runs on a,
    protected to b. a is cut off: b and the witness promote the twin, which goes on
    unprotected (no other host). When a comes back its castord stops its old castor-vmm
    and a takes the replica: its stale copy is resynced, only what changed sent. Then b's
    castor-vmm is killed and a's twin -- running from that resynced copy -- reads its disk
    back right."""
    sub = f"{d}/witness"
    os.makedirs(sub)
    subprocess.run([CASTOR, "key", "generate", f"{sub}/cluster.key"], check=True,
                   capture_output=True)
    cl = Cluster(sub, extra_conf=f"key_file = {sub}/cluster.key\n", witnesses=("c",))
    try:
        cl.up()
        data = os.urandom(DISK_BYTES)
        for n in ("a", "b"):
            with open(f"{sub}/{n}-vm9.img", "wb") as f:
                f.write(data)
        with open(f"{sub}/vm9.conf", "w") as f:
            f.write(VM1.replace("vm1", "vm9") + f"disk = {sub}/%n-vm9.img\n" +
                    "".join(f"guest_param = {p}\n" for p in DISK_WORKLOAD))
        cl.castor("a", "vm", "define", f"{sub}/vm9.conf")
        wait_for("vm9 defined on b", lambda: "vm9" in cl.vms("b"))
        cl.castor("b", "vm", "start", "vm9", "--host", "a")
        expect_vm(cl, "vm9", "protected", "a", "its replica synced", timeout=ct.patience(60))
        old_pid = vmm_pid(cl, "a", "vm9")
        subprocess.run(["ip", "-n", f"{P}-a", "link", "set", "eth0", "down"], check=True)
        expect(cl, "b", True, True, {"b", "c"}, "a cut off")
        expect_vm(cl, "vm9", "unprotected", "b", "promoted on b, no host for a replica",
                  timeout=ct.patience(60), nodes=("b", "c"))
        bsock = f"{sub}/b-state/run/vm9.replica.sock"
        ct.blk_writes(bsock, 300, "vm9's guest on b rewriting its area unprotected")
        subprocess.run(["ip", "-n", f"{P}-a", "link", "set", "eth0", "up"], check=True)
        for n in NODES:
            expect(cl, n, True, True, {"a", "b", "c"}, "the partition healed")
        wait_for("a's old castor-vmm of vm9 stopped by its castord",
                 lambda: not os.path.exists(f"/proc/{old_pid}"), timeout=ct.patience(30))
        expect_vm(cl, "vm9", "protected", "b", "protected again, toward a",
                  timeout=ct.patience(90))
        if replica_of(cl, "vm9") != "a":
            raise Fail(f"vm9's replica is on {replica_of(cl, 'vm9')}, not a")
        disk_copied(bsock, "vm9's re-protection toward a's old copy")
        h = ct.ha(bsock)
        # the old primary's copy was resynced from b
        os.kill(vmm_pid(cl, "b", "vm9"), signal.SIGKILL)
        expect_vm(cl, "vm9", "protected", "a", "promoted on a, from the resynced copy, and "
                  "protected again toward b", timeout=ct.patience(90))
        disk_reads_back(f"{sub}/a-state/run/vm9.replica.sock", "vm9 promoted on a")
        retire(cl, "vm9")
    finally:
        cl.close()
    print(f"two hosts and a witness: vm9's primary host a cut off -> promoted on b, "
          f"unprotected; a back -> its old castor-vmm stopped, a resynced as the replica "
          f"({h['disk_copy_bytes']} disk bytes sent, {h['disk_copy_same_bytes']} held); "
          f"b's castor-vmm killed -> a's twin runs (protected again toward b), its disk "
          f"reads back right")


def two_nodes(d):
    """Two voting nodes and no witness: castord says why the layout is refused and changes
    nothing, until allow_two_node = yes forces it."""
    for extra, refused in (("", True), ("allow_two_node = yes\n", False)):
        sub = f"{d}/two-{int(refused)}"
        os.makedirs(sub)
        cl = Cluster(sub, {n: NODES[n] for n in ("a", "b")}, extra)
        try:
            for n in ("a", "b"):
                cl.start_corosync(n)
                cl.start_castord(n)
            expect(cl, "a", True, True, {"a", "b"}, "two nodes up")
            problem = cl.nodes("a")["layout_problem"]
            with open(f"{sub}/vm1.conf", "w") as f:
                f.write(VM1)
            r = cl.castor("a", "vm", "define", f"{sub}/vm1.conf", check=False)
            if refused:
                if "without a witness" not in problem or r.returncode != 1 or \
                        "without a witness" not in r.stderr:
                    raise Fail(f"two nodes, no witness: layout '{problem}', define "
                               f"{r.returncode} {r.stderr.strip()!r}")
            elif problem or r.returncode:
                raise Fail(f"allow_two_node: layout '{problem}', define {r.stderr.strip()!r}")
        finally:
            cl.close()
    print("two nodes without a witness: refused with the reason; allow_two_node forces it")


def run(d):
    # the replication links between the namespaces are authenticated (docs/security.md)
    subprocess.run([CASTOR, "key", "generate", f"{d}/cluster.key"], check=True,
                   capture_output=True)
    cl = Cluster(d, extra_conf=f"key_file = {d}/cluster.key\n")
    try:
        for n in NODES:
            cl.start_corosync(n)
        for n in NODES:
            cl.start_castord(n)
        for n in NODES:
            expect(cl, n, True, True, {"a", "b", "c"}, "all three up")
        v = cl.nodes("a")
        if (v["total_votes"], v["expected_votes"]) != (3, 3) or v["local_name"] != "a":
            raise Fail(f"votes: {v}")
        m = scrape("a")
        if (m[("castor_quorate", 'node="a"')], m[("castor_members", 'node="a"')],
                m[("castor_node_member", 'node="a",peer="c",nodeid="3"')]) != (1, 3, 1):
            raise Fail(f"a's metrics with all three up: {m}")
        # CASTOR_CLUSTER_PARTS=partitioned,... runs only those parts (while working on one)
        only = [x for x in os.environ.get("CASTOR_CLUSTER_PARTS", "").split(",") if x]
        parts = [definitions, vm_runs] + ([vm_protected, restarted, dr_site, partitioned]
                                          if os.path.exists("/dev/kvm") else [])
        if ct.NESTED:
            # the nested machine (check-nested, after the host stage ran this test whole
            # without /dev/kvm) runs only what needs a VM: definitions, quorum and the
            # two-node layout take no VM and ran there with the same binaries
            parts = [p for p in parts if p is not definitions]
        for part in parts:
            if not only or part.__name__ in only:
                t0 = time.time()
                part(cl, d)
                print(f"  ({part.__name__}: {time.time() - t0:.0f} s)", flush=True)
        if ct.NESTED:
            print("membership, quorum and the two-node layout: left to the host stage "
                  "(no VM needed)")
        else:
            quorum_follows(cl)
    finally:
        cl.close()
    if not ct.NESTED:
        two_nodes(d)
    if os.path.exists("/dev/kvm") and (not only or "ex_primary_resynced" in only):
        ex_primary_resynced(d)


def quorum_follows(cl):
    """corosync daemons die and come back: every castord's view follows."""
    cl.kill_corosync("c")
    for n in ("a", "b"):
        expect(cl, n, True, True, {"a", "b"}, "c's corosync killed")
    m = scrape("b")
    if (m[("castor_members", 'node="b"')],
            m[("castor_node_member", 'node="b",peer="c",nodeid="3"')]) != (2, 0):
        raise Fail(f"b's metrics with c gone: {m}")
    if scrape("c")[("castor_corosync_connected", 'node="c"')] != 0:
        raise Fail("c's metrics: corosync still connected")
    expect(cl, "c", False, False, set(), "its corosync is gone")
    cl.kill_corosync("b")
    expect(cl, "a", True, False, {"a"}, "a alone")
    cl.start_corosync("b")
    for n in ("a", "b"):
        expect(cl, n, True, True, {"a", "b"}, "b's corosync back")
    print("membership and quorum followed corosync: 3 up, c lost (2 quorate, c not), "
          "a alone (not quorate), b back (reconnected by itself)")


def main():
    if os.geteuid() != 0:
        return ct.skip("needs root (network namespaces)")
    if not shutil.which("corosync"):
        return ct.skip("corosync is not installed (scripts/install-deps.sh installs it)")
    rc, _ = cc.run_on_hosts("castor-cluster-", run)
    if rc:
        return rc
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
