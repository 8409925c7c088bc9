// The process, port and parsing helpers of rb_test_support, without PostgreSQL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

TEST_CASE("RunCommand returns the exit code and both outputs") {
  CommandResult result = RunCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(result.exit_code == 3);
  CHECK_FALSE(result.timed_out);
  CHECK(result.out == "out\n");
  CHECK(result.err == "err\n");

  CommandResult env = RunCommand({"sh", "-c", "echo $RB_X"}, 10s, {"RB_X=hello"});
  CHECK(env.out == "hello\n");
}

TEST_CASE("RunCommand kills a command that outlives its timeout") {
  auto start = std::chrono::steady_clock::now();
  CommandResult result = RunCommand({"sleep", "30"}, 200ms);
  CHECK(result.timed_out);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("Subprocess reports a program that can't be run") {
  std::string error;
  try {
    Subprocess process({"/nonexistent/program"});
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  CHECK(error.find("No such file") != std::string::npos);
}

TEST_CASE("Subprocess waits, signals, and kills its whole group when destroyed") {
  pid_t grandchild = -1;
  {
    Subprocess shell({"sh", "-c", "sleep 300 & echo $!; wait"});
    REQUIRE(shell.WaitForOutput("\n", 5s));
    grandchild = std::stoi(shell.Stdout());
    CHECK(shell.Running());
    CHECK_FALSE(shell.Wait(50ms).has_value());
    REQUIRE(ProcessAlive(grandchild));
  }
  // The destructor killed the group: the grandchild too (it may linger as a zombie briefly).
  for (int i = 0; i < 100 && ProcessAlive(grandchild); ++i) usleep(20000);
  CHECK_FALSE(ProcessAlive(grandchild));

  Subprocess sleeper({"sleep", "300"});
  sleeper.Kill(SIGTERM);
  CHECK(sleeper.Wait(5s) == -SIGTERM);

  Subprocess cat(SubprocessOptions{.argv = {"cat"}, .stdin_data = "fed through stdin"});
  CHECK(cat.Wait(5s) == 0);
  CHECK(cat.Stdout() == "fed through stdin");
}

TEST_CASE("FreeTcpPort and WaitForTcpPort find a port and see a listener") {
  int port = FreeTcpPort();
  CHECK(port > 0);
  CHECK_FALSE(WaitForTcpPort("127.0.0.1", port, 50ms));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(fd, 8) == 0);
  CHECK(WaitForTcpPort("127.0.0.1", port, 10s));
  close(fd);
}

TEST_CASE("TempDir is removed with its contents") {
  std::string path;
  {
    TempDir dir("rb-tempdir", /*chown_to_postgres=*/true);
    path = dir.Path();
    CHECK(path.rfind("/tmp/rb-tempdir-", 0) == 0);
    CHECK(ReadFile(dir.WriteFile("a.txt", "abc")) == "abc");
    std::filesystem::create_directories(dir.File("sub/deeper"));
  }
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("ParsePgbenchOutput reads pgbench 15's summary") {
  const char* output =
      "pgbench (15.18 (Debian 15.18-0+deb12u1))\n"
      "transaction type: <builtin: TPC-B (sort of)>\n"
      "scaling factor: 1\n"
      "query mode: simple\n"
      "number of clients: 4\n"
      "number of threads: 2\n"
      "maximum number of tries: 1\n"
      "duration: 2 s\n"
      "number of transactions actually processed: 2514\n"
      "number of failed transactions: 3 (0.119%)\n"
      "latency average = 3.178 ms\n"
      "initial connection time = 10.402 ms\n"
      "tps = 1258.636190 (without initial connection time)\n";
  PgbenchResult result = ParsePgbenchOutput(output);
  CHECK(result.parsed);
  CHECK(result.transactions == 2514);
  CHECK(result.failed == 3);
  CHECK(std::abs(result.latency_avg_ms - 3.178) < 1e-9);
  CHECK(std::abs(result.tps - 1258.636190) < 1e-6);

  CHECK_FALSE(ParsePgbenchOutput("pgbench: error: connection refused\n").parsed);
}

TEST_CASE("SqlStateFromMessage finds the code in libpq's verbose messages") {
  CHECK(SqlStateFromMessage("connection to server at \"127.0.0.1\", port 5 failed: FATAL:  28P01: "
                            "password authentication failed for user \"x\"") == "28P01");
  CHECK(SqlStateFromMessage("ERROR:  42P01: relation \"t\" does not exist") == "42P01");
  CHECK(SqlStateFromMessage("FATAL:  password authentication failed") == "");
  CHECK(ConnInfoQuote("it's a\\b") == "'it\\'s a\\\\b'");
}

TEST_CASE("paths point into the source and build trees") {
  CHECK(std::filesystem::exists(PgtmpPath()));
  CHECK(std::filesystem::exists(SourceDir() + "/CMakeLists.txt"));
  CHECK(std::filesystem::exists(BinaryDir() + "/CMakeCache.txt"));
  CHECK(RingbouncerPath() == BinaryDir() + "/engine/ringbouncer");
  CHECK(std::filesystem::exists(PgBinDir() + "/pgbench"));
}

}  // namespace
}  // namespace rb::test
