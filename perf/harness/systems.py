"""What perf/run measures through: PostgreSQL (tools/pgtmp), the fake backend, and the poolers
(ringbouncer with N workers, PgBouncer as one or several SO_REUSEPORT processes).

A pooler is ready when it has logged "process up" AND a real login through it worked (admin
console over its unix socket, then SELECT 1 over TCP): a bare TCP probe proves nothing about
authentication, routing or the pool.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

from common import CHILDREN, HarnessError, free_port, note, rss_bytes, run, tail, wait_for

ADMIN_USER, ADMIN_PASSWORD = "rb_admin", "adminpass"
MD5_USER, MD5_PASSWORD = "rb_md5", "md5pass"
SCRAM_USER, SCRAM_PASSWORD = "rb_scram", "scrampass"
FAKE_DB = "fake"      # database name at the poolers for the fake backend
PG_DB = "rbtest"      # database name at the poolers (and in PostgreSQL) for pgbench


def md5_secret(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


class Tools:
    def __init__(self, root, build_dir):
        self.root = root
        self.build_dir = build_dir
        self.ringbouncer = os.path.join(build_dir, "engine/ringbouncer")
        self.loadgen = os.path.join(build_dir, "tools/loadgen/rb-loadgen")
        self.fake_backend = os.path.join(build_dir, "tools/fake_backend/rb-fake-backend")
        self.rb_bench = os.path.join(build_dir, "perf/rb_bench")
        self.pgtmp = os.path.join(root, "tools/pgtmp")
        self.pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        for p in (self.ringbouncer, self.loadgen, self.fake_backend, self.pgtmp, self.pgbouncer):
            if not os.access(p, os.X_OK):
                raise HarnessError(f"missing program: {p}")
        self.pg_bindir = None   # set once PostgreSQL runs

    def pg(self, prog):
        return os.path.join(self.pg_bindir, prog)


# --- backends ---------------------------------------------------------------------------------------

class PgCluster:
    """A throwaway PostgreSQL with pgbench tables (tools/pgtmp)."""

    def __init__(self, tools, workdir, max_connections):
        self.tools = tools
        self.dir = os.path.join(workdir, "pg")
        self.max_connections = max_connections
        self.port = None

    def start(self):
        out = run([self.tools.pgtmp, "start", self.dir, "--pgbench", "--max-connections",
                   str(self.max_connections), "--owner-pid", str(os.getpid())], timeout=300).stdout
        CHILDREN.cleanups.append(lambda: run([self.tools.pgtmp, "stop", self.dir], check=False, timeout=60))
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.port = int(env["PGPORT"])
        self.tools.pg_bindir = env["PGTMP_BINDIR"]
        self.version = self.sql("SHOW server_version").strip()
        return self

    def sql(self, query, db="postgres"):
        return run([self.tools.pg("psql"), "-X", "-q", "-A", "-t", "-h", self.dir, "-p", str(self.port),
                    "-U", "postgres", "-d", db, "-c", query], user="postgres", timeout=60).stdout

    def role_secret(self, role):
        return self.sql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'").strip()

    def backends(self, user, db):
        return int(self.sql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' "
                            f"AND datname = '{db}' AND backend_type = 'client backend'").strip())


class FakeBackend:
    """tools/fake_backend: trust login, SELECT 1 answered at once, so the pooler is what's measured."""

    def __init__(self, tools, workdir, threads=2):
        self.tools = tools
        self.workdir = workdir
        self.threads = threads
        self.port = None
        self.child = None

    def start(self):
        self.port = free_port()
        self.log = os.path.join(self.workdir, "fake-backend.log")
        self.child = CHILDREN.spawn("rb-fake-backend", [self.tools.fake_backend, "--port", str(self.port),
                                                       "--threads", str(self.threads)],
                                    stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        # A real login and query, not a TCP probe.
        wait_for(lambda: loadgen_ok(self.tools, self.port, "rb_trust", None, FAKE_DB), 20,
                 "the fake backend to answer a login", alive=self.child.alive)
        return self

    def pids(self):
        return [self.child.pid]


def loadgen_ok(tools, port, user, password, db, host="127.0.0.1", connect_timeout=3):
    """One login and one SELECT 1 through rb-loadgen; True when both worked."""
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    args = [tools.loadgen, "query", "--host", host, "--port", str(port), "--user", user, "--dbname", db,
            "--clients", "1", "--count", "1", "--duration", "5", "--connect-timeout", str(connect_timeout)]
    if password:
        args += ["--password", password]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    if p.returncode != 0:
        raise HarnessError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}")
    return json.loads(p.stdout)["transactions"] == 1


