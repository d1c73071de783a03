#!/usr/bin/env python3
"""Live migration between two castor-vmm processes on loopback (castor migrate to a
castor-vmm incoming), end to end, with the test guest dirtying its memory.

usage: test_migrate.py VMM CASTOR TGCHECK_SNAP CASE
  rates     a 2-vCPU guest dirtying 10 and 200 pages/ms per vCPU migrates (verify
            mode: the destination's RAM digest equals the source's at every
            round); the source ends, the destination runs on from where the
            source paused (counters go on), its RAM verifies (tgcheck)
  converge  a guest dirtying as fast as it can with a 1 ms downtime target only
            converges throttled: the summary says how much
  deadline  the same guest with --no-throttle meets --timeout: the migration is
            given up, the source runs on unharmed, the destination exits 1
  cancel    a migration cancelled while the destination hangs (SIGSTOP): the
            source runs on at once; the destination, woken, exits 1
  cut       the link cut mid-copy (CASTOR_TEST_CUT_AFTER): the source runs on and
            its RAM verifies; the destination waits again and takes another source
  refuse    clear refusals: a replica is no destination, an incoming no replica,
            a protected VM does not migrate, a
            destination without the source's disk refuses the copy (the source
            runs on), an incoming refuses castor ha failover
  postcopy  --postcopy: after the initial copy the VM runs at the destination at
            once and the pages the guest dirtied since come after it, those it
            touches first on request (userfaultfd); every page arrives, the
            destination's RAM verifies and its counters go on. Then a migration
            under way (--no-throttle, 1 ms downtime) is switched to postcopy by
            `castor migrate --switch-to-postcopy` and completes too. Last, the link
            cut during postcopy (CASTOR_TEST_POSTCOPY_CUT): the source says
            postcopy-broken and keeps the pages, the destination runs and listens
            again; `castor migrate --resume` reconnects, every page arrives and
            the destination's RAM verifies
  disk      a writable disk copied live while the guest writes it (the
            destination's copy starts different): the destination's disk holds
            what its RAM says the guest wrote, and reads back right
Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm; a failure under CASTOR_REQUIRE_KVM=1).
"""
import json
import os
import signal
import subprocess
import sys

VMM, CASTOR, TGCHECK, CASE = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import castortest as ct  # noqa: E402
from castortest import Fail, castor, ha, vm_status, wait_for  # noqa: E402
ct.CASTOR = CASTOR


# The downtime to aim for. On the nested test machine (everything emulated) the link
# carries about 10 MB/s and a verify digest of RAM takes most of a second: no round
# is small enough for 30 ms there.
DOWNTIME = "5000" if ct.NESTED else "30"


def guest(rate, wss="8M"):
    return ["--guest-param", f"rate={rate}", "--guest-param", f"wss={wss}",
            "--guest-param", "outrate=100"]


class Procs:
    """The castor-vmm processes of one case, stopped by PID in close()."""

    def __init__(self, d):
        self.d, self.procs = d, []

    def spawn(self, name, argv, env=None):
        p = subprocess.Popen([VMM, *argv, "--serial", "none", "--name", name],
                             stdout=open(f"{self.d}/{name}.out", "w"), stderr=subprocess.STDOUT,
                             env=env)
        self.procs.append(p)
        return p

    def incoming(self, name, *extra):
        sock = f"{self.d}/{name}.sock"
        p = self.spawn(name, ["incoming", "--listen", "127.0.0.1:0", "--control", sock,
                              "--event-log", f"{self.d}/{name}.log", *extra])
        wait_for(f"{name}'s control socket", lambda: os.path.exists(sock) or p.poll() is not None)
        if p.poll() is not None:
            raise Fail(f"{name} exited: {self.tail(name)}")
        port = wait_for(f"{name}'s port", lambda: ha(sock)["port"])
        return p, sock, f"127.0.0.1:{port}"

    def source(self, name, rate, *extra, wss="8M", env=None):
        sock = f"{self.d}/{name}.sock"
        p = self.spawn(name, ["run", "--mem", "128M", "--cpus", "2", "--test-guest",
                              *guest(rate, wss), "--control", sock,
                              "--event-log", f"{self.d}/{name}.log", *extra], env)
        wait_for(f"{name}'s control socket", lambda: os.path.exists(sock) or p.poll() is not None)
        if p.poll() is not None:
            raise Fail(f"{name} exited: {self.tail(name)}")
        wait_for(f"{name}'s guest at work", lambda: vm_status(sock)["guest_counter"] > 1000)
        return p, sock

    def tail(self, name):
        try:
            return open(f"{self.d}/{name}.out").read()[-2000:]
        except FileNotFoundError:
            return ""

    def close(self):
        ct.stop_procs(self.procs)


