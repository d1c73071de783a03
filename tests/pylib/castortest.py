"""Helpers the Python end-to-end tests share: the castor CLI as JSON, and waiting.

    import castortest as ct
    ct.CASTOR = "/path/to/castor"
    ct.wait_for("protection", lambda: ct.ha(sock)["state"] == "protected")
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

CASTOR = "castor"
# on the nested test machine (tests/nested/nest.sh), where everything is emulated
NESTED = os.environ.get("CASTOR_NESTED") == "1"


class Fail(Exception):
    """A test's verdict: the message says what broke."""


def skip(why):
    """The exit status of a test that cannot run here: 77 (skipped), or 1 (failed)
    under CASTOR_REQUIRE_KVM=1, which CI sets so that it cannot pass without VMs
    (tests/require.sh is the shell tests' copy of this rule)."""
    if os.environ.get("CASTOR_REQUIRE_KVM") == "1":
        print(f"FAIL: CASTOR_REQUIRE_KVM=1 but this test cannot run: {why}", flush=True)
        return 1
    print(f"SKIP: {why}", flush=True)
    return 77


def reps(n):
    """How many times to repeat a check that a test repeats n times: a fifth (at
    least one) on the nested test machine (CASTOR_NESTED=1, tests/nested/nest.sh),
    where everything is emulated and several times slower; n elsewhere."""
    return max(1, n // 5) if NESTED else n


def patience(secs):
    """How long to wait for something that takes a while on a real machine: three
    times as long on the nested test machine (CASTOR_NESTED=1)."""
    return secs * 3 if NESTED else secs


def castor(*args, check=True):
    r = subprocess.run([CASTOR, *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise Fail(f"castor {' '.join(args)}: {r.stderr.strip()}")
    return r


def ha(sock):
    return json.loads(castor("ha", "status", "--socket", sock, "--json").stdout)


def vm_status(sock):
    return json.loads(castor("vm", "status", "--socket", sock, "--json").stdout)


def longest_wait_ms(summary):
    """The longest wait for one answer (ms) in tgclient.py's summary line ("... max X ms"),
    0.0 when the line has none."""
    return float(summary.split(" max ")[1].split()[0]) if " max " in summary else 0.0


def wait_for(what, pred, timeout=60.0, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise Fail(f"timed out waiting for {what}")


def check_guest_disk(tgcheck, sock, img, blocks, seed, snap, who):
    """A VM that just took over (a twin, a migration's destination): its disk holds
    what its RAM says the test guest wrote (tgcheck on a snapshot taken paused), and
    the guest, reading back its own passes, finds every block right. Returns the
    guest's I/O figures and its read-back count before."""
    castor("vm", "pause", "--socket", sock)
    castor("vm", "snapshot", "--socket", sock, "--file", snap)
    chk = subprocess.run([tgcheck, "--disk", f"{img},0,{blocks},{seed}", snap],
                         capture_output=True, text=True)
    if chk.returncode:
        raise Fail(f"{who}: {chk.stdout.strip()} {chk.stderr.strip()}")
    os.unlink(snap)
    castor("vm", "resume", "--socket", sock)
    v0 = vm_status(sock)["guest_io"]["blk_verified"]
    wait_for(f"the guest to read a whole pass back ({who})",
             lambda: vm_status(sock)["guest_io"]["blk_verified"] >= v0 + blocks,
             timeout=patience(60))
    io = vm_status(sock)["guest_io"]
    if io["blk_bad"] or io["blk_io_errors"]:
        raise Fail(f"{who}: the guest found {io['blk_bad']} bad blocks, "
                   f"{io['blk_io_errors']} I/O errors: {io}")
    return io, v0


def wait_guest(sock, what, pred, timeout):
    """wait_for(pred) on the VM at sock; on a timeout the failure carries its status
    twice, 1 s apart (vCPU counters, exits, the guest's I/O figures): a guest that stalls
    on its disk after a failover shows whether its vCPUs run and which block it waits on."""
    try:
        return wait_for(what, pred, timeout=timeout)
    except Fail:
        try:
            a = vm_status(sock)
            time.sleep(1)
            b = vm_status(sock)
        except Exception as e:  # the context must not hide the failure
            raise Fail(f"timed out waiting for {what} (and its status: {e})")
        raise Fail(f"timed out waiting for {what}; its status 1 s apart: {a} / {b}")


def blk_writes(sock, n, what):
    """Wait for the test guest to complete n more disk writes."""
    w0 = vm_status(sock)["guest_io"]["blk_written"]
    wait_guest(sock, what, lambda: vm_status(sock)["guest_io"]["blk_written"] > w0 + n,
               patience(30))


def print_tails(d, names, label, n=1500):
    """The last n characters of each of d/NAME that exists, on stderr (a failure's context)."""
    for name in names:
        if os.path.exists(f"{d}/{name}"):
            print(f"--- {label}: {name} (tail)\n" + open(f"{d}/{name}").read()[-n:],
                  file=sys.stderr)


def stop_procs(procs):
    """SIGTERM every process still running (SIGCONT first, in case a test stopped it),
    then reap them all, killing any that does not exit within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_kvm_case(cases, case, prefix, procs_cls):
    """The main() of a test of VMs on loopback: run cases[case] with a procs_cls(dir)
    (its close() stops what it started) in a temporary folder. The exit status: 0
    pass, 1 fail (with the tail of every *.out the processes wrote), 2 no such case,
    77 or 1 without /dev/kvm (skip())."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return skip("/dev/kvm is not usable here")
    if case not in cases:
        print(f"unknown case {case}")
        return 2
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        pr = procs_cls(d)
        try:
            cases[case](pr)
        except Fail as e:
            print(f"FAIL: {e}")
            for f in sorted(os.listdir(d)):
                if f.endswith(".out"):
                    print(f"--- {f} (tail)\n" + open(f"{d}/{f}").read()[-2500:])
            return 1
        finally:
            pr.close()
    print("PASS")
    return 0


TWOHOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net", "twohost.sh")


def twohost_up(prefix):
    """Build tests/net/twohost.sh's hosts under `prefix`: None when up; else the exit
    status the test should return -- a skip when this machine lacks what the network
    needs, a failure (1) when everything is here and it still cannot be built."""
    r = subprocess.run(["bash", "-c", f". {TWOHOST} && th_check"], capture_output=True,
                       text=True)
    if r.returncode:
        return skip(f"the hosts' network needs: {r.stdout.strip()} {r.stderr.strip()}")
    r = subprocess.run(["bash", "-c", f". {TWOHOST} && th_up {prefix}"], capture_output=True,
                       text=True)
    if r.returncode:
        print(f"FAIL: cannot build the hosts' network: {r.stdout.strip()} {r.stderr.strip()}")
        twohost_down(prefix)
        return 1
    return None


def twohost_down(prefix):
    subprocess.run(["bash", TWOHOST, "down", prefix], capture_output=True)
