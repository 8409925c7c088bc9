// Untrusted bytes (DESIGN.md decision 12): junk, oversized lengths, protocol 2, half messages
// and slowloris logins each get an ErrorResponse with an SQLSTATE, or a close, and nobody else
// notices: a pgbench -c 50 through the same port ends with no failed transaction.
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kLoginTimeoutSeconds = 3;
constexpr int kMaxPacketSize = 65536;

// How long a bad client may wait for its error or close: the login timeout (for junk that
// looks like the start of a long packet) plus generous slack for a loaded host.
constexpr auto kAnswerTimeout = std::chrono::seconds(kLoginTimeoutSeconds + 10);

std::string StartupFor(const std::string& user) {
  return RawClient::StartupMessage({{"user", user}, {"database", std::string(kTestDb)}});
}

// One kind of bad client: does its thing on a fresh connection and says what it saw.
struct BadClient {
  std::string name;
  std::function<RawOutcome(const RingbouncerProcess&, int round)> run;
  bool expect_error = false;  // an ErrorResponse is owed, not just a close
};

RawClient LoggedIn(const RingbouncerProcess& rb) {
  PgConn conn = PgConn::Connect(rb.ConnString("rb_md5"));
  if (!conn.Ok()) throw std::runtime_error("login failed: " + conn.Error());
  return RawClient::Adopt(std::move(conn));
}

std::vector<BadClient> BadClients() {
  return {
      {"garbage startup bytes",
       [](const RingbouncerProcess& rb, int round) {
         std::mt19937 rng(static_cast<unsigned>(round) * 7919u + 1u);
         std::string junk(8 + rng() % 500, '\0');
         for (char& c : junk) c = static_cast<char>(rng());
         RawClient c = RawClient::Connect(rb.Host(), rb.Port());
         c.Send(junk);
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       }},
      {"startup packet longer than 10000 bytes",
       [](const RingbouncerProcess& rb, int) {
         RawClient c = RawClient::Connect(rb.Host(), rb.Port());
         std::string packet = RawClient::Int32(20000) + RawClient::Int32(196608) + "user";
         c.Send(packet);
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       },
       true},
      {"protocol 2 startup packet",
       [](const RingbouncerProcess& rb, int) {
         RawClient c = RawClient::Connect(rb.Host(), rb.Port());
         c.Send(RawClient::StartupMessage({{"user", "rb_md5"}, {"database", "rbtest"}},
                                          0x00020000));
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       },
       true},
      {"typed message over max_packet_size after login",
       [](const RingbouncerProcess& rb, int) {
         RawClient c = LoggedIn(rb);
         c.Send("Q" + RawClient::Int32(kMaxPacketSize * 4) + "SELECT 1");
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       },
       true},
      {"truncated startup packet, then close",
       [](const RingbouncerProcess& rb, int round) {
         RawClient c = RawClient::Connect(rb.Host(), rb.Port());
         std::string packet = StartupFor("rb_md5");
         c.Send(packet.substr(0, 1 + static_cast<size_t>(round) % (packet.size() - 1)));
         c.ShutdownWrite();
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       }},
      {"truncated query after login, then close",
       [](const RingbouncerProcess& rb, int round) {
         RawClient c = LoggedIn(rb);
         std::string query = RawClient::QueryMessage("SELECT 'never finished'");
         c.Send(query.substr(0, 1 + static_cast<size_t>(round) % (query.size() - 1)));
         c.ShutdownWrite();
         return c.ReadUntilErrorOrClose(kAnswerTimeout);
       }},
      {"slowloris login, one byte a second",
       [](const RingbouncerProcess& rb, int) {
         RawClient c = RawClient::Connect(rb.Host(), rb.Port());
         std::string packet = StartupFor("rb_md5");
         const auto start = Clock::now();
         RawOutcome outcome;
         for (size_t i = 0; i < packet.size(); ++i) {
           if (!c.Send(packet.substr(i, 1))) break;
           // Wait a second for an answer before the next byte.
           outcome = c.ReadUntilErrorOrClose(1s);
           if (!outcome.timed_out) break;
           if (Clock::now() - start > kAnswerTimeout) break;
         }
         outcome.elapsed =
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
         return outcome;
       }},
  };
}

