#!/usr/bin/env python3
"""QEMU COLO with Castor's own test guest: guest throughput and checkpoint pause
against the checkpoint interval, beside an unprotected run of the same guest.

For Castor's checkpointing to be compared side by side with QEMU COLO, both must
protect the SAME guest: build/hypervisor/guest/castor-tg.bin (docs/test-guest.md),
booted by Debian's qemu-system-x86_64 through its multiboot entry, exactly as
tests/kvm/qemu_multiboot.sh does. COLO is set up as in ../shared/anchors/qemu/colo.py
(see ../shared/anchors/RESULTS.md section 3): a primary and a secondary QEMU on
this machine, `x-colo` on both, the primary's `x-checkpoint-delay` = the interval,
`migrate tcp:127.0.0.1:PORT`. No disk and no NIC (-nodefaults, unless
--qemu-defaults), so no block replication and no colo-compare: checkpoints come only
from the x-checkpoint-delay timer. Guest: `wss=4M rate=100 outrate=0 flags=1` by
default (castor-vmm's defaults, the rate of docs/benchmarks.md, no outputs as in
`castor bench`, the serial tick on since it is how the rate is read), -m 1024.

First one unprotected run (the primary alone: no -incoming peer, no migration): the
baseline. Then one COLO run per interval and per --tcp variant: "stock" = QEMU as
shipped; "nodelay" = the same QEMU with TCP_NODELAY forced on its migration socket
by an LD_PRELOAD shim built here (see NODELAY_C below for why: stock COLO's pause is
dominated by Nagle + delayed-ACK stalls of 40 ms on this loopback). Each run boots
fresh QEMUs. A default run (2 x 5 intervals + baseline, 10 s windows) took 4 min 22 s
here with two other CPU-bound jobs on the 2 cores (~17-30 s per run).

Output: CSV on stdout, one row per run (the baseline row has interval_ms = none):

  interval_ms           x-checkpoint-delay given to QEMU, ms ("none" = unprotected)
  qemu_tcp              stock | nodelay (above); "-" for the baseline
  guest_rate_pages_per_s  median, over the measurement window, of vCPU 0's page-write
                        rate between consecutive tick lines: (c0[i] - c0[i-1]) /
                        (arrival[i] - arrival[i-1]). c0 is the guest's own counter
                        of page writes (tick line `castor-tg: t=S c0=C o0=O`, once a
                        second on COM1); arrival is the host's monotonic clock when
                        the complete line showed up in the primary's serial log
                        (polled every 5 ms). Host time, not the guest's whole-second
                        t=, because a tick that falls inside a checkpoint pause is
                        printed (and its c0 read) only after the pause.
  rel_throughput        guest_rate_pages_per_s / the baseline's. Note: with a finite
                        --rate the guest is paced (a ceiling) and makes up for a
                        pause shorter than 10 ms in a burst (docs/test-guest.md: its
                        base resets only when it is more than 10 ms behind), so ~1.0
                        means "kept its pace", not "lost no time"; --rate max gives
                        raw progress instead (then also the cost of re-dirtying the
                        write-protected pages after each checkpoint shows).
  checkpoints           completed checkpoints (primary stop -> run pairs, below) whose
                        stop lies inside the window.
  pause_p50_ms, pause_p99_ms
                        the primary's checkpoint pause, ms, nearest-rank percentiles
                        over those checkpoints. Measured from QEMU's trace event
                        colo_vm_state_change (-trace enable=... -msg timestamp=on
                        -D FILE; the log backend stamps each line with gettimeofday):
                        'run' => 'stop' is traced in colo_do_checkpoint_transaction
                        just after vm_stop_force_state(RUN_STATE_COLO) returned (the
                        vCPUs are already out of KVM_RUN), 'stop' => 'run' just after
                        vm_start() once the secondary has answered VMSTATE_LOADED.
                        So the pause covers: saving device state to a buffer, the RAM
                        dirty sync and sending the dirty pages, sending the device
                        state, the secondary receiving it (VMSTATE_RECEIVED), the
                        secondary loading it (VMSTATE_LOADED) and vm_start. It leaves
                        out the kick of the vCPUs out of KVM_RUN inside vm_stop
                        (before the trace point) and the checkpoint-request/reply
                        handshake before it, during which the guest still runs.
  checkpoints_per_s     checkpoints / window length.
  paused_fraction       sum of the pauses / window length.
  rate_samples          number of tick-to-tick rates the median is taken over.
  status                ok, or what went wrong.

--json PATH writes every run's details too: each tick, each pause, and p50/p99 of a
per-checkpoint breakdown from more trace events: on the primary colo_send_message /
colo_receive_message (checkpoint-request -> stop = the handshake before the pause,
guest still running; stop -> vmstate-received = device-state save, RAM sync and
transfer; vmstate-received -> vmstate-loaded = the secondary's load; vmstate-loaded ->
run = resume); on the secondary its own colo_vm_state_change pause and
colo_flush_ram_cache_begin/end (its RAM-cache flush: ms, and the pages in it, i.e. the
pages of this checkpoint, the primary's and the secondary's dirty pages together).
Also query-colo-status on both sides and the secondary's last tick lines (it runs the
guest too between checkpoints). query-migrate is no help here: in state colo it
reports the status only, no RAM counters. --trace EVENT adds trace events (both
sides, WORKDIR/{pri,sec}.trace) for a closer look.

The multiboot path runs the workload on one vCPU only (docs/test-guest.md: ncpus =
1); --vcpus 2 gives QEMU -smp 2 and leaves the second vCPU idle (halted where SeaBIOS
left it), which still costs QEMU a vCPU's state per checkpoint.

Exit: 0 all runs measured, 1 some run failed (its row says why), 2 usage,
77 skipped (no qemu-system-x86_64 or no usable /dev/kvm).
Every QEMU started is tracked by PID and ended (SIGTERM, then SIGKILL) on any exit,
Ctrl-C and SIGTERM included; each also gets PR_SET_PDEATHSIG so it dies with us.
"""
import argparse
import csv
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK_RE = re.compile(r'^castor-tg: t=(\d+) c0=(\d+) o0=(\d+)$')
ERR_RE = re.compile(r'^castor-tg: (stopped|exception|bad parameter).*$', re.M)
# log trace backend with -msg timestamp=on: "PID@SECS.USECS:event text"
TRACE_RE = re.compile(r'^\d+@(\d+\.\d+):(\w+) ?(.*)$', re.M)
TRACES = {'pri': ('colo_vm_state_change', 'colo_send_message', 'colo_receive_message'),
          'sec': ('colo_vm_state_change', 'colo_flush_ram_cache_begin', 'colo_flush_ram_cache_end')}


