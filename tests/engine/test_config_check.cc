// RunConfigCheck: the body of `ringbouncer --check -c FILE`.
#include <unistd.h>

#include <sstream>
#include <string>

#include "engine/config_check.h"
#include "tests/catch.h"
#include "tests/engine/test_config_util.h"

namespace rb::engine {
namespace {

using testing::TempDir;

TEST_CASE("check on a valid config exits 0 and prints warnings and a summary", "[config][check]") {
  TempDir dir;
  dir.Write("users.txt", "\"alice\" \"secret\"\n\"bob\" \"pw\"\n");
  const std::string path = dir.Write("pgbouncer.ini",
                                     "[databases]\n"
                                     "app = host=db1\n"
                                     "* = host=db2\n"
                                     "[pgbouncer]\n"
                                     "auth_file = users.txt\n"
                                     "pkt_buf = 8192\n");
  std::ostringstream out;
  CHECK(RunConfigCheck(path, out, LoadOptions{.working_dir = dir.path()}) == 0);
  CHECK(out.str() ==
        "warning: " + path + ":6: \"pkt_buf\" has no effect in ringbouncer; ignored\n" + path +
            ": OK, 1 warning; 2 databases, 2 users in auth_file\n");
}

TEST_CASE("check on a broken config exits 1 and lists every error", "[config][check]") {
  TempDir dir;
  const std::string path = dir.Write("pgbouncer.ini",
                                     "[pgbouncer]\n"
                                     "auth_type = any\n"
                                     "listen_port = abc\n"
                                     "client_tls_sslmode = require\n"
                                     "pool_mode = fast\n");
  std::ostringstream out;
  CHECK(RunConfigCheck(path, out) == 1);
  CHECK(out.str() ==
        "warning: " + path + ":4: \"client_tls_sslmode\" is not supported yet by ringbouncer; ignored\n" +
            "error: " + path + ":3: invalid value \"abc\" for \"listen_port\": expected an integer\n" +
            "error: " + path + ":5: invalid value \"fast\" for \"pool_mode\": expected one of session, "
            "transaction, statement\n" +
            path + ": 2 errors, 1 warning; the configuration would not be loaded\n");
}

TEST_CASE("check on a file that does not exist exits 1", "[config][check]") {
  TempDir dir;
  std::ostringstream out;
  CHECK(RunConfigCheck(dir.Join("nope.ini"), out) == 1);
  CHECK(out.str() == "error: " + dir.Join("nope.ini") + ": could not read \"" + dir.Join("nope.ini") +
                         "\": No such file or directory\n" + dir.Join("nope.ini") +
                         ": 1 error, 0 warnings; the configuration would not be loaded\n");
}

TEST_CASE("check passes the Debian sample /etc/pgbouncer/pgbouncer.ini", "[config][check]") {
  const std::string path = "/etc/pgbouncer/pgbouncer.ini";
  if (::access(path.c_str(), R_OK) != 0) {
    WARN("pgbouncer is not installed; skipped");
    return;
  }
  std::ostringstream out;
  const int rc = RunConfigCheck(path, out);
  INFO(out.str());
  CHECK(rc == 0);
  CHECK(out.str().find("error:") == std::string::npos);
}

}  // namespace
}  // namespace rb::engine
