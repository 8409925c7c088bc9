// Failures on either side of a linked pair: a client that leaves mid-transaction or
// mid-message must never leave a dirty server in the pool; a server that dies must give its
// client an error, not a hang, and the pool must recover.
#include <chrono>
#include <string>
#include <thread>

#include "tests/catch.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/raw_client.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

PgCluster& Pg() {
  static PgCluster cluster;
  return cluster;
}

std::string Scalar(PgConn& conn, const std::string& sql) {
  QueryResult r = conn.Exec(sql, 20s);
  return r.ok && !r.rows.empty() ? r.rows[0][0] : "error: [" + r.sqlstate + "] " + r.error;
}

bool BackendGone(PgConn& superuser, const std::string& pid) {
  return Eventually(
      [&] {
        QueryResult r =
            superuser.Exec("SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid);
        return r.ok && r.Scalar() == "0";
      },
      20s, 50ms);
}

// The state column of SHOW SERVERS, one per line, through the admin console on the unix socket
// (the process's own user may log in as pgbouncer there).
std::string ServerStates(const RingbouncerProcess& rb) {
  QueryResult r = Query("host=" + rb.SocketDir() + " port=" + std::to_string(rb.Port()) +
                            " dbname=pgbouncer user=pgbouncer connect_timeout=20",
                        "SHOW SERVERS");
  if (!r.ok) return "error: " + r.error;
  std::string out;
  for (size_t c = 0; c < r.columns.size(); ++c) {
    if (r.columns[c] != "state") continue;
    for (const auto& row : r.rows) out += row[c] + "\n";
  }
  return out;
}

TEST_CASE("a client that disconnects mid-transaction leaves no open transaction and no row "
          "behind",
          "[integration][engine][disconnect]") {
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString(kTestDb));
  REQUIRE(superuser.Ok());
  REQUIRE(superuser
              .Exec("SET client_min_messages = warning; DROP TABLE IF EXISTS rb_dirty; "
                    "CREATE TABLE rb_dirty(v int); GRANT ALL ON rb_dirty TO PUBLIC")
              .ok);
  // One server for the whole pool (over 4 workers): the next client must get that server, or
  // its replacement, and it must be clean.
  std::string mode = GENERATE(as<std::string>{}, "transaction", "session");
  INFO("pool_mode " << mode);
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"}, {"pool_mode", mode}}});

  for (int round = 0; round < 8; ++round) {
    const bool abrupt = round % 2 == 0;  // a vanished socket, or libpq's Terminate
    INFO("round " << round << (abrupt ? ": socket closed" : ": Terminate sent"));
    {
      PgConn leaver = PgConn::Connect(rb.ConnString("rb_md5"));
      REQUIRE(leaver.Ok());
      REQUIRE(leaver.Exec("BEGIN").ok);
      REQUIRE(leaver.Exec("INSERT INTO rb_dirty VALUES (" + std::to_string(round) + ")").ok);
      if (abrupt) RawClient::Adopt(std::move(leaver)).Close();
      // else: PQfinish sends Terminate ('X') in the middle of the transaction
    }
    PgConn next = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(next.Ok());
    // now() is the transaction's start; it equals statement_timestamp() only in a transaction
    // that this statement began.
    CHECK(Scalar(next, "SELECT now() = statement_timestamp()") == "t");
    CHECK(Scalar(next, "SELECT txid_current_if_assigned() IS NULL") == "t");
    CHECK(Scalar(next, "SELECT count(*) FROM rb_dirty") == "0");
    INFO("ringbouncer log:\n" << rb.LogTail());
  }
  // Nobody is left idle in a transaction, and the rows were rolled back.
  CHECK(Eventually(
      [&] {
        return Scalar(superuser,
                      "SELECT count(*) FROM pg_stat_activity WHERE datname = 'rbtest' AND "
                      "state LIKE 'idle in transaction%'") == "0";
      },
      20s, 50ms));
  CHECK(Scalar(superuser, "SELECT count(*) FROM rb_dirty") == "0");
}

TEST_CASE("session mode resets a server's session state before the next client gets it",
          "[integration][engine][disconnect]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"},
                                            {"pool_mode", "session"}}});
  PgConn direct = PgConn::Connect(Pg().ConnString("rb_md5"));  // PostgreSQL itself
  const std::string default_work_mem = Scalar(direct, "SHOW work_mem");
  for (int round = 0; round < 4; ++round) {
    INFO("round " << round);
    {
      PgConn first = PgConn::Connect(rb.ConnString("rb_md5"));
      REQUIRE(first.Ok());
      REQUIRE(first.Exec("SET work_mem = '7MB'").ok);
      REQUIRE(first.Exec("PREPARE rb_p AS SELECT 1").ok);
      REQUIRE(first.Exec("CREATE TEMP TABLE rb_temp(v int)").ok);
      REQUIRE(Scalar(first, "SHOW work_mem") == "7MB");
    }  // a clean goodbye: the server goes back to the pool after server_reset_query
    PgConn next = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(next.Ok());
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK(Scalar(next, "SHOW work_mem") == default_work_mem);
    CHECK(Scalar(next, "SELECT count(*) FROM pg_prepared_statements") == "0");
    CHECK(Scalar(next, "SELECT count(*) FROM pg_class WHERE relname = 'rb_temp'") == "0");
  }
}

