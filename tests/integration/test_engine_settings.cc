// Pool settings and per-database/per-user overrides through ringbouncer against a real
// PostgreSQL: [users] over [databases] over [pgbouncer], max_db_connections,
// max_user_connections, reserve_pool_size/reserve_pool_timeout, min_pool_size, connect_query,
// session parameters carried across a shared server in transaction mode, the `*` fallback
// database, a forced user, and the command line (-V, -h, -d, -q).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

PgCluster& Pg() {
  static PgCluster cluster;
  return cluster;
}

PgConn MustConnect(const std::string& conninfo) {
  PgConn conn = PgConn::Connect(conninfo);
  if (!conn.Ok()) throw std::runtime_error("connect failed: " + conn.Error());
  return conn;
}

int CountBackends(const PgCluster& pg, const std::string& where) {
  return std::stoi(
      pg.SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE " + where).Scalar());
}

// Samples PostgreSQL's count of backends matching `where` every 20 ms while `load` runs, and
// returns the highest count seen.
int MaxBackendsDuring(const PgCluster& pg, const std::string& where,
                      const std::function<void()>& load) {
  PgConn sampler = MustConnect(pg.SuperuserConnString());
  std::atomic<bool> stop{false};
  std::atomic<int> max_seen{0};
  std::atomic<int> samples{0};
  std::thread sampling([&] {
    while (!stop.load()) {
      QueryResult r = sampler.Exec("SELECT count(*) FROM pg_stat_activity WHERE " + where, 5s);
      if (r.ok) {
        int n = std::stoi(r.Scalar());
        if (n > max_seen.load()) max_seen = n;
        ++samples;
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  load();
  stop = true;
  sampling.join();
  if (samples.load() < 20) throw std::runtime_error("the sampler saw too little");
  return max_seen.load();
}

// pgbench with `clients` clients of `user` running pg_sleep(0.02) transactions on `db` for
// `seconds`; every transaction must succeed.
void SleepLoad(RingbouncerProcess& rb, const std::string& user, const std::string& db, int clients,
               int seconds) {
  TempDir dir("rb-settings");
  std::string script = dir.WriteFile("sleep.sql", "SELECT pg_sleep(0.02);\n");
  std::vector<std::string> args = rb.PgbenchArgs(user);
  const std::vector<std::string> more = {"-n", "-c", std::to_string(clients), "-j", "2", "-T",
                                         std::to_string(seconds), "-f"};
  args.insert(args.end(), more.begin(), more.end());
  args.push_back(script);
  args.push_back(db);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(user), 120s);
  INFO("pgbench:\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
}

TEST_CASE("[users] pool_mode, pool_size and reserve_pool_size win over the [databases] entry",
          "[integration][engine][settings]") {
  // The database says transaction mode with one server; the user says session mode with two,
  // plus one in reserve.
  RingbouncerProcess rb(Pg(), {.settings = {{"query_wait_timeout", "2"},
                                            {"reserve_pool_timeout", "0.5"},
                                            {"workers", "2"}},
                               .databases = {DatabaseLine(Pg(), kTestDb,
                                                          "pool_mode=transaction pool_size=1")},
                               .users = {"rb_md5 = pool_mode=session pool_size=2 "
                                         "reserve_pool_size=1"}});
  // Session mode: a temp table and a SET outlive their transactions.
  PgConn a = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(a.Exec("CREATE TEMP TABLE t (v int); INSERT INTO t VALUES (1)").ok);
  REQUIRE(a.Exec("SET statement_timeout = '42s'").ok);
  // Two servers: a second client gets its own while `a` holds one.
  PgConn b = MustConnect(rb.ConnString("rb_md5"));
  QueryResult b_pid = b.Exec("SELECT pg_backend_pid()", 10s);
  INFO("b: [" << b_pid.sqlstate << "] " << b_pid.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  REQUIRE(b_pid.ok);
  CHECK(b_pid.Scalar() != a.Exec("SELECT pg_backend_pid()").Scalar());
  CHECK(a.Exec("SELECT count(*) FROM t").Scalar() == "1");
  CHECK(a.Exec("SHOW statement_timeout").Scalar() == "42s");
  // A third waits reserve_pool_timeout, then gets the reserve server.
  PgConn c = MustConnect(rb.ConnString("rb_md5"));
  auto start = Clock::now();
  QueryResult c_result = c.Exec("SELECT 3", 10s);
  auto waited = Clock::now() - start;
  INFO("c: [" << c_result.sqlstate << "] " << c_result.error);
  CHECK(c_result.ok);
  CHECK(waited >= 400ms);
  // A fourth finds the pool and the reserve full, and gives up at query_wait_timeout.
  PgConn d = MustConnect(rb.ConnString("rb_md5"));
  QueryResult d_result = d.Exec("SELECT 4", 10s);
  INFO("d: [" << d_result.sqlstate << "] " << d_result.error);
  CHECK_FALSE(d_result.ok);
  CHECK(Contains(d_result.error, "query_wait_timeout"));
  CHECK(CountBackends(Pg(), "usename = 'rb_md5' AND datname = 'rbtest'") == 3);

}

TEST_CASE("a [users] session pool_mode keeps session state on a transaction-mode database "
          "that another user shares in transaction mode",
          "[integration][engine][settings]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"workers", "1"}},
                               .databases = {DatabaseLine(Pg(), kTestDb,
                                                          "pool_mode=transaction pool_size=2")},
                               .users = {"rb_md5 = pool_mode=session"}});
  // rb_scram follows the database: transaction mode, so two of its clients that take turns
  // get the same (warmest) backend.
  PgConn s1 = MustConnect(rb.ConnString("rb_scram"));
  PgConn s2 = MustConnect(rb.ConnString("rb_scram"));
  const std::string s1_pid = s1.Exec("SELECT pg_backend_pid()").Scalar();
  CHECK(s2.Exec("SELECT pg_backend_pid()").Scalar() == s1_pid);
  // rb_md5 follows its [users] entry: session mode. m1's temp table lives on its server;
  // m2 then takes a server and holds it in a transaction. In transaction mode m2 would have
  // taken m1's (the warmest idle one) and m1 would now run on the other, without its table.
  PgConn m1 = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(m1.Exec("CREATE TEMP TABLE sess (v int)").ok);
  REQUIRE(m1.Exec("INSERT INTO sess VALUES (7)").ok);
  const std::string m1_pid = m1.Exec("SELECT pg_backend_pid()").Scalar();
  PgConn m2 = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(m2.Exec("BEGIN").ok);
  CHECK(m2.Exec("SELECT pg_backend_pid()").Scalar() != m1_pid);
  QueryResult v = m1.Exec("SELECT v FROM sess", 10s);
  INFO("m1: [" << v.sqlstate << "] " << v.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(v.ok);
  if (v.ok) CHECK(v.Scalar() == "7");
  CHECK(m1.Exec("SELECT pg_backend_pid()").Scalar() == m1_pid);
  CHECK(m2.Exec("COMMIT").ok);
}

TEST_CASE("max_db_connections, max_user_connections and default_pool_size with reserve_pool_size "
          "hold on PostgreSQL under load over two workers",
          "[integration][engine][settings]") {
  const std::string rb_md5_backends = "usename = 'rb_md5' AND datname = 'rbtest'";
  SECTION("max_db_connections=3 under default_pool_size=10") {
    RingbouncerProcess rb(Pg(), {.settings = {{"max_db_connections", "3"},
                                              {"default_pool_size", "10"},
                                              {"workers", "2"}}});
    int max_seen =
        MaxBackendsDuring(Pg(), rb_md5_backends, [&] { SleepLoad(rb, "rb_md5", "rbtest", 20, 3); });
    INFO("max backends seen: " << max_seen);
    CHECK(max_seen <= 3);
    CHECK(max_seen >= 2);
  }
  SECTION("max_user_connections=2 under default_pool_size=10") {
    RingbouncerProcess rb(Pg(), {.settings = {{"max_user_connections", "2"},
                                              {"default_pool_size", "10"},
                                              {"workers", "2"}}});
    int max_seen =
        MaxBackendsDuring(Pg(), rb_md5_backends, [&] { SleepLoad(rb, "rb_md5", "rbtest", 20, 3); });
    INFO("max backends seen: " << max_seen);
    CHECK(max_seen <= 2);
    CHECK(max_seen >= 1);
  }
  SECTION("default_pool_size=2 plus reserve_pool_size=1 after reserve_pool_timeout") {
    RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "2"},
                                              {"reserve_pool_size", "1"},
                                              {"reserve_pool_timeout", "0.2"},
                                              {"workers", "2"}}});
    int max_seen =
        MaxBackendsDuring(Pg(), rb_md5_backends, [&] { SleepLoad(rb, "rb_md5", "rbtest", 20, 3); });
    INFO("max backends seen: " << max_seen);
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK(max_seen <= 3);
    CHECK(max_seen == 3);  // 20 clients on 2 servers wait far longer than 0.2 s: the reserve opens
  }
}

// PgBouncer's launch_new_connection evicts the longest-idle server of another pool of the same
// database (evict_connection) or user (evict_user_connection) when max_db_connections or
// max_user_connections is reached; without that, a second pool would wait for a server that
// only comes back after server_idle_timeout. With two workers the idle servers may sit on the
// other worker, which is asked through its mailbox.
TEST_CASE("a pool whose database is at max_db_connections gets a server by evicting an idle "
          "one of another pool",
          "[integration][engine][settings]") {
  const std::string workers = GENERATE("1", "2");
  INFO("workers = " << workers);
  RingbouncerProcess rb(Pg(), {.settings = {{"max_db_connections", "2"},
                                            {"client_login_timeout", "5"},
                                            {"query_wait_timeout", "5"},
                                            {"workers", workers}}});
  {
    PgConn a = MustConnect(rb.ConnString("rb_md5"));
    PgConn b = MustConnect(rb.ConnString("rb_md5"));
    REQUIRE(a.Exec("BEGIN").ok);
    REQUIRE(b.Exec("SELECT 1").ok);  // rb_md5's pool now holds both servers of the database
    REQUIRE(a.Exec("COMMIT").ok);
  }
  REQUIRE(CountBackends(Pg(), "datname = 'rbtest' AND usename = 'rb_md5'") == 2);
  // Both are idle now; rb_scram's pool needs one of them closed.
  for (int i = 0; i < 3; ++i) {
    QueryResult other = Query(rb.ConnString("rb_scram"), "SELECT current_user", 15s);
    INFO("[" << other.sqlstate << "] " << other.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK(other.Scalar() == "rb_scram");
  }
  CHECK(CountBackends(Pg(), "datname = 'rbtest' AND usename IN ('rb_md5', 'rb_scram')") <= 2);
  CHECK(rb.LogText().find("closing because: evicted") != std::string::npos);
  // And back: rb_md5 gets a server again, by evicting rb_scram's.
  PgConn a = MustConnect(rb.ConnString("rb_md5"));
  PgConn b = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(a.Exec("BEGIN").ok);
  CHECK(b.Exec("SELECT 1").ok);
  CHECK(a.Exec("COMMIT").ok);
  CHECK(CountBackends(Pg(), "datname = 'rbtest' AND usename IN ('rb_md5', 'rb_scram')") <= 2);
}

TEST_CASE("a pool whose user is at max_user_connections gets a server by evicting an idle one "
          "of the same user's pool for another database entry",
          "[integration][engine][settings]") {
  RingbouncerProcess rb(
      Pg(), {.settings = {{"max_user_connections", "1"},
                          {"client_login_timeout", "5"},
                          {"query_wait_timeout", "5"},
                          {"workers", "2"}},
             .databases = {DatabaseLine(Pg(), kTestDb), DatabaseLine(Pg(), "rbtest_alias")}});
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
  // Another [databases] entry is another pool, though it reaches the same PostgreSQL database.
  QueryResult other = Query(rb.ConnString("rb_md5", "rbtest_alias"), "SELECT 'alias'", 15s);
  INFO("[" << other.sqlstate << "] " << other.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(other.Scalar() == "alias");
  CHECK(rb.LogText().find("closing because: evicted") != std::string::npos);
  CHECK(CountBackends(Pg(), "usename = 'rb_md5'") <= 1);
}

TEST_CASE("min_pool_size keeps servers open while idle, even past server_idle_timeout",
          "[integration][engine][settings]") {
  const std::string where = "usename = 'rb_md5' AND datname = 'rbtest'";
  RingbouncerProcess rb(Pg(), {.settings = {{"min_pool_size", "3"},
                                            {"server_idle_timeout", "1"},
                                            {"workers", "2"}}});
  // The pool exists once a client has used it; then it is filled up to min_pool_size.
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(Eventually([&] { return CountBackends(Pg(), where) == 3; }, 10s, 100ms));
  // Idle for twice server_idle_timeout: still three, not more.
  std::this_thread::sleep_for(2500ms);
  CHECK(CountBackends(Pg(), where) == 3);
}

TEST_CASE("connect_query runs once on every new server connection",
          "[integration][engine][settings]") {
  REQUIRE(Pg().Query("rb_md5", "DROP TABLE IF EXISTS rb_connq; CREATE TABLE rb_connq (pid int)")
              .ok);
  RingbouncerProcess rb(
      Pg(), {.settings = {{"workers", "2"}},
             .databases = {DatabaseLine(
                 Pg(), kTestDb, "connect_query='INSERT INTO rb_connq VALUES (pg_backend_pid())'")}});
  // Three clients in open transactions hold three servers at once.
  std::vector<PgConn> clients;
  std::set<std::string> pids;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(MustConnect(rb.ConnString("rb_md5")));
    REQUIRE(clients.back().Exec("BEGIN").ok);
    pids.insert(clients.back().Exec("SELECT pg_backend_pid()").Scalar());
  }
  INFO("ringbouncer log:\n" << rb.LogTail());
  REQUIRE(pids.size() == 3);
  for (const std::string& pid : pids) {
    INFO("backend " << pid);
    CHECK(clients[0].Exec("SELECT count(*) FROM rb_connq WHERE pid = " + pid).Scalar() == "1");
  }
  for (PgConn& c : clients) CHECK(c.Exec("COMMIT").ok);
  // Reused servers don't run it again: each server's pid is in the table once (a count of
  // rows against a count of backends would race with the pool opening or closing a server).
  for (int i = 0; i < 5; ++i) CHECK(clients[0].Exec("SELECT 1").ok);
  CHECK(Pg().SuperuserQuery("SELECT count(*) - count(DISTINCT pid) FROM rb_connq", kTestDb).Scalar() == "0");
  // And every server ringbouncer has open to rbtest ran it (the superuser's own session is not
  // rb_md5's).
  CHECK(Pg().SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE usename = 'rb_md5' AND "
                            "datname = 'rbtest' AND pid NOT IN (SELECT pid FROM rb_connq)",
                            kTestDb)
            .Scalar() == "0");
}

TEST_CASE("transaction mode: clients with different TimeZone, client_encoding and "
          "application_name sharing one server each keep their own",
          "[integration][engine][settings]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"}, {"workers", "2"}}});
  PgConn a = MustConnect(rb.ConnString("rb_md5", kTestDb,
                                       "application_name=rb_app_a client_encoding=UTF8"));
  PgConn b = MustConnect(rb.ConnString("rb_md5", kTestDb,
                                       "application_name=rb_app_b client_encoding=LATIN1"));
  REQUIRE(a.Exec("SET TimeZone = 'Asia/Tokyo'").ok);
  REQUIRE(b.Exec("SET TimeZone = 'America/New_York'").ok);
  const std::string pid = a.Exec("SELECT pg_backend_pid()").Scalar();
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    CHECK(b.Exec("SELECT pg_backend_pid()").Scalar() == pid);  // one server for both
    CHECK(a.Exec("SHOW TimeZone").Scalar() == "Asia/Tokyo");
    CHECK(b.Exec("SHOW TimeZone").Scalar() == "America/New_York");
    CHECK(a.Exec("SHOW client_encoding").Scalar() == "UTF8");
    CHECK(b.Exec("SHOW client_encoding").Scalar() == "LATIN1");
    CHECK(a.Exec("SHOW application_name").Scalar() == "rb_app_a");
    CHECK(b.Exec("SHOW application_name").Scalar() == "rb_app_b");
  }
  // A value the client set itself inside a transaction block is its own too.
  REQUIRE(b.Exec("BEGIN; SET LOCAL TimeZone = 'UTC'; COMMIT").ok);
  CHECK(b.Exec("SHOW TimeZone").Scalar() == "America/New_York");
  CHECK(a.Exec("SHOW TimeZone").Scalar() == "Asia/Tokyo");
}

