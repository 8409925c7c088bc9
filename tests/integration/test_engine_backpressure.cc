// DESIGN.md decision 4: a client that stops reading while its server streams a large result
// stops the server's stream (its recv is not re-armed); ringbouncer does not buffer the result,
// and other clients are served meanwhile.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
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

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

constexpr long kRssLimitKiB = 64 * 1024;

TEST_CASE("a client that stops reading a 1 GB result keeps ringbouncer under 64 MiB RSS while "
          "others are served",
          "[integration][engine][backpressure]") {
  PgCluster& pg = PgCluster::Shared();  // pgbench tables for the other clients
  RingbouncerProcess rb(pg);
  // Warm up: pools, buffers and a few servers exist before the baseline is taken.
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
  const long baseline_kib = rb.RssKiB();

  // The stalled client: logged in by libpq, then it sends a 1 GB query on the bare socket and
  // never reads.
  PgConn login = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(login.Ok());
  RawClient stalled = RawClient::Adopt(std::move(login));
  stalled.SetReceiveBuffer(4096);
  REQUIRE(stalled.Send(
      RawClient::QueryMessage("SELECT repeat('x', 1000) FROM generate_series(1, 1000000)")));

  // Meanwhile, ten other clients for five seconds.
  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-S", "-c", "10", "-j", "2", "-T", "5"}) args.emplace_back(a);
  args.emplace_back(kTestDb);
  PgbenchResult bench;
  std::thread others([&] { bench = RunPgbench(args, rb.PasswordEnv(), 120s); });

  long max_kib = 0;
  int samples = 0;
  const auto end = Clock::now() + 10s;
  while (Clock::now() < end) {
    long kib = rb.RssKiB();
    if (kib < 0) break;  // the process is gone: the checks below say so
    max_kib = std::max(max_kib, kib);
    ++samples;
    std::this_thread::sleep_for(100ms);
  }
  others.join();

  // The server is still held up by the stalled client, not finished: nothing was buffered.
  PgConn superuser = PgConn::Connect(pg.SuperuserConnString());
  QueryResult streaming = superuser.Exec(
      "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
      "'SELECT repeat(''x'', 1000)%'");

  INFO("RSS baseline " << baseline_kib << " KiB, max " << max_kib << " KiB over " << samples
                       << " samples");
  INFO("pgbench:\n" << bench.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(rb.Running());
  CHECK(samples > 50);
  if (kSanitized) {
    // ASan's shadow memory and quarantine: bound the growth instead of the total.
    CHECK(max_kib - baseline_kib < kRssLimitKiB);
  } else {
    CHECK(max_kib < kRssLimitKiB);
  }
  CHECK(bench.exit_code == 0);
  CHECK(bench.failed == 0);
  CHECK(bench.transactions > 0);
  CHECK(streaming.ok);
  if (streaming.ok) CHECK(streaming.Scalar() == "1");

  // The stalled client goes away; its server is not reused mid-result, and all is well.
  stalled.Close();
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 42").Scalar() == "42");
  CHECK(Eventually(
      [&] {
        QueryResult r = superuser.Exec(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
            "'SELECT repeat(''x'', 1000)%' AND state = 'active'");
        return r.ok && r.Scalar() == "0";
      },
      30s, 100ms));
}

}  // namespace
}  // namespace rb::test