TEST_CASE("junk, oversized, truncated and slowloris clients get an error or a close while "
          "pgbench -c 50 on the same port has no failed transaction",
          "[integration][engine][bad-input]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"client_login_timeout",
                                           std::to_string(kLoginTimeoutSeconds)},
                                          {"max_packet_size", std::to_string(kMaxPacketSize)}}});
  const pid_t rb_pid = rb.Pid();

  std::vector<std::string> args = {PgBinDir() + "/pgbench"};
  for (const std::string& a : rb.PgbenchArgs()) args.push_back(a);
  for (const char* a : {"-n", "-c", "50", "-j", "2", "-T", "12"}) args.emplace_back(a);
  args.emplace_back(kTestDb);
  Subprocess bench(SubprocessOptions{.argv = args, .env = rb.PasswordEnv()});

  // Every kind of bad client hammers the port from its own thread until pgbench is done.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, int> rounds;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (const BadClient& bad : BadClients()) {
    threads.emplace_back([&, bad] {
      for (int round = 0; !stop.load(); ++round) {
        RawOutcome o;
        std::string problem;
        try {
          o = bad.run(rb, round);
          if (o.timed_out) problem = "neither an error nor a close";
          if (o.error && o.sqlstate.empty()) problem = "an ErrorResponse without SQLSTATE";
          if (bad.expect_error && !o.error) problem = "no ErrorResponse";
        } catch (const std::exception& e) {
          problem = std::string("exception: ") + e.what();
        }
        std::lock_guard<std::mutex> lock(mu);
        ++rounds[bad.name];
        if (!problem.empty() && failures.size() < 20) {
          failures.push_back(bad.name + " (round " + std::to_string(round) + "): " + problem +
                             "; " + o.Describe());
        }
        // Hammer, but leave the shared host some ports and CPU: tens of rounds a second each.
        std::this_thread::sleep_for(20ms);
      }
    });
  }
  std::optional<int> bench_exit = bench.Wait(180s);
  stop = true;
  for (std::thread& t : threads) t.join();
  if (!bench_exit) bench.KillAndWait();
  PgbenchResult result = ParsePgbenchOutput(bench.Stdout() + bench.Stderr());

  std::string summary;
  for (const auto& [name, n] : rounds) summary += "  " + name + ": " + std::to_string(n) + "\n";
  std::string failed;
  for (const std::string& f : failures) failed += "  " + f + "\n";
  INFO("bad clients:\n" << summary);
  INFO("failures:\n" << failed);
  INFO("pgbench:\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(failures.empty());
  CHECK(rounds.size() == BadClients().size());
  CHECK(bench_exit == 0);
  CHECK(result.parsed);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
  CHECK(ProcessAlive(rb_pid));
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
}

TEST_CASE("a slowloris login is closed at client_login_timeout",
          "[integration][engine][bad-input]") {
  RingbouncerProcess rb(
      PgCluster::Shared(),
      {.settings = {{"client_login_timeout", std::to_string(kLoginTimeoutSeconds)}}});
  RawClient c = RawClient::Connect(rb.Host(), rb.Port());
  std::string packet = StartupFor("rb_md5");
  const auto start = Clock::now();
  RawOutcome outcome;
  for (size_t i = 0; i < packet.size(); ++i) {
    if (!c.Send(packet.substr(i, 1))) break;
    outcome = c.ReadUntilErrorOrClose(1s);
    if (!outcome.timed_out) break;
  }
  auto elapsed = Clock::now() - start;
  INFO(outcome.Describe());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK((outcome.error || outcome.closed));
  if (outcome.error) CHECK(outcome.message.find("client_login_timeout") != std::string::npos);
  CHECK(elapsed >= std::chrono::seconds(kLoginTimeoutSeconds) - 500ms);
  CHECK(elapsed <= std::chrono::seconds(kLoginTimeoutSeconds) + 4s);
}

}  // namespace
}  // namespace rb::test
