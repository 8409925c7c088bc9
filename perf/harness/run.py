"""perf/run's body (perf/run installs and builds, then runs this). See perf/README.md."""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402
from common import (CHILDREN, HarnessError, install_signal_handlers, log, median, note,  # noqa: E402
                    raise_nofile, run, write_json)
from results import Results, baseline_from, compare, markdown  # noqa: E402
from systems import (FAKE_DB, MD5_PASSWORD, MD5_USER, PG_DB, SCRAM_PASSWORD, SCRAM_USER, FakeBackend,  # noqa: E402
                     PgCluster, Pooler, Tools, md5_secret, system_specs)

POOL_SIZE = 20
TPS_CLIENTS = (50, 500)
LAT_CLIENTS = (1, 50)
PROTOCOLS = ("simple", "extended")
LOGIN_CLIENTS = 16
WANT_IDLE = 100_000


def parse_args(argv):
    p = argparse.ArgumentParser(prog="perf/run", description="ringbouncer against PgBouncer, the same way every time.")
    p.add_argument("--quick", action="store_true", help="smoke mode for CI: 1 short round of everything; never fails on timings")
    p.add_argument("--rounds", type=int, help="rounds of A B A B ... (default 5; --quick: 1)")
    p.add_argument("--duration", type=int, help="seconds per load run (default 5; --quick: 1)")
    p.add_argument("--only", help="comma list of groups to run: tps,latency,logins,memory,micro (default: all)")
    p.add_argument("--systems", help="comma list of systems (default pgb1,pgb2,rb1,rbN; pgb1 is always included)")
    p.add_argument("--update-baseline", action="store_true", help="write perf/baseline.json from this run")
    p.add_argument("--tolerance", type=float, default=0.10, help="how much worse a ratio may get before the run fails (default 0.10)")
    p.add_argument("--baseline", help="baseline file (default perf/baseline.json)")
    p.add_argument("--build-dir", required=True)
    p.add_argument("--out", help="results directory (default perf/results/<timestamp>)")
    p.add_argument("--idle-target", type=int, default=WANT_IDLE,
                   help="the large idle-client count, measured where the open-files limit allows (default 100000)")
    p.add_argument("--keep-workdir", action="store_true", help="keep configs and logs of the poolers (printed at the end)")
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.duration = a.duration or (1 if a.quick else 5)
    groups = ("tps", "latency", "logins", "memory", "micro")
    a.only = set(a.only.split(",")) if a.only else set(groups)
    if a.only - set(groups):
        p.error(f"--only: unknown group(s) {','.join(sorted(a.only - set(groups)))}")
    if a.update_baseline and (a.quick or a.only != set(groups)):
        p.error("--update-baseline needs a full run (no --quick, no --only)")
    return a


def machine_facts(tools, loadavg_before, nofile):
    cpu_model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
    pgb = run([tools.pgbouncer, "-V"], check=False).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "mem_gib": round(mem_kb / 2**20, 1),
        "loadavg_before": loadavg_before,
        "nofile_limit": nofile,
        "pgbouncer": pgb[0].replace("PgBouncer ", "") if pgb else "?",
    }


def git_facts(root):
    def g(*a):
        return run(["git", "-C", root] + list(a), check=False).stdout.strip()
    return {"commit": g("rev-parse", "HEAD") or "unknown", "dirty": bool(g("status", "--porcelain", "--untracked-files=no"))}


def build_type(build_dir):
    try:
        for line in open(os.path.join(build_dir, "CMakeCache.txt")):
            if line.startswith("CMAKE_BUILD_TYPE:"):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "?"


def remove_stale_workdirs():
    """Work dirs of harness runs that were killed (SIGKILL leaves no chance to clean up; their
    processes died with them through PR_SET_PDEATHSIG)."""
    import glob
    for d in glob.glob("/tmp/rb-perf-*") + glob.glob("/tmp/rb-flame-*"):
        try:
            pid = int(open(os.path.join(d, "owner.pid")).read())
        except (OSError, ValueError):
            continue
        if not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(d, ignore_errors=True)


