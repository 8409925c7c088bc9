// DESIGN.md decision 3: pools are sharded over the workers, and the limits stay global. 500
// clients on 4 workers with default_pool_size=10 must never see an 11th server connection on
// PostgreSQL, however the workers lend servers to each other.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

TEST_CASE("500 clients in transaction mode never make more than default_pool_size=10 server "
          "connections",
          "[integration][engine]") {
  PgCluster pg;
  RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "transaction"},
                                          {"default_pool_size", "10"},
                                          {"workers", "4"},
                                          {"max_client_conn", "1000"}}});
  TempDir dir("rb-pool-limit");
  std::string script = dir.WriteFile("sleep.sql", "SELECT pg_sleep(0.01);\n");

  // The sampler: PostgreSQL's own count of rb_md5's backends in rbtest, every 20 ms.
  PgConn sampler = PgConn::Connect(pg.SuperuserConnString());
  REQUIRE(sampler.Ok());
  std::atomic<bool> stop{false};
  std::atomic<int> max_seen{0};
  std::atomic<int> samples{0};
  std::atomic<int> failed_samples{0};
  std::thread sampling([&] {
    while (!stop.load()) {
      QueryResult r = sampler.Exec(
          "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rb_md5' AND datname = 'rbtest'",
          5s);
      if (r.ok) {
        int n = std::stoi(r.Scalar());
        int seen = max_seen.load();
        while (n > seen && !max_seen.compare_exchange_weak(seen, n)) {
        }
        ++samples;
      } else {
        ++failed_samples;
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-c", "500", "-j", "4", "-T", "5", "-f"}) args.emplace_back(a);
  args.push_back(script);
  args.emplace_back(kTestDb);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(), 180s);
  stop = true;
  sampling.join();

  INFO("pgbench:\n" << result.output);
  INFO("samples " << samples.load() << " (failed " << failed_samples.load() << "), max "
                  << max_seen.load());
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.parsed);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
  CHECK(samples.load() > 50);
  CHECK(max_seen.load() <= 10);
  CHECK(max_seen.load() >= 1);  // the sampler did see the load
}

}  // namespace
}  // namespace rb::test
