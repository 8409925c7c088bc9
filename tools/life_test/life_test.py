#!/usr/bin/python3
"""life_test: live load through ringbouncer's shared port, and what each instance makes of it.

N client threads (20 by default) run random INSERT, UPDATE and SELECT statements on the table
usage_logs (created if missing) through the shared port 6432, which the kernel spreads over the
ringbouncer instances (SO_REUSEPORT). Meanwhile a dashboard asks every instance, through its own
admin port, how it is doing: up or down, its client connections (SHOW CLIENTS, SHOW POOLS), how
they spread over its worker threads (SHOW WORKERS), and its transactions per second. Clients
reconnect every --reconnect-every statements, as short-lived application connections do, so the
spread keeps moving.

  life_test.py                               the dashboard, 60 s or until Ctrl-C
  life_test.py --instances 4                 admin ports 50001-50004 (the default)
  life_test.py --admin-ports 50001,50003     watch these admin ports only
  life_test.py --once --json --duration 5    a short burst, then one JSON document (for tests)

The exit status is 0 when every instance served transactions and no statement failed, else 1
(2 for bad options or when the database can't be reached at all).

Needs Python 3 with psycopg2 and rich (Debian: python3-psycopg2 python3-rich; pip: see
requirements.txt next to this file).
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time

try:
    import psycopg2
except ImportError:  # pragma: no cover
    sys.exit(f"life_test: {sys.executable} has no psycopg2 (Debian: apt-get install python3-psycopg2 "
             "python3-rich, and run /usr/bin/python3; pip: pip install -r requirements.txt)")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS usage_logs (
    id          bigserial PRIMARY KEY,
    user_id     integer NOT NULL,
    action      text NOT NULL,
    value       integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz
)"""
ACTIONS = ("login", "view", "click", "purchase", "logout")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="life_test.py",
        description="Random INSERT/UPDATE/SELECT through the shared port, and a live view of how "
                    "the ringbouncer (or PgBouncer) instances share it, read through their admin ports.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (default: 60, or 5 with --once); Ctrl-C ends it early")
    p.add_argument("--clients", type=int, default=20, help="concurrent client threads")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--instances", type=int, default=4,
                       help="number of instances; their admin ports are 50001, 50002, ...")
    group.add_argument("--admin-ports", default=None,
                       help="comma-separated admin ports, one per instance (instead of --instances)")
    p.add_argument("--host", default=os.environ.get("PGHOST", "127.0.0.1"),
                   help="where the shared port and the admin ports listen")
    p.add_argument("--port", type=int, default=6432, help="the shared port")
    p.add_argument("--admin-host", default=None, help="host of the admin ports (default: --host)")
    p.add_argument("--dbname", default="testdb", help="database the clients use")
    p.add_argument("--user", default="testuser", help="user the clients log in as")
    p.add_argument("--password", default=os.environ.get("PGPASSWORD", "testpass"),
                   help="its password (default: $PGPASSWORD, else testpass)")
    p.add_argument("--admin-user", default="pgbouncer", help="an admin_users or stats_users name")
    p.add_argument("--admin-password", default=os.environ.get("RB_ADMIN_PASSWORD", "pgbouncer"),
                   help="its password (default: $RB_ADMIN_PASSWORD, else pgbouncer)")
    p.add_argument("--reconnect-every", type=int, default=50,
                   help="statements per client connection before it reconnects (0: never)")
    p.add_argument("--refresh", type=float, default=0.5, help="seconds between admin polls")
    p.add_argument("--once", action="store_true",
                   help="no dashboard: run one short burst, print a summary, exit 0 when every "
                        "instance saw traffic and nothing failed")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 5.0 if args.once else 60.0
    if args.admin_ports:
        try:
            args.ports = [int(x) for x in args.admin_ports.split(",") if x.strip()]
        except ValueError:
            p.error("--admin-ports takes numbers separated by commas, e.g. 50001,50002")
    else:
        args.ports = [50001 + i for i in range(args.instances)]
    if not args.ports:
        p.error("no admin port to watch")
    if args.clients < 1:
        p.error("--clients must be at least 1")
    args.admin_host = args.admin_host or args.host
    return args


