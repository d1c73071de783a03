"""A Castor cluster on one machine: three hosts in network namespaces (tests/net/twohost.sh's
P-a, P-b, P-c and P-client on one LAN bridge), each with its own corosync (knet over the
namespaces' addresses) and its own castord. Shared by tests/cluster/test_membership.py and
scripts/demo-cluster.py (`make demo`, the failover benchmark).

    import castorcluster as cc
    cc.configure(castord, castor, vmm)        # the binaries; the namespaces' prefix
    cl = cc.Cluster(folder)                   # then cl.start_corosync(n), cl.start_castord(n)

Everything started is stopped by PID in close(), and corosync's /dev/shm leftovers removed.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import castortest as ct
from castortest import Fail, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
NODES = {"a": ("10.77.0.11", 1), "b": ("10.77.0.12", 2), "c": ("10.77.0.13", 3)}
CASTORD = CASTOR = VMM = None
# a prefix of its own: two runs at once (two checkouts) must not tear down each other's hosts
P = os.environ.get("CASTOR_NETNS_PREFIX", f"ccl{os.getpid()}")


def configure(castord, castor, vmm):
    global CASTORD, CASTOR, VMM
    CASTORD, CASTOR, VMM = castord, castor, vmm
    ct.CASTOR = castor


# token 1000 ms, consensus 1200, token_coefficient 0 by default -- not the 300 ms that issue
# 13 suggests: on two loaded cores that token made knet drop links and the group flap every
# few seconds (docs/architecture.md). token=None leaves corosync's own defaults.
COROSYNC_CONF = """totem {
	version: 2
	cluster_name: castor-test
	transport: knet
	crypto_cipher: none
	crypto_hash: none
%(timing)s}
nodelist {
%(nodes)s
}
quorum {
	provider: corosync_votequorum
}
system {
	state_dir: %(state)s
}
logging {
	to_logfile: yes
	logfile: %(log)s
	to_stderr: no
	to_syslog: no
}
"""


def ns(name):
    return ["ip", "netns", "exec", f"{P}-{name}"]


class Cluster:
    def __init__(self, d, nodes=None, extra_conf="", token=1000, witnesses=()):
        self.d = d
        self.nodes_ = nodes or NODES  # the corosync nodelist
        self.extra_conf = extra_conf  # more castord.conf lines
        self.witnesses = witnesses  # nodes whose castord hosts no VMs
        self.token = token  # ms; None: corosync's defaults
        self.corosync = {}  # node -> Popen
        self.castord = {}
        self.dead_corosync_pids = []

    def corosync_conf(self, n):
        nodes = "\n".join(
            f"\tnode {{\n\t\tnodeid: {nid}\n\t\tname: {name}\n\t\tring0_addr: {ip}\n\t}}"
            for name, (ip, nid) in self.nodes_.items())
        timing = "" if self.token is None else (
            f"\ttoken: {self.token}\n\tconsensus: {self.token * 6 // 5}\n"
            "\ttoken_coefficient: 0\n")
        state = f"{self.d}/{n}-corosync"
        os.makedirs(state, exist_ok=True)
        path = f"{self.d}/{n}-corosync.conf"
        with open(path, "w") as f:
            f.write(COROSYNC_CONF % {"nodes": nodes, "state": state, "timing": timing,
                                     "log": f"{self.d}/{n}-corosync.log"})
        return path

    def start_corosync(self, n):
        conf = self.corosync_conf(n)
        # corosync's pid file is fixed at /run/corosync.pid: a /run of its own
        self.corosync[n] = subprocess.Popen(
            ns(n) + ["sh", "-c", f"mount -t tmpfs none /run && exec corosync -f -c {conf}"],
            stdout=open(f"{self.d}/{n}-corosync.out", "a"), stderr=subprocess.STDOUT)

    def kill_corosync(self, n):
        p = self.corosync.pop(n)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        self.dead_corosync_pids.append(p.pid)

    def start_castord(self, n):
        conf = f"{self.d}/{n}.conf"
        with open(conf, "w") as f:
            f.write(f"node = {n}\nstate_dir = {self.d}/{n}-state\n"
                    f"control = {self.d}/{n}.sock\nmetrics = {NODES[n][0]}:9477\n"
                    f"vmm = {VMM}\nreplication_host = {NODES[n][0]}\n{self.extra_conf}"
                    + ("witness = yes\n" if n in self.witnesses else ""))
        sock = f"{self.d}/{n}.sock"
        if os.path.exists(sock):
            os.unlink(sock)  # a killed castord's: its successor makes its own
        self.castord[n] = subprocess.Popen(ns(n) + [CASTORD, "--config", conf],
                                           stdout=open(f"{self.d}/{n}-castord.out", "a"),
                                           stderr=subprocess.STDOUT)
        wait_for(f"castord {n}'s socket", lambda: os.path.exists(f"{self.d}/{n}.sock"))

    def castor(self, n, *args, check=True):
        r = subprocess.run([CASTOR, *args, "--castord", f"{self.d}/{n}.sock"],
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode:
            raise Fail(f"castor {' '.join(args)} on {n}: {r.stderr.strip()}")
        return r

    def vms(self, n):
        return {v["name"] for v in json.loads(self.castor(n, "vm", "list", "--json").stdout)["vms"]}

    def restart_castord(self, n):
        p = self.castord.pop(n)
        ct.stop_procs([p])
        self.start_castord(n)

    def nodes(self, n):
        r = subprocess.run([CASTOR, "node", "list", "--castord", f"{self.d}/{n}.sock", "--json"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise Fail(f"castor node list on {n}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def up(self, names=None):
        """Start corosync and castord on `names` (all nodes) and wait until each sees all
        of them, quorate."""
        names = list(names or self.nodes_)
        for n in names:
            self.start_corosync(n)
        for n in names:
            self.start_castord(n)
        for n in names:
            expect(self, n, True, True, set(self.nodes_), "all up")

    def close(self):
        procs = list(self.castord.values()) + list(self.corosync.values())
        ct.stop_procs(procs)
        for p in self.corosync.values():
            self.dead_corosync_pids.append(p.pid)
        # each corosync leaves ~8 MiB of libqb files in /dev/shm, named by its pid
        for pid in self.dead_corosync_pids:
            for f in glob.glob(f"/dev/shm/qb-{pid}-*") + glob.glob(f"/dev/shm/qb-*-{pid}-*"):
                shutil.rmtree(f, ignore_errors=True) if os.path.isdir(f) else os.unlink(f)


SCRAPE = """
import sys, urllib.request
r = urllib.request.urlopen(f"http://{sys.argv[1]}:9477/metrics", timeout=10)
assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
sys.stdout.write(r.read().decode())
"""


def scrape(n):
    """node n's /metrics, parsed from the exposition format: {(name, labels): value}."""
    r = subprocess.run(ns(n) + [sys.executable, "-c", SCRAPE, NODES[n][0]], capture_output=True,
                       text=True, timeout=30)
    if r.returncode:
        raise Fail(f"scraping {n}: {r.stderr.strip()}")
    out, types = {}, {}
    for line in r.stdout.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        metric, value = line.rsplit(" ", 1)
        name, _, labels = metric.partition("{")
        if name not in types:
            raise Fail(f"{n}: metric {name} has no TYPE line")
        out[(name, labels.rstrip("}"))] = float(value)
    return out


