// PostgreSQL restarting under load: clients get errors while it is down, and once it is back
// they work again through the same ringbouncer, which is never restarted.
#include <chrono>
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

TEST_CASE("PostgreSQL restarting under pgbench -c 20 gives errors, then works again without "
          "restarting ringbouncer",
          "[integration][engine][restart]") {
  PgCluster pg(PgClusterOptions{.pgbench = true});
  RingbouncerProcess rb(pg);
  const pid_t rb_pid = rb.Pid();
  const pid_t old_postmaster = pg.PostmasterPid();

  std::vector<std::string> args = {PgBinDir() + "/pgbench"};
  for (const std::string& a : rb.PgbenchArgs()) args.push_back(a);
  for (const char* a : {"-n", "-c", "20", "-j", "2", "-T", "8"}) args.emplace_back(a);
  args.emplace_back(kTestDb);
  Subprocess during(SubprocessOptions{.argv = args, .env = rb.PasswordEnv()});
  std::this_thread::sleep_for(2500ms);
  pg.Restart("fast");
  REQUIRE(pg.PostmasterPid() != old_postmaster);
  std::optional<int> during_exit = during.Wait(120s);
  if (!during_exit) during.KillAndWait();
  PgbenchResult during_result = ParsePgbenchOutput(during.Stdout() + during.Stderr());
  INFO("pgbench during the restart (exit " << (during_exit ? *during_exit : -1000) << "):\n"
                                           << during_result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  // It ends (clients get errors or carry on), it doesn't hang.
  CHECK(during_exit.has_value());
  // The restart did reach the clients (pgbench aborts a client on a FATAL).
  CHECK((during_exit != 0 || during_result.output.find("FATAL") != std::string::npos));

  // The same ringbouncer process serves again, with no failure at all.
  CHECK(rb.Running());
  CHECK(rb.Pid() == rb_pid);
  QueryResult first = Query(rb.ConnString("rb_md5"), "SELECT 1", 60s);
  INFO("first query after the restart: [" << first.sqlstate << "] " << first.error);
  CHECK(first.ok);
  args.erase(args.begin());
  args[args.size() - 2] = "3";  // -T 3
  PgbenchResult after = RunPgbench(args, rb.PasswordEnv(), 120s);
  INFO("pgbench after the restart:\n" << after.output);
  CHECK(after.exit_code == 0);
  CHECK(after.parsed);
  CHECK(after.failed == 0);
  CHECK(after.transactions > 0);
  CHECK(rb.Running());
}

}  // namespace
}  // namespace rb::test