# --- poolers ----------------------------------------------------------------------------------------

class SystemSpec:
    """One pooler setup under test. key is what results are filed under."""

    def __init__(self, key, label, kind, workers=1, procs=1):
        self.key, self.label, self.kind, self.workers, self.procs = key, label, kind, workers, procs


def system_specs(nproc):
    return [
        SystemSpec("pgb1", "PgBouncer 1 process", "pgbouncer"),
        SystemSpec("pgb2", f"PgBouncer {2} processes (so_reuseport)", "pgbouncer", procs=2),
        SystemSpec("rb1", "ringbouncer workers=1", "ringbouncer", workers=1),
        SystemSpec("rbN", f"ringbouncer workers={nproc}", "ringbouncer", workers=nproc),
    ]


class Pooler:
    """A running instance of a SystemSpec: one process (or spec.procs processes on one port)."""

    def __init__(self, tools, spec, workdir, *, fake_port, pg_port, auth_type, userlist_lines,
                 pool_size, max_client_conn, tag=""):
        self.tools, self.spec = tools, spec
        self.dir = os.path.join(workdir, f"{spec.key}{tag}")
        self.fake_port, self.pg_port = fake_port, pg_port
        self.auth_type = auth_type
        self.userlist_lines = userlist_lines
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = None
        self.children = []
        self.sock_dirs = []
        self.logs = []
        self.problems = []   # crashes, hangs at shutdown: reported, never hidden

    @property
    def key(self):
        return self.spec.key

    def per_process_pool_size(self):
        # Several PgBouncer processes each get a share, so that the total stays pool_size, as
        # ringbouncer's workers do (see perf/README.md).
        return -(-self.pool_size // self.spec.procs)

    def _config(self, i):
        sock_dir = os.path.join(self.dir, f"p{i}")
        lines = [
            "[databases]",
            f"{FAKE_DB} = host=127.0.0.1 port={self.fake_port} dbname={FAKE_DB}",
        ]
        if self.pg_port:
            lines.append(f"{PG_DB} = host=127.0.0.1 port={self.pg_port} dbname={PG_DB}")
        lines += [
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "listen_backlog = 4096",
            f"unix_socket_dir = {sock_dir}",
            f"auth_type = {self.auth_type}",
            f"auth_file = {self.dir}/userlist.txt",
            f"admin_users = {ADMIN_USER}",
            "pool_mode = transaction",
            f"default_pool_size = {self.per_process_pool_size()}",
            f"max_client_conn = {self.max_client_conn}",
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {sock_dir}/pooler.log",
        ]
        if self.spec.kind == "ringbouncer":
            lines.append(f"workers = {self.spec.workers}")
        if self.spec.procs > 1:
            lines.append("so_reuseport = 1")
        return sock_dir, "\n".join(lines) + "\n"

    def start(self, timeout=30):
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write("".join(f'"{u}" "{s}"\n' for u, s in self.userlist_lines))
            f.write(f'"{ADMIN_USER}" "{ADMIN_PASSWORD}"\n')
        os.chmod(os.path.join(self.dir, "userlist.txt"), 0o644)
        user = "postgres" if self.spec.kind == "pgbouncer" else None   # PgBouncer refuses root
        for i in range(self.spec.procs):
            sock_dir, text = self._config(i)
            os.makedirs(sock_dir)
            ini = os.path.join(sock_dir, "pooler.ini")
            with open(ini, "w") as f:
                f.write(text)
            os.chmod(ini, 0o644)
            if user:
                shutil.chown(sock_dir, user, user)
            log = os.path.join(sock_dir, "pooler.log")
            prog = self.tools.pgbouncer if self.spec.kind == "pgbouncer" else self.tools.ringbouncer
            out = open(os.path.join(sock_dir, "stdout.log"), "w")
            # SIGINT: safe shutdown in both (PgBouncer 1.18's SIGTERM exits with status 1).
            child = CHILDREN.spawn(f"{self.key}[{i}]", [prog, "-q", ini], stdout=out, stderr=subprocess.STDOUT,
                                   user=user, cwd=sock_dir, stop_signal=signal.SIGINT)
            self.children.append(child)
            self.sock_dirs.append(sock_dir)
            self.logs.append(log)
        for i, child in enumerate(self.children):
            wait_for(lambda: "process up" in open(self.logs[i], errors="replace").read()
                     if os.path.exists(self.logs[i]) else False,
                     timeout, f"{self.key}[{i}] to log 'process up'", alive=child.alive)
            wait_for(lambda: self.admin("SHOW VERSION", i), timeout, f"{self.key}[{i}] admin console login",
                     interval=0.2, alive=child.alive)
        wait_for(self.answers, timeout, f"{self.key}: a login and SELECT 1 through it", interval=0.2)
        return self

    def pids(self):
        return [c.pid for c in self.children]

    def rss(self):
        return sum(rss_bytes(p) for p in self.pids())

    def check_alive(self):
        for i, c in enumerate(self.children):
            rc = c.died_on_its_own()
            if rc is not None:
                msg = f"{self.spec.label} process {i} (pid {c.pid}) died with status {rc}"
                self.problems.append(msg)
                raise HarnessError(f"{msg}; last log lines:\n{tail(self.logs[i])}")

    def admin(self, command, i=0):
        """Runs an admin console command on process i (over its unix socket); a list of dicts."""
        env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD, PGCONNECT_TIMEOUT="5")
        p = subprocess.run([self.tools.pg("psql") if self.tools.pg_bindir else "psql", "-X", "-A", "-F", "\t",
                            "-P", "footer=off", "-h", self.sock_dirs[i], "-p", str(self.port), "-U", ADMIN_USER,
                            "-d", "pgbouncer", "-c", command], capture_output=True, text=True, timeout=20, env=env)
        if p.returncode != 0:
            raise HarnessError(f"{self.key}[{i}] {command}: {p.stderr.strip()}")
        lines = p.stdout.rstrip("\n").split("\n")
        if not lines or not lines[0]:
            return []
        head = lines[0].split("\t")
        return [dict(zip(head, line.split("\t"))) for line in lines[1:]] or [{}]

    def pool_counts(self, db):
        """(clients, servers) over every process, from SHOW POOLS."""
        clients = servers = 0
        for i in range(len(self.children)):
            for row in self.admin("SHOW POOLS", i):
                if row.get("database") != db:
                    continue
                clients += sum(int(row.get(k) or 0) for k in ("cl_active", "cl_waiting"))
                servers += sum(int(row.get(k) or 0) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
        return clients, servers

    def answers(self):
        """A login and SELECT 1 through the pooler work right now."""
        user, password = (MD5_USER, MD5_PASSWORD) if self.auth_type == "md5" else (SCRAM_USER, SCRAM_PASSWORD)
        try:
            return loadgen_ok(self.tools, self.port, user, password, FAKE_DB, connect_timeout=5)
        except HarnessError:
            return False

    def stop(self, timeout=15):
        for i, c in enumerate(self.children):
            rc_before = c.died_on_its_own()
            if rc_before is not None:
                self.problems.append(f"{self.spec.label} process {i} had died with status {rc_before}")
            rc, killed = CHILDREN.stop(c, timeout=timeout)
            if killed:
                self.problems.append(f"{self.spec.label} process {i} ignored SIGINT for {timeout} s (killed)")
            elif rc_before is None and rc != 0:
                self.problems.append(f"{self.spec.label} process {i} exited with status {rc} on SIGINT")
        self.children = []
