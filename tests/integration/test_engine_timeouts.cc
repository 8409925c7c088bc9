// PgBouncer's timeouts through ringbouncer against a real PostgreSQL: query_timeout,
// idle_transaction_timeout, client_idle_timeout, server_idle_timeout, server_lifetime,
// server_check_query/server_check_delay, server_connect_timeout and server_login_retry. Every
// test asserts the lower bound strictly (nothing happens before its time) and the upper bound
// generously (a loaded 2-core host, a 100 ms timer wheel).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
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

// The client was cut off as PgBouncer does it: FATAL 08P01 `message`, then the connection
// closed, after `after` (since the timeout's start) within [at_least, at_least + 3 s].
void CheckCutOff(const RawOutcome& outcome, const std::string& message, std::chrono::milliseconds after,
                 std::chrono::milliseconds at_least) {
  CHECK(outcome.error);
  CHECK(outcome.severity == "FATAL");
  CHECK(outcome.sqlstate == "08P01");
  CHECK(outcome.message == message);
  CHECK(outcome.closed);
  CHECK(after >= at_least);
  CHECK(after <= at_least + 3200ms);
}

// PostgreSQL's own count of rb_md5's backends in rbtest: the server connections ringbouncer
// holds (the tests' direct connections are postgres's).
int ServerCount(const PgCluster& pg) {
  return std::stoi(pg.SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE usename = "
                                     "'rb_md5' AND datname = 'rbtest'")
                       .Scalar());
}

// A PgConn that must have logged in.
PgConn MustConnect(const std::string& conninfo) {
  PgConn conn = PgConn::Connect(conninfo);
  if (!conn.Ok()) throw std::runtime_error("connect failed: " + conn.Error());
  return conn;
}

// A TCP listener on 127.0.0.1 for a fake "server": with accept_and_close, every connection is
// counted and closed at once (a server that drops each login); without it, nothing is ever
// accepted, so the kernel completes the handshake and the login then hangs.
class FakeServer {
 public:
  explicit FakeServer(bool accept_and_close) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd_, 64) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("FakeServer: cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    if (accept_and_close) {
      thread_ = std::thread([this] {
        while (!stop_.load()) {
          int c = accept(fd_, nullptr, nullptr);
          if (c < 0) continue;
          if (!stop_.load()) accepted_.fetch_add(1);
          close(c);
        }
      });
    }
  }
  ~FakeServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);  // wakes the accept
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  int Port() const { return port_; }
  int Accepted() const { return accepted_.load(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST_CASE("query_timeout cuts a long query off with FATAL query timeout, and the server is "
          "not reused dirty",
          "[integration][engine][timeouts]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"query_timeout", "1"},
                                            {"default_pool_size", "1"},
                                            {"workers", "2"}}});
  PgConn bystander = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(bystander.Exec("SELECT 1").Scalar() == "1");

  RawClient sleeper = RawClient::Adopt(MustConnect(rb.ConnString("rb_md5")));
  const auto sent_at = Clock::now();
  REQUIRE(sleeper.Send(RawClient::QueryMessage("SELECT pg_sleep(5)")));
  // The pool's only server is busy: the bystander queues behind the sleeper.
  std::this_thread::sleep_for(200ms);
  REQUIRE(bystander.Send("SELECT 2"));

  const auto read_from = Clock::now();
  RawOutcome outcome = sleeper.ReadUntilErrorOrClose(10s);
  const auto cut_after = (read_from - sent_at) + outcome.elapsed;  // since the query was sent
  INFO(outcome.Describe());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CheckCutOff(outcome, "query timeout", std::chrono::duration_cast<std::chrono::milliseconds>(cut_after), 900ms);
  CHECK(Contains(rb.LogText(), "closing because: query timeout"));

  // The queued client gets a clean server, and in time.
  QueryResult queued = bystander.Finish(10s);
  INFO("bystander: [" << queued.sqlstate << "] " << queued.error);
  CHECK(queued.ok);
  if (queued.ok) CHECK(queued.Scalar() == "2");
  // No transaction left open on whatever server the next client gets, and the timed-out
  // query no longer runs on PostgreSQL (it was cancelled, not left sleeping for 5 s).
  PgConn next = MustConnect(rb.ConnString("rb_md5"));
  CHECK(next.Exec("SELECT now() = statement_timestamp()").Scalar() == "t");
  CHECK(Eventually(
      [&] {
        return Pg().SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE query = "
                                   "'SELECT pg_sleep(5)' AND state = 'active'")
                   .Scalar() == "0";
      },
      3s));
  CHECK(bystander.Exec("SELECT 3").Scalar() == "3");
}