def rotated(xs, k):
    if not xs:
        return []
    k %= len(xs)
    return xs[k:] + xs[:k]


class Run:
    def __init__(self, args, tools, results, workdir, specs, nofile):
        self.a, self.tools, self.res, self.workdir, self.specs = args, tools, results, workdir, specs
        self.nofile = nofile
        self.pg = self.fake = None
        self.userlist = []
        self.poolers = {}
        # --quick: smaller client counts (it checks the harness, and 500 pgbench logins per run
        # would not fit in CI's 3 minutes).
        self.tps_clients = (20, 100) if args.quick else TPS_CLIENTS
        self.wedged = set()          # (system, workload) pairs that wedged the pooler
        self.last_restarted = set()

    # -- helpers --
    def attempt(self, what, fn):
        """Runs one measurement; a failure is recorded (the run goes on) and returns None."""
        try:
            return fn()
        except HarnessError as e:
            self.res.problems.append(f"{what}: {e}")
            note(f"FAILED {what}: {e}")
            self.check_backends(what)
            self.last_restarted = self.heal(what)
            return None

    def check_backends(self, what):
        """A failure that is the fake backend's (or PostgreSQL's) must not be blamed on a pooler."""
        if self.fake is None:
            return
        rc = self.fake.child.died_on_its_own()
        if rc is not None:
            raise HarnessError(f"the fake backend died with status {rc} (during or after: {what}); log: {self.fake.log}")
        try:
            from systems import loadgen_ok
            loadgen_ok(self.tools, self.fake.port, "rb_trust", None, FAKE_DB, connect_timeout=5)
        except HarnessError as e:
            ss = run(["ss", "-s"], check=False).stdout
            raise HarnessError(f"the fake backend stopped answering a direct login (during or after: {what}): {e}\n{ss}")

    def heal(self, what):
        """After a failed measurement: a main pooler that died or stopped answering logins is
        recorded as a pooler problem and replaced by a fresh one, so that one wedged process
        does not cost every later measurement (and 15 s of timeouts each). Returns the keys of the
        poolers it restarted."""
        restarted = set()
        for key, p in list(self.poolers.items()):
            dead = any(c.died_on_its_own() is not None for c in p.children)
            if not dead and p.answers():
                continue
            msg = (f"{p.spec.label} {'died' if dead else 'stopped answering logins (a login and SELECT 1 timed out)'} "
                   f"during or after: {what}")
            self.res.engine_problems.append(msg)
            note(f"POOLER PROBLEM: {msg}; restarting it (logs: {p.dir})")
            self.stop_pooler(p, timeout=5)
            try:
                self.poolers[key] = self.start_pooler(p.spec, tag=f"-restart{len(self.res.engine_problems)}",
                                                      max_client_conn=p.max_client_conn)
            except HarnessError as e:
                raise HarnessError(f"{key} could not be restarted: {e}")
            restarted.add(key)
        return restarted

    def start_pooler(self, spec, tag="", auth_type="md5", max_client_conn=None, with_pg=True):
        p = Pooler(self.tools, spec, self.workdir, fake_port=self.fake.port, pg_port=self.pg.port if with_pg else None,
                   auth_type=auth_type, userlist_lines=self.userlist, pool_size=POOL_SIZE,
                   max_client_conn=max_client_conn or 2000, tag=tag)
        try:
            return p.start()
        except HarnessError:
            self.stop_pooler(p)
            raise

    def stop_pooler(self, p, timeout=15):
        p.stop(timeout)
        for msg in p.problems:
            if msg not in self.res.engine_problems:
                self.res.engine_problems.append(msg)

    # -- phases --
    def start_backends(self):
        log("starting PostgreSQL (tools/pgtmp) and the fake backend")
        # Four poolers hold up to 20 server connections each, and the checks need a few more.
        self.pg = PgCluster(self.tools, self.workdir, max_connections=150).start()
        self.fake = FakeBackend(self.tools, self.workdir).start()
        scram = self.pg.role_secret(SCRAM_USER)
        if not scram.startswith("SCRAM-SHA-256$"):
            raise HarnessError(f"unexpected secret for {SCRAM_USER}: {scram[:20]}")
        # md5 secret for rb_md5 (also what the poolers log in to PostgreSQL with), and the SCRAM
        # secret PostgreSQL stores for rb_scram: logins verify against stored keys, as in production.
        self.userlist = [(MD5_USER, md5_secret(MD5_USER, MD5_PASSWORD)), (SCRAM_USER, scram)]
        note(f"PostgreSQL {self.pg.version} on port {self.pg.port}, fake backend on port {self.fake.port}")

    def start_main_poolers(self):
        log("starting the poolers: " + ", ".join(s.label for s in self.specs))
        for s in self.specs:
            self.poolers[s.key] = self.start_pooler(s, max_client_conn=max(self.tps_clients) + 500)
            note(f"{s.label}: port {self.poolers[s.key].port}, pids {self.poolers[s.key].pids()}")

    def cpu_pids(self, key):
        return self.poolers[key].pids()

    def tps_workloads(self):
        out = []
        for backend in ("fake", "pg"):
            for proto in PROTOCOLS:
                for c in self.tps_clients:
                    out.append((backend, proto, c))
        return out

    def one_tps(self, key, backend, proto, clients, duration):
        port = self.poolers[key].port
        pids = self.cpu_pids(key)
        if backend == "fake":
            r = measure.query_fake(self.tools, port, clients=clients, duration=duration, protocol=proto, cpu_pids=pids)
        else:
            r = measure.pgbench_select(self.tools, port, clients=clients, duration=duration, protocol=proto, cpu_pids=pids)
        self.after_run(key)
        return r

    def after_run(self, key):
        """A pooler that wedged during a run can still have served some transactions without any
        client seeing an error: the run's number counts only if the pooler answers afterwards."""
        p = self.poolers[key]
        p.check_alive()
        if not p.answers():
            raise HarnessError(f"{key} stopped answering logins during this run (a login and SELECT 1 timed out)")

    def warm_up(self):
        secs = 1 if self.a.quick else 2
        log(f"warming up every pooler ({secs} s per backend and client count)")
        combos = [("fake", 50)] if self.a.quick else [(b, c) for b in ("fake", "pg") for c in self.tps_clients]
        for key in self.poolers:
            for backend, c in combos:
                self.attempt(f"warm-up {key} {backend} c{c}", lambda: self.one_tps(key, backend, "simple", c, secs))

    def phase_tps(self):
        log(f"TPS and CPU per transaction: {len(self.tps_workloads())} workloads x {len(self.poolers)} systems "
            f"x {self.a.rounds} round(s), {self.a.duration} s each")
        self.warm_up()
        keys = list(self.poolers)
        max_servers = {k: {"fake": 0, PG_DB: 0} for k in keys}
        for r in range(self.a.rounds):
            for backend, proto, c in self.tps_workloads():
                what = "pgbench -S" if backend == "pg" else "SELECT 1 (fake backend)"
                suffix = f"{backend}.{proto}.c{c}"
                mt = self.res.metric(f"tps.{suffix}", f"{what}, {proto}, {c} clients", "tps", "higher", "tps")
                mc = self.res.metric(f"cpu.{suffix}", f"CPU/txn {what}, {proto}, {c} clients", "µs", "lower", "cpu")
                for key in rotated(keys, r):
                    if (key, suffix) in self.wedged:
                        # It wedged the pooler in an earlier round: that is already reported, and
                        # every retry would cost a minute of timeouts.
                        self.res.problems.append(f"tps {suffix} {key} round {r + 1}: skipped, it wedged {key} before")
                        continue
                    self.last_restarted = set()
                    v = self.attempt(f"tps {suffix} {key} round {r + 1}",
                                     lambda: self.one_tps(key, backend, proto, c, self.a.duration))
                    if v is None:
                        if key in self.last_restarted:
                            self.wedged.add((key, suffix))
                        continue
                    mt.add(key, r, v["tps"])
                    mc.add(key, r, v.get("cpu_us_per_txn"))
                    note(f"round {r + 1} {suffix:<22} {key:<5} {v['tps']:>9.0f} tps  {v.get('cpu_us_per_txn', 0):6.1f} µs CPU/txn")
                    db = PG_DB if backend == "pg" else FAKE_DB
                    srv = self.attempt(f"SHOW POOLS at {key}", lambda: self.poolers[key].pool_counts(db)[1])
                    if srv is not None:
                        max_servers[key][db if db == PG_DB else "fake"] = max(max_servers[key][db if db == PG_DB else "fake"], srv)
        self.check_pools(max_servers)

    def check_pools(self, max_servers):
        """The pool sizes are what the comparison assumes: at most 20 server connections per
        system and database (PgBouncer x2: 10 each), seen by the poolers and by PostgreSQL."""
        total = 0
        for key, m in max_servers.items():
            for db, n in m.items():
                ok = n <= POOL_SIZE
                self.res.checks.append(f"{key}: at most {n} server connections to {db} after a TPS run "
                                       f"(pool size {POOL_SIZE}{', 10 per process' if key == 'pgb2' else ''})"
                                       + ("" if ok else " — MORE THAN CONFIGURED"))
                if not ok:
                    self.res.engine_problems.append(f"{key} opened {n} server connections to {db}, pool size is {POOL_SIZE}")
        try:
            reported = sum(p.pool_counts(PG_DB)[1] for p in self.poolers.values())
            seen = self.pg.backends(MD5_USER, PG_DB)
            total = seen
            self.res.checks.append(f"PostgreSQL sees {seen} backends of {MD5_USER}; the poolers report {reported} "
                                   f"server connections to it" + ("" if seen == reported else " — MISMATCH"))
            if seen > POOL_SIZE * len(self.poolers):
                self.res.engine_problems.append(f"PostgreSQL has {total} backends from {len(self.poolers)} poolers")
        except HarnessError as e:
            self.res.problems.append(f"pool check: {e}")
        # The load really is spread: over the processes sharing the port, over the workers.
        for key, p in self.poolers.items():
            try:
                if p.spec.procs > 1:
                    per = [sum(int(r.get("total_xact_count") or 0) for r in p.admin("SHOW STATS", i))
                           for i in range(p.spec.procs)]
                    what = "processes"
                elif p.spec.kind == "ringbouncer" and p.spec.workers > 1:
                    per = [int(r.get("xact_count") or 0) for r in p.admin("SHOW WORKERS")]
                    what = "workers"
                else:
                    continue
                tot = sum(per) or 1
                self.res.checks.append(f"{key}: transactions per {'process' if what == 'processes' else 'worker'} " +
                                       " / ".join(f"{100 * n / tot:.0f}%" for n in per) +
                                       ("" if all(per) else f" — SOME {what.upper()} SERVED NOTHING"))
            except HarnessError as e:
                self.res.problems.append(f"spread check {key}: {e}")

    def phase_latency(self):
        log(f"added latency (SELECT 1 on the fake backend, simple protocol): clients {LAT_CLIENTS}, "
            f"{self.a.rounds} round(s), {self.a.duration} s each")
        keys = list(self.poolers) + ["direct"]
        for r in range(self.a.rounds):
            for c in LAT_CLIENTS:
                vals = {}
                for key in rotated(keys, r):
                    port = self.fake.port if key == "direct" else self.poolers[key].port
                    def go():
                        v = measure.query_fake(self.tools, port, clients=c, duration=self.a.duration, protocol="simple")
                        if key != "direct":
                            self.after_run(key)
                        return v
                    v = self.attempt(f"latency c{c} {key} round {r + 1}", go)
                    if v is None:
                        continue
                    vals[key] = v
                    note(f"round {r + 1} latency c{c:<3} {key:<6} p50 {v['p50_us']:7.1f} µs  p99 {v['p99_us']:8.1f} µs  ({v['tps']:.0f} tps)")
                for pct in ("p50", "p99"):
                    raw = self.res.metric(f"lat.{pct}.c{c}", f"{pct} latency, {c} client{'s' if c > 1 else ''}", "µs",
                                          "lower", "latency_raw", ratio=False)
                    add = self.res.metric(f"added.{pct}.c{c}", f"added {pct} latency, {c} client{'s' if c > 1 else ''}",
                                          "µs", "lower", "latency")
                    for key, v in vals.items():
                        raw.add(key, r, v[f"{pct}_us"])
                        if key != "direct" and "direct" in vals:
                            add.add(key, r, v[f"{pct}_us"] - vals["direct"][f"{pct}_us"])

    def phase_logins(self):
        log(f"logins per second (fake backend with trust behind the pooler; {LOGIN_CLIENTS} logins in flight)")
        for method, user, password in (("md5", MD5_USER, MD5_PASSWORD), ("scram-sha-256", SCRAM_USER, SCRAM_PASSWORD)):
            short = "md5" if method == "md5" else "scram"
            ml = self.res.metric(f"logins.{short}", f"logins/s, {short}", "logins/s", "higher", "logins")
            mc = self.res.metric(f"login_cpu.{short}", f"CPU/login, {short}", "µs", "lower", "login_cpu")
            poolers = {}
            try:
                for s in self.specs:
                    poolers[s.key] = self.attempt(f"start {s.key} with auth_type={method}",
                                                  lambda: self.start_pooler(s, tag=f"-{short}", auth_type=method,
                                                                            with_pg=False))
                poolers = {k: v for k, v in poolers.items() if v}
                for key, p in poolers.items():
                    self.attempt(f"logins warm-up {key}", lambda: measure.logins(
                        self.tools, p.port, user=user, password=password, clients=LOGIN_CLIENTS, duration=1))
                keys = list(poolers)
                for r in range(self.a.rounds):
                    for key in rotated(keys, r):
                        p = poolers[key]

                        def go():
                            v = measure.logins(self.tools, p.port, user=user, password=password, clients=LOGIN_CLIENTS,
                                               duration=self.a.duration, cpu_pids=p.pids())
                            p.check_alive()
                            if not p.answers():
                                raise HarnessError(f"{key} stopped answering logins during this run")
                            return v
                        v = self.attempt(f"logins {short} {key} round {r + 1}", go)
                        if v is None:
                            continue
                        ml.add(key, r, v["logins_per_s"])
                        mc.add(key, r, v["cpu_us_per_login"])
                        note(f"round {r + 1} logins {short:<5} {key:<5} {v['logins_per_s']:8.0f} logins/s  "
                             f"{v['cpu_us_per_login']:6.1f} µs CPU/login")
            finally:
                for p in poolers.values():
                    self.stop_pooler(p)

    def idle_sizes(self):
        # A pooler process needs one fd per client plus its servers, listeners and logs.
        fits = (self.nofile - 1000) // 1000 * 1000
        if self.a.quick:
            return [("1k", 1000), ("max", min(2000, fits))]
        sizes = [("10k", 10_000)]
        want = self.a.idle_target
        if fits >= want:
            sizes.append((f"{want // 1000}k" if want % 1000 == 0 else str(want), want))
        else:
            sizes.append(("max", fits))
            self.res.skipped[f"memory per idle client at {want:,} clients"] = (
                f"one pooler process would need more than {want:,} open files, and the limit here is "
                f"{self.nofile:,} (RLIMIT_NOFILE hard limit; root cannot raise it in this container). "
                f"Measured at {fits:,} clients instead, the largest count that fits with room for servers "
                f"and listeners. The harness measures 100,000 by itself wherever the limit allows.")
        return sizes

    def phase_memory(self):
        sizes = self.idle_sizes()
        rounds = min(self.a.rounds, 3)   # RSS growth barely varies, and each round logs ~30,000 clients in
        log(f"memory per idle client: {', '.join(f'{n:,}' for _, n in sizes)} clients, a fresh pooler each time")
        for label, n in sizes:
            m = self.res.metric(f"mem.idle.{label}", f"RSS per idle client, {n:,} clients", "bytes", "lower", "memory")
            for r in range(rounds):
                for s in rotated(self.specs, r):
                    def go():
                        p = self.start_pooler(s, tag=f"-mem{label}-{r}", max_client_conn=n + 500, with_pg=False)
                        try:
                            v = measure.idle_memory(self.tools, p, clients=n, fd_limit=self.nofile)
                            p.check_alive()
                            return v
                        finally:
                            self.stop_pooler(p)
                    v = self.attempt(f"idle {n} at {s.key} round {r + 1}", go)
                    if v is None:
                        continue
                    m.add(s.key, r, v["bytes_per_client"])
                    note(f"round {r + 1} idle {n:>6} {s.key:<5} {v['bytes_per_client']:7.0f} bytes/client  "
                         f"(RSS {v['rss_before'] / 2**20:.1f} -> {v['rss_held'] / 2**20:.1f} MiB, logins {v['login_s']:.1f} s)")

    def phase_micro(self, outdir):
        log("micro-benchmarks (rb_bench)")
        if not os.access(self.tools.rb_bench, os.X_OK):
            self.res.problems.append(f"micro-benchmarks: {self.tools.rb_bench} was not built")
            return
        out = os.path.join(outdir, "rb_bench.json")
        reps = 1 if self.a.quick else 5
        min_time = 0.01 if self.a.quick else 0.2
        p = subprocess.run([self.tools.rb_bench, "--benchmark_format=json", f"--benchmark_out={out}",
                            "--benchmark_out_format=json", f"--benchmark_repetitions={reps}",
                            f"--benchmark_min_time={min_time}"], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            self.res.problems.append(f"rb_bench exited {p.returncode}: {p.stderr.strip()[-1000:]}")
            return
        unit_ns = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
        per = {}
        for b in json.load(open(out))["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
                continue
            per.setdefault(b.get("run_name", b["name"]), []).append(b["cpu_time"] * unit_ns[b.get("time_unit", "ns")])
        for name, xs in per.items():
            self.res.microbench[name] = {"min_ns": min(xs), "median_ns": median(xs), "repetitions": len(xs)}
            note(f"{name:<40} min {min(xs):12.1f} ns  median {median(xs):12.1f} ns")
        if not per:
            self.res.problems.append("rb_bench produced no benchmark result")


def results_from_json(j):
    """A Results rebuilt from a results.json (for --baseline-from)."""
    res = Results(list(j["systems"]), dict(j["systems"], direct="direct"))
    for k, m in j["metrics"].items():
        mt = res.metric(k, m["title"], m["unit"], m["better"], m["group"], ratio="ratio_to_pgbouncer" in m)
        for s, vals in m["values"].items():
            for r, v in enumerate(vals):
                mt.add(s, r, v)
    res.microbench = j.get("microbench", {})
    res.problems = j.get("problems", [])
    return res


def baseline_from_results(argv):
    """perf/run --baseline-from RESULTS_JSON [BASELINE]: accept an earlier full run as the baseline."""
    if not argv:
        print("usage: perf/run --baseline-from perf/results/<timestamp>/results.json [baseline.json]", file=sys.stderr)
        return 2
    j = json.load(open(argv[0]))
    if j.get("mode") != "full":
        print("perf/run: only a full run (not --quick) can be a baseline", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = argv[1] if len(argv) > 1 else os.path.join(root, "perf/baseline.json")
    write_json(out, baseline_from(results_from_json(j), j))
    log(f"wrote {out} from {argv[0]}")
    return 0


def publish(argv):
    """perf/run --publish perf/results/<timestamp>: that run's table into perf/README.md."""
    if not argv or not os.path.exists(os.path.join(argv[0], "results.json")):
        print("usage: perf/run --publish perf/results/<timestamp>   (a directory with results.json)", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readme = os.path.join(root, "perf/README.md")
    text = open(readme).read()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        print(f"perf/run: {readme} has no {begin} ... {end} block", file=sys.stderr)
        return 2
    # Rendered again from results.json, so that the table follows the current ratio rules.
    j = json.load(open(os.path.join(argv[0], "results.json")))
    res = results_from_json(j)
    res.checks, res.skipped = j.get("checks", []), j.get("skipped", {})
    res.engine_problems = j.get("engine_problems", [])
    table = markdown(res, j, None).strip()
    head, rest = text.split(begin, 1)
    _, tail_ = rest.split(end, 1)
    with open(readme, "w") as f:
        f.write(f"{head}{begin}\n{table}\n{end}{tail_}")
    log(f"copied {argv[0]}/results.md into {readme}")
    return 0


def main(argv):
    if argv[:1] == ["--baseline-from"]:
        return baseline_from_results(argv[1:])
    if argv[:1] == ["--publish"]:
        return publish(argv[1:])
    a = parse_args(argv)
    install_signal_handlers()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tools = Tools(root, os.path.abspath(a.build_dir))
    nofile = raise_nofile(a.idle_target + 2000)
    loadavg_before = " ".join(open("/proc/loadavg").read().split()[:3])
    started = datetime.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    outdir = a.out or os.path.join(root, "perf/results", stamp + ("-quick" if a.quick else ""))
    os.makedirs(outdir, exist_ok=True)
    remove_stale_workdirs()
    workdir = tempfile.mkdtemp(prefix="rb-perf-", dir="/tmp")
    os.chmod(workdir, 0o755)   # PgBouncer runs as postgres and must reach its config
    with open(os.path.join(workdir, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    if not a.keep_workdir:
        CHILDREN.cleanups.insert(0, lambda: shutil.rmtree(workdir, ignore_errors=True))

    specs = system_specs(os.cpu_count())
    if a.systems:
        want = set(a.systems.split(",")) | {"pgb1"}
        specs = [s for s in specs if s.key in want]
    res = Results([s.key for s in specs], {s.key: s.label for s in specs} | {"direct": "direct"})
    meta = {
        "schema": 1,
        "mode": "quick" if a.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "git": git_facts(root),
        "build": {"dir": tools.build_dir, "type": build_type(tools.build_dir)},
        "config": {"rounds": a.rounds, "duration_s": a.duration, "pool_size": POOL_SIZE,
                   "tps_clients": (20, 100) if a.quick else TPS_CLIENTS,
                   "latency_clients": LAT_CLIENTS, "login_clients": LOGIN_CLIENTS, "tolerance": a.tolerance,
                   "pool_mode": "transaction", "groups": sorted(a.only)},
    }
    meta["machine"] = machine_facts(tools, loadavg_before, nofile)
    log(f"perf/run{' --quick' if a.quick else ''}: {meta['machine']['nproc']} CPUs, kernel {meta['machine']['kernel']}, "
        f"load average {loadavg_before}, open files {nofile}, results in {outdir}")
    if meta["build"]["type"] not in ("Release", "RelWithDebInfo"):
        note(f"WARNING: {tools.build_dir} is a {meta['build']['type']} build; timings mean little")

    t_start = time.monotonic()
    R = Run(a, tools, res, workdir, specs, nofile)
    fatal = None
    try:
        R.start_backends()
        meta["machine"]["postgres"] = R.pg.version
        phases = meta["phases"] = []

        def phase(name, fn, *args):
            t = time.monotonic()
            load = " ".join(open("/proc/loadavg").read().split()[:3])
            try:
                fn(*args)
            except HarnessError:
                raise
            except Exception as e:  # noqa: BLE001 - a harness bug must not cost the other phases' results
                import traceback
                traceback.print_exc()
                res.problems.append(f"phase {name} stopped on a harness error: {type(e).__name__}: {e}")
            phases.append({"phase": name, "loadavg_at_start": load, "seconds": round(time.monotonic() - t)})
            note(f"{name}: {phases[-1]['seconds']} s (load average at its start: {load})")

        if a.only & {"tps", "latency"}:
            R.start_main_poolers()
        if "tps" in a.only:
            phase("tps", R.phase_tps)
        if "latency" in a.only:
            phase("latency", R.phase_latency)
        for p in list(R.poolers.values()):
            R.stop_pooler(p)
        R.poolers = {}
        if "logins" in a.only:
            phase("logins", R.phase_logins)
        if "memory" in a.only:
            phase("memory", R.phase_memory)
        if "micro" in a.only:
            phase("micro", R.phase_micro, outdir)
    except HarnessError as e:
        fatal = str(e)
        res.problems.append(f"run stopped: {e}")
        note(f"FATAL: {e}")
    finally:
        for p in list(R.poolers.values()):
            R.stop_pooler(p)
        if a.keep_workdir:
            note(f"configs and logs kept in {workdir}")
        CHILDREN.stop_all()
    meta.setdefault("machine", {}).setdefault("postgres", "?")
    meta["machine"]["loadavg_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["duration_s"] = round(time.monotonic() - t_start)

    # Every measurement must have produced a number.
    for k, m in res.metrics.items():
        for s in res.systems + (["direct"] if m.group == "latency_raw" else []):
            got = [v for v in m.values.get(s, {}).values() if v is not None]
            want = min(a.rounds, 3) if m.group == "memory" else a.rounds
            if len(got) < want:
                msg = f"{k} {s}: {len(got)} of {want} round(s) produced a number"
                if msg not in res.problems:
                    res.problems.append(msg)

    baseline_path = a.baseline or os.path.join(root, "perf/baseline.json")
    comparison = None
    # --quick measures other client counts for a second each: nothing to compare with a full run.
    if os.path.exists(baseline_path) and not a.update_baseline and not a.quick:
        baseline = json.load(open(baseline_path))
        meta["baseline_created"] = baseline.get("created")
        comparison = compare(res, baseline, a.tolerance, a.tolerance)

    try:
        import plots
        made = plots.draw(res, outdir)
    except Exception as e:  # noqa: BLE001 - a plot problem is a harness problem
        res.problems.append(f"plots: {e}")
        made = []
    j = res.to_json(meta)
    if comparison:
        j["baseline_comparison"] = {"regressions": comparison[0], "improvements": comparison[1], "not_compared": comparison[2]}
    write_json(os.path.join(outdir, "results.json"), j)
    md = markdown(res, meta, comparison)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md)
    log(f"results: {outdir}/results.md, results.json{', ' + ', '.join(made) if made else ''}")
    print(md)

    rc = 0
    if res.problems or res.engine_problems:
        log(f"{len(res.problems)} measurement problem(s), {len(res.engine_problems)} pooler problem(s): see above")
        rc = 2
    if a.update_baseline:
        if fatal or a.systems:
            log("not writing the baseline: the run stopped early or did not measure every system")
        else:
            write_json(baseline_path, baseline_from(res, meta))
            log(f"wrote {baseline_path}" + (" (metrics without a number are left out of it and listed "
                                            "under 'missing')" if rc else ""))
    elif comparison and not a.quick:
        reg = comparison[0]
        if reg:
            log(f"{len(reg)} regression(s) against the baseline (more than {a.tolerance * 100:.0f}% worse):")
            for x in reg:
                note(x)
            rc = rc or 1
        else:
            log(f"no ratio got more than {a.tolerance * 100:.0f}% worse than the baseline")
    elif a.quick:
        note("--quick: not compared with the baseline (a smoke run's timings mean little)")
    if fatal:
        rc = 2
    # A closing line CI can read: measurements that produced a number, and failures.
    produced = sum(1 for m in res.metrics.values() for per in m.values.values() for v in per.values() if v is not None)
    produced += len(res.microbench)
    print(f"perf: {produced} passed, {len(res.problems) + len(res.engine_problems)} failed")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
