// Cancel requests through ringbouncer (DESIGN.md decision 6): the client's BackendKeyData is
// ringbouncer's own; a CancelRequest may land on any worker (a new TCP connection, spread by
// SO_REUSEPORT), which passes it to the owner, which cancels on the real server.
#include <chrono>
#include <string>

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

// True once PostgreSQL runs `sql` in an active backend.
bool WaitActive(PgConn& superuser, const std::string& sql,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return Eventually(
      [&] {
        QueryResult r = superuser.Exec(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = " +
            SqlLiteral(sql));
        return r.ok && r.Scalar() != "0";
      },
      timeout, 10ms);
}

// How many forwarded CancelRequests PostgreSQL has finished with: ringbouncer logs one line when
// PostgreSQL closes a cancel connection, which it does after it has signalled the backend.
int CancelsDone(const RingbouncerProcess& rb) {
  const std::string log = rb.LogText();
  int n = 0;
  for (size_t at = log.find("successfully sent cancel request"); at != std::string::npos;
       at = log.find("successfully sent cancel request", at + 1)) {
    ++n;
  }
  return n;
}

// One round: `sql` (a 30 s sleep) on a fresh client, cancelled with PQcancel once PostgreSQL runs
// it; it must end with 57014 within 1 s. Then the round waits until PostgreSQL is done with the
// cancel, so that each round measures only its own cancel (the next test covers the overlap).
void CancelRound(RingbouncerProcess& rb, PgConn& superuser, const std::string& conninfo,
                 const std::string& sql, int round) {
  PgConn client = PgConn::Connect(conninfo);
  INFO("round " << round << ": " << client.Error());
  REQUIRE(client.Ok());
  REQUIRE(client.Send(sql));
  if (!WaitActive(superuser, sql)) {
    QueryResult lost = client.Finish(2s);
    FAIL("the query was never seen running; its result: ok="
         << lost.ok << " [" << lost.sqlstate << "] " << lost.error << "\nringbouncer log:\n"
         << rb.LogTail());
  }
  const int done_before = CancelsDone(rb);
  const auto start = Clock::now();
  std::string error;
  CHECK(client.Cancel(&error));
  INFO("PQcancel: " << error);
  QueryResult r = client.Finish(10s);
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  INFO("[" << r.sqlstate << "] " << r.error << " after " << elapsed.count() << " ms");
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(r.ok);
  CHECK(r.sqlstate == "57014");
  CHECK(elapsed < 1s);
  CHECK(Eventually([&] { return CancelsDone(rb) > done_before; }, 10s, 5ms));
  // The client is still usable after its query was cancelled.
  CHECK(client.Exec("SELECT 1").Scalar() == "1");
}

TEST_CASE("PQcancel through ringbouncer cancels SELECT pg_sleep(30) within 1 s, 20 times in a row",
          "[integration][engine][cancel]") {
  // A new client each round, so that both the query's worker and the cancel's worker (a new TCP
  // connection, placed by SO_REUSEPORT) vary.
  RingbouncerProcess rb(Pg(), {.settings = {{"workers", "4"}}});
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  for (int i = 0; i < 20; ++i) {
    CancelRound(rb, superuser, rb.ConnString("rb_md5"),
                "SELECT pg_sleep(30) /* round " + std::to_string(i) + " */", i);
  }
}

TEST_CASE("PQcancel over the unix socket cancels a query whose client came over the unix "
          "socket, 10 times in a row",
          "[integration][engine][cancel]") {
  // The unix socket is accepted by one worker and handed to another (MSG_RING fd passing), for
  // the query's connection and for the cancel's alike.
  RingbouncerProcess rb(Pg(), {.settings = {{"workers", "4"}}});
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  for (int i = 0; i < 10; ++i) {
    CancelRound(rb, superuser, rb.UnixConnString("rb_md5"),
                "SELECT pg_sleep(30) /* unix round " + std::to_string(i) + " */", i);
  }
}