def migrate(sock, peer, *extra):
    """castor migrate, which takes as long as the migration (castortest's castor() allows
    30 s)."""
    try:
        return subprocess.run([CASTOR, "migrate", "--socket", sock, "--to", peer, *extra],
                              capture_output=True, text=True, timeout=ct.patience(120))
    except subprocess.TimeoutExpired as e:
        raise Fail(f"castor migrate --to {peer} {' '.join(extra)}: still at it after "
                   f"{e.timeout} s: {e.stdout}")


def counter(sock):
    return vm_status(sock)["guest_counter"]


def runs_on(sock, what):
    """The VM behind sock runs: its guest counter goes on and it is not paused."""
    s = vm_status(sock)
    if s["run_state"] != "running":
        raise Fail(f"{what}: run state {s['run_state']}")
    c0 = s["guest_counter"]
    wait_for(f"{what}'s guest to go on", lambda: counter(sock) > c0 + 1000, timeout=ct.patience(20))


def tgcheck(sock, d, name):
    """Pause, snapshot and check the test guest's RAM by its own rule; resume."""
    snap = f"{d}/{name}.snap"
    castor("vm", "pause", "--socket", sock)
    castor("vm", "snapshot", "--socket", sock, "--file", snap)
    castor("vm", "resume", "--socket", sock)
    chk = subprocess.run([TGCHECK, snap], capture_output=True, text=True)
    if chk.returncode:
        raise Fail(f"{name}'s RAM: {chk.stdout.strip()} {chk.stderr.strip()}")
    os.unlink(snap)
    return json.loads(chk.stdout)


def exits(p, what, status, timeout=30):
    try:
        rc = p.wait(ct.patience(timeout))
    except subprocess.TimeoutExpired:
        raise Fail(f"{what} still runs")
    if rc != status:
        raise Fail(f"{what} exited {rc}, not {status}")


def one_migration(pr, name, rate, *extra, wss="8M"):
    sp, ssock = pr.source(f"{name}-src", rate, wss=wss)
    dp, dsock, addr = pr.incoming(f"{name}-dst")
    before = vm_status(ssock)
    r = migrate(ssock, addr, "--json", *extra)
    if r.returncode:
        raise Fail(f"castor migrate (rate {rate}): {r.stderr.strip()}\n{pr.tail(name + '-src')}"
                   f"\n{pr.tail(name + '-dst')}")
    summ = json.loads(r.stdout)
    if summ["state"] != "migrated" or summ["rounds"] < 1 or summ["downtime_ns"] <= 0:
        raise Fail(f"summary: {summ}")
    exits(sp, "the source castor-vmm", 0)
    dst = vm_status(dsock)
    if dst["guest_counter"] < before["guest_counter"]:
        raise Fail(f"the destination's counter {dst['guest_counter']} is behind the source's "
                   f"{before['guest_counter']} before the migration")
    h = ha(dsock)
    if h["state"] != "failed-over" or not h["failed_over"]:
        raise Fail(f"the destination's session: {h}")
    if "--verify" in extra and (h["verify_bad"] or h["verify_ok"] < summ["rounds"]):
        raise Fail(f"digests at the destination: {h['verify_ok']} matched, "
                   f"{h['verify_bad']} differed, {summ['rounds']} rounds")
    runs_on(dsock, "the destination")
    chk = tgcheck(dsock, pr.d, f"{name}-dst")
    return summ, chk, dp, dsock


def case_rates(pr):
    for rate in (10, 200):
        summ, chk, _, _ = one_migration(pr, f"r{rate}", rate, "--verify", "--downtime",
                                        DOWNTIME)
        print(f"rate {rate}: migrated in {summ['total_ns'] / 1e6:.1f} ms, downtime "
              f"{summ['downtime_ns'] / 1e6:.3f} ms, {summ['rounds']} rounds, "
              f"{summ['wire_bytes'] >> 20} MiB, {summ['verify_ok']} digests; the "
              f"destination's RAM verifies, counters {chk['counter']}")


def case_converge(pr):
    # 1 ms is out of reach for a guest dirtying 2 x 16 MiB unthrottled, on any link
    # (nested: 300 ms at about 10 MB/s, against up to 32 MiB per round)
    summ, _, _, _ = one_migration(pr, "c", "max", "--downtime", "300" if ct.NESTED else "1",
                                  wss="16M")
    if not summ["throttle_peak_pct"]:
        raise Fail(f"a guest dirtying 2 x 16 MiB as fast as it can converged to 1 ms unthrottled: "
                   f"{summ}")
    print(f"converged throttled (up to {summ['throttle_peak_pct']} %, paused "
          f"{summ['throttled_ns'] / 1e6:.0f} ms by it) in {summ['rounds']} rounds; downtime "
          f"{summ['downtime_ns'] / 1e6:.3f} ms")


