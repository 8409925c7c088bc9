"""One measurement each: a load run against a port, with the pooler's CPU sampled alongside.

Every function returns a dict of numbers or raises HarnessError with what went wrong (errors by
SQLSTATE from rb-loadgen, pgbench's failed transactions, a pooler that died). Nothing is retried
and no error is dropped: a measurement that saw errors has no number.
"""

import json
import math
import os
import re
import subprocess
import time

from common import CpuSampler, HarnessError, wait_for
from systems import FAKE_DB, MD5_PASSWORD, MD5_USER, PG_DB


def _errors_text(j):
    parts = [f"{e['count']}x {e['sqlstate']} {e['message']}" for e in j.get("error_counts", [])]
    return "; ".join(parts) or f"{j.get('errors')} errors, {j.get('login_failures')} login failures"


def loadgen(tools, mode, args, *, timeout, cpu_pids=(), allow_errors=False):
    """Runs rb-loadgen; returns (its JSON, start time, CpuSampler or None)."""
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    argv = [tools.loadgen, mode] + [str(a) for a in args]
    sampler = CpuSampler(cpu_pids) if cpu_pids else None
    t0 = time.monotonic()
    if sampler:
        sampler.__enter__()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"rb-loadgen {mode} did not finish within {timeout:.0f} s: {' '.join(argv[1:])}")
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    if p.returncode not in (0, 1) or not p.stdout.strip():
        raise HarnessError(f"rb-loadgen {mode} exited {p.returncode}: {p.stderr.strip()[-1500:]}")
    j = json.loads(p.stdout)
    if (j.get("errors") or j.get("login_failures") or p.returncode != 0) and not allow_errors:
        raise HarnessError(f"rb-loadgen {mode} {' '.join(argv[2:])}: {_errors_text(j)}")
    return j, t0, sampler


def query_fake(tools, port, *, clients, duration, protocol, cpu_pids=(), user=MD5_USER, password=MD5_PASSWORD):
    """SELECT 1 on the fake backend through `port` (or straight at it)."""
    args = ["--port", port, "--user", user, "--dbname", FAKE_DB, "--clients", clients, "--duration", duration,
            "--protocol", protocol, "--connect-timeout", 15]
    if password:
        args += ["--password", password]
    j, t0, s = loadgen(tools, "query", args, timeout=duration + 120, cpu_pids=cpu_pids)
    if j["transactions"] <= 0:
        raise HarnessError(f"no transaction completed through port {port}")
    out = {"tps": j["tps"], "transactions": j["transactions"], "p50_us": j["latency_us"]["p50"],
           "p99_us": j["latency_us"]["p99"], "login_time_s": j["login_time_s"]}
    if s:
        # The measured window: after the logins, for --duration seconds.
        w0 = t0 + j["login_time_s"]
        cpu = s.window(w0, w0 + j["duration_s"])
        out["cpu_us_per_txn"] = cpu * 1e6 / j["transactions"]
    return out


_PGBENCH = {
    "transactions": re.compile(r"^number of transactions actually processed: (\d+)", re.M),
    "failed": re.compile(r"^number of failed transactions: (\d+)", re.M),
    "tps": re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M),
    "lat_ms": re.compile(r"^latency average = ([\d.]+) ms", re.M),
}


def pgbench_select(tools, port, *, clients, duration, protocol, cpu_pids=()):
    """pgbench -S (the built-in select-only script) on PostgreSQL through `port`."""
    env = dict(os.environ, PGPASSWORD=MD5_PASSWORD, PGCONNECT_TIMEOUT="30")
    argv = [tools.pg("pgbench"), "-n", "-S", "-c", str(clients), "-j", "2", "-T", str(duration), "-M", protocol,
            "-h", "127.0.0.1", "-p", str(port), "-U", MD5_USER, PG_DB]
    sampler = CpuSampler(cpu_pids) if cpu_pids else None
    t0 = time.monotonic()
    if sampler:
        sampler.__enter__()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, env=env)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"pgbench -c {clients} -M {protocol} did not finish within {duration + 60} s")
    finally:
        t_exit = time.monotonic()
        if sampler:
            sampler.__exit__(None, None, None)
    got = {k: r.search(p.stdout) for k, r in _PGBENCH.items()}
    if p.returncode != 0 or not got["transactions"] or not got["tps"]:
        raise HarnessError(f"pgbench -c {clients} -M {protocol} exited {p.returncode}: "
                           f"{(p.stderr.strip() or p.stdout.strip())[-1500:]}")
    txns = int(got["transactions"].group(1))
    failed = int(got["failed"].group(1)) if got["failed"] else 0
    if failed or txns <= 0:
        raise HarnessError(f"pgbench: {failed} failed transactions, {txns} processed: {p.stderr.strip()[-1500:]}")
    tps = float(got["tps"].group(1))
    out = {"tps": tps, "transactions": txns}
    if sampler:
        # pgbench's tps is transactions over the time after its connections: that window ends
        # when the run ends (its clients' disconnects take milliseconds).
        bench_s = txns / tps
        out["cpu_us_per_txn"] = sampler.window(t_exit - bench_s, t_exit) * 1e6 / txns
    return out