def log(msg):
    print(f'bench_colo: {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------- QMP client
def load_qmp(common):
    """The anchors' stdlib QMP client when present, else the small one below."""
    if common and os.path.isfile(os.path.join(common, 'qmp.py')):
        sys.path.insert(0, common)
        try:
            from qmp import QMP  # noqa: E402
            return QMP, os.path.join(common, 'qmp.py')
        finally:
            sys.path.pop(0)
    return MiniQMP, 'built-in'


class MiniQMP:
    """Same interface as anchors/qemu/qmp.py: QMP(path).cmd(name, **args)."""

    def __init__(self, path, timeout=30):
        t0 = time.time()
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() - t0 > timeout:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile('rb')
        json.loads(self.f.readline())
        self.cmd('qmp_capabilities')

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.s.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f'{name}: QMP connection closed')
            r = json.loads(line)
            if 'event' in r:
                continue
            if 'error' in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r.get('return')

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ------------------------------------------------------------ process control
PROCS = {}          # pid -> Popen: every QEMU we started and have not reaped


def _pdeathsig():
    # In the child between fork and exec (this script has no threads, so this is safe).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def start(cmd, out_path, env=None):
    with open(out_path, 'wb') as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_pdeathsig, env=env)
    PROCS[p.pid] = p
    return p


def stop(p, grace=5.0):
    if p is None or p.pid not in PROCS:
        return
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    PROCS.pop(p.pid, None)


def stop_all():
    for p in list(PROCS.values()):
        stop(p)


def _on_signal(sig, _frame):
    raise SystemExit(128 + sig)