def view(cl, n):
    """(connected, quorate, {name: member}) as node n's castord sees it."""
    v = cl.nodes(n)
    return v["connected"], v["quorate"], {x["name"]: x["member"] for x in v["nodes"]}


def expect(cl, n, connected, quorate, members, what):
    want = (connected, quorate, members)

    def ok():
        c, q, m = view(cl, n)
        return (c, q, {k for k, v in m.items() if v}) == want
    try:
        wait_for(f"{n}: {what}", ok, timeout=60, step=0.2)
    except Fail:
        raise Fail(f"{n} sees {cl.nodes(n)}; expected connected={connected}, "
                   f"quorate={quorate}, members={sorted(members)} ({what})")


def vm_json(cl, n, name):
    """`castor vm list --json`'s entry for VM `name` on node n."""
    for v in json.loads(cl.castor(n, "vm", "list", "--json").stdout)["vms"]:
        if v["name"] == name:
            return v
    raise Fail(f"{n} does not list {name}")


def vm_state(cl, n, name):
    """(state, primary, last_event) of VM `name` as node n sees it."""
    v = vm_json(cl, n, name)
    return v["state"], v["primary"], v["last_event"]


def expect_vm(cl, name, state, primary, what, event=None, timeout=30, nodes=NODES):
    """Every node (of `nodes`) lists `name` in `state` on `primary` (and `event` in its
    last event)."""
    for n in nodes:
        def ok():
            s, p, e = vm_state(cl, n, name)
            return s == state and p == primary and (event is None or event in e)
        try:
            wait_for(f"{name} {state} on {n}: {what}", ok, timeout=timeout, step=0.1)
        except Fail:
            raise Fail(f"{n} sees {name} as {vm_state(cl, n, name)}; expected {state} on "
                       f"'{primary}' with '{event}' ({what})")


def vmm_pid(cl, n, name):
    """The pid of the castor-vmm castord `n` runs for `name` (from its log line)."""
    out = open(f"{cl.d}/{n}-castord.out").read()
    pids = [line.split("pid ")[1].split(",")[0] for line in out.splitlines()
            if f"supervise: {name}: castor-vmm started, pid " in line]
    if not pids:
        raise Fail(f"castord {n} never started {name}")
    return int(pids[-1])