TEST_CASE("a client that vanishes in the middle of a message gets its server closed, not reused",
          "[integration][engine][disconnect]") {
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"}}});

  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(client.Ok());
    // The pool's only server, as PostgreSQL knows it.
    const std::string pid = Scalar(client, "SELECT pg_backend_pid()");
    REQUIRE(pid.find("error") == std::string::npos);

    // Half a Query message: the header promises about 100 bytes of body, 20 come. Ringbouncer
    // links the server and forwards what it has; PostgreSQL waits for the rest.
    std::string query = RawClient::QueryMessage("SELECT 1 /*" + std::string(84, 'p') + "*/");
    RawClient raw = RawClient::Adopt(std::move(client));
    REQUIRE(raw.Send(query.substr(0, 25)));
    // The admin console says when the server is linked (it may come from another worker).
    CHECK(Eventually([&] { return ServerStates(rb).find("active") != std::string::npos; }, 10s,
                     20ms));
    std::this_thread::sleep_for(100ms);  // and the bytes on their way
    raw.Close();

    // Reused, that server would take the next client's query as the rest of the message.
    PgConn next = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(next.Ok());
    QueryResult r = next.Exec("SELECT 'clean', pg_backend_pid()", 15s);
    INFO("[" << r.sqlstate << "] " << r.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    REQUIRE(r.ok);
    CHECK(r.rows[0][0] == "clean");
    CHECK(r.rows[0][1] != pid);
    CHECK(BackendGone(superuser, pid));
  }
}

TEST_CASE("a client that leaves before its answer comes never lets the answer reach the next "
          "client",
          "[integration][engine][disconnect]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"}}});
  for (int round = 0; round < 6; ++round) {
    INFO("round " << round);
    {
      PgConn leaver = PgConn::Connect(rb.ConnString("rb_md5"));
      REQUIRE(leaver.Ok());
      RawClient raw = RawClient::Adopt(std::move(leaver));
      // A whole query, then gone (half-close after a Terminate, or a bare close).
      REQUIRE(raw.Send(RawClient::QueryMessage("SELECT 'leaked' FROM pg_sleep(0.3)")));
      if (round % 2 == 0) raw.Send(RawClient::TypedMessage('X', ""));
      raw.Close();
    }
    PgConn next = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(next.Ok());
    QueryResult r = next.Exec("SELECT 'mine'", 15s);
    INFO("[" << r.sqlstate << "] " << r.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    REQUIRE(r.ok);
    CHECK(r.Scalar() == "mine");
    CHECK(Scalar(next, "SELECT 'again'") == "again");
  }
}

TEST_CASE("a server killed under a client in a transaction gives it an error and the pool "
          "recovers",
          "[integration][engine][disconnect]") {
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  std::string mode = GENERATE(as<std::string>{}, "transaction", "session");
  INFO("pool_mode " << mode);
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "2"}, {"pool_mode", mode}}});

  SECTION("idle in transaction") {
    PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(client.Ok());
    REQUIRE(client.Exec("BEGIN").ok);
    const std::string pid = Scalar(client, "SELECT pg_backend_pid()");
    REQUIRE(Scalar(superuser, "SELECT pg_terminate_backend(" + pid + ")") == "t");
    REQUIRE(BackendGone(superuser, pid));

    const auto start = Clock::now();
    QueryResult r = client.Exec("SELECT 1", 20s);
    INFO("[" << r.sqlstate << "] " << r.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK_FALSE(r.ok);
    CHECK(r.error != "timeout");
    // ringbouncer's "server conn crashed?" (08006), or PostgreSQL's own FATAL if it got
    // through first (57P01 admin_shutdown).
    CHECK((r.sqlstate == "08006" || r.sqlstate == "57P01"));
    CHECK(Clock::now() - start < 10s);
  }

  SECTION("in the middle of a query") {
    PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(client.Ok());
    REQUIRE(client.Exec("BEGIN").ok);
    const std::string pid = Scalar(client, "SELECT pg_backend_pid()");
    REQUIRE(client.Send("SELECT pg_sleep(30)"));
    REQUIRE(Eventually(
        [&] {
          return Scalar(superuser, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid +
                                       " AND query = 'SELECT pg_sleep(30)'") == "1";
        },
        20s, 20ms));
    REQUIRE(Scalar(superuser, "SELECT pg_terminate_backend(" + pid + ")") == "t");
    QueryResult r = client.Finish(20s);
    INFO("[" << r.sqlstate << "] " << r.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK_FALSE(r.ok);
    CHECK(r.error != "timeout");
    CHECK((r.sqlstate == "08006" || r.sqlstate == "57P01"));
  }

  // The pool recovers: new clients get working servers (several, to go through both slots).
  for (int i = 0; i < 4; ++i) {
    QueryResult r = Query(rb.ConnString("rb_md5"), "SELECT 7", 20s);
    INFO("after the kill, query " << i << ": [" << r.sqlstate << "] " << r.error);
    INFO("ringbouncer log:\n" << rb.LogTail());
    REQUIRE(r.ok);
    CHECK(r.Scalar() == "7");
  }
  CHECK(rb.Running());
}

}  // namespace
}  // namespace rb::test