# -------------------------------------------------------------- serial tail
class SerialTail:
    """Follows a QEMU -serial file: complete lines, each with its host arrival time."""

    def __init__(self, path):
        self.path, self.pos, self.buf, self.lines = path, 0, b'', []

    def poll(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        now = time.monotonic()
        self.pos += len(data)
        self.buf += data
        *done, self.buf = self.buf.split(b'\n')
        for raw in done:
            self.lines.append((now, raw.decode('ascii', 'replace').rstrip('\r')))

    def ticks(self):
        out = []
        for ts, line in self.lines:
            m = TICK_RE.match(line)
            if m:
                out.append(dict(host=ts, t=int(m.group(1)), c0=int(m.group(2)), o0=int(m.group(3))))
        return out

    def text(self):
        return '\n'.join(line for _, line in self.lines)


def wait_for(pred, timeout, tails, procs=(), step=0.005):
    """Polls the serial tails every `step` s until pred() is true; False on timeout.
    Raises if one of `procs` exits."""
    t_end = time.monotonic() + timeout
    while True:
        for t in tails:
            t.poll()
        if pred():
            return True
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f'QEMU (pid {p.pid}) exited with status {p.returncode}')
        if time.monotonic() >= t_end:
            return False
        time.sleep(step)


def sleep_polling(secs, tails, procs=()):
    wait_for(lambda: False, secs, tails, procs)