class Totals:
    """Client-side counters, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {"INSERT": 0, "UPDATE": 0, "SELECT": 0}
        self.errors = 0
        self.last_error = ""
        self.connects = 0
        self.max_id = 0
        self.history = []  # (time, total ops) samples for the current rate

    def total(self):
        return sum(self.ops.values())


def connect_app(args):
    conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                            password=args.password, connect_timeout=5, application_name="life_test")
    conn.autocommit = True
    return conn


def client_loop(args, totals, stop, seed):
    rng = random.Random(seed)
    conn = None
    used = 0
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect_app(args)
                used = 0
                with totals.lock:
                    totals.connects += 1
            kind = rng.choices(("INSERT", "UPDATE", "SELECT"), weights=(50, 25, 25))[0]
            with conn.cursor() as cur:
                if kind == "INSERT":
                    cur.execute("INSERT INTO usage_logs (user_id, action, value) VALUES (%s, %s, %s) RETURNING id",
                                (rng.randint(1, 1000), rng.choice(ACTIONS), rng.randint(1, 100)))
                    new_id = cur.fetchone()[0]
                    with totals.lock:
                        totals.max_id = max(totals.max_id, new_id)
                elif kind == "UPDATE":
                    with totals.lock:
                        top = totals.max_id
                    cur.execute("UPDATE usage_logs SET value = value + 1, updated_at = now() WHERE id = %s",
                                (rng.randint(1, max(top, 1)),))
                else:
                    cur.execute("SELECT count(*), coalesce(avg(value), 0) FROM usage_logs WHERE user_id = %s",
                                (rng.randint(1, 1000),))
                    cur.fetchone()
            with totals.lock:
                totals.ops[kind] += 1
            used += 1
            if args.reconnect_every and used >= args.reconnect_every:
                conn.close()
                conn = None
        except psycopg2.Error as e:
            if stop.is_set():
                break
            with totals.lock:
                totals.errors += 1
                totals.last_error = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if conn is not None:
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
                conn = None
            stop.wait(0.2)
    if conn is not None:
        try:
            conn.close()
        except psycopg2.Error:
            pass


class Instance:
    """One instance seen through its admin port."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.up = False
        self.error = ""
        self.peer_id = "?"
        self.clients = 0          # SHOW CLIENTS rows of our database
        self.max_clients = 0
        self.cl_active = 0        # SHOW POOLS, our database
        self.cl_waiting = 0
        self.servers = 0          # sv_active + sv_idle + sv_used + sv_login
        self.workers = []         # (id, clients, xact_count) from SHOW WORKERS
        self.worker_start = {}    # id -> xact_count at the first look
        self.worker_max = {}      # id -> most clients seen at once
        self.xacts = None         # sum of SHOW WORKERS xact_count
        self.xacts_start = None
        self.restarted_from = 0   # transactions counted before the instance last restarted
        self.rate = 0.0
        self._last = None         # (time, xacts)

    def traffic(self):
        if self.xacts is None or self.xacts_start is None:
            return 0
        return self.xacts - self.xacts_start