TEST_CASE("idle_transaction_timeout disconnects a client idle in BEGIN, not one idle outside "
          "a transaction",
          "[integration][engine][timeouts]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"idle_transaction_timeout", "1"}}});
  PgConn outside = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(outside.Exec("SELECT 1").ok);

  PgConn in_tx = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(in_tx.Exec("BEGIN").ok);
  REQUIRE(in_tx.Exec("SELECT 1").ok);
  RawClient idle = RawClient::Adopt(std::move(in_tx));
  RawOutcome outcome = idle.ReadUntilErrorOrClose(10s);
  INFO(outcome.Describe());
  INFO("ringbouncer log:\n" << rb.LogTail());
  // The SELECT before the adopt took a little of the second: 800 ms at least.
  CheckCutOff(outcome, "idle transaction timeout", outcome.elapsed, 800ms);

  // The client that was idle outside a transaction for as long is still there, and the
  // server of the killed transaction did not come back with the transaction open.
  CHECK(outside.Exec("SELECT 2").Scalar() == "2");
  for (int i = 0; i < 3; ++i) {
    PgConn next = MustConnect(rb.ConnString("rb_md5"));
    CHECK(next.Exec("SELECT now() = statement_timestamp()").Scalar() == "t");
  }
}

TEST_CASE("client_idle_timeout disconnects an idle logged-in client with FATAL "
          "client_idle_timeout",
          "[integration][engine][timeouts]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"client_idle_timeout", "1"}}});
  PgConn conn = MustConnect(rb.ConnString("rb_md5"));
  REQUIRE(conn.Exec("SELECT 1").ok);
  RawClient idle = RawClient::Adopt(std::move(conn));
  RawOutcome outcome = idle.ReadUntilErrorOrClose(10s);
  INFO(outcome.Describe());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CheckCutOff(outcome, "client_idle_timeout", outcome.elapsed, 800ms);

  // A client that keeps talking is not idle: queries every 300 ms for 2 s all work.
  PgConn busy = MustConnect(rb.ConnString("rb_md5"));
  for (int i = 0; i < 7; ++i) {
    INFO("query " << i);
    REQUIRE(busy.Exec("SELECT 1").ok);
    std::this_thread::sleep_for(300ms);
  }
}

TEST_CASE("server_idle_timeout closes an unused server connection and clients keep working",
          "[integration][engine][timeouts]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"server_idle_timeout", "1"}, {"workers", "1"}}});
  PgConn conn = MustConnect(rb.ConnString("rb_md5"));
  const std::string first_pid = conn.Exec("SELECT pg_backend_pid()").Scalar();
  const auto used_at = Clock::now();
  CHECK(ServerCount(Pg()) == 1);
  // Gone after the timeout, not before.
  REQUIRE(Eventually([&] { return ServerCount(Pg()) == 0; }, 6s, 100ms));
  const auto gone_after = Clock::now() - used_at;
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(gone_after >= 900ms);
  CHECK(Contains(rb.LogText(), "server idle timeout"));
  // The client did not notice, beyond getting a new server.
  CHECK(conn.Exec("SELECT pg_backend_pid()").Scalar() != first_pid);
}

TEST_CASE("server_lifetime closes a server connection when it is next released, and clients "
          "keep working",
          "[integration][engine][timeouts]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"server_lifetime", "1"},
                                            {"default_pool_size", "1"},
                                            {"workers", "1"}}});
  PgConn conn = MustConnect(rb.ConnString("rb_md5"));
  std::vector<std::pair<std::chrono::milliseconds, std::string>> pids;  // (time, backend)
  const auto start = Clock::now();
  while (Clock::now() - start < 2500ms) {
    QueryResult r = conn.Exec("SELECT pg_backend_pid()");
    INFO("[" << r.sqlstate << "] " << r.error);
    REQUIRE(r.ok);
    pids.emplace_back(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start),
                      r.Scalar());
    std::this_thread::sleep_for(50ms);
  }
  std::set<std::string> distinct;
  std::chrono::milliseconds first_change{-1};
  for (const auto& [at, pid] : pids) {
    if (!distinct.empty() && !distinct.count(pid) && first_change.count() < 0) first_change = at;
    distinct.insert(pid);
  }
  INFO("backends: " << distinct.size() << ", first change at " << first_change.count() << " ms");
  INFO("ringbouncer log:\n" << rb.LogTail());
  // 2.5 s of a busy client on a 1 s lifetime: a new backend at least once, never before 1 s.
  CHECK(distinct.size() >= 2);
  CHECK(distinct.size() <= 4);
  CHECK(first_change >= 900ms);
  CHECK(Contains(rb.LogText(), "server lifetime over"));
  // An idle server is closed at its lifetime as well.
  CHECK(Eventually([&] { return ServerCount(Pg()) == 0; }, 5s, 100ms));
}