def replica_of(cl, name, nodes=NODES):
    """The replica host every node (of `nodes`) agrees on for `name`, once they agree and
    it is not "" (none)."""
    def agreed():
        hosts = set()
        for n in nodes:
            for v in json.loads(cl.castor(n, "vm", "list", "--json").stdout)["vms"]:
                if v["name"] == name:
                    hosts.add(v["replica"])
        return hosts.pop() if len(hosts) == 1 and "" not in hosts else None
    return wait_for(f"the nodes agreeing on {name}'s replica", agreed, timeout=60, step=0.1)


def netns_pids(n):
    r = subprocess.run(["ip", "netns", "pids", f"{P}-{n}"], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_host(cl, n):
    """Host n dies at once: every process in its namespace (corosync, castord, the
    castor-vmm processes castord started) gets SIGKILL in one sweep."""
    for pid in netns_pids(n):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for procs in (cl.corosync, cl.castord):
        p = procs.pop(n, None)
        if p:
            p.wait(10)
            if procs is cl.corosync:
                cl.dead_corosync_pids.append(p.pid)


GUEST_IP, MAC = "10.77.0.2", "52:54:00:12:34:56"
NIC_VM = f"""# a protected test guest on each host's LAN bridge (tests/net/twohost.sh's tap0)
name = vm7
guest = test
mem = 64M
cpus = 1
guest_param = ip={GUEST_IP}
nic = tap=tap0,mac={MAC}
protection = interval
interval = 20
hosts = a, b, c
"""


def start_protected(cl, d, name, on="a"):
    """Define `name` (NIC_VM's NIC and guest address), start it on `on`, wait until it is
    protected; its replica's host."""
    with open(f"{d}/{name}.conf", "w") as f:
        f.write(NIC_VM.replace("vm7", name))
    cl.castor(on, "vm", "define", f"{d}/{name}.conf")
    others = [n for n in cl.nodes_ if n != on]
    wait_for(f"{name} defined on {others[-1]}", lambda: name in cl.vms(others[-1]))
    cl.castor(others[0], "vm", "start", name, "--host", on)
    expect_vm(cl, name, "protected", on, "its replica synced", timeout=ct.patience(60))
    return replica_of(cl, name)


class TcpClient:
    """tgclient.py's TCP client in the client namespace, one connection of numbered
    requests, started and seen running for 3 s; `finish()` waits for it (killing it if
    the body failed first) and returns its summary line, or fails naming `what`.
    `answer_after(t)`: seconds from t (time.monotonic()) to the first answer after it."""

    def __init__(self, d, name, count=300, rate=50):
        self.out = f"{d}/{name}.out"
        self.times = f"{d}/{name}.times"
        self.p = subprocess.Popen(
            ns("client") + [sys.executable, f"{HERE}/../net/tgclient.py", "tcp", "--host",
                            GUEST_IP, "--count", str(count), "--rate", str(rate),
                            "--window", "1", "--timeout", str(ct.patience(30)),
                            "--times", self.times],
            stdout=open(self.out, "w"), stderr=subprocess.STDOUT)
        time.sleep(3)
        if self.p.poll() is not None:
            raise Fail("the client stopped at once: " + open(self.out).read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def finish(self, what):
        rc = self.p.wait(ct.patience(120))
        out = open(self.out).read().strip()
        if rc:
            raise Fail(f"the client's TCP connection across {what}: {out}")
        return out

    def answer_after(self, t):
        with open(self.times) as f:
            later = [float(x) for x in f.read().split() if float(x) > t]
        if not later:
            raise Fail(f"the client had no answer after {t:.3f}")
        return later[0] - t


def run_on_hosts(prefix, body):
    """Build the hosts' network, run body(folder) in a temporary folder, take it all down.
    (0, body's value) when it passed; (status, None) when it could not run (77 or 1, from
    ct.twohost_up) or failed (1, after the tails of every log it left)."""
    rc = ct.twohost_up(P)
    if rc is not None:
        return rc, None
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as d:
            try:
                return 0, body(d)
            except Fail as e:
                print(f"FAIL: {e}")
                logs = sorted(glob.glob(f"{d}/*.out") + glob.glob(f"{d}/*.log") +
                              glob.glob(f"{d}/*-state/log/*.log"))
                for f in logs:
                    text = open(f, errors="replace").read()
                    # a tail of epochs can hide what went wrong before it: every ERR line
                    # too (a vCPU that failed, an apply refused), the last 15
                    errs = [line for line in text.splitlines() if " ERR " in line][-15:]
                    if errs:
                        print(f"--- {os.path.relpath(f, d)} (ERR lines)\n" + "\n".join(errs))
                    print(f"--- {os.path.relpath(f, d)} (tail)\n" + text[-1500:])
                return 1, None
    finally:
        ct.twohost_down(P)
