// PgBouncer's login and pooling errors, as libpq (and a bare socket) sees them through
// ringbouncer: the SQLSTATE and the words scripts match on.
#include <chrono>
#include <string>
#include <vector>

#include "tests/catch.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A cluster without the pgbench tables: these tests don't need them.
PgCluster& Pg() {
  static PgCluster cluster;
  return cluster;
}

TEST_CASE("an unknown database gets 3D000 no such database", "[integration][engine]") {
  RingbouncerProcess rb(Pg());
  PgConn conn = PgConn::Connect(rb.ConnString("rb_md5", "nosuchdb"));
  INFO(conn.Error());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(conn.Ok());
  CHECK(conn.SqlState() == "3D000");
  CHECK(Contains(conn.Error(), "no such database: nosuchdb"));
  // The pooler is still fine for a database it knows.
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

TEST_CASE("a wrong md5 password gets 28P01", "[integration][engine]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "md5"}}});
  PgConn conn = PgConn::Connect(rb.ConnString("rb_md5", kTestDb, "password=wrong"));
  INFO(conn.Error());
  CHECK_FALSE(conn.Ok());
  CHECK(conn.SqlState() == "28P01");
  // PgBouncer's words: "password authentication failed" (no user name).
  CHECK(Contains(conn.Error(), "password authentication failed"));

  // An unknown user gets the same answer, so that user names can't be probed.
  PgConn stranger = PgConn::Connect(rb.ConnString("nobody", kTestDb, "password=x"));
  INFO(stranger.Error());
  CHECK_FALSE(stranger.Ok());
  CHECK(stranger.SqlState() == "28P01");

  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

TEST_CASE("a wrong SCRAM password gets 28P01", "[integration][engine]") {
  // Both auth_type scram-sha-256, and md5 with a SCRAM secret (which switches to SCRAM).
  for (const char* auth_type : {"scram-sha-256", "md5"}) {
    RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", auth_type}}});
    PgConn conn = PgConn::Connect(rb.ConnString("rb_scram", kTestDb, "password=wrong"));
    INFO("auth_type " << auth_type << ": " << conn.Error());
    CHECK_FALSE(conn.Ok());
    CHECK(conn.SqlState() == "28P01");
    // PgBouncer says "SASL authentication failed" here.
    CHECK(Contains(conn.Error(), "authentication failed"));
    CHECK(Query(rb.ConnString("rb_scram"), "SELECT current_user").Scalar() == "rb_scram");
  }
}

TEST_CASE("max_client_conn reached gets 53300 no more connections allowed",
          "[integration][engine]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"max_client_conn", "3"}}});
  std::vector<PgConn> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(PgConn::Connect(rb.ConnString("rb_md5")));
    INFO(held.back().Error());
    REQUIRE(held.back().Ok());
  }
  PgConn fourth = PgConn::Connect(rb.ConnString("rb_md5"));
  INFO(fourth.Error());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(fourth.Ok());
  CHECK(fourth.SqlState() == "53300");
  CHECK(Contains(fourth.Error(), "no more connections allowed (max_client_conn)"));
  // The ones inside keep working, and a slot that frees up can be taken again.
  CHECK(held[0].Exec("SELECT 1").Scalar() == "1");
  held.pop_back();
  CHECK(Eventually([&] { return PgConn::Connect(rb.ConnString("rb_md5")).Ok(); }, 10s, 100ms));
}

TEST_CASE("a client that sends nothing is closed at client_login_timeout",
          "[integration][engine]") {
  // tcp_defer_accept (on by default, as in PgBouncer) keeps a connection that has sent nothing
  // in the kernel, out of ringbouncer's sight, for up to 45 s: turn it off to see the timer.
  RingbouncerProcess rb(Pg(), {.settings = {{"client_login_timeout", "2"},
                                            {"tcp_defer_accept", "0"}}});
  RawClient silent = RawClient::Connect(rb.Host(), rb.Port());
  RawOutcome outcome = silent.ReadUntilErrorOrClose(30s);
  INFO(outcome.Describe());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(outcome.closed);
  CHECK_FALSE(outcome.timed_out);
  if (outcome.error) CHECK(Contains(outcome.message, "client_login_timeout"));
  // Not before the timeout, and not long after it (the timer wheel's tick plus a loaded host).
  CHECK(outcome.elapsed >= 1500ms);
  CHECK(outcome.elapsed <= 2s + 4s);
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

TEST_CASE("a client that waits longer than query_wait_timeout for a server gets "
          "query_wait_timeout",
          "[integration][engine]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"},
                                            {"query_wait_timeout", "2"}}});
  PgConn holder = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(holder.Ok());
  REQUIRE(holder.Exec("BEGIN").ok);
  REQUIRE(holder.Exec("SELECT 1").ok);  // the pool's only server is now in this transaction

  PgConn waiter = PgConn::Connect(rb.ConnString("rb_md5"));
  INFO(waiter.Error());
  REQUIRE(waiter.Ok());
  const auto start = Clock::now();
  QueryResult waited = waiter.Exec("SELECT 1", 30s);
  const auto elapsed = Clock::now() - start;
  INFO("[" << waited.sqlstate << "] " << waited.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(waited.ok);
  CHECK(Contains(waited.error, "query_wait_timeout"));
  CHECK_FALSE(waited.sqlstate.empty());
  CHECK(elapsed >= 1500ms);
  CHECK(elapsed <= 2s + 4s);

  // The holder was not disturbed, and once it is done the server serves others again.
  CHECK(holder.Exec("SELECT 2").Scalar() == "2");
  CHECK(holder.Exec("COMMIT").ok);
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 3").Scalar() == "3");
}

TEST_CASE("a server login that fails reaches the client as an error, not a hang",
          "[integration][engine]") {
  // trust for clients, and a wrong password for ringbouncer's own login to PostgreSQL.
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "trust"}},
                               .userlist = {UserlistPlain("rb_md5", "wrong")}});
  for (int i = 0; i < 3; ++i) {
    PgConn conn = PgConn::Connect(rb.ConnString("rb_md5"), 30s);
    INFO("attempt " << i << ": " << conn.Error());
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK_FALSE(conn.Ok());
    CHECK(Contains(conn.Error(), "password authentication failed"));
    CHECK_FALSE(conn.SqlState().empty());
  }
}

TEST_CASE("a database whose server refuses connections gives its clients an error",
          "[integration][engine]") {
  const int nothing_there = FreeTcpPort();
  // As under PgBouncer, a refused connect does not fail the clients waiting for the pool's
  // first login: they wait for the next try, up to client_login_timeout ("(server down)").
  RingbouncerProcess rb(Pg(), {.settings = {{"client_login_timeout", "3"}},
                               .databases = {"nowhere = host=127.0.0.1 port=" +
                                             std::to_string(nothing_there) + " dbname=rbtest",
                                             DatabaseLine(Pg())}});
  const auto start = Clock::now();
  PgConn conn = PgConn::Connect(rb.ConnString("rb_md5", "nowhere"), 30s);
  INFO(conn.Error());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(conn.Ok());
  CHECK_FALSE(conn.SqlState().empty());
  CHECK(Clock::now() - start < 20s);
  // The other database is not affected.
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

}  // namespace
}  // namespace rb::test