TEST_CASE("server_check_query runs on a server idle for longer than server_check_delay, "
          "before the client's query",
          "[integration][engine][timeouts]") {
  REQUIRE(Pg().Query("rb_md5", "DROP SEQUENCE IF EXISTS rb_check_seq; CREATE SEQUENCE "
                               "rb_check_seq")
              .ok);
  auto check_count = [] {
    QueryResult r = Pg().SuperuserQuery(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM rb_check_seq", "rbtest");
    return std::stoi(r.Scalar());
  };
  RingbouncerProcess rb(Pg(), {.settings = {{"server_check_query", "SELECT nextval('rb_check_seq')"},
                                            {"server_check_delay", "1"},
                                            {"workers", "1"}}});
  PgConn conn = MustConnect(rb.ConnString("rb_md5"));
  // A fresh server, then one used a moment ago: no check.
  REQUIRE(conn.Exec("SELECT 1").ok);
  REQUIRE(conn.Exec("SELECT 1").ok);
  CHECK(check_count() == 0);
  // Idle longer than server_check_delay: checked once before the query goes.
  std::this_thread::sleep_for(1500ms);
  QueryResult after = conn.Exec("SELECT 'after'");
  INFO("[" << after.sqlstate << "] " << after.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(after.ok);
  CHECK(after.Scalar() == "after");  // the check's own result never reaches the client
  CHECK(check_count() == 1);
  REQUIRE(conn.Exec("SELECT 1").ok);
  CHECK(check_count() == 1);
}

TEST_CASE("server_connect_timeout ends a login that gets no answer; the waiting client gets "
          "client_login_timeout (server down), later ones the cached error at once",
          "[integration][engine][timeouts]") {
  FakeServer silent(/*accept_and_close=*/false);
  RingbouncerProcess rb(Pg(), {.settings = {{"server_connect_timeout", "1"},
                                            {"server_login_retry", "10"},
                                            {"client_login_timeout", "3"},
                                            {"workers", "1"}},
                               .databases = {"silent = host=127.0.0.1 port=" +
                                                 std::to_string(silent.Port()) + " dbname=rbtest",
                                             DatabaseLine(Pg())}});
  // PgBouncer fails no waiting client for a connect failure: the first client waits for the
  // next attempt (server_login_retry away) until its client_login_timeout.
  auto start = Clock::now();
  PgConn first = PgConn::Connect(rb.ConnString("rb_md5", "silent"), 30s);
  auto elapsed = Clock::now() - start;
  INFO("first: " << first.Error());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK_FALSE(first.Ok());
  CHECK(first.SqlState() == "08P01");
  CHECK(Contains(first.Error(), "client_login_timeout (server down)"));
  CHECK(elapsed >= 2500ms);
  CHECK(elapsed <= 3s + 4s);
  // The login itself was given up at server_connect_timeout.
  CHECK(Contains(rb.LogText(), "connect timeout"));

  // Until a login works, a new client is not queued: it gets the cached error at once
  // (08P01, "... (server_login_retry)").
  start = Clock::now();
  PgConn second = PgConn::Connect(rb.ConnString("rb_md5", "silent"), 30s);
  elapsed = Clock::now() - start;
  INFO("second: " << second.Error());
  CHECK_FALSE(second.Ok());
  CHECK(second.SqlState() == "08P01");
  CHECK(Contains(second.Error(), "server login has been failing, cached error: connect timeout"));
  CHECK(Contains(second.Error(), "(server_login_retry)"));
  CHECK(elapsed < 900ms);
  // The other database is not affected.
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

TEST_CASE("server_login_retry spaces out logins to a server that keeps failing them",
          "[integration][engine][timeouts]") {
  FakeServer dropper(/*accept_and_close=*/true);
  RingbouncerProcess rb(Pg(), {.settings = {{"server_login_retry", "1"},
                                            {"client_login_timeout", "2"},
                                            {"workers", "2"}},
                               .databases = {"dropper = host=127.0.0.1 port=" +
                                                 std::to_string(dropper.Port()) + " dbname=rbtest",
                                             DatabaseLine(Pg())}});
  // Clients keep coming for 4 s (one every 50 ms); each fails: the first when its
  // client_login_timeout ends its wait for a login, the others at once with the cached error.
  const auto start = Clock::now();
  int clients = 0;
  int failed = 0;
  std::string last_error;
  while (Clock::now() - start < 4s) {
    PgConn conn = PgConn::Connect(rb.ConnString("rb_md5", "dropper"), 10s);
    ++clients;
    if (!conn.Ok()) {
      ++failed;
      last_error = conn.Error();
    }
    std::this_thread::sleep_for(50ms);
  }
  const double seconds =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count() / 1000.0;
  const int attempts = dropper.Accepted();
  INFO(clients << " clients in " << seconds << " s, " << attempts << " logins reached the server; "
               << "last error: " << last_error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(failed == clients);
  CHECK(Contains(last_error, "server login has been failing, cached error: "));
  CHECK(attempts >= 1);
  // At most one login per server_login_retry per worker (each worker holds its share of the
  // pool), plus the first ones.
  CHECK(attempts <= 2 * (static_cast<int>(seconds) + 2));
  CHECK(attempts < clients);
}

}  // namespace
}  // namespace rb::test
