// Proves the harness every integration test stands on: tools/pgtmp's cluster through PgCluster,
// its roles and hba rules, the libpq client's SQLSTATEs, pgbench parsing, and that nothing is
// left running afterwards, even when the test process dies.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

// The pids whose parent is `parent` (the postmaster's backends and helpers).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream status(entry.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("PPid:", 0) == 0) {
        if (std::stoi(line.substr(5)) == parent) out.push_back(std::stoi(name));
        break;
      }
    }
  }
  return out;
}

// Polls until `done` holds or `timeout` passes; returns the last `done()`.
template <typename F>
bool Eventually(F done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

TEST_CASE("PgCluster: the test roles log in over TCP with md5, SCRAM and trust") {
  PgCluster& pg = PgCluster::Shared();
  for (const PgUser& user : {kMd5User, kScramUser, kTrustUser}) {
    INFO("user " << user.name);
    QueryResult result = pg.Query(user.name, "SELECT current_user, current_database()");
    REQUIRE(result.ok);
    CHECK(result.rows[0][0] == user.name);
    CHECK(result.rows[0][1] == kTestDb);
  }
  // The server really asked for what pg_hba says: ask it which rule matched this connection.
  QueryResult rules = pg.SuperuserQuery(
      "SELECT user_name[1], auth_method FROM pg_hba_file_rules WHERE type = 'host' "
      "ORDER BY line_number");
  REQUIRE(rules.ok);
  REQUIRE(rules.rows.size() == 4);
  CHECK(rules.rows[0] == std::vector<std::string>{"rb_md5", "md5"});
  CHECK(rules.rows[1] == std::vector<std::string>{"rb_scram", "scram-sha-256"});
  CHECK(rules.rows[2] == std::vector<std::string>{"rb_trust", "trust"});
  CHECK(rules.rows[3] == std::vector<std::string>{"all", "md5"});
}

TEST_CASE("PgCluster: roles log in over the unix socket, postgres only there") {
  PgCluster& pg = PgCluster::Shared();
  CHECK(WaitForUnixSocket(pg.SocketPath(), 1s));
  QueryResult md5 = Query(pg.ConnString("rb_md5", kTestDb, Transport::kUnix),
                          "SELECT current_user, inet_server_addr() IS NULL");
  REQUIRE(md5.ok);
  CHECK(md5.rows[0] == std::vector<std::string>{"rb_md5", "t"});  // no server address: a socket
  CHECK(pg.SuperuserQuery("SELECT current_setting('is_superuser')").Scalar() == "on");
  // postgres has no password, and TCP falls under --hba (md5): refused.
  QueryResult tcp = Query(pg.ConnString("postgres", "postgres", Transport::kTcp), "SELECT 1");
  CHECK_FALSE(tcp.ok);
}

TEST_CASE("PgCluster: a wrong password fails with SQLSTATE 28P01") {
  PgCluster& pg = PgCluster::Shared();
  for (const PgUser& user : {kMd5User, kScramUser}) {
    for (Transport transport : {Transport::kTcp, Transport::kUnix}) {
      INFO("user " << user.name << (transport == Transport::kTcp ? " over TCP" : " over unix"));
      PgConn conn = PgConn::Connect(pg.ConnString(user.name, kTestDb, transport, "password=wrong"));
      CHECK_FALSE(conn.Ok());
      CHECK(conn.SqlState() == "28P01");
      CHECK(conn.Error().find("password authentication failed") != std::string::npos);
    }
  }
  // And a query error keeps its SQLSTATE too.
  QueryResult missing = pg.Query("rb_trust", "SELECT * FROM no_such_table");
  CHECK_FALSE(missing.ok);
  CHECK(missing.sqlstate == "42P01");
}

TEST_CASE("PgCluster: stored secrets are md5 and SCRAM, ready for userlist.txt") {
  PgCluster& pg = PgCluster::Shared();
  std::string md5 = pg.StoredSecret("rb_md5");
  CHECK(md5.rfind("md5", 0) == 0);
  CHECK(md5.size() == 35);  // "md5" + 32 hex digits of md5(password + user)
  CHECK(pg.StoredSecret("rb_scram").rfind("SCRAM-SHA-256$4096:", 0) == 0);
  CHECK(pg.StoredSecret("rb_trust").empty());
  CHECK(pg.UserlistEntry("rb_md5") == "\"rb_md5\" \"" + md5 + "\"");
  CHECK_THROWS(pg.StoredSecret("no_such_role"));
}

TEST_CASE("PgCluster: pgbench runs for 2 seconds with no failed transactions") {
  PgCluster& pg = PgCluster::Shared();
  PgbenchResult bench = RunPgbench(
      {"-h", pg.TcpHost(), "-p", std::to_string(pg.Port()), "-U", "rb_scram", "-c", "4", "-j", "2",
       "-T", "2", "-n", std::string(kTestDb)},
      {"PGPASSWORD=scrampass"});
  INFO(bench.output);
  REQUIRE(bench.exit_code == 0);
  REQUIRE(bench.parsed);
  CHECK(bench.transactions > 0);
  CHECK(bench.failed == 0);
  CHECK(bench.tps > 0);
  CHECK(bench.latency_avg_ms > 0);
}

TEST_CASE("PgCluster: destroying the fixture stops PostgreSQL and removes its directory") {
  std::string dir;
  pid_t postmaster = -1;
  std::vector<pid_t> backends;
  {
    PgCluster pg(PgClusterOptions{.hba = "scram", .max_connections = 20});
    dir = pg.Dir();
    postmaster = pg.PostmasterPid();
    REQUIRE(postmaster > 0);
    REQUIRE(ProcessAlive(postmaster));
    REQUIRE(pg.Query("rb_trust", "SELECT 1").Scalar() == "1");
    CHECK(pg.SuperuserQuery("SHOW max_connections").Scalar() == "20");
    // --hba scram: a role without its own rule must use SCRAM; postgres has no password.
    CHECK(Query(pg.ConnString("postgres", "postgres", Transport::kTcp, "password=x"), "SELECT 1")
              .sqlstate == "28P01");
    PgConn held = PgConn::Connect(pg.ConnString("rb_md5"));  // a live backend at destruction
    REQUIRE(held.Ok());
    backends = ChildrenOf(postmaster);
    REQUIRE(backends.size() >= 4);  // checkpointer, writers, launchers, our backend
  }
  CHECK_FALSE(std::filesystem::exists(dir));
  // pg_ctl returns once postmaster.pid is gone, a moment before the process itself; backends
  // notice the postmaster's death on their own. Give both a moment.
  CHECK(Eventually([&] { return !ProcessAlive(postmaster); }, 10s));
  CHECK(Eventually(
      [&] {
        for (pid_t pid : backends) {
          if (ProcessAlive(pid)) return false;
        }
        return true;
      },
      10s));
}

TEST_CASE("pgtmp: the watchdog stops the cluster once its owner process dies") {
  Subprocess owner({"sleep", "300"});
  TempDir parent("rb-wd", /*chown_to_postgres=*/true);  // postgres must reach DIR
  const std::string dir = parent.File("pg");
  CommandResult started = RunCommand(
      {PgtmpPath(), "start", dir, "--owner-pid", std::to_string(owner.Pid()), "--hba", "trust"},
      180s);
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CHECK(started.out.find("PGHOST=" + dir + "\n") != std::string::npos);
  CHECK(RunCommand({PgtmpPath(), "env", dir}).out == started.out);
  pid_t postmaster = -1;
  std::ifstream(dir + "/data/postmaster.pid") >> postmaster;
  REQUIRE(postmaster > 0);

  owner.KillAndWait();  // as if the test process had crashed
  CHECK(Eventually([&] { return !std::filesystem::exists(dir); }, 20s));
  CHECK(Eventually([&] { return !ProcessAlive(postmaster); }, 10s));
  // stop after the watchdog did it is harmless
  CHECK(RunCommand({PgtmpPath(), "stop", dir}).exit_code == 0);
}

TEST_CASE("pgtmp: refuses a directory it can't use and leaves it alone") {
  TempDir dir("rb-notempty");
  dir.WriteFile("keep", "x");
  CommandResult started = RunCommand({PgtmpPath(), "start", dir.Path()});
  CHECK(started.exit_code != 0);
  CHECK(started.err.find("not empty") != std::string::npos);
  CommandResult stopped = RunCommand({PgtmpPath(), "stop", dir.Path()});
  CHECK(stopped.exit_code != 0);  // not a pgtmp directory: no rm -rf
  CHECK(std::filesystem::exists(dir.File("keep")));
}

}  // namespace
}  // namespace rb::test
