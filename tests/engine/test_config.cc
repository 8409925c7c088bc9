// The config loader: file structure, sections, %include, the files it names, and the samples.
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/config.h"
#include "tests/catch.h"
#include "tests/engine/test_config_util.h"

namespace rb::engine {
namespace {

using testing::LoadText;
using testing::Strings;
using testing::TempDir;

using Lines = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Structure of the ini file.

TEST_CASE("comment lines start with a semicolon or hash after blanks and are not special later in a line",
          "[config][ini]") {
  LoadResult r = LoadText(
      "; a comment\n"
      "# another\n"
      "   ;indented comment\n"
      "[pgbouncer] ; comment after the header\n"
      "#listen_port = 1\n"
      "server_reset_query = DISCARD ALL ; # still the value\n"
      "auth_type = any\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.listen_port == 6432);
  CHECK(r.config->settings.server_reset_query == "DISCARD ALL ; # still the value");
}

TEST_CASE("blank lines and CRLF line ends and blanks around the equals sign are allowed", "[config][ini]") {
  LoadResult r = LoadText("\r\n[pgbouncer]\r\n\r\n  listen_port\t=\t7000  \r\nauth_type=any\r\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.listen_port == 7000);
  CHECK(r.config->settings.auth_type == AuthType::kAny);
}

TEST_CASE("a UTF-8 byte order mark at the start of the file is skipped", "[config][ini]") {
  LoadResult r = LoadText("\xEF\xBB\xBF[pgbouncer]\nauth_type = any\n");
  CHECK(r.ok());
}

TEST_CASE("a later assignment of a setting wins", "[config][ini]") {
  LoadResult r = LoadText("[pgbouncer]\nauth_type = any\nlisten_port = 7000\nlisten_port = 7001\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.listen_port == 7001);
  CHECK(r.warnings.empty());
}

TEST_CASE("syntax errors name the line and say what is wrong", "[config][ini]") {
  LoadResult r = LoadText(
      "[pgbouncer\n"
      "[pgbouncer] listen_port = 1\n"
      "[pgbouncer]\n"
      "listen_port 7000\n"
      "%include\n"
      "%includefoo.ini\n"
      "auth_type = any\n");
  CHECK(Strings(r.errors) ==
        Lines{
            "pgbouncer.ini:1: syntax error: section header has no closing \"]\"",
            "pgbouncer.ini:2: syntax error: unexpected text \"listen_port = 1\" after section header",
            "pgbouncer.ini:4: syntax error: expected \"name = value\" (quote names with other "
            "characters: \"my db\" = ...)",
            "pgbouncer.ini:5: %include needs a file name",
            "pgbouncer.ini:6: syntax error: expected \"name = value\" (quote names with other "
            "characters: \"my db\" = ...)",
        });
  CHECK_FALSE(r.config.ok());
}

TEST_CASE("a file with errors loads nothing and every error is reported", "[config][ini]") {
  LoadResult r = LoadText(
      "[pgbouncer]\n"
      "listen_port = abc\n"
      "pool_mode = fast\n"
      "bogus = 1\n"
      "[databases]\n"
      "db = host=x bogus=1\n");
  REQUIRE(r.errors.size() == 3);
  CHECK(r.config.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(r.config.status().message() ==
        "pgbouncer.ini:2: invalid value \"abc\" for \"listen_port\": expected an integer\n"
        "pgbouncer.ini:3: invalid value \"fast\" for \"pool_mode\": expected one of session, "
        "transaction, statement\n"
        "pgbouncer.ini:6: database \"db\": unknown parameter \"bogus\"");
  REQUIRE_FALSE(r.warnings.empty());
  CHECK(Strings(r.warnings)[0] == "pgbouncer.ini:4: unknown setting \"bogus\"; ignored");
}

TEST_CASE("the pgbouncer section is required", "[config][sections]") {
  LoadResult r = LoadText("[databases]\ndb = host=x\n");
  CHECK(Strings(r.errors) == Lines{"pgbouncer.ini: the [pgbouncer] section is missing"});
}

TEST_CASE("a key before any section is an error", "[config][sections]") {
  LoadResult r = LoadText("listen_port = 1\n[pgbouncer]\nauth_type = any\n");
  CHECK(Strings(r.errors) ==
        Lines{"pgbouncer.ini:1: \"listen_port\" is outside any section (start with [pgbouncer])"});
}

TEST_CASE("unknown sections are errors and section names are case-sensitive", "[config][sections]") {
  LoadResult r = LoadText("[PgBouncer]\nlisten_port = 1\n[extra]\nx = 1\n[pgbouncer]\nauth_type = any\n");
  CHECK(Strings(r.errors) ==
        Lines{
            "pgbouncer.ini:1: unknown section [PgBouncer] (section names are case-sensitive and "
            "take no blanks: [pgbouncer])",
            "pgbouncer.ini:3: unknown section [extra] (expected [pgbouncer], [databases], [users] "
            "or [peers])",
        });
}

TEST_CASE("a second pgbouncer section header resets the earlier settings to defaults as PgBouncer does",
          "[config][sections]") {
  LoadResult r = LoadText(
      "[pgbouncer]\n"
      "listen_port = 7000\n"
      "auth_file = users.txt\n"
      "pool_mode = transaction\n"
      "[databases]\n"
      "[pgbouncer]\n"
      "max_client_conn = 10\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.listen_port == 6432);
  CHECK(r.config->settings.pool_mode == PoolMode::kSession);
  CHECK(r.config->settings.max_client_conn == 10);
  // auth_file has no default in PgBouncer, so PgBouncer leaves it alone.
  CHECK(r.config->settings.auth_file == "users.txt");
  CHECK(Strings(r.warnings) ==
        Lines{"pgbouncer.ini:6: [pgbouncer] appears again: as in PgBouncer, the earlier settings of "
              "listen_port, pool_mode are reset to their defaults"});
}

TEST_CASE("conffile defaults to the file that was loaded", "[config][sections]") {
  LoadResult r = LoadText("[pgbouncer]\nauth_type = any\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.conffile == "pgbouncer.ini");
}

TEST_CASE("auth_type = hba without auth_hba_file is an error", "[config][sections]") {
  LoadResult r = LoadText("[pgbouncer]\nauth_file = u.txt\nauth_type = hba\n");
  CHECK(Strings(r.errors) == Lines{"pgbouncer.ini:3: auth_type = hba needs auth_hba_file"});
}

TEST_CASE("a password auth_type with no source of users warns that nobody can log in",
          "[config][sections]") {
  LoadResult r = LoadText("[pgbouncer]\nlisten_port = 7000\n");
  REQUIRE(r.ok());
  CHECK(Strings(r.warnings) ==
        Lines{"pgbouncer.ini: auth_type = md5, but neither auth_file nor auth_user is set, so no "
              "user can log in"});
}

// ---------------------------------------------------------------------------------------------
// [databases]

const DatabaseConfig& Db(const LoadResult& r, std::string_view name) {
  REQUIRE(r.ok());
  const DatabaseConfig* db = r.config->FindDatabase(name);
  REQUIRE(db != nullptr);
  return *db;
}

LoadResult LoadDatabases(std::string_view lines) {
  return LoadText("[pgbouncer]\nauth_type = any\n[databases]\n" + std::string(lines) + "\n");
}

TEST_CASE("a database entry defaults to the same name and port 5432 and the Unix socket",
          "[config][databases]") {
  LoadResult r = LoadDatabases("foodb =\nbardb = host=localhost dbname=bazdb");
  const DatabaseConfig& foo = Db(r, "foodb");
  CHECK(foo.dbname == "foodb");
  CHECK(foo.hosts.empty());
  CHECK(foo.PortFor(0) == 5432);
  CHECK_FALSE(foo.user.has_value());
  CHECK_FALSE(foo.pool_size.has_value());
  const DatabaseConfig& bar = Db(r, "bardb");
  CHECK(bar.dbname == "bazdb");
  CHECK(bar.hosts == Lines{"localhost"});
  CHECK(bar.file == "pgbouncer.ini");
  CHECK(bar.line == 5);
  CHECK(r.config->databases.size() == 2);
}

TEST_CASE("every database parameter is read into its typed field", "[config][databases]") {
  LoadResult r = LoadDatabases(
      "app = host=db1,db2,/var/run/postgresql port=5433,5434,5432 dbname=real user=u password=p "
      "auth_user=au auth_query='SELECT 1' auth_dbname=authdb pool_size=10 min_pool_size=2 "
      "reserve_pool_size=3 max_db_connections=40 max_db_client_connections=100 "
      "pool_mode=transaction connect_query='SET x = 1' client_encoding=UTF8 datestyle=ISO "
      "timezone=UTC application_name=app1 server_lifetime=120 query_wait_timeout=2.5 "
      "load_balance_hosts=disable target_session_attrs=read-write");
  const DatabaseConfig& db = Db(r, "app");
  CHECK(db.hosts == Lines{"db1", "db2", "/var/run/postgresql"});
  CHECK(db.ports == std::vector<int>{5433, 5434, 5432});
  CHECK(db.PortFor(1) == 5434);
  CHECK(db.dbname == "real");
  CHECK(db.user == "u");
  CHECK(db.password == "p");
  CHECK(db.auth_user == "au");
  CHECK(db.auth_query == "SELECT 1");
  CHECK(db.auth_dbname == "authdb");
  CHECK(db.pool_size == 10);
  CHECK(db.min_pool_size == 2);
  CHECK(db.reserve_pool_size == 3);
  CHECK(db.max_db_connections == 40);
  CHECK(db.max_db_client_connections == 100);
  CHECK(db.pool_mode == PoolMode::kTransaction);
  CHECK(db.connect_query == "SET x = 1");
  CHECK(db.client_encoding == "UTF8");
  CHECK(db.datestyle == "ISO");
  CHECK(db.timezone == "UTC");
  CHECK(db.application_name == "app1");
  CHECK(db.server_lifetime == absl::Seconds(120));
  CHECK(db.query_wait_timeout == absl::Milliseconds(2500));
  CHECK(db.load_balance_hosts == LoadBalanceHosts::kDisable);
  CHECK(db.target_session_attrs == TargetSessionAttrs::kReadWrite);
}

TEST_CASE("reserve_pool is the old name of reserve_pool_size", "[config][databases]") {
  LoadResult r = LoadDatabases("a = reserve_pool=7");
  CHECK(Db(r, "a").reserve_pool_size == 7);
}

TEST_CASE("one port applies to every host of a list", "[config][databases]") {
  LoadResult r = LoadDatabases("a = host=h1,h2 port=6000");
  const DatabaseConfig& db = Db(r, "a");
  CHECK(db.PortFor(0) == 6000);
  CHECK(db.PortFor(1) == 6000);
}

TEST_CASE("connection string values are single-quoted with two quotes for a quote and backslash is literal",
          "[config][databases]") {
  LoadResult r = LoadDatabases(R"(a = password='it''s a \secret' dbname=x)");
  CHECK(Db(r, "a").password == R"(it's a \secret)");
}

TEST_CASE("QuoteConnValue output reads back as the same value", "[config][databases]") {
  for (std::string value : {"plain", "with space", "it's", "''", "a\\b", "tab\there", "x=y"}) {
    absl::StatusOr<std::vector<ConnParam>> params = ParseConnString("k=" + QuoteConnValue(value));
    REQUIRE(params.ok());
    REQUIRE(params->size() == 1);
    CHECK((*params)[0].second == value);
  }
  CHECK(QuoteConnValue("plain") == "plain");
  CHECK(QuoteConnValue("it's") == "'it''s'");
  CHECK_FALSE(ParseConnString("k=" + QuoteConnValue("")).ok());  // empty values are refused
}

TEST_CASE("connection string errors name the database and the problem", "[config][databases]") {
  LoadResult r = LoadDatabases(
      "a = host=x bogus=1\n"
      "b = host=\n"
      "c = password='open\n"
      "d = host='x'y\n"
      "e = port=0\n"
      "f = port=abc\n"
      "g = host=a,,b\n"
      "h = host=a,b,c port=1,2\n"
      "i = pool_mode=fast\n"
      "j = pool_size=-1\n"
      "k = server_lifetime=10s\n"
      "l = justaword\n"
      "m = load_balance_hosts=random");
  CHECK(Strings(r.errors) ==
        Lines{
            "pgbouncer.ini:4: database \"a\": unknown parameter \"bogus\"",
            "pgbouncer.ini:5: database \"b\": empty value for \"host\"",
            "pgbouncer.ini:6: database \"c\": quoted value of \"password\" is not closed",
            "pgbouncer.ini:7: database \"d\": unexpected character after the quoted value of \"host\"",
            "pgbouncer.ini:8: database \"e\": invalid port \"0\"",
            "pgbouncer.ini:9: database \"f\": invalid port \"abc\"",
            "pgbouncer.ini:10: database \"g\": empty entry in host list \"a,,b\"",
            "pgbouncer.ini:11: database \"h\": port lists 2 ports but host lists 3 hosts; give one "
            "port, or one per host",
            "pgbouncer.ini:12: database \"i\": invalid value \"fast\" for pool_mode: expected one of "
            "session, transaction, statement",
            "pgbouncer.ini:13: database \"j\": invalid value \"-1\" for pool_size: expected a "
            "non-negative integer",
            "pgbouncer.ini:14: database \"k\": invalid value \"10s\" for server_lifetime: expected a "
            "number of seconds, such as 30 or 0.5",
            "pgbouncer.ini:15: database \"l\": expected key=value at \"justaword\"",
            "pgbouncer.ini:16: database \"m\": invalid value \"random\" for load_balance_hosts: "
            "expected one of round-robin, disable",
        });
}

TEST_CASE("the star entry is the fallback database with the database name the client asked for",
          "[config][databases]") {
  LoadResult r = LoadDatabases("* = host=fallback port=6000");
  REQUIRE(r.ok());
  REQUIRE(r.config->fallback_database.has_value());
  CHECK(r.config->fallback_database->hosts == Lines{"fallback"});
  CHECK(r.config->fallback_database->dbname.empty());
  CHECK(r.config->FindDatabase("*") == nullptr);
  CHECK(r.config->databases.empty());
}

TEST_CASE("database names with other characters are quoted like SQL identifiers",
          "[config][databases]") {
  LoadResult r = LoadDatabases(
      "\"my db\" = host=x\n"
      "\"say \"\"hi\"\"\" = host=y\n"
      "'old style' = host=z\n"
      "app.v2-test = host=w");
  REQUIRE(r.ok());
  CHECK(Db(r, "my db").dbname == "my db");
  CHECK(Db(r, "say \"hi\"").hosts == Lines{"y"});
  CHECK(Db(r, "old style").hosts == Lines{"z"});
  CHECK(Db(r, "app.v2-test").hosts == Lines{"w"});
}

TEST_CASE("an unquoted name with other characters is a syntax error", "[config][databases]") {
  LoadResult r = LoadDatabases("my db = host=x\n\"open = host=y");
  CHECK(Strings(r.errors) ==
        Lines{"pgbouncer.ini:4: syntax error: expected \"name = value\" (quote names with other "
              "characters: \"my db\" = ...)",
              "pgbouncer.ini:5: syntax error: name quoted with \" is not closed"});
}

TEST_CASE("the database name pgbouncer is reserved for the admin console", "[config][databases]") {
  LoadResult r = LoadDatabases("pgbouncer = host=x");
  CHECK(Strings(r.errors) ==
        Lines{"pgbouncer.ini:4: database name \"pgbouncer\" is reserved for the admin console"});
}

TEST_CASE("a database defined twice keeps the later entry with a warning", "[config][databases]") {
  LoadResult r = LoadDatabases("a = host=one\na = host=two");
  CHECK(Db(r, "a").hosts == Lines{"two"});
  CHECK(r.config->databases.size() == 1);
  CHECK(Strings(r.warnings) ==
        Lines{"pgbouncer.ini:5: database \"a\" is defined again (first at pgbouncer.ini:4); this "
              "later entry is used"});
}

// ---------------------------------------------------------------------------------------------
// [users] and [peers]

TEST_CASE("users section entries set per-user pool settings and timeouts", "[config][users]") {
  LoadResult r = LoadText(
      "[pgbouncer]\nauth_type = any\n[users]\n"
      "alice = pool_mode=session pool_size=5 reserve_pool_size=1 max_user_connections=10 "
      "max_user_client_connections=50 query_timeout=30 query_wait_timeout=-1 "
      "idle_transaction_timeout=60 transaction_timeout=120 client_idle_timeout=0.5\n"
      "\"bob smith\" = pool_mode=statement\n");
  REQUIRE(r.ok());
  const UserConfig* alice = r.config->FindUser("alice");
  REQUIRE(alice != nullptr);
  CHECK(alice->pool_mode == PoolMode::kSession);
  CHECK(alice->pool_size == 5);
  CHECK(alice->reserve_pool_size == 1);
  CHECK(alice->max_user_connections == 10);
  CHECK(alice->max_user_client_connections == 50);
  CHECK(alice->query_timeout == absl::Seconds(30));
  CHECK_FALSE(alice->query_wait_timeout.has_value());
  CHECK(alice->idle_transaction_timeout == absl::Seconds(60));
  CHECK(alice->transaction_timeout == absl::Seconds(120));
  CHECK(alice->client_idle_timeout == absl::Milliseconds(500));
  REQUIRE(r.config->FindUser("bob smith") != nullptr);
  CHECK(r.config->FindUser("bob smith")->pool_mode == PoolMode::kStatement);
}

TEST_CASE("users section rejects unknown parameters", "[config][users]") {
  LoadResult r = LoadText("[pgbouncer]\nauth_type = any\n[users]\nalice = host=x\n");
  CHECK(Strings(r.errors) == Lines{"pgbouncer.ini:4: user \"alice\": unknown parameter \"host\""});
}

TEST_CASE("peers section entries give the host and port and pool size of each peer", "[config][peers]") {
  LoadResult r = LoadText(
      "[pgbouncer]\nauth_type = any\npeer_id = 1\n[peers]\n"
      "1 = host=/tmp/pgbouncer1\n"
      "2 = host=10.0.0.2 port=6433 pool_size=4\n");
  REQUIRE(r.ok());
  CHECK(r.config->settings.peer_id == 1);
  REQUIRE(r.config->FindPeer(2) != nullptr);
  CHECK(r.config->FindPeer(2)->host == "10.0.0.2");
  CHECK(r.config->FindPeer(2)->port == 6433);
  CHECK(r.config->FindPeer(2)->pool_size == 4);
  CHECK(r.config->FindPeer(1)->port == 6432);
  CHECK_FALSE(r.config->FindPeer(1)->pool_size.has_value());
}

TEST_CASE("peers section errors for bad ids and a missing host and unknown parameters", "[config][peers]") {
  LoadResult r = LoadText(
      "[pgbouncer]\nauth_type = any\n[peers]\n"
      "0 = host=a\n"
      "x = host=a\n"
      "3 = port=1\n"
      "4 = host=a dbname=b\n");
  CHECK(Strings(r.errors) ==
        Lines{
            "pgbouncer.ini:4: peer \"0\": peer id \"0\" must be a number from 1 to 65535",
            "pgbouncer.ini:5: peer \"x\": peer id \"x\" must be a number from 1 to 65535",
            "pgbouncer.ini:6: peer \"3\": host is missing",
            "pgbouncer.ini:7: peer \"4\": unknown parameter \"dbname\"",
        });
}

// ---------------------------------------------------------------------------------------------
// %include

TEST_CASE("%include reads a file relative to the working directory like PgBouncer",
          "[config][include]") {
  TempDir dir;
  dir.Write("conf.d/databases.ini", "[databases]\napp = host=db1\n");
  dir.Write("conf.d/tuning.ini", "%include conf.d/more.ini\nmax_client_conn = 300\n");
  dir.Write("conf.d/more.ini", "default_pool_size = 7\n");
  const std::string main = dir.Write("pgbouncer.ini",
                                     "%include conf.d/databases.ini\n"
                                     "[pgbouncer]\n"
                                     "auth_type = any\n"
                                     "%include conf.d/tuning.ini\n"
                                     "listen_port = 7000\n");
  LoadResult r = LoadConfigFile(main, LoadOptions{.working_dir = dir.path()});
  INFO(Strings(r.errors).size());
  REQUIRE(r.ok());
  CHECK(r.config->FindDatabase("app") != nullptr);
  CHECK(r.config->FindDatabase("app")->file == "conf.d/databases.ini");
  CHECK(r.config->FindDatabase("app")->line == 2);
  CHECK(r.config->settings.max_client_conn == 300);
  CHECK(r.config->settings.default_pool_size == 7);
  CHECK(r.config->settings.listen_port == 7000);
}

TEST_CASE("an included file continues the section it was included from", "[config][include]") {
  TempDir dir;
  dir.Write("dbs.ini", "a = host=x\n");
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_type = any\n[databases]\n%include dbs.ini\n",
                                "pgbouncer.ini",
                                LoadOptions{.working_dir = dir.path(), .load_auth_file = false});
  REQUIRE(r.ok());
  CHECK(r.config->FindDatabase("a") != nullptr);
}

TEST_CASE("errors inside included files name the included file and its line", "[config][include]") {
  TempDir dir;
  dir.Write("bad.ini", "\nlisten_port = many\n");
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_type = any\n%include bad.ini\n", "main.ini",
                                LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(r.errors) ==
        Lines{"bad.ini:2: invalid value \"many\" for \"listen_port\": expected an integer"});
}

TEST_CASE("a missing include file is an error at the %include line", "[config][include]") {
  TempDir dir;
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_type = any\n%include nope.ini\n", "main.ini",
                                LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(r.errors) ==
        Lines{"main.ini:3: %include: could not read \"" + dir.Join("nope.ini") +
              "\": No such file or directory"});
}

TEST_CASE("an include loop is detected and reported", "[config][include]") {
  TempDir dir;
  dir.Write("a.ini", "%include b.ini\n");
  dir.Write("b.ini", "%include a.ini\n");
  const std::string main = dir.Write("main.ini", "[pgbouncer]\nauth_type = any\n%include a.ini\n");
  LoadResult r = LoadConfigFile(main, LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(r.errors) ==
        Lines{"b.ini:1: %include \"a.ini\": include loop, that file is already being read"});

  dir.Write("self.ini", "[pgbouncer]\n%include self.ini\n");
  LoadResult self = LoadConfigFile("self.ini", LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(self.errors) ==
        Lines{"self.ini:2: %include \"self.ini\": include loop, that file is already being read"});
}

TEST_CASE("includes nest at most 10 files deep as in PgBouncer", "[config][include]") {
  TempDir dir;
  for (int i = 1; i <= 11; ++i) {
    dir.Write("n" + std::to_string(i) + ".ini", "%include n" + std::to_string(i + 1) + ".ini\n");
  }
  dir.Write("n12.ini", "listen_port = 7000\n");
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_type = any\n%include n1.ini\n", "main.ini",
                                LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(r.errors) ==
        Lines{"n10.ini:1: %include \"n11.ini\": nesting is deeper than 10 files"});
}

// ---------------------------------------------------------------------------------------------
// The files a config names.

TEST_CASE("auth_file is read relative to the working directory and its users are in the snapshot",
          "[config][files]") {
  TempDir dir;
  dir.Write("users.txt", "\"alice\" \"secret\"\n\"bob\" \"md5" + std::string(32, 'a') + "\"\n");
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_file = users.txt\n", "pgbouncer.ini",
                                LoadOptions{.working_dir = dir.path()});
  REQUIRE(r.ok());
  REQUIRE(r.config->auth_file.Find("alice") != nullptr);
  CHECK(r.config->auth_file.Find("alice")->kind == SecretKind::kPlain);
  CHECK(r.config->auth_file.Find("bob")->kind == SecretKind::kMd5);
}

TEST_CASE("an auth_file that cannot be read or is broken makes the config fail", "[config][files]") {
  TempDir dir;
  LoadResult missing = LoadConfigText("[pgbouncer]\nauth_file = users.txt\n", "pgbouncer.ini",
                                      LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(missing.errors) ==
        Lines{"users.txt: could not read \"" + dir.Join("users.txt") +
              "\": No such file or directory"});

  dir.Write("users.txt", "alice secret\n");
  LoadResult broken = LoadConfigText("[pgbouncer]\nauth_file = users.txt\n", "pgbouncer.ini",
                                     LoadOptions{.working_dir = dir.path()});
  CHECK(Strings(broken.errors) == Lines{"users.txt:1: expected a double-quoted user name"});
}

TEST_CASE("auth_type any does not read auth_file as in PgBouncer", "[config][files]") {
  TempDir dir;
  LoadResult r = LoadConfigText("[pgbouncer]\nauth_type = any\nauth_file = users.txt\n",
                                "pgbouncer.ini", LoadOptions{.working_dir = dir.path()});
  CHECK(r.ok());
}

TEST_CASE("auth_type = hba loads the hba rules into the snapshot", "[config][files]") {
  TempDir dir;
  dir.Write("users.txt", "\"alice\" \"secret\"\n");
  dir.Write("hba.conf", "host all all 10.0.0.0/8 scram-sha-256\nbogus line\n");
  LoadResult r = LoadConfigText(
      "[pgbouncer]\nauth_type = hba\nauth_file = users.txt\nauth_hba_file = hba.conf\n",
      "pgbouncer.ini", LoadOptions{.working_dir = dir.path()});
  REQUIRE(r.ok());
  REQUIRE(r.config->hba.has_value());
  CHECK(r.config->hba->rules.size() == 1);
  CHECK(Strings(r.warnings) ==
        Lines{"hba.conf:2: unknown connection type \"bogus\" (expected local, host, hostssl or "
              "hostnossl); line ignored"});
}

// ---------------------------------------------------------------------------------------------
// Snapshots and samples.

TEST_CASE("a Config is a copyable value that can be shared as an immutable snapshot",
          "[config][snapshot]") {
  LoadResult r = LoadDatabases("app = host=db1 pool_size=3");
  REQUIRE(r.ok());
  auto snapshot = std::make_shared<const Config>(*r.config);
  Config copy = *snapshot;
  copy.databases[0].pool_size = 99;
  CHECK(snapshot->FindDatabase("app")->pool_size == 3);
  CHECK(copy.FindDatabase("app")->pool_size == 99);
}

TEST_CASE("the Debian sample /etc/pgbouncer/pgbouncer.ini loads without errors", "[config][samples]") {
  const std::string path = "/etc/pgbouncer/pgbouncer.ini";
  if (::access(path.c_str(), R_OK) != 0) {
    WARN("pgbouncer is not installed; skipped");
    return;
  }
  LoadResult r = LoadConfigFile(path);
  INFO(Strings(r.errors).size());
  for (const std::string& e : Strings(r.errors)) UNSCOPED_INFO(e);
  CHECK(r.ok());
  REQUIRE(r.config.ok());
  CHECK(r.config->settings.listen_port == 6432);
  CHECK(r.config->settings.auth_type == AuthType::kMd5);
  CHECK(r.config->settings.unix_socket_dir == "/var/run/postgresql");
}

TEST_CASE("every setting in the Debian sample is recognised when uncommented", "[config][samples]") {
  const std::string path = "/etc/pgbouncer/pgbouncer.ini";
  std::ifstream in(path);
  if (!in) {
    WARN("pgbouncer is not installed; skipped");
    return;
  }
  // ";key = value" lines are the sample's commented-out settings and database examples.
  std::string text;
  int uncommented = 0;
  for (std::string line; std::getline(in, line);) {
    size_t i = 1;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_')) ++i;
    if (line.size() > 1 && line[0] == ';' && i > 1 && line.find('=') != std::string::npos &&
        line.find_first_not_of(' ', i) == line.find('=')) {
      line.erase(0, 1);
      ++uncommented;
    }
    text += line + "\n";
  }
  REQUIRE(uncommented > 50);
  LoadResult r = LoadText(text);
  for (const std::string& e : Strings(r.errors)) UNSCOPED_INFO(e);
  CHECK(r.ok());
  // The TLS, DNS and buffer settings it lists are accepted, each with its warning.
  CHECK(r.warnings.size() > 10);
  for (const Diagnostic& w : r.warnings) {
    CHECK((absl::StrContains(w.message, "not supported yet by ringbouncer; ignored") ||
           absl::StrContains(w.message, "has no effect in ringbouncer; ignored") ||
           absl::StrContains(w.message, "Windows service name; ignored")));
  }
}

TEST_CASE("the sample tools/sample/pgbouncer.ini loads with no warnings", "[config][samples]") {
  const std::string dir = std::string(RB_SOURCE_DIR) + "/tools/sample";
  LoadResult r = LoadConfigFile("pgbouncer.ini", LoadOptions{.working_dir = dir});
  for (const std::string& e : Strings(r.errors)) UNSCOPED_INFO(e);
  for (const std::string& w : Strings(r.warnings)) UNSCOPED_INFO(w);
  REQUIRE(r.ok());
  CHECK(r.warnings.empty());
  const Config& c = *r.config;
  CHECK(c.settings.listen_port == 6432);
  CHECK(c.settings.workers == 0);
  CHECK(c.settings.pool_mode == PoolMode::kTransaction);
  CHECK(c.databases.size() == 3);
  CHECK(c.FindDatabase("reports")->user == "rb_reports");
  CHECK(c.FindUser("batch")->max_user_connections == 4);
  REQUIRE(c.auth_file.Find("app") != nullptr);
  CHECK(c.auth_file.Find("app")->kind == SecretKind::kScramSha256);
  CHECK(c.auth_file.Find("rb_reports")->kind == SecretKind::kMd5);
  CHECK(c.auth_file.Find("batch")->kind == SecretKind::kPlain);
}

TEST_CASE("the README settings table matches the settings table", "[config][settings-md]") {
  const std::string path = std::string(RB_SOURCE_DIR) + "/README.md";
  constexpr std::string_view kBegin = "<!-- settings:begin -->\n";
  constexpr std::string_view kEnd = "<!-- settings:end -->";
  std::string readme;
  {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    readme = ss.str();
  }
  size_t begin = readme.find(kBegin);
  size_t end = readme.find(kEnd);
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  begin += kBegin.size();
  const std::string expected = RenderSettingsMarkdown();
  if (const char* update = std::getenv("RB_UPDATE_SETTINGS_MD"); update != nullptr && *update == '1') {
    readme.replace(begin, end - begin, expected);
    std::ofstream(path, std::ios::binary) << readme;
    end = begin + expected.size();
  }
  INFO("regenerate with: RB_UPDATE_SETTINGS_MD=1 rb_engine_tests \"[settings-md]\"");
  CHECK(readme.substr(begin, end - begin) == expected);
}

}  // namespace
}  // namespace rb::engine
