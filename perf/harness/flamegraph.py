"""perf/flamegraph's body: ringbouncer under a chosen load, recorded with perf (cpu-clock), drawn
by perf's own flamegraph script with the d3-flame-graph template. See perf/README.md."""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import CHILDREN, HarnessError, install_signal_handlers, log, note, raise_nofile, run  # noqa: E402
from systems import (MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, FakeBackend, PgCluster,  # noqa: E402
                     Pooler, SystemSpec, Tools, md5_secret)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="perf/flamegraph",
                                description="Record ringbouncer under load with perf (cpu-clock) and draw a flamegraph.")
    p.add_argument("--load", choices=("query", "logins", "idle"), default="query",
                   help="query: SELECT 1 in a loop; logins: connect/authenticate/disconnect; idle: log clients in and hold them")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (idle: clients to log in) (default 50)")
    p.add_argument("--seconds", type=int, default=10, help="seconds to record (default 10)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="ringbouncer workers (default: nproc)")
    p.add_argument("--protocol", choices=("simple", "extended"), default="simple", help="query: protocol (default simple)")
    p.add_argument("--auth", choices=("md5", "scram"), default="md5", help="auth_type at the pooler (default md5)")
    p.add_argument("--backend", choices=("fake", "postgres"), default="fake",
                   help="fake: tools/fake_backend (the pooler is all there is to see); postgres: pgbench -S on a "
                        "throwaway PostgreSQL (query load only)")
    p.add_argument("--frequency", type=int, default=999, help="samples per second per CPU (default 999)")
    p.add_argument("--call-graph", default="dwarf", help="perf --call-graph mode: dwarf (default: unwinds through liburing, which has no frame pointers) or fp (smaller perf.data, but user-space stacks stop at liburing)")
    p.add_argument("--template", required=True, help="d3-flame-graph's d3-flamegraph-base.html")
    p.add_argument("--build-dir", required=True)
    p.add_argument("--out", help="output directory (default perf/results/flamegraph-<timestamp>)")
    a = p.parse_args(argv)
    if a.backend == "postgres" and a.load != "query":
        p.error("--backend postgres works with --load query only")
    return a


def main(argv):
    a = parse_args(argv)
    install_signal_handlers()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tools = Tools(root, os.path.abspath(a.build_dir))
    nofile = raise_nofile(110_000)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(a.out or os.path.join(root, "perf/results", f"flamegraph-{stamp}"))
    os.makedirs(out, exist_ok=True)
    from run import remove_stale_workdirs
    remove_stale_workdirs()
    workdir = tempfile.mkdtemp(prefix="rb-flame-", dir="/tmp")
    os.chmod(workdir, 0o755)
    with open(os.path.join(workdir, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    CHILDREN.cleanups.insert(0, lambda: shutil.rmtree(workdir, ignore_errors=True))

    pg = PgCluster(tools, workdir, max_connections=100).start() if a.backend == "postgres" else None
    fake = FakeBackend(tools, workdir).start()
    user, password = (MD5_USER, MD5_PASSWORD) if a.auth == "md5" else (SCRAM_USER, SCRAM_PASSWORD)
    userlist = [(MD5_USER, md5_secret(MD5_USER, MD5_PASSWORD))]
    if a.auth == "scram":
        if not pg:
            # The SCRAM secret PostgreSQL would store; computing it needs PostgreSQL, so one is
            # started for that alone when the backend is the fake one.
            pg = PgCluster(tools, workdir, max_connections=20).start()
        userlist.append((SCRAM_USER, pg.role_secret(SCRAM_USER)))
    spec = SystemSpec("rb", f"ringbouncer workers={a.workers}", "ringbouncer", workers=a.workers)
    rb = Pooler(tools, spec, workdir, fake_port=fake.port, pg_port=pg.port if pg else None,
                auth_type="md5" if a.auth == "md5" else "scram-sha-256", userlist_lines=userlist, pool_size=20,
                max_client_conn=max(a.clients + 500, 2000)).start()
    pid = rb.pids()[0]
    log(f"ringbouncer workers={a.workers} (pid {pid}) on port {rb.port}; load: {a.load}, {a.clients} clients, "
        f"{a.seconds} s recorded")

    # The load runs a little longer than the recording, which starts once the load is going.
    lead = 2
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if a.load == "query" and a.backend == "postgres":
        env["PGPASSWORD"] = MD5_PASSWORD
        load_argv = [tools.pg("pgbench"), "-n", "-S", "-c", str(a.clients), "-j", "2", "-T", str(a.seconds + 2 * lead),
                     "-M", a.protocol, "-h", "127.0.0.1", "-p", str(rb.port), "-U", MD5_USER, "rbtest"]
    elif a.load == "query":
        load_argv = [tools.loadgen, "query", "--port", str(rb.port), "--user", user, "--password", password,
                     "--dbname", "fake", "--clients", str(a.clients), "--duration", str(a.seconds + 2 * lead),
                     "--protocol", a.protocol]
    elif a.load == "logins":
        load_argv = [tools.loadgen, "logins", "--port", str(rb.port), "--user", user, "--password", password,
                     "--dbname", "fake", "--clients", str(a.clients), "--duration", str(a.seconds + 2 * lead)]
    else:
        procs = max(1, -(-a.clients // max(1000, nofile - 1500)))
        load_argv = [tools.loadgen, "idle", str(a.clients), "--procs", str(procs), "--port", str(rb.port), "--user", user,
                     "--password", password, "--dbname", "fake", "--hold", str(a.seconds + 2 * lead)]
        lead = 0   # idle: the logins are the interesting part; record from the start
    load = CHILDREN.spawn("load", load_argv, stdout=open(os.path.join(out, "load.json"), "w"),
                          stderr=open(os.path.join(out, "load.log"), "w"), env=env)
    time.sleep(lead)
    if not load.alive():
        raise HarnessError(f"the load stopped early: {open(os.path.join(out, 'load.log')).read()[-1500:]}")
    data = os.path.join(out, "perf.data")
    log(f"perf record -e cpu-clock -F {a.frequency} --call-graph {a.call_graph} -p {pid} (all threads), {a.seconds} s")
    rec = run(["perf", "record", "-e", "cpu-clock", "-F", str(a.frequency), "--call-graph", a.call_graph, "-p", str(pid),
               "-o", data, "--", "sleep", str(a.seconds)], check=False, timeout=a.seconds + 120)
    if rec.returncode != 0 or not os.path.exists(data):
        raise HarnessError(f"perf record failed: {rec.stderr.strip()[-1500:]}")
    load.popen.wait(timeout=a.seconds + 180)
    rb.check_alive()
    rb.stop()
    for msg in rb.problems:
        note(f"POOLER PROBLEM: {msg}")

    log("rendering with perf script report flamegraph (d3-flame-graph template)")
    html = os.path.join(out, "flamegraph.html")
    # perf's flamegraph script reads ./perf.data; its header (perf report --header-only) goes into the page.
    r = subprocess.run(["perf", "script", "report", "flamegraph", "--template", a.template, "-o", html],
                       cwd=out, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not os.path.exists(html):
        raise HarnessError(f"perf script report flamegraph failed: {(r.stderr or r.stdout).strip()[-1500:]}")
    with open(os.path.join(out, "top.txt"), "w") as f:
        for title, extra in (("all samples, self time by symbol", []),
                             ("ringbouncer's own code, self time by symbol", ["--dsos", "ringbouncer"])):
            top = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio",
                                  "--percent-limit", "0.3", "-g", "none"] + extra, capture_output=True, text=True,
                                 timeout=600)
            f.write(f"==== {title} ====\n")
            f.write("\n".join(l for l in top.stdout.splitlines() if l.strip() and not l.startswith("#")) + "\n\n")
    print(f"flamegraph: {html}")
    print(f"top symbols (self time): {os.path.join(out, 'top.txt')}")
    print(f"load report: {os.path.join(out, 'load.json')}; raw samples: {data}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except HarnessError as e:
        print(f"perf/flamegraph: {e}", file=sys.stderr)
        sys.exit(2)
