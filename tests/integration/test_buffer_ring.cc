// The worker's receive buffers are lent, never kept: a client that waits for a server parks
// its request in scratch memory, so no number of waiting clients can empty the buffer ring.
// (Regression: with the request kept in its ring buffer, a thousand clients queued on a pool
// of two pinned every buffer, the servers' replies had nowhere to land, and the worker
// stopped.)
#include <fstream>
#include <string>
#include <vector>

#include "tests/catch.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

TEST_CASE("a thousand clients queued on a pool of two don't starve one worker's buffer ring",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"workers", "1"},
                                          {"pool_mode", "transaction"},
                                          {"default_pool_size", "2"},
                                          {"max_client_conn", "1500"},
                                          {"query_wait_timeout", "120"}}});
  TempDir dir("rb-ring");
  std::string script = dir.Path() + "/select1.sql";
  std::ofstream(script) << "SELECT 1;\n";

  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-c", "1000", "-j", "4", "-T", "5", "-f"}) args.emplace_back(a);
  args.push_back(script);
  args.emplace_back(kTestDb);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(), 180s);
  INFO("pgbench:\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.parsed);
  CHECK(result.failed == 0);
  // Every client got through several times: the worker kept serving the whole time.
  CHECK(result.transactions > 5000);
  CHECK(rb.Running());
}

}  // namespace
}  // namespace rb::test