# ------------------------------------------------------- the TCP_NODELAY shim
# QEMU 7.2 leaves Nagle's algorithm on for its migration socket. COLO's small control
# messages (vmstate-size, vmstate-received, vmstate-loaded) then wait for the peer's
# delayed ACK (40 ms minimum on Linux) whenever an earlier small segment is still
# unacknowledged: measured here, the secondary's vmstate-loaded reached the primary
# ~36 ms after the secondary had sent it, and the primary's device-state buffer
# after vmstate-size ~44 ms late in about half the checkpoints. That is the ~45 ms
# floor and the ~90 ms second mode of the pause (RESULTS.md saw them too). The
# 'nodelay' variant preloads this into both QEMUs: it sets TCP_NODELAY on every
# TCP socket QEMU connects or accepts (here: only the migration stream), which is
# what Castor's own transport does (replication/transport_tcp.c). QEMU itself
# is unchanged.
NODELAY_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static void nodelay(int fd)
{
	int one = 1, e = errno;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (fd >= 0 && !getsockname(fd, (struct sockaddr *)&ss, &len) &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	errno = e;
}
int connect(int fd, const struct sockaddr *a, socklen_t l)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
	nodelay(fd);
	return real(fd, a, l);
}
int accept(int fd, struct sockaddr *a, socklen_t *l)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
	int r = real(fd, a, l);
	nodelay(r);
	return r;
}
int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	int r = real(fd, a, l, flags);
	nodelay(r);
	return r;
}
"""


def build_shim(work):
    cc = shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')
    if not cc:
        raise RuntimeError('no C compiler (cc) for the TCP_NODELAY shim')
    src, so = os.path.join(work, 'nodelay.c'), os.path.join(work, 'nodelay.so')
    with open(src, 'w') as f:
        f.write(NODELAY_C)
    r = subprocess.run([cc, '-O2', '-shared', '-fPIC', '-o', so, src, '-ldl'], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f'building the TCP_NODELAY shim failed: {r.stderr.strip()[-300:]}')
    return so


# ----------------------------------------------------------------- helpers
def tsc_khz():
    try:
        out = subprocess.run(['dmesg'], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        out = ''
    for pat in (r'tsc: Refined TSC clocksource calibration: (\d+)\.(\d{3})',
                r'tsc: Detected (\d+)\.(\d{3}) MHz'):
        m = re.search(pat, out)
        if m:
            return int(m.group(1)) * 1000 + int(m.group(2))
    try:
        m = re.search(r'cpu MHz\s*:\s*([0-9.]+)', open('/proc/cpuinfo').read())
        if m:
            return int(float(m.group(1)) * 1000)
    except OSError:
        pass
    return 2000000


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(1, -(-len(sorted_vals) * p // 100))
    return sorted_vals[int(k) - 1]


def median(vals):
    s = sorted(vals)
    if not s:
        return None
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def find_image(args):
    if args.image:
        return os.path.abspath(args.image)
    for b in ('build', 'build-colo'):
        p = os.path.join(REPO, b, 'hypervisor', 'guest', 'castor-tg.bin')
        if os.path.isfile(p):
            return p
    # Build it in a build directory of our own (never the shared build/).
    bdir = os.path.join(REPO, 'build-colo')
    log(f'no guest image: building it in {bdir}')
    subprocess.run(['cmake', '-S', REPO, '-B', bdir], check=True, stdout=sys.stderr)
    subprocess.run(['cmake', '--build', bdir, '--target', 'castor_guest', '-j2'], check=True,
                   stdout=sys.stderr)
    return os.path.join(bdir, 'hypervisor', 'guest', 'castor-tg.bin')


# ------------------------------------------------------------------ one run
class Bench:
    def __init__(self, args, work, image, qmp_cls):
        self.a, self.w, self.image, self.QMP = args, work, image, qmp_cls
        self.cpu = args.cpu            # None = QEMU's default model, decided on first boot
        self.khz = args.tsc_khz or tsc_khz()
        self.shim = None
        self.append = (f'wss={args.wss} rate={args.rate} outrate=0 flags=1 seed=1 '
                       f'tsckhz={self.khz} {args.guest_args}').strip()

    def qemu_cmd(self, tag, cpu, incoming=None):
        w = self.w
        c = ['qemu-system-x86_64', '-enable-kvm']
        if cpu:
            c += ['-cpu', cpu]
        if not self.a.qemu_defaults:
            # No default NIC (e1000 + slirp), VGA, IDE CD-ROM, floppy, parallel port:
            # the guest uses none of them, and each adds device state to every checkpoint.
            c += ['-nodefaults']
        c += ['-m', str(self.a.mem), '-smp', str(self.a.vcpus), '-display', 'none', '-monitor', 'none',
              '-no-reboot', '-kernel', self.image, '-append', self.append,
              '-serial', f'file:{w}/{tag}.serial', '-qmp', f'unix:{w}/{tag}.qmp,server=on,wait=off']
        if incoming:
            c += ['-incoming', incoming]
        c += ['-msg', 'timestamp=on', '-D', f'{w}/{tag}.trace']
        for ev in TRACES[tag] + tuple(self.a.trace):
            c += ['-trace', f'enable={ev}']
        return c

    def clean(self, tags):
        for t in tags:
            for suf in ('.serial', '.qmp', '.trace', '.out'):
                try:
                    os.unlink(f'{self.w}/{t}{suf}')
                except FileNotFoundError:
                    pass

    def env(self, variant):
        if variant != 'nodelay':
            return None
        if self.shim is None:
            self.shim = build_shim(self.w)
        e = dict(os.environ)
        e['LD_PRELOAD'] = (self.shim + ' ' + e.get('LD_PRELOAD', '')).strip()
        return e

    def boot_primary(self, res, env):
        """Starts the primary, trying QEMU's default CPU model first and then
        host,-arch-capabilities (kvm_pvm cannot set MSR 0x10a), like the ctests."""
        cands = [self.cpu] if self.cpu is not None else ['', 'host,-arch-capabilities']
        for cpu in cands:
            self.clean(['pri'])
            p = start(self.qemu_cmd('pri', cpu), f'{self.w}/pri.out', env)
            time.sleep(1.0)
            if p.poll() is None:
                self.cpu = cpu
                res['cpu_model'] = cpu or 'default'
                return p
            stop(p)
            log(f"QEMU with cpu '{cpu or 'default'}' exited at once: "
                f"{open(f'{self.w}/pri.out', errors='replace').read().strip()[-300:]}")
        raise RuntimeError('QEMU does not start with either CPU model')

    def wait_guest(self, tail, procs):
        """Banner, then a tick line: the workload runs."""
        ok = wait_for(lambda: len(tail.ticks()) >= 1 or ERR_RE.search(tail.text()), 60, [tail], procs)
        m = ERR_RE.search(tail.text())
        if m:
            raise RuntimeError(f'guest error: {m.group(0)}')
        if not ok:
            raise RuntimeError('no tick line from the guest within 60 s')

    def run(self, interval, variant):
        a, w = self.a, self.w
        res = dict(interval_ms=interval, variant=variant, rate_pages_per_ms=a.rate, wss=a.wss, mem_mib=a.mem,
                   vcpus=a.vcpus, secs=a.secs, append=self.append, status='ok')
        pri = sec = None
        qp = qs = None
        self.clean(['pri', 'sec'])
        tp, ts = SerialTail(f'{w}/pri.serial'), SerialTail(f'{w}/sec.serial')
        t_start = time.monotonic()
        try:
            env = self.env(variant)
            pri = self.boot_primary(res, env)
            if interval is not None:
                # The secondary (it only listens: -incoming); the port is re-picked if taken.
                for _ in range(3):
                    port = free_port()
                    self.clean(['sec'])
                    sec = start(self.qemu_cmd('sec', self.cpu or '', incoming=f'tcp:127.0.0.1:{port}'),
                                f'{w}/sec.out', env)
                    wait_for(lambda: os.path.exists(f'{w}/sec.qmp') or sec.poll() is not None, 10, [])
                    time.sleep(0.3)
                    if sec.poll() is None and os.path.exists(f'{w}/sec.qmp'):
                        break
                    stop(sec)
                    sec = None
                if sec is None:
                    raise RuntimeError('secondary QEMU does not start: '
                                       + open(f'{w}/sec.out', errors='replace').read()[-300:])
                res['port'] = port
            procs = [p for p in (pri, sec) if p]
            self.wait_guest(tp, procs)
            res['boot_s'] = round(time.monotonic() - t_start, 2)
            qp = self.QMP(f'{w}/pri.qmp')
            if interval is not None:
                qs = self.QMP(f'{w}/sec.qmp')
                caps = [dict(capability='x-colo', state=True)]
                qs.cmd('migrate-set-capabilities', capabilities=caps)
                qp.cmd('migrate-set-capabilities', capabilities=caps)
                qp.cmd('migrate-set-parameters', **{'x-checkpoint-delay': interval,
                                                     'max-bandwidth': 10 << 30})
                t_mig = time.monotonic()
                qp.cmd('migrate', uri=f'tcp:127.0.0.1:{port}')
                st = None
                t_end = t_mig + 60
                while time.monotonic() < t_end:
                    st = qp.cmd('query-migrate').get('status')
                    if st in ('colo', 'failed', 'completed', 'cancelled'):
                        break
                    sleep_polling(0.1, [tp, ts], procs)
                res['colo_entry_s'] = round(time.monotonic() - t_mig, 2)
                res['status_after_start'] = st
                if st != 'colo':
                    raise RuntimeError(f'migration status {st!r}, not colo, after {res["colo_entry_s"]} s')
                # Warm-up: skip the first checkpoints (the first after entering COLO is long:
                # ~0.4 s here, ~2.5 s in RESULTS.md): wait until two more have completed
                # and at least 1 s has passed, then for the next tick line.
                t_colo = time.time()
                ok = wait_for(lambda: (time.time() - t_colo >= 1.0 and
                                       sum(1 for e in self.pauses() if e[0] >= t_colo) >= 2),
                              30, [tp, ts], procs, step=0.05)
                if not ok:
                    raise RuntimeError('COLO entered, but no two checkpoints completed within 30 s')
                res['warmup_s'] = round(time.time() - t_colo, 2)
            n_before = len(tp.ticks())
            wait_for(lambda: len(tp.ticks()) > n_before, 5, [tp], procs)
            # The window: from here, a.secs seconds (both clocks noted).
            w0m, w0 = time.monotonic(), time.time()
            sleep_polling(a.secs, [tp, ts], procs)
            w1m, w1 = time.monotonic(), time.time()
            if interval is not None:
                # (query-migrate in state colo reports only the status: no RAM counters.)
                mig1 = qp.cmd('query-migrate')
                for tag, q in (('pri', qp), ('sec', qs)):
                    try:
                        res[f'colo_status_{tag}'] = q.cmd('query-colo-status')
                    except Exception as e:  # noqa: BLE001
                        res[f'colo_status_{tag}'] = repr(e)
                res['status_end'] = mig1.get('status')
                if mig1.get('status') != 'colo':
                    res['status'] = f"left COLO during the window ({mig1.get('status')})"
            sleep_polling(0.05, [tp, ts])
            self.analyse(res, tp, ts, (w0m, w1m), (w0, w1))
        except Exception as e:  # noqa: BLE001
            res['status'] = f'error: {e}'
            log(f'interval {interval}: {e}')
        finally:
            for q in (qp, qs):
                if q:
                    q.close()
            stop(pri)
            stop(sec)
            for tag in ('pri', 'sec'):
                try:
                    txt = open(f'{w}/{tag}.out', errors='replace').read()
                    res[f'{tag}_qemu_output_tail'] = txt.strip().splitlines()[-5:]
                except FileNotFoundError:
                    pass
        res['run_s'] = round(time.monotonic() - t_start, 2)
        return res

    def trace_events(self, tag='pri'):
        try:
            txt = open(f'{self.w}/{tag}.trace', errors='replace').read()
        except FileNotFoundError:
            return []
        return [(float(ts), ev, rest) for ts, ev, rest in TRACE_RE.findall(txt)]

    def pauses(self):
        """[(stop, run, detail)] from the primary's trace, wall-clock seconds."""
        out, cur = [], None
        for ts, ev, rest in self.trace_events():
            if ev == 'colo_vm_state_change':
                if "=> 'stop'" in rest:
                    cur = dict(stop=ts)
                elif "=> 'run'" in rest and cur is not None:
                    cur['run'] = ts
                    out.append((cur['stop'], ts, cur))
                    cur = None
            elif cur is not None:
                m = re.search(r"'([\w-]+)'", rest)
                if m:
                    cur.setdefault(m.group(1), ts)
        return out

    def analyse(self, res, tp, ts, mono, wall):
        w0m, w1m = mono
        w0, w1 = wall
        span = w1 - w0
        res['window_s'] = round(span, 3)
        ticks = [t for t in tp.ticks() if w0m <= t['host'] <= w1m]
        rates = []
        for x, y in zip(ticks, ticks[1:]):
            if y['host'] > x['host']:
                rates.append((y['c0'] - x['c0']) / (y['host'] - x['host']))
        res['ticks'] = [dict(t=t['t'], c0=t['c0'], host_rel=round(t['host'] - w0m, 4)) for t in ticks]
        res['tick_rates'] = [round(r) for r in rates]
        res['rate_samples'] = len(rates)
        res['guest_rate_pages_per_s'] = median(rates)
        if len(ticks) >= 2:
            res['guest_rate_mean_pages_per_s'] = ((ticks[-1]['c0'] - ticks[0]['c0'])
                                                  / (ticks[-1]['host'] - ticks[0]['host']))
            dt = ticks[-1]['t'] - ticks[0]['t']
            if dt > 0:
                res['guest_rate_guest_clock_pages_per_s'] = (ticks[-1]['c0'] - ticks[0]['c0']) / dt
        if res['interval_ms'] is None:
            return
        sec_ticks = ts.ticks()
        res['secondary_ticks'] = [dict(t=t['t'], c0=t['c0']) for t in sec_ticks[-5:]]
        ps = [(a, b, d) for a, b, d in self.pauses() if w0 <= a <= w1]
        pause_ms = sorted((b - a) * 1000 for a, b, _ in ps)
        res['checkpoints'] = len(ps)
        res['checkpoints_per_s'] = len(ps) / span
        res['pauses_ms'] = [round((b - a) * 1000, 3) for a, b, _ in ps]
        res['paused_fraction'] = sum(pause_ms) / 1000 / span
        res['pause_p50_ms'] = pct(pause_ms, 50)
        res['pause_p99_ms'] = pct(pause_ms, 99)
        res['pause_max_ms'] = pause_ms[-1] if pause_ms else None
        # Per-checkpoint phases (trace names of the COLO messages).
        ph = {'save_transfer_ms': [], 'secondary_load_ms': [], 'resume_ms': [], 'request_to_stop_ms': []}
        for a, b, d in ps:
            r, l = d.get('vmstate-received'), d.get('vmstate-loaded')
            if r and l:
                ph['save_transfer_ms'].append((r - a) * 1000)
                ph['secondary_load_ms'].append((l - r) * 1000)
                ph['resume_ms'].append((b - l) * 1000)
        evs = self.trace_events()
        req = [t for t, ev, rest in evs if ev == 'colo_send_message' and 'checkpoint-request' in rest]
        for a, _, _ in ps:
            before = [t for t in req if t <= a]
            if before:
                ph['request_to_stop_ms'].append((a - before[-1]) * 1000)
        # The secondary: its own pause (its colo_vm_state_change) and its RAM-cache flush.
        sp, stop_t, fl, fl_t, fl_pages = [], None, [], None, []
        for t, ev, rest in self.trace_events('sec'):
            if not (w0 <= t <= w1 + 1):
                continue
            if ev == 'colo_vm_state_change':
                if "=> 'stop'" in rest:
                    stop_t = t
                elif "=> 'run'" in rest and stop_t is not None:
                    sp.append((t - stop_t) * 1000)
                    stop_t = None
            elif ev == 'colo_flush_ram_cache_begin':
                fl_t = t
                m = re.search(r'dirty_pages (\d+)', rest)
                if m:
                    fl_pages.append(int(m.group(1)))
            elif ev == 'colo_flush_ram_cache_end' and fl_t is not None:
                fl.append((t - fl_t) * 1000)
                fl_t = None
        ph['secondary_pause_ms'] = sp
        ph['secondary_flush_ms'] = fl
        res['phases_p50_ms'] = {k: (round(median(v), 3) if v else None) for k, v in ph.items()}
        res['phases_p99_ms'] = {k: (round(pct(sorted(v), 99), 3) if v else None) for k, v in ph.items()}
        res['secondary_flush_pages_p50'] = median(fl_pages)