def case_deadline(pr):
    sp, ssock = pr.source("src", "max", wss="16M")
    dp, dsock, addr = pr.incoming("dst")
    r = migrate(ssock, addr, "--downtime", "1", "--no-throttle", "--timeout", "2")
    if r.returncode != 1 or "given up" not in r.stderr:
        raise Fail(f"a migration past its deadline: {r.returncode} {r.stderr.strip()!r}")
    h = ha(ssock)
    if h["state"] != "stopped" or h["throttle_peak_pct"]:
        raise Fail(f"the source's session after the deadline: {h}")
    runs_on(ssock, "the source")
    tgcheck(ssock, pr.d, "src")
    exits(dp, "the destination", 1)
    if "gave the migration up" not in pr.tail("dst"):
        raise Fail(f"the destination's last words: {pr.tail('dst')}")
    print(f"given up after {h['rounds']} rounds ({h['policy']}); the source runs on and "
          f"verifies; the destination exited 1")


def case_cancel(pr):
    sp, ssock = pr.source("src", "max", wss="16M")
    dp, dsock, addr = pr.incoming("dst")
    cli = subprocess.Popen([CASTOR, "migrate", "--socket", ssock, "--to", addr, "--downtime",
                            "1", "--no-throttle"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        wait_for("the migration under way",
                 lambda: ha(ssock)["state"] in ("syncing", "migrating"), timeout=ct.patience(20))
        dp.send_signal(signal.SIGSTOP)
        castor("migrate", "--socket", ssock, "--cancel")
        out, err = cli.communicate(timeout=ct.patience(20))
    finally:
        if cli.poll() is None:
            cli.kill()
        dp.send_signal(signal.SIGCONT)
    if cli.returncode != 1 or "cancelled" not in err:
        raise Fail(f"castor migrate after a cancel: {cli.returncode} {err.strip()!r}")
    runs_on(ssock, "the source")
    tgcheck(ssock, pr.d, "src")
    # woken, the destination finds its source gone (or never copied: then it waits)
    wait_for("the destination to notice",
             lambda: dp.poll() is not None or ha(dsock)["state"] == "idle",
             timeout=ct.patience(30))
    if dp.poll() not in (None, 1):
        raise Fail(f"the destination exited {dp.poll()}")
    print("cancelled with the destination frozen: the source runs on and verifies; the "
          f"destination {'exited 1' if dp.poll() == 1 else 'waits again (copy never applied)'}")


def case_cut(pr):
    env = dict(os.environ, CASTOR_TEST_CUT_AFTER=str(4 << 20))
    sp, ssock = pr.source("cut", 10, env=env)
    dp, dsock, addr = pr.incoming("dst")
    r = migrate(ssock, addr)
    if r.returncode != 1 or "stopped" not in r.stderr:
        raise Fail(f"a migration cut after 4 MiB: {r.returncode} {r.stderr.strip()!r}")
    runs_on(ssock, "the cut source")
    tgcheck(ssock, pr.d, "cut")
    wait_for("the destination to wait again", lambda: ha(dsock)["state"] == "idle",
             timeout=ct.patience(30))
    # the same destination takes the next source
    sp2, ssock2 = pr.source("next", 10)
    r = migrate(ssock2, addr, "--verify", "--json", "--downtime", DOWNTIME)
    if r.returncode:
        raise Fail(f"the next source: {r.stderr.strip()}")
    exits(sp2, "the next source", 0)
    runs_on(dsock, "the destination")
    print(f"cut mid-copy: the source runs on and verifies; the destination took the next "
          f"source ({json.loads(r.stdout)['rounds']} rounds)")


def check_postcopy(summ, dsock, what):
    # a resumed postcopy sends again what was lost with the link: the source may count more
    if not summ["postcopy"] or not summ["postcopy_pages"] or \
            summ["postcopy_sent"] < summ["postcopy_pages"]:
        raise Fail(f"{what}: the summary says {summ}")
    h = wait_for(f"{what}: every page placed at the destination",
                 lambda: (lambda h: h if h["pc_sent"] == h["pc_pages"] else None)(ha(dsock)),
                 timeout=ct.patience(30))
    if not h["postcopy"] or h["pc_pages"] != summ["postcopy_pages"]:
        raise Fail(f"{what}: the destination says postcopy {h['postcopy']}, "
                   f"{h['pc_sent']} of {h['pc_pages']} pages placed")
    return h


def case_postcopy(pr):
    # a guest that dirties 2 x 16 MiB fast: many pages are stale at the switch
    summ, chk, _, dsock = one_migration(pr, "pc", 200, "--postcopy", wss="16M")
    h = check_postcopy(summ, dsock, "--postcopy")
    print(f"--postcopy: migrated in {summ['total_ns'] / 1e6:.1f} ms, the VM ran at the "
          f"destination {summ['downtime_ns'] / 1e6:.1f} ms after the pause; "
          f"{summ['postcopy_pages']} pages after the switch ({summ['postcopy_zero']} zero), "
          f"{summ['postcopy_on_demand']} sent on request, {h['pc_asked']} faults there; "
          f"its RAM verifies, counters {chk['counter']}")
    # asked for while the migration is under way (its copy: how long a guest takes
    # to converge, if ever, depends on the machine; the copy is long everywhere)
    sp, ssock = pr.source("sw-src", "max", wss="16M")
    dp, dsock, addr = pr.incoming("sw-dst")
    m = subprocess.Popen([CASTOR, "migrate", "--socket", ssock, "--to", addr, "--json",
                          "--no-throttle", "--downtime", "1", "--timeout", "3600"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the migration's copy", lambda: ha(ssock)["state"] == "syncing",
                 timeout=ct.patience(30), step=0.05)
        castor("migrate", "--socket", ssock, "--switch-to-postcopy")
        out, err = m.communicate(timeout=ct.patience(120))
    finally:
        if m.poll() is None:
            m.kill()
    if m.returncode:
        raise Fail(f"castor migrate after --switch-to-postcopy: {err.strip()}\n"
                   f"{pr.tail('sw-src')}\n{pr.tail('sw-dst')}")
    summ = json.loads(out)
    check_postcopy(summ, dsock, "--switch-to-postcopy")
    exits(sp, "the source castor-vmm", 0)
    runs_on(dsock, "the destination")
    chk = tgcheck(dsock, pr.d, "sw-dst")
    print(f"--switch-to-postcopy after round {summ['rounds']}: {summ['postcopy_pages']} "
          f"pages after the switch, {summ['postcopy_on_demand']} on request; the "
          f"destination's RAM verifies, counters {chk['counter']}")
    # the link cut in the middle of postcopy, then resumed
    env = dict(os.environ, CASTOR_TEST_POSTCOPY_CUT="512")
    sp, ssock = pr.source("cut-src", 200, wss="16M", env=env)
    dp, dsock, addr = pr.incoming("cut-dst")
    r = migrate(ssock, addr, "--postcopy")
    if r.returncode != 1 or "postcopy-broken" not in r.stderr:
        raise Fail(f"postcopy cut after 512 pages: {r.returncode} {r.stderr.strip()!r}\n"
                   f"{pr.tail('cut-src')}")
    h = ha(ssock)
    if h["state"] != "postcopy-broken" or not h["pc_sent"] or h["pc_sent"] >= h["pc_pages"]:
        raise Fail(f"the cut source: {h['state']}, {h['pc_sent']} of {h['pc_pages']} sent")
    wait_for("the destination to notice and listen again",
             lambda: "listens on port" in ha(dsock)["last_error"], timeout=ct.patience(30))
    if dp.poll() is not None:
        raise Fail(f"the destination exited: {pr.tail('cut-dst')}")
    try:
        r = subprocess.run([CASTOR, "migrate", "--socket", ssock, "--resume", "--json"],
                           capture_output=True, text=True, timeout=ct.patience(120))
    except subprocess.TimeoutExpired:
        raise Fail(f"castor migrate --resume still at it\n{pr.tail('cut-src')}\n"
                   f"{pr.tail('cut-dst')}")
    if r.returncode:
        raise Fail(f"castor migrate --resume: {r.stderr.strip()}\n{pr.tail('cut-src')}\n"
                   f"{pr.tail('cut-dst')}")
    summ = json.loads(r.stdout)
    check_postcopy(summ, dsock, "--resume")
    exits(sp, "the resumed source castor-vmm", 0)
    runs_on(dsock, "the destination after the resume")
    chk = tgcheck(dsock, pr.d, "cut-dst")
    print(f"postcopy cut after {h['pc_sent']} of {h['pc_pages']} pages, resumed: every page "
          f"there, the destination's RAM verifies, counters {chk['counter']}")


def case_disk(pr):
    """A writable disk that is not shared, copied live while the guest writes it."""
    blocks, seed = 1024, 7
    simg, dimg = f"{pr.d}/src.img", f"{pr.d}/dst.img"
    for path in (simg, dimg):  # the destination's copy starts different
        with open(path, "wb") as f:
            f.write(os.urandom(8 << 20))
    gp = ["--guest-param", "blkrate=800", "--guest-param", "blkfirst=0",
          "--guest-param", f"blkcount={blocks}", "--guest-param", f"seed={seed}"]
    sp, ssock = pr.source("dsrc", 50, *gp, "--disk", simg)
    dp, dsock, addr = pr.incoming("ddst", "--disk", dimg)
    w0 = vm_status(ssock)["guest_io"]["blk_written"]
    r = migrate(ssock, addr, "--json", "--verify", "--downtime", DOWNTIME)
    if r.returncode:
        raise Fail(f"castor migrate: {r.stderr.strip()}\n{pr.tail('dsrc')}\n{pr.tail('ddst')}")
    summ = json.loads(r.stdout)
    exits(sp, "the source castor-vmm", 0)
    # the disk holds what the destination's RAM says the guest wrote
    io, _ = ct.check_guest_disk(TGCHECK, dsock, dimg, blocks, seed, f"{pr.d}/ddst.snap",
                                "the destination")
    h = ha(dsock)
    print(f"a writable disk migrated with the guest writing ({io['blk_written'] - w0} blocks "
          f"written since the start, {h['disk_bytes'] >> 20} MiB of disk applied at the "
          f"destination); {summ['rounds']} rounds, downtime {summ['downtime_ns'] / 1e6:.1f} ms;"
          f" the disk matches the guest's RAM and reads back right")


def case_refuse(pr):
    # a replica is no migration destination, and an incoming no replica
    rsock = f"{pr.d}/rep.sock"
    pr.spawn("rep", ["replica", "--listen", "127.0.0.1:0", "--control", rsock])
    wait_for("the replica", lambda: os.path.exists(rsock))
    rport = wait_for("its port", lambda: ha(rsock)["port"])
    sp, ssock = pr.source("src", 10)
    r = migrate(ssock, f"127.0.0.1:{rport}")
    if r.returncode != 1 or "castor-vmm incoming" not in r.stderr:
        raise Fail(f"migrating to a replica: {r.returncode} {r.stderr.strip()!r}")
    dp, dsock, addr = pr.incoming("dst")
    r = castor("ha", "protect", "--socket", ssock, "--peer", addr, check=False)
    if r.returncode != 1 or "migration destination" not in r.stderr:
        raise Fail(f"protecting toward an incoming: {r.returncode} {r.stderr.strip()!r}")
    r = castor("ha", "failover", "--socket", dsock, "--force", check=False)
    if r.returncode != 1 or "hands it over" not in r.stderr and "no twin" not in r.stderr:
        raise Fail(f"failover on an incoming: {r.returncode} {r.stderr.strip()!r}")
    runs_on(ssock, "the source")
    # a protected VM does not migrate
    castor("ha", "protect", "--socket", ssock, "--peer", f"127.0.0.1:{rport}", "--wait")
    r = migrate(ssock, addr)
    if r.returncode != 1 or "unprotect" not in r.stderr:
        raise Fail(f"migrating a protected VM: {r.returncode} {r.stderr.strip()!r}")
    # a destination without the source's disk refuses it, writable or not
    img = f"{pr.d}/disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    wp, wsock = pr.source("rw", 10, "--disk", img)
    r = migrate(wsock, addr)
    if r.returncode != 1:
        raise Fail(f"a destination without the source's writable disk took it: {r.stdout}")
    runs_on(wsock, "the writable-disk source whose destination refused")
    # (its own image: the writable source above holds img's lock while it runs)
    roimg = f"{pr.d}/ro.img"
    with open(roimg, "wb") as f:
        f.truncate(1 << 20)
    op, osock = pr.source("ro", 10, "--disk", f"{roimg},ro")
    r = migrate(osock, addr)
    if r.returncode != 1:
        raise Fail(f"a destination without the source's disk took it: {r.stdout}")
    runs_on(osock, "the source whose destination refused")
    print(f"refused as they should be; the last one said: {r.stderr.strip()}")


def main():
    cases = {"rates": case_rates, "converge": case_converge, "deadline": case_deadline,
             "cancel": case_cancel, "cut": case_cut, "refuse": case_refuse,
             "disk": case_disk, "postcopy": case_postcopy}
    return ct.run_kvm_case(cases, CASE, "castor-migrate-", Procs)


if __name__ == "__main__":
    sys.exit(main())