def logins(tools, port, *, user, password, clients, duration, cpu_pids=()):
    args = ["--port", port, "--user", user, "--password", password, "--dbname", FAKE_DB, "--clients", clients,
            "--duration", duration, "--connect-timeout", 15]
    j, t0, s = loadgen(tools, "logins", args, timeout=duration + 120, cpu_pids=cpu_pids)
    if j["logins"] <= 0:
        raise HarnessError(f"no login completed through port {port}")
    out = {"logins_per_s": j["logins_per_s"], "logins": j["logins"], "p50_us": j["latency_us"]["p50"]}
    if s:
        # rb-loadgen's window is the last duration_s seconds before it stopped; its own exit
        # takes a few milliseconds.
        w0 = t0 + max(0.0, j["elapsed_s"] - j["duration_s"])
        out["cpu_us_per_login"] = s.window(w0, w0 + j["duration_s"]) * 1e6 / j["logins"]
    return out


def idle_memory(tools, pooler, *, clients, fd_limit, hold=3.0):
    """RSS growth of a fresh pooler over `clients` idle logged-in clients, per client.

    rb-loadgen logs the clients in (spread over several processes and 127.0.0.x sources) and
    holds them; once SHOW POOLS counts them all, VmRSS is read (twice, a second apart, keeping
    the larger). The pooler must be fresh: allocators keep freed memory, so a second round on
    the same process would show almost no growth."""
    # A warm pool first (one client, one query), so that the growth is the clients' alone.
    query_fake(tools, pooler.port, clients=1, duration=0.2, protocol="simple")
    time.sleep(0.3)
    rss0 = pooler.rss()
    per_proc = max(1000, fd_limit - 1500)
    procs = max(1, math.ceil(clients / per_proc))
    args = [clients, "--port", pooler.port, "--user", MD5_USER, "--password", MD5_PASSWORD, "--dbname", FAKE_DB,
            "--procs", procs, "--hold", 600, "--connect-timeout", 60]
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    p = subprocess.Popen([tools.loadgen, "idle"] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.monotonic()

        def all_in():
            pooler.check_alive()
            if p.poll() is not None:
                raise HarnessError(f"rb-loadgen idle exited early ({p.returncode}): {p.stderr.read()[-1500:]}")
            return pooler.pool_counts(FAKE_DB)[0] >= clients

        wait_for(all_in, 60 + clients / 200, f"{clients} idle clients at {pooler.key}", interval=0.5)
        login_s = time.monotonic() - t0
        time.sleep(1.0)
        rss1 = pooler.rss()
        time.sleep(hold - 1.0)
        rss1 = max(rss1, pooler.rss())
        counted = pooler.pool_counts(FAKE_DB)[0]
    finally:
        if p.poll() is None:
            p.send_signal(2)   # SIGINT: rb-loadgen stops holding and reports
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
    j = json.loads(out) if out.strip() else {}
    if j.get("logged_in") != clients or j.get("errors") or j.get("login_failures"):
        raise HarnessError(f"idle {clients} at {pooler.key}: {j.get('logged_in')} logged in, {_errors_text(j) if j else err[-1500:]}")
    if counted < clients:
        raise HarnessError(f"idle {clients} at {pooler.key}: SHOW POOLS counted only {counted} clients while held")
    return {"bytes_per_client": (rss1 - rss0) / clients, "rss_before": rss0, "rss_held": rss1,
            "login_s": login_s, "loadgen_procs": procs}