# -------------------------------------------------------------------- main
def main():
    default_common = os.path.normpath(os.path.join(REPO, '..', 'shared', 'anchors', 'qemu'))
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='Columns and method: see the top of this file.')
    ap.add_argument('--intervals', default='5,10,25,50,100',
                    help='x-checkpoint-delay values, ms, comma-separated (default %(default)s)')
    ap.add_argument('--rate', default='100',
                    help="guest dirty rate, pages/ms per vCPU, or 'max' (the guest's rate=; default "
                    '%(default)s, as docs/benchmarks.md)')
    ap.add_argument('--secs', type=float, default=10, help='measurement window per run, s (default %(default)s)')
    ap.add_argument('--mem', type=int, default=1024, help='guest RAM, MiB (default %(default)s)')
    ap.add_argument('--vcpus', type=int, default=1, choices=(1, 2),
                    help='QEMU -smp; the multiboot guest works on vCPU 0 only (default %(default)s)')
    ap.add_argument('--wss', default='4M', help="guest work region (wss=, default %(default)s = the guest's default)")
    ap.add_argument('--guest-args', default='', help='extra guest command-line words (key=value ...)')
    ap.add_argument('--workdir', help='keep logs, serial and trace files here (default: a temporary '
                    'directory, removed at the end)')
    ap.add_argument('--qemu-common', default=default_common,
                    help='folder whose qmp.py is used (default %(default)s)')
    ap.add_argument('--image', help='guest image (default build/hypervisor/guest/castor-tg.bin)')
    ap.add_argument('--cpu', help='QEMU -cpu model (default: QEMU default, else host,-arch-capabilities)')
    ap.add_argument('--tsc-khz', type=int, help='guest tsckhz= (default: from dmesg)')
    ap.add_argument('--trace', action='append', default=[], metavar='EVENT',
                    help='one more QEMU trace event (pattern) for both sides, logged to WORKDIR/{pri,sec}.trace '
                    '(repeatable; for looking into the pauses, use with --workdir)')
    ap.add_argument('--tcp', choices=('stock', 'nodelay', 'both'), default='both',
                    help="COLO runs with QEMU as shipped (stock: Nagle on its migration socket), with "
                    "TCP_NODELAY forced on it by an LD_PRELOAD shim (nodelay), or both (default %(default)s)")
    ap.add_argument('--qemu-defaults', action='store_true',
                    help="keep QEMU's default devices (e1000 NIC, VGA, IDE CD-ROM, ...), as "
                    "anchors/RESULTS.md ran; default: -nodefaults")
    ap.add_argument('--no-baseline', action='store_true', help='skip the unprotected run (rel_throughput empty)')
    ap.add_argument('--json', metavar='PATH', help="write every run's details as JSON to PATH ('-' = stdout, "
                    'instead of the CSV)')
    a = ap.parse_args()
    try:
        intervals = [int(x) for x in a.intervals.split(',') if x.strip()]
    except ValueError:
        ap.error('--intervals: comma-separated integers, ms')
    if a.rate != 'max' and not a.rate.isdigit():
        ap.error("--rate: pages/ms (an integer >= 0) or 'max'")
    if any(i <= 0 for i in intervals) or a.secs <= 0 or a.mem < 64:
        ap.error('intervals and --secs must be > 0, --mem >= 64')

    if not shutil.which('qemu-system-x86_64'):
        print('SKIP: qemu-system-x86_64 is not installed (scripts/install-deps.sh, or apt-get install '
              'qemu-system-x86)', file=sys.stderr)
        return 77
    if not os.path.exists('/dev/kvm') or not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('SKIP: /dev/kvm is absent or not accessible', file=sys.stderr)
        return 77

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    qmp_cls, qmp_from = load_qmp(a.qemu_common)
    tmp = None
    if a.workdir:
        work = os.path.abspath(a.workdir)
        os.makedirs(work, exist_ok=True)
    else:
        work = tmp = tempfile.mkdtemp(prefix='castor-bench-colo.')
    results = []
    rc = None
    try:
        try:
            src = find_image(a)
            if not os.path.isfile(src):
                raise FileNotFoundError(f'no guest image {src}')
        except (OSError, subprocess.CalledProcessError) as e:
            log(f'cannot get the guest image: {e}')
            return 1
        image = os.path.join(work, 'castor-tg.bin')
        shutil.copyfile(src, image)     # immune to a concurrent rebuild of build/
        b = Bench(a, work, image, qmp_cls)
        log(f'guest {src} ({a.rate} pages/ms, wss {a.wss}, {a.mem} MiB, -smp {a.vcpus}, tsckhz {b.khz}); '
            f'QMP client: {qmp_from}; workdir {work}')
        variants = ['stock', 'nodelay'] if a.tcp == 'both' else [a.tcp]
        runs = ([] if a.no_baseline else [(None, '-')]) + [(iv, v) for v in variants for iv in intervals]
        for iv, v in runs:
            log(f"run: {'unprotected' if iv is None else f'COLO ({v}) x-checkpoint-delay {iv} ms'} ...")
            r = b.run(iv, v)
            results.append(r)
            log(f"  {r['status']}: rate {r.get('guest_rate_pages_per_s')} pages/s, "
                f"checkpoints {r.get('checkpoints')}, pause p50 {r.get('pause_p50_ms')} ms "
                f"({r['run_s']} s)")
    except KeyboardInterrupt:
        log('interrupted: the runs completed so far follow')
        rc = 130
    finally:
        stop_all()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    base = next((r.get('guest_rate_pages_per_s') for r in results if r['interval_ms'] is None), None)
    for r in results:
        g = r.get('guest_rate_pages_per_s')
        r['rel_throughput'] = g / base if g is not None and base else None

    def f(v, nd):
        return '' if v is None else (f'{v:.{nd}f}' if isinstance(v, float) else str(v))

    if a.json != '-':
        cw = csv.writer(sys.stdout, lineterminator='\n')
        cw.writerow(['interval_ms', 'qemu_tcp', 'guest_rate_pages_per_s', 'rel_throughput', 'checkpoints',
                     'pause_p50_ms', 'pause_p99_ms', 'checkpoints_per_s', 'paused_fraction',
                     'rate_samples', 'status'])
        for r in results:
            iv = r['interval_ms']
            cw.writerow(['none' if iv is None else iv, r['variant'], f(r.get('guest_rate_pages_per_s'), 0),
                         f(r.get('rel_throughput'), 3), f(r.get('checkpoints'), 0),
                         f(r.get('pause_p50_ms'), 1), f(r.get('pause_p99_ms'), 1),
                         f(r.get('checkpoints_per_s'), 2), f(r.get('paused_fraction'), 3),
                         r.get('rate_samples', ''), r['status']])
    if a.json:
        doc = json.dumps(results, indent=1)
        if a.json == '-':
            print(doc)
        else:
            with open(a.json, 'w') as fh:
                fh.write(doc + '\n')
    if rc is not None:
        return rc
    return 0 if results and all(r['status'] == 'ok' for r in results) else 1


if __name__ == '__main__':
    try:
        sys.exit(main())
    finally:
        stop_all()