def show(cur, command):
    cur.execute(command)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def poll_instance(args, inst):
    now = time.monotonic()
    try:
        if inst.conn is None:
            inst.conn = psycopg2.connect(host=args.admin_host, port=inst.port, dbname="pgbouncer",
                                         user=args.admin_user, password=args.admin_password,
                                         connect_timeout=3, application_name="life_test_admin")
            inst.conn.autocommit = True
            with inst.conn.cursor() as cur:
                for row in show(cur, "SHOW CONFIG"):
                    if row.get("key") == "peer_id":
                        inst.peer_id = row.get("value")
        with inst.conn.cursor() as cur:
            pools = [r for r in show(cur, "SHOW POOLS") if r.get("database") == args.dbname]
            clients = [r for r in show(cur, "SHOW CLIENTS") if r.get("database") == args.dbname]
            try:
                workers = show(cur, "SHOW WORKERS")
            except psycopg2.Error:  # PgBouncer has no SHOW WORKERS: one process, one thread
                workers = []
        inst.up, inst.error = True, ""
        inst.clients = len(clients)
        inst.max_clients = max(inst.max_clients, inst.clients)
        inst.cl_active = sum(int(r.get("cl_active") or 0) for r in pools)
        inst.cl_waiting = sum(int(r.get("cl_waiting") or 0) for r in pools)
        inst.servers = sum(int(r.get(k) or 0) for r in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_login"))
        inst.workers = [(int(w["id"]), int(w["clients"]), int(w["xact_count"])) for w in workers]
        for w, c, x in inst.workers:
            inst.worker_start.setdefault(w, x)
            inst.worker_max[w] = max(inst.worker_max.get(w, 0), c)
        if workers:
            xacts = sum(w[2] for w in inst.workers)
        else:
            with inst.conn.cursor() as cur:
                xacts = sum(int(r.get("total_xact_count") or 0) for r in show(cur, "SHOW STATS")
                            if r.get("database") == args.dbname)
        if inst.xacts is not None and xacts + inst.restarted_from < inst.xacts:
            # The instance restarted (its counters began again): keep counting from where it was.
            inst.restarted_from = inst.xacts
            inst.worker_start = {}
        xacts += inst.restarted_from
        inst.xacts = xacts
        if inst.xacts_start is None:
            inst.xacts_start = xacts
        if inst._last is not None and now > inst._last[0]:
            inst.rate = (xacts - inst._last[1]) / (now - inst._last[0])
        inst._last = (now, xacts)
    except psycopg2.Error as e:
        inst.up = False
        inst.error = (str(e).strip().splitlines() or ["error"])[0]
        inst.rate = 0.0
        inst._last = None
        if inst.conn is not None:
            try:
                inst.conn.close()
            except psycopg2.Error:
                pass
        inst.conn = None


def current_tps(totals, window=2.0):
    now = time.monotonic()
    with totals.lock:
        total = totals.total()
        totals.history.append((now, total))
        while len(totals.history) > 2 and totals.history[0][0] < now - window:
            totals.history.pop(0)
        t0, n0 = totals.history[0]
    return (total - n0) / (now - t0) if now > t0 else 0.0


def render(args, instances, totals, started, tps):
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    elapsed = time.monotonic() - started
    total_clients = sum(i.clients for i in instances if i.up) or 1
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, collapse_padding=True,
                  title=f"ringbouncer life test: {len(instances)} instances sharing {args.host}:{args.port}",
                  title_style="bold")
    for header, width, justify in (("instance", 8, "left"), ("state", 5, "left"), ("clients", 7, "right"),
                                   ("share", 11, "left"), ("waiting", 7, "right"), ("servers", 7, "right"),
                                   ("per worker", 10, "left"), ("xact/s", 7, "right")):
        table.add_column(header, width=width, justify=justify, no_wrap=True, overflow="ellipsis")
    down = []
    for inst in instances:
        name = f"{inst.port} #{inst.peer_id}"
        if not inst.up:
            table.add_row(name, Text("down", style="bold red"), "-", "", "-", "-", "-", "-")
            down.append(f"{inst.port}: {inst.error}")
            continue
        share = inst.clients / total_clients
        bar = Text(f"{'█' * int(round(share * 6)):<6}", style="green") + Text(f" {share:>4.0%}")
        per_worker = "/".join(str(c) for _, c, _ in inst.workers) or "-"
        table.add_row(name, Text("up", style="bold green"), str(inst.clients), bar, str(inst.cl_waiting),
                      str(inst.servers), per_worker, f"{inst.rate:,.0f}")
    with totals.lock:
        ops = dict(totals.ops)
        errors, last_error, connects = totals.errors, totals.last_error, totals.connects
    summary = Text()
    summary.append(f"{elapsed:5.1f}/{args.duration:.0f} s   ", style="bold")
    summary.append(f"{args.clients} clients -> {args.dbname} as {args.user}   ")
    summary.append(f"TPS {tps:,.0f}\n", style="bold cyan")
    summary.append("  ".join(f"{k} {v:,}" for k, v in ops.items()) + f"   connects {connects:,}   ")
    summary.append(f"errors {errors}", style="bold red" if errors else "bold green")
    parts = [table, summary]
    for line in down:
        parts.append(Text(f"down: {line}", style="red"))
    if last_error:
        parts.append(Text(f"last error: {last_error}", style="red"))
    parts.append(Text("clients: SHOW CLIENTS; waiting, servers: SHOW POOLS; per worker: SHOW WORKERS\n"
                      "instance: admin port #peer_id. Ctrl-C stops.", style="dim"))
    return Group(*parts)


