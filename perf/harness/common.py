"""Process bookkeeping, /proc readers and small helpers shared by perf/run and perf/flamegraph.

Every child the harness starts goes through Children.spawn(): it gets PR_SET_PDEATHSIG(SIGKILL),
so even a harness killed with SIGKILL leaves nothing behind, and Children.stop_all() (run from
an atexit hook and from the SIGINT/SIGTERM handlers) ends the rest in reverse start order.
"""

import atexit
import ctypes
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class HarnessError(Exception):
    """A failure of the run itself (something did not start, a measurement produced no number)."""


def log(msg):
    print(f"\033[1m==> {msg}\033[0m", file=sys.stderr, flush=True)


def note(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)


# --- children -------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs in the child after fork (and after the uid switch, which would clear the flag).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Child:
    def __init__(self, name, popen, stop_signal):
        self.name = name
        self.popen = popen
        self.stop_signal = stop_signal
        self.stopping = False

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def died_on_its_own(self):
        """The exit status if the process ended without us asking, else None."""
        rc = self.popen.poll()
        if rc is None or self.stopping:
            return None
        return rc


class Children:
    """Every process the harness started, so that all of them end with it."""

    def __init__(self):
        self.children = []
        self.cleanups = []   # callables run after the processes are gone (pgtmp stop, rm -rf)
        self.lock = threading.Lock()
        atexit.register(self.stop_all)

    def spawn(self, name, argv, *, stdout=None, stderr=None, stdin=subprocess.DEVNULL, user=None,
              env=None, cwd=None, stop_signal=signal.SIGTERM):
        kw = {}
        if user:
            kw.update(user=user, group=user, extra_groups=[])
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=stdin, env=env, cwd=cwd,
                             preexec_fn=_child_setup, **kw)
        c = Child(name, p, stop_signal)
        with self.lock:
            self.children.append(c)
        return c

    def stop(self, child, timeout=10.0):
        """Asks the child to stop, then kills it. Returns (exit status, whether it had to be killed)."""
        child.stopping = True
        killed = False
        if child.popen.poll() is None:
            try:
                child.popen.send_signal(child.stop_signal)
            except ProcessLookupError:
                pass
            try:
                child.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                child.popen.kill()
                child.popen.wait()
        with self.lock:
            if child in self.children:
                self.children.remove(child)
        return child.popen.returncode, killed

    def stop_all(self):
        with self.lock:
            kids = list(reversed(self.children))
        for c in kids:
            try:
                self.stop(c, timeout=5.0)
            except Exception:  # noqa: BLE001 - cleanup goes on whatever happens
                pass
        cleanups, self.cleanups = list(reversed(self.cleanups)), []
        for fn in cleanups:
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass


CHILDREN = Children()


def install_signal_handlers():
    def handler(signum, _frame):
        # SystemExit unwinds the stack; atexit then stops every child.
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def run(argv, *, check=True, timeout=None, env=None, input=None, user=None):
    """Runs a short command to completion; returns CompletedProcess with text output."""
    kw = {}
    if user:
        kw.update(user=user, group=user, extra_groups=[])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input,
                       preexec_fn=_child_setup, **kw)
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(map(str, argv))} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


# --- /proc ------------------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of the whole process (all threads, live and exited), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise HarnessError(f"no VmRSS for pid {pid}")


def nofile_limits():
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_nofile(want):
    """Raises this process's open-files limit (children inherit it) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(open("/proc/sys/fs/nr_open").read())
    except OSError:
        nr_open = hard
    target = min(want, nr_open)
    if target > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class CpuSampler:
    """Samples the summed utime+stime of some pids every `period` seconds in a thread, so that the
    CPU used inside a time window (the measured part of a load run, without its logins) can be
    read afterwards by linear interpolation. /proc ticks are 10 ms; over a window of seconds the
    error is well under 1%."""

    def __init__(self, pids, period=0.02):
        self.pids = list(pids)
        self.period = period
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self):
        return time.monotonic(), sum(cpu_seconds(p) for p in self.pids)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())
            except (OSError, ValueError):
                pass
            self._stop.wait(self.period)

    def __enter__(self):
        self.samples.append(self._read())
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        try:
            self.samples.append(self._read())
        except (OSError, ValueError):
            pass

    def at(self, t):
        s = self.samples
        if not s:
            raise HarnessError("no CPU samples")
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        return s[-1][1]

    def window(self, t0, t1):
        s = self.samples
        if not s or t0 < s[0][0] - 0.2 or t1 > s[-1][0] + 0.2 or t1 <= t0:
            raise HarnessError("the measured window lies outside the CPU samples")
        return self.at(t1) - self.at(t0)

    def total(self):
        return self.samples[-1][1] - self.samples[0][1]


# --- ports, waiting ---------------------------------------------------------------------------------

_used_ports = set()


def free_port():
    """A free TCP port on 127.0.0.1 in 20000..32000: below the ephemeral range (32768+), where
    the load generators' outgoing connections take theirs."""
    for _ in range(500):
        p = random.randrange(20000, 32000)
        if p in _used_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(p)
        return p
    raise HarnessError("no free TCP port in 20000..32000")


def wait_for(pred, timeout, what, interval=0.05, alive=None):
    """Polls pred() until it returns a true value; fails after timeout or when alive() is false."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - remembered for the message
            last_exc = e
        if alive is not None and not alive():
            raise HarnessError(f"{what}: the process exited")
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last_exc})" if last_exc else ""))


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
