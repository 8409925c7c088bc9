// Logging in PgBouncer's shape, against a real PostgreSQL: the lines scripts grep for
// (login attempt, closing because, pooler error, new connection to server, the stats line),
// the socket prefix (with unix(pid) for unix peers, and the same id SHOW CLIENTS shows as ptr),
// logfile reopened on SIGHUP, the log_* switches, and no password or secret in the log at
// -v -v whatever the auth method and whether the password was right.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <regex>
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

constexpr std::string_view kAdminUser = "rb_admin";
constexpr std::string_view kAdminPassword = "Adm1n-Secret-7731";

std::string ConsoleConnString(const RingbouncerProcess& rb, std::string_view password = kAdminPassword) {
  return "host=" + rb.Host() + " port=" + std::to_string(rb.Port()) + " dbname=pgbouncer user=" +
         std::string(kAdminUser) + " password=" + ConnInfoQuote(password) + " connect_timeout=20";
}

// The whole log: the process's stderr/stdout and its logfile.
std::string AllLog(const RingbouncerProcess& rb, const std::string& logfile) {
  std::string text = rb.LogText();
  if (!logfile.empty() && std::filesystem::exists(logfile)) text += ReadFile(logfile);
  return text;
}

// The integration tests link no abseil: split by hand.
std::vector<std::string> Split(const std::string& text, const std::string& separators) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find_first_of(separators, pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool HasLine(const std::string& log, const std::string& pattern) {
  const std::regex re(pattern);
  for (const std::string& line : Split(log, "\n")) {
    if (std::regex_search(line, re)) return true;
  }
  return false;
}

// Every line starts like PgBouncer's: "2026-11-28 06:40:47.123 UTC [1234] LOG ".
constexpr const char* kStamp = R"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[\d+\] )";

TEST_CASE("logging: connection and stats lines have PgBouncer's shapes", "[integration][logging]") {
  PgCluster& pg = PgCluster::Shared();
  TempDir dir("rb-log");
  const std::string logfile = dir.File("rb.log");
  RingbouncerOptions o;
  o.settings = {{"log_connections", "1"},  {"log_disconnections", "1"}, {"log_pooler_errors", "1"},
                {"log_stats", "1"},        {"stats_period", "1"},       {"logfile", logfile},
                {"admin_users", std::string(kAdminUser)}};
  o.userlist = DefaultUserlist(pg);
  o.userlist.push_back(UserlistPlain(kAdminUser, kAdminPassword));
  RingbouncerProcess rb(pg, o);

  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  REQUIRE(Query(rb.UnixConnString("rb_md5"), "SELECT 1").ok);
  CHECK(!Query(rb.ConnString("rb_md5", kTestDb, "password=not-the-password"), "SELECT 1").ok);
  std::vector<std::string> bench_args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-c", "2", "-T", "2", "rbtest"}) bench_args.push_back(a);
  PgbenchResult bench = RunPgbench(bench_args, rb.PasswordEnv(), 60s);
  CHECK(bench.exit_code == 0);

  PgConn admin = PgConn::Connect(ConsoleConnString(rb));
  REQUIRE(admin.Ok());
  QueryResult clients = admin.Exec("SHOW CLIENTS");
  REQUIRE(clients.ok);
  std::this_thread::sleep_for(1500ms);  // one more stats period, after the traffic

  std::string log = AllLog(rb, logfile);
  INFO("log:\n" << log);
  const std::string prefix = R"(C-0x[0-9a-f]+: rbtest/rb_md5@127\.0\.0\.1:\d+ )";
  CHECK(HasLine(log, std::string(kStamp) + "LOG " + prefix +
                         "login attempt: db=rbtest user=rb_md5 tls=no replication=no$"));
  CHECK(HasLine(log, std::string(kStamp) + "LOG " + prefix + R"(closing because: client close request \(age=\d+s\)$)"));
  CHECK(HasLine(log, std::string(kStamp) + "WARNING " + prefix + "pooler error: password authentication failed$"));
  CHECK(HasLine(log, std::string(kStamp) + "LOG " + prefix + R"(closing because: password authentication failed \(age=\d+s\)$)"));
  CHECK(HasLine(log, std::string(kStamp) +
                         R"(LOG S-0x[0-9a-f]+: rbtest/rb_md5@127\.0\.0\.1:\d+ new connection to server \(from 127\.0\.0\.1:\d+\)$)"));
  // A unix peer: its pid, and the listen port.
  CHECK(HasLine(log, std::string(kStamp) + R"(LOG C-0x[0-9a-f]+: rbtest/rb_md5@unix\(\d+\):)" +
                         std::to_string(rb.Port()) + " login attempt: db=rbtest"));
  // PgBouncer's stats line, word for word, with traffic in at least one period.
  const std::string stats = R"(LOG stats: (\d+) xacts/s, \d+ queries/s, \d+ client parses/s, \d+ server parses/s, )"
                            R"(\d+ binds/s, in \d+ B/s, out \d+ B/s, xact \d+ us, query \d+ us, wait \d+ us$)";
  CHECK(HasLine(log, std::string(kStamp) + stats));
  CHECK(HasLine(log, std::string(kStamp) + R"(LOG stats: [1-9]\d* xacts/s, [1-9]\d* queries/s, )"));
  // Every line has the stamp.
  for (const std::string& line : Split(ReadFile(logfile), "\n")) {
    INFO(line);
    CHECK(std::regex_search(line, std::regex(std::string(kStamp) + "(LOG|WARNING|ERROR|DEBUG|NOISE|FATAL) ")));
  }
  // The admin client's ptr in SHOW CLIENTS is the id in its log prefix.
  std::string ptr;
  for (size_t c = 0; c < clients.columns.size(); ++c) {
    if (clients.columns[c] != "ptr") continue;
    for (const auto& row : clients.rows)
      if (row[2] == "pgbouncer") ptr = row[c];
  }
  REQUIRE(!ptr.empty());
  CHECK(log.find("C-" + ptr + ": pgbouncer/rb_admin@127.0.0.1:") != std::string::npos);
}

TEST_CASE("logging: the logfile is reopened on SIGHUP so that rotation works", "[integration][logging]") {
  PgCluster& pg = PgCluster::Shared();
  TempDir dir("rb-log");
  const std::string logfile = dir.File("rb.log");
  RingbouncerProcess rb(pg, {.settings = {{"log_connections", "1"}, {"logfile", logfile}}});
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  REQUIRE(Eventually([&] { return ReadFile(logfile).find("login attempt") != std::string::npos; }, 5s));

  std::filesystem::rename(logfile, logfile + ".1");
  rb.Signal(SIGHUP);
  REQUIRE(Eventually([&] { return std::filesystem::exists(logfile); }, 10s));
  REQUIRE(Query(rb.ConnString("rb_md5", kTestDb, "application_name=after_rotation"), "SELECT 1").ok);
  CHECK(Eventually([&] { return ReadFile(logfile).find("login attempt") != std::string::npos; }, 5s));
  std::string old_text = ReadFile(logfile + ".1");
  INFO("rotated:\n" << old_text << "\nnew:\n" << ReadFile(logfile));
  CHECK(old_text.find("got SIGHUP, re-reading config") != std::string::npos);
  // The rotated file got nothing after the reload.
  CHECK(old_text.find("login attempt", old_text.find("got SIGHUP")) == std::string::npos);
}

TEST_CASE("logging: log_connections and log_disconnections off silence their lines", "[integration][logging]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"log_connections", "0"}, {"log_disconnections", "0"}}});
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  REQUIRE(Query(rb.UnixConnString("rb_md5"), "SELECT 1").ok);
  std::this_thread::sleep_for(300ms);
  std::string log = rb.LogText();
  INFO(log);
  CHECK(log.find("login attempt") == std::string::npos);
  CHECK(log.find("closing because") == std::string::npos);
  CHECK(log.find("process up") != std::string::npos);
}

// Logs in with right and wrong passwords under `auth_type`, at -v -v, and returns the log.
struct LoginAttempt {
  std::string user;
  std::string password;
  bool should_work;
};

std::string LogOfLogins(const PgCluster& pg, const std::string& auth_type, const std::vector<std::string>& userlist,
                        const std::vector<LoginAttempt>& attempts) {
  TempDir dir("rb-log");
  const std::string logfile = dir.File("rb.log");
  RingbouncerOptions o;
  o.settings = {{"auth_type", auth_type},
                {"log_connections", "1"},
                {"log_disconnections", "1"},
                {"log_pooler_errors", "1"},
                {"logfile", logfile},
                {"admin_users", std::string(kAdminUser)}};
  o.userlist = userlist;
  o.userlist.push_back(UserlistPlain(kAdminUser, kAdminPassword));
  o.extra_args = {"-v", "-v"};
  RingbouncerProcess rb(pg, o);
  for (const LoginAttempt& a : attempts) {
    for (bool unix_socket : {false, true}) {
      std::string extra = "password=" + ConnInfoQuote(a.password);
      std::string conninfo =
          unix_socket ? rb.UnixConnString(a.user, kTestDb, extra) : rb.ConnString(a.user, kTestDb, extra);
      QueryResult r = Query(conninfo, "SELECT current_user");
      INFO(auth_type << " " << a.user << " " << (a.should_work ? "right" : "wrong") << ": " << r.error << "\n"
                     << rb.LogTail());
      CHECK(r.ok == a.should_work);
    }
  }
  // The console, right and wrong, and a SET that logs its value.
  PgConn admin = PgConn::Connect(ConsoleConnString(rb));
  REQUIRE(admin.Ok());
  CHECK(admin.Exec("SHOW POOLS").ok);
  CHECK(admin.Exec("SET verbose = 2").ok);
  CHECK(!PgConn::Connect(ConsoleConnString(rb, "Wr0ng-Adm1n-4410")).Ok());
  std::this_thread::sleep_for(300ms);
  rb.Stop();
  return AllLog(rb, logfile);
}

TEST_CASE("logging: no password or secret reaches the log at -v -v", "[integration][logging]") {
  PgCluster& pg = PgCluster::Shared();
  const std::string md5_secret = pg.StoredSecret("rb_md5");      // md5<hex>
  const std::string scram_secret = pg.StoredSecret("rb_scram");  // SCRAM-SHA-256$i:salt$stored:server
  REQUIRE(md5_secret.rfind("md5", 0) == 0);
  REQUIRE(scram_secret.rfind("SCRAM-SHA-256$", 0) == 0);
  const std::string md5_plain(kMd5User.password), scram_plain(kScramUser.password);
  const std::string wrong_md5 = "Wr0ng-md5-9921", wrong_scram = "Wr0ng-scram-9922", wrong_plain = "Wr0ng-plain-9923";

  std::string log;
  // md5 with a stored md5 secret and with a plain-text password.
  log += LogOfLogins(pg, "md5", {pg.UserlistEntry("rb_md5"), UserlistPlain("rb_scram", scram_plain)},
                     {{"rb_md5", md5_plain, true}, {"rb_md5", wrong_md5, false},
                      {"rb_scram", scram_plain, true}, {"rb_scram", wrong_scram, false}});
  // SCRAM with a stored SCRAM secret and with a plain-text password.
  log += LogOfLogins(pg, "scram-sha-256", {pg.UserlistEntry("rb_scram"), UserlistPlain("rb_md5", md5_plain)},
                     {{"rb_scram", scram_plain, true}, {"rb_scram", wrong_scram, false},
                      {"rb_md5", md5_plain, true}, {"rb_md5", wrong_md5, false}});
  // plain: the client sends its password in the clear.
  log += LogOfLogins(pg, "plain", {UserlistPlain("rb_md5", md5_plain), UserlistPlain("rb_scram", scram_plain)},
                     {{"rb_md5", md5_plain, true}, {"rb_md5", wrong_plain, false},
                      {"rb_scram", scram_plain, true}, {"rb_scram", wrong_plain, false}});

  INFO("log:\n" << log);
  // The logs are real: logins and the verbose levels are in them.
  CHECK(log.find("login attempt: db=rbtest user=rb_scram") != std::string::npos);
  CHECK(log.find("pooler error: password authentication failed") != std::string::npos);
  CHECK(log.find(" DEBUG ") != std::string::npos);

  std::vector<std::string> secrets = {md5_plain,   scram_plain, wrong_md5,   wrong_scram, wrong_plain,
                                      std::string(kAdminPassword), "Wr0ng-Adm1n-4410", md5_secret,
                                      md5_secret.substr(3), scram_secret};
  // The SCRAM secret's salt, StoredKey and ServerKey, each on its own.
  for (const std::string& part : Split(scram_secret.substr(scram_secret.find('$') + 1), "$:")) {
    if (part.size() >= 16) secrets.push_back(part);
  }
  REQUIRE(secrets.size() >= 13);
  for (const std::string& s : secrets) {
    INFO("secret: " << s);
    CHECK(log.find(s) == std::string::npos);
  }
}

TEST_CASE("logging: -v shows DEBUG lines and no -v hides them", "[integration][logging]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess quiet(pg, {});
  RingbouncerProcess verbose(pg, {.extra_args = {"-v"}});
  REQUIRE(Query(quiet.ConnString("rb_md5"), "SELECT 1").ok);
  REQUIRE(Query(verbose.ConnString("rb_md5"), "SELECT 1").ok);
  CHECK(quiet.LogText().find(" DEBUG ") == std::string::npos);
  CHECK(verbose.LogText().find(" DEBUG ") != std::string::npos);
  // The start-up feature probe is printed with -v: every feature, probed, with its answer.
  const std::string text = verbose.LogText();
  CHECK(text.find("DEBUG io_uring features on kernel ") != std::string::npos);
  for (const char* feature : {" single_issuer=", " defer_taskrun=", " recv_multishot=", " send_zc=", " msg_ring="}) {
    INFO(feature);
    CHECK(text.find(feature) != std::string::npos);
  }
  CHECK(quiet.LogText().find("io_uring features") == std::string::npos);
}

}  // namespace
}  // namespace rb::test