// Regression (fixed in 039edca): a forwarded cancel could cancel the next query on the same
// server. PostgreSQL signals a cancelled backend twice (SIGINT to its pid, then to its process
// group: signal_child() in postmaster.c), and the second one can land after the cancelled
// query's error is back. So a server whose cancel is in flight stays out of the pool
// (sv_being_canceled) until PostgreSQL has closed the cancel connection, as in PgBouncer 1.18+
// (pgbouncer#717). Straight to PostgreSQL (PQcancel waits for that close) this loop never loses
// a query; through ringbouncer before the fix it lost several in 60 rounds.
TEST_CASE("a cancel never cancels the query that follows it on the same server",
          "[integration][engine][cancel]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"workers", "1"}, {"default_pool_size", "1"}}});
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(client.Ok());
  std::string lost;
  for (int i = 0; i < 60; ++i) {
    const std::string sql = "SELECT pg_sleep(30) /* tight round " + std::to_string(i) + " */";
    REQUIRE(client.Send(sql));
    if (!WaitActive(superuser, sql, 3s)) {
      // Cancelled before we even saw it run, and before its own cancel was sent.
      QueryResult r = client.Finish(5s);
      lost += "round " + std::to_string(i) + ": [" + r.sqlstate + "] " + r.error + "\n";
      continue;
    }
    REQUIRE(client.Cancel());
    QueryResult r = client.Finish(10s);
    REQUIRE(r.sqlstate == "57014");
    REQUIRE(client.Exec("SELECT 1").Scalar() == "1");
  }
  INFO("queries cancelled by an earlier round's cancel:\n" << lost);
  INFO("ringbouncer log:\n" << rb.LogTail(3000));
  CHECK(lost.empty());
}

TEST_CASE("a cancel for a client that has no server is ignored, and cancels nobody else",
          "[integration][engine][cancel]") {
  // One server: the idle client's last server is the one the busy client runs on now. A cancel
  // that went to "the server this client had" would hit the other client's query.
  RingbouncerProcess rb(Pg(), {.settings = {{"default_pool_size", "1"}}});
  PgConn superuser = PgConn::Connect(Pg().SuperuserConnString());
  REQUIRE(superuser.Ok());
  PgConn idle = PgConn::Connect(rb.ConnString("rb_md5"));
  PgConn busy = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(idle.Ok());
  REQUIRE(busy.Ok());
  REQUIRE(idle.Exec("SELECT 1").Scalar() == "1");  // it had the server; now it has none

  const std::string sql = "SELECT 'done' FROM pg_sleep(1.5)";
  REQUIRE(busy.Send(sql));
  REQUIRE(WaitActive(superuser, sql));
  std::string error;
  CHECK(idle.Cancel(&error));  // sent; ringbouncer must drop it
  INFO("PQcancel: " << error);
  QueryResult r = busy.Finish(20s);
  INFO("[" << r.sqlstate << "] " << r.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(r.ok);
  if (r.ok) CHECK(r.Scalar() == "done");

  // Both clients keep working, and so does a cancel with a key nobody has (a stranger's).
  CHECK(idle.Exec("SELECT 2").Scalar() == "2");
  CHECK(busy.Exec("SELECT 3").Scalar() == "3");
  {
    RawClient stranger = RawClient::Connect(rb.Host(), rb.Port());
    stranger.Send(RawClient::Int32(16) + RawClient::Int32(80877102) +
                  RawClient::Int32(0x12345678) + RawClient::Int32(0x9abcdef0));
    RawOutcome o = stranger.ReadUntilErrorOrClose(10s);
    INFO(o.Describe());
    CHECK(o.closed);  // a cancel connection gets no answer, just a close
  }
  CHECK(idle.Exec("SELECT 4").Scalar() == "4");
  CHECK(rb.Running());
}

}  // namespace
}  // namespace rb::test