TEST_CASE("the * fallback database serves unlisted databases, and a forced user logs in as "
          "itself",
          "[integration][engine][settings]") {
  const std::string pg_addr =
      "host=" + Pg().TcpHost() + " port=" + std::to_string(Pg().Port());
  RingbouncerProcess rb(Pg(), {.databases = {DatabaseLine(Pg()),
                                             "forced = " + pg_addr + " dbname=rbtest user=rb_trust",
                                             "* = " + pg_addr}});
  QueryResult unlisted = Query(rb.ConnString("rb_md5", "postgres"),
                               "SELECT current_database() || ' ' || current_user");
  INFO("unlisted: [" << unlisted.sqlstate << "] " << unlisted.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(unlisted.ok);
  if (unlisted.ok) CHECK(unlisted.Scalar() == "postgres rb_md5");
  // A database PostgreSQL doesn't have either: PostgreSQL's own error comes back.
  QueryResult missing = Query(rb.ConnString("rb_md5", "rb_no_such_db"), "SELECT 1");
  CHECK_FALSE(missing.ok);
  CHECK(Contains(missing.error, "rb_no_such_db"));

  PgConn forced = MustConnect(rb.ConnString("rb_md5", "forced"));
  CHECK(forced.Exec("SELECT current_user || ' ' || session_user || ' ' || current_database()")
            .Scalar() == "rb_trust rb_trust rbtest");
  CHECK(CountBackends(Pg(), "usename = 'rb_trust' AND datname = 'rbtest'") >= 1);
  // The listed database still logs in as the client's user.
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT current_user").Scalar() == "rb_md5");
}

// ---------------------------------------------------------------------------------------------
// The command line, shaped like PgBouncer's (pgbouncer --help).

TEST_CASE("ringbouncer -V prints the version and -h the usage, both exiting 0",
          "[integration][engine][cli]") {
  CommandResult version = RunCommand({RingbouncerPath(), "-V"}, 10s);
  INFO("-V: " << version.out << version.err);
  CHECK(version.exit_code == 0);
  CHECK(Contains(version.out, "ringbouncer "));
  CHECK(version.out.find_first_of("0123456789") != std::string::npos);
  CHECK(RunCommand({RingbouncerPath(), "--version"}, 10s).out == version.out);

  for (const char* flag : {"-h", "--help"}) {
    CommandResult help = RunCommand({RingbouncerPath(), flag}, 10s);
    INFO(flag << ": " << help.out << help.err);
    CHECK(help.exit_code == 0);
    CHECK(Contains(help.out, "Usage:"));
    CHECK(Contains(help.out, "CONFIG_FILE"));
    for (const char* option : {"-d, --daemon", "-q, --quiet", "-v, --verbose",
                               "-u, --user=USERNAME", "-V, --version", "-h, --help"}) {
      CHECK(Contains(help.out, option));
    }
  }
  CommandResult bad = RunCommand({RingbouncerPath(), "--no-such-option"}, 10s);
  CHECK(bad.exit_code != 0);
}

TEST_CASE("ringbouncer -d daemonizes, writes its pidfile, serves, and stops on SIGINT",
          "[integration][engine][cli]") {
  TempDir dir("rb-daemon");
  const int port = FreeTcpPort();
  std::string ini = "[databases]\n" + DatabaseLine(Pg()) + "\n[pgbouncer]\n";
  for (const auto& [key, value] : DefaultRingbouncerSettings()) ini += key + " = " + value + "\n";
  ini += "listen_port = " + std::to_string(port) + "\n";
  ini += "unix_socket_dir = " + dir.Path() + "\n";
  ini += "auth_file = " + dir.File("userlist.txt") + "\n";
  ini += "pidfile = " + dir.File("rb.pid") + "\n";
  ini += "logfile = " + dir.File("rb.log") + "\n";
  std::string userlist;
  for (const std::string& line : DefaultUserlist(Pg())) userlist += line + "\n";
  dir.WriteFile("userlist.txt", userlist);
  const std::string config = dir.WriteFile("pgbouncer.ini", ini);

  // Without a pidfile, -d is refused (PgBouncer: "daemon needs pidfile configured").
  std::string no_pidfile = ini.substr(0, ini.find("pidfile = "));
  CommandResult refused =
      RunCommand({RingbouncerPath(), "-d", dir.WriteFile("nopid.ini", no_pidfile)}, 20s);
  CHECK(refused.exit_code != 0);
  CHECK(Contains(refused.out + refused.err, "pidfile"));

  const auto start = Clock::now();
  CommandResult launched = RunCommand({RingbouncerPath(), "-d", config}, 20s);
  INFO("ringbouncer -d: " << launched.out << launched.err);
  REQUIRE(launched.exit_code == 0);
  pid_t pid = 0;
  REQUIRE(Eventually(
      [&] {
        if (!std::filesystem::exists(dir.File("rb.pid"))) return false;
        try {
          pid = std::stoi(ReadFile(dir.File("rb.pid")));
        } catch (const std::exception&) {
          return false;
        }
        return pid > 0;
      },
      20s));
  // Whatever happens next, the daemon does not outlive the test.
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (ProcessAlive(pid)) kill(pid, SIGKILL);
    }
  } reaper{pid};
  INFO("daemon pid " << pid);
  CHECK(ProcessAlive(pid));
  CHECK(Clock::now() - start < 20s);
  REQUIRE(WaitForTcpPort("127.0.0.1", port, 20s));
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port) +
                               " user=rb_md5 password=md5pass dbname=rbtest";
  CHECK(Query(conninfo, "SELECT 42").Scalar() == "42");
  CHECK(Contains(ReadFile(dir.File("rb.log")), "listening on"));

  kill(pid, SIGINT);
  CHECK(Eventually([&] { return !ProcessAlive(pid); }, 15s, 100ms));
  CHECK_FALSE(std::filesystem::exists(dir.File("rb.pid")));
}

TEST_CASE("ringbouncer -q logs to its logfile only, not to stderr", "[integration][engine][cli]") {
  TempDir dir("rb-quiet");
  const std::string logfile = dir.File("rb.log");
  RingbouncerProcess quiet(Pg(), {.settings = {{"logfile", logfile}}, .extra_args = {"-q"}});
  CHECK(Query(quiet.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
  REQUIRE(Eventually([&] { return std::filesystem::exists(logfile) &&
                                  Contains(ReadFile(logfile), "listening on"); },
                     10s));
  INFO("quiet stderr/stdout:\n" << quiet.LogText());
  CHECK_FALSE(Contains(quiet.LogText(), "listening on"));

  // Without -q the same lines go to stderr as well (PgBouncer: logfile does not silence it).
  RingbouncerProcess loud(Pg(), {.settings = {{"logfile", dir.File("rb2.log")}}});
  CHECK(Eventually([&] { return Contains(loud.LogText(), "listening on"); }, 10s));
}

}  // namespace
}  // namespace rb::test