def summary_dict(args, instances, totals, elapsed):
    with totals.lock:
        ops = dict(totals.ops)
        errors, last_error, connects = totals.errors, totals.last_error, totals.connects
    total = sum(ops.values())
    per_instance = []
    for inst in instances:
        per_instance.append({
            "admin_port": inst.port,
            "peer_id": inst.peer_id,
            "up": inst.up,
            "error": inst.error,
            "clients": inst.clients,
            "max_clients": inst.max_clients,
            "transactions": inst.traffic(),
            "saw_traffic": inst.traffic() > 0,
            "workers": [{"id": w, "clients": c, "max_clients": inst.worker_max.get(w, c),
                         "transactions": x - inst.worker_start.get(w, x)} for w, c, x in inst.workers],
        })
    return {
        "host": args.host,
        "port": args.port,
        "dbname": args.dbname,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "transactions": total,
        "tps": round(total / elapsed, 1) if elapsed > 0 else 0.0,
        "operations": ops,
        "connects": connects,
        "errors": errors,
        "last_error": last_error,
        "instances": per_instance,
        "every_instance_saw_traffic": all(i["saw_traffic"] for i in per_instance),
    }


def print_text_summary(s, console=None):
    lines = [f"{s['transactions']:,} transactions in {s['seconds']} s ({s['tps']:,} TPS), "
             f"{s['connects']:,} connections, {s['errors']} errors"]
    for i in s["instances"]:
        workers = " + ".join(f"{w['transactions']:,}" for w in i["workers"])
        state = "up" if i["up"] else f"DOWN ({i['error']})"
        lines.append(f"  {i['admin_port']} (peer {i['peer_id']}): {state}, {i['transactions']:,} xacts"
                     + (f" (workers: {workers})" if workers else "") + f", up to {i['max_clients']} clients")
    if s["last_error"]:
        lines.append(f"  last error: {s['last_error']}")
    verdict = ("every instance served traffic" if s["every_instance_saw_traffic"]
               else "some instance served no traffic")
    lines.append(f"  {verdict}; {'no errors' if s['errors'] == 0 else 'errors seen'}")
    text = "\n".join(lines)
    if console is not None:
        console.print()
        console.print(text, highlight=False)
    else:
        print(text)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv):
    args = parse_args(argv)
    # Ctrl-C and SIGTERM end the run early, with the summary. (A shell starting this in the
    # background leaves SIGINT ignored, and Python then never raises KeyboardInterrupt.)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        conn = connect_app(args)
        with conn.cursor() as cur:
            cur.execute(CREATE_TABLE)
            cur.execute("SELECT coalesce(max(id), 0) FROM usage_logs")
            max_id = cur.fetchone()[0]
        conn.close()
    except psycopg2.Error as e:
        msg = (str(e).strip().splitlines() or ["error"])[0]
        print(f"life_test: can't prepare usage_logs through {args.host}:{args.port} "
              f"(database {args.dbname}, user {args.user}): {msg}", file=sys.stderr)
        return 2

    totals = Totals()
    totals.max_id = max_id
    instances = [Instance(p) for p in args.ports]
    for inst in instances:
        poll_instance(args, inst)  # baseline transaction counts before any client runs

    stop = threading.Event()
    threads = [threading.Thread(target=client_loop, args=(args, totals, stop, n), daemon=True)
               for n in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()

    deadline = started + args.duration
    console = None
    try:
        if args.once:
            while time.monotonic() < deadline:
                time.sleep(min(args.refresh, max(0.0, deadline - time.monotonic())))
                for inst in instances:
                    poll_instance(args, inst)
        else:
            from rich.console import Console
            from rich.live import Live
            console = Console()
            with Live(render(args, instances, totals, started, 0.0), console=console,
                      refresh_per_second=4, transient=False) as live:
                while time.monotonic() < deadline:
                    time.sleep(min(args.refresh, max(0.0, deadline - time.monotonic())))
                    for inst in instances:
                        poll_instance(args, inst)
                    live.update(render(args, instances, totals, started, current_tps(totals)))
    except KeyboardInterrupt:
        pass
    # A second Ctrl-C would cut the summary short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elapsed = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(timeout=10)
    # The last look, once every client has finished its statement.
    for inst in instances:
        poll_instance(args, inst)
        if inst.conn is not None:
            inst.conn.close()

    s = summary_dict(args, instances, totals, elapsed)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print_text_summary(s, console)
    return 0 if s["every_instance_saw_traffic"] and s["errors"] == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
