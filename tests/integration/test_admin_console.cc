// The admin console, signals and live reload against a real PostgreSQL: every SHOW through psql
// and psycopg2 with PgBouncer 1.25's columns, pgbouncer_exporter's queries, access rules, bad
// input, the state-changing commands, RELOAD and SIGHUP under load, PAUSE/RESUME and
// SIGUSR1/SIGUSR2 under load, the SHUTDOWN variants, and a rolling restart over SO_REUSEPORT.
#include <libpq-fe.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <map>
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
using Clock = std::chrono::steady_clock;

constexpr std::string_view kAdminUser = "rb_admin";
constexpr std::string_view kAdminPassword = "adminpass";
constexpr std::string_view kStatsUser = "rb_stats";
constexpr std::string_view kStatsPassword = "statspass";

// PgBouncer 1.25's columns, in order (src/admin.c, src/stats.c), plus ringbouncer's SHOW WORKERS.
const std::map<std::string, std::string>& ExpectedColumns() {
  static const auto* columns = new std::map<std::string, std::string>{
      {"POOLS",
       "database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active|sv_active_cancel|"
       "sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|maxwait|maxwait_us|pool_mode|load_balance_hosts"},
      {"CLIENTS",
       "type|user|database|replication|state|addr|port|local_addr|local_port|connect_time|request_time|wait|wait_us|"
       "close_needed|ptr|link|remote_pid|tls|application_name|prepared_statements|id"},
      {"SERVERS",
       "type|user|database|replication|state|addr|port|local_addr|local_port|connect_time|request_time|wait|wait_us|"
       "close_needed|ptr|link|remote_pid|tls|application_name|prepared_statements|id"},
      {"SOCKETS",
       "type|user|database|replication|state|addr|port|local_addr|local_port|connect_time|request_time|wait|wait_us|"
       "close_needed|ptr|link|remote_pid|tls|application_name|prepared_statements|id|recv_pos|pkt_pos|pkt_remain|"
       "send_pos|send_remain|pkt_avail|send_avail"},
      {"ACTIVE_SOCKETS",
       "type|user|database|replication|state|addr|port|local_addr|local_port|connect_time|request_time|wait|wait_us|"
       "close_needed|ptr|link|remote_pid|tls|application_name|prepared_statements|id|recv_pos|pkt_pos|pkt_remain|"
       "send_pos|send_remain|pkt_avail|send_avail"},
      {"STATS",
       "database|total_server_assignment_count|total_xact_count|total_query_count|total_received|total_sent|"
       "total_xact_time|total_query_time|total_wait_time|total_client_parse_count|total_server_parse_count|"
       "total_bind_count|avg_server_assignment_count|avg_xact_count|avg_query_count|avg_recv|avg_sent|avg_xact_time|"
       "avg_query_time|avg_wait_time|avg_client_parse_count|avg_server_parse_count|avg_bind_count"},
      {"STATS_TOTALS",
       "database|server_assignment_count|xact_count|query_count|bytes_received|bytes_sent|xact_time|query_time|"
       "wait_time|client_parse_count|server_parse_count|bind_count"},
      {"STATS_AVERAGES",
       "database|server_assignment_count|xact_count|query_count|bytes_received|bytes_sent|xact_time|query_time|"
       "wait_time|avg_client_parse_count|avg_server_parse_count|avg_bind_count"},
      {"TOTALS", "name|value"},
      {"DATABASES",
       "name|host|port|database|force_user|pool_size|min_pool_size|reserve_pool_size|server_lifetime|pool_mode|"
       "load_balance_hosts|max_connections|current_connections|max_client_connections|current_client_connections|"
       "paused|disabled"},
      {"USERS",
       "name|pool_size|reserve_pool_size|pool_mode|max_user_connections|current_connections|"
       "max_user_client_connections|current_client_connections"},
      {"LISTS", "list|items"},
      {"CONFIG", "key|value|default|changeable"},
      {"MEM", "name|size|used|free|memtotal"},
      {"STATE", "key|value"},
      {"VERSION", "version"},
      {"PEERS", "peer_id|host|port|pool_size"},
      {"PEER_POOLS", "peer_id|cl_active_cancel_req|cl_waiting_cancel_req|sv_active_cancel|sv_login"},
      {"DNS_HOSTS", "hostname|ttl|addrs"},
      {"DNS_ZONES", "zonename|serial|count"},
      {"FDS",
       "fd|task|user|database|addr|port|cancel|link|client_encoding|std_strings|datestyle|timezone|password|"
       "scram_client_key|scram_server_key"},
      {"WORKERS", "id|clients|servers|xact_count|query_count|bytes_received|bytes_sent|cpu_time_us"},
  };
  return *columns;
}

RingbouncerOptions AdminOptions(const PgCluster& pg, std::map<std::string, std::string> extra = {}) {
  RingbouncerOptions o;
  o.settings = {{"admin_users", std::string(kAdminUser)}, {"stats_users", std::string(kStatsUser)}};
  for (auto& [k, v] : extra) o.settings[k] = v;
  o.userlist = DefaultUserlist(pg);
  o.userlist.push_back(UserlistPlain(kAdminUser, kAdminPassword));
  o.userlist.push_back(UserlistPlain(kStatsUser, kStatsPassword));
  return o;
}

std::string ConsoleConnString(const RingbouncerProcess& rb, std::string_view user = kAdminUser,
                              std::string_view password = kAdminPassword) {
  std::string s = "host=" + rb.Host() + " port=" + std::to_string(rb.Port()) + " dbname=pgbouncer user=" +
                  ConnInfoQuote(user) + " connect_timeout=20";
  if (!password.empty()) s += " password=" + ConnInfoQuote(password);
  return s;
}

// The console over the process's own unix socket (the TCP port may be shared with another).
std::string UnixConsoleConnString(const RingbouncerProcess& rb) {
  return "host=" + rb.SocketDir() + " port=" + std::to_string(rb.Port()) +
         " dbname=pgbouncer user=rb_admin password=adminpass connect_timeout=20";
}

PgConn Console(const std::string& conninfo) {
  PgConn c = PgConn::Connect(conninfo);
  INFO("console connect: " << c.Error());
  REQUIRE(c.Ok());
  return c;
}

int64_t CellInt(const QueryResult& r, std::string_view key, std::string_view key_value, std::string_view name) {
  std::string v = Cell(r, key, key_value, name);
  return v.empty() ? -1 : std::stoll(v);
}

// Polls `pred` every 50 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

CommandResult Psql(const RingbouncerProcess& rb, const std::string& sql, std::string_view user = kAdminUser,
                   std::string_view password = kAdminPassword) {
  std::vector<std::string> argv = {PgBinDir() + "/psql", "-X", "-A", "-F", "|", "-h", rb.Host(), "-p",
                                   std::to_string(rb.Port()), "-U", std::string(user), "-d", "pgbouncer", "-c", sql};
  return RunCommand(argv, 60s, {"PGPASSWORD=" + std::string(password)});
}

// pgbench in the background: -c clients for -T seconds, connecting once per client.
class BackgroundPgbench {
 public:
  BackgroundPgbench(const RingbouncerProcess& rb, int clients, int seconds, int port = 0) {
    std::vector<std::string> args = rb.PgbenchArgs();
    if (port != 0) args[3] = std::to_string(port);
    for (const std::string& a : {std::string("-n"), std::string("-c"), std::to_string(clients), std::string("-j"),
                                 std::string("2"), std::string("-T"), std::to_string(seconds), std::string(kTestDb)}) {
      args.push_back(a);
    }
    std::vector<std::string> env = rb.PasswordEnv();
    thread_ = std::thread([this, args, env] { result_ = RunPgbench(args, env, 180s); });
  }
  ~BackgroundPgbench() {
    if (thread_.joinable()) thread_.join();
  }
  const PgbenchResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  std::thread thread_;
  PgbenchResult result_;
};

// rbtest's total_xact_count; 0 before its pool exists.
int64_t TotalXacts(PgConn& admin) {
  QueryResult r = admin.Exec("SHOW STATS");
  return r.ok ? std::max<int64_t>(0, CellInt(r, "database", kTestDb, "total_xact_count")) : -1;
}

// Rewrites one "key = value" line of the process's pgbouncer.ini (RingbouncerProcess writes one
// setting per line).
void SetConfigLine(const RingbouncerProcess& rb, const std::string& key, const std::string& value) {
  std::string text = ReadFile(rb.ConfigPath());
  size_t at = text.find("\n" + key + " = ");
  REQUIRE(at != std::string::npos);
  size_t end = text.find('\n', at + 1);
  text.replace(at + 1, end - at - 1, key + " = " + value);
  FILE* f = fopen(rb.ConfigPath().c_str(), "w");
  REQUIRE(f != nullptr);
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
}

TEST_CASE("admin console: every SHOW command answers through psql with the PgBouncer 1.25 columns in order",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  // A pool with a server, so that the row-producing commands have rows.
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  for (const auto& [command, columns] : ExpectedColumns()) {
    CommandResult r = Psql(rb, "SHOW " + command);
    INFO("SHOW " << command << ":\n" << r.out << r.err << "\nlog:\n" << rb.LogTail());
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.substr(0, r.out.find('\n')) == columns);
  }
  CommandResult help = Psql(rb, "SHOW HELP");
  CHECK(help.exit_code == 0);
  CHECK(help.err.find("NOTICE:  Console usage") != std::string::npos);
  CHECK(help.err.find("SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION") != std::string::npos);

  // The rows say what there is: the console's own pool and database, and rbtest's.
  CommandResult pools = Psql(rb, "SHOW POOLS");
  CHECK(pools.out.find("\npgbouncer|pgbouncer|1|0|") != std::string::npos);
  CHECK(pools.out.find("\nrbtest|rb_md5|0|0|0|0|0|0|0|1|") != std::string::npos);
  CommandResult dbs = Psql(rb, "SHOW DATABASES");
  CHECK(dbs.out.find("\npgbouncer||" + std::to_string(rb.Port()) + "|pgbouncer|pgbouncer|2|") != std::string::npos);
  CHECK(dbs.out.find("\nrbtest|127.0.0.1|" + std::to_string(pg.Port()) + "|rbtest||20|") != std::string::npos);
  CommandResult version = Psql(rb, "SHOW VERSION");
  CHECK(version.out.find("\nPgBouncer 1.25.0") != std::string::npos);
  CommandResult workers = Psql(rb, "SHOW WORKERS");
  CHECK(workers.out.find("(4 rows)") != std::string::npos);
  CommandResult config = Psql(rb, "SHOW CONFIG");
  CHECK(config.out.find("\ndefault_pool_size|20|20|yes\n") != std::string::npos);
  CHECK(config.out.find("\nlisten_port|" + std::to_string(rb.Port()) + "|6432|no\n") != std::string::npos);
  // SELECT is SHOW's synonym, and the words are case-blind.
  CommandResult select = Psql(rb, "select lists;");
  CHECK(select.out.substr(0, select.out.find('\n')) == "list|items");
}

TEST_CASE("admin console: every SHOW command through psycopg2 gives the PgBouncer column names and order and types",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  TempDir dir("rb-admin-py");
  std::string expected;
  for (const auto& [command, columns] : ExpectedColumns()) expected += command + " " + columns + "\n";
  dir.WriteFile("expected.txt", expected);
  // psycopg2 speaks the simple protocol only; autocommit, or it would send BEGIN first.
  std::string script = dir.WriteFile("check.py", R"PY(
import sys
import psycopg2

port, expected_file = sys.argv[1], sys.argv[2]
conn = psycopg2.connect(host="127.0.0.1", port=port, user="rb_admin", password="adminpass", dbname="pgbouncer")
conn.autocommit = True
cur = conn.cursor()
bad = 0
for line in open(expected_file):
    command, columns = line.split()
    cur.execute("SHOW " + command)
    names = "|".join(d.name for d in cur.description)
    if names != columns:
        print("SHOW %s: got %s, want %s" % (command, names, columns))
        bad += 1
    cur.fetchall()

# Types as PgBouncer sends them: 's' text (25), 'i' int4 (23), 'q' int8 (20), 'N' numeric (1700).
def types(sql):
    cur.execute(sql)
    rows = cur.fetchall()
    return {d.name: d.type_code for d in cur.description}, rows

want = {
    "SHOW POOLS": {"database": 25, "cl_active": 23, "maxwait_us": 23, "pool_mode": 25},
    "SHOW STATS": {"database": 25, "total_xact_count": 1700, "avg_wait_time": 1700},
    "SHOW STATS_TOTALS": {"xact_count": 1700},
    "SHOW DATABASES": {"port": 23, "pool_size": 23, "paused": 23, "force_user": 25},
    "SHOW CLIENTS": {"port": 23, "connect_time": 25, "id": 23},
    "SHOW LISTS": {"items": 23},
    "SHOW DNS_HOSTS": {"ttl": 20},
    "SHOW USERS": {"pool_size": 25, "max_user_connections": 23},
}
for sql, cols in want.items():
    got, rows = types(sql)
    for name, oid in cols.items():
        if got.get(name) != oid:
            print("%s: column %s has type %s, want %s" % (sql, name, got.get(name), oid))
            bad += 1

# Values decode: numerics as Decimal, ints as int, NULL as None.
_, rows = types("SHOW DATABASES")
pgb = [r for r in rows if r[0] == "pgbouncer"]
if not pgb or pgb[0][1] is not None or pgb[0][5] != 2:
    print("SHOW DATABASES pgbouncer row: %r" % (pgb,))
    bad += 1

# An error leaves the connection usable.
try:
    cur.execute("SHOW NOTHING")
    print("SHOW NOTHING succeeded")
    bad += 1
except psycopg2.Error as e:
    if e.pgcode != "08P01" or "invalid command 'SHOW NOTHING', use SHOW HELP;" not in str(e):
        print("SHOW NOTHING: %s %s" % (e.pgcode, e))
        bad += 1
cur.execute("SHOW VERSION")
if not cur.fetchone()[0].startswith("PgBouncer 1.25.0"):
    bad += 1
print("bad=%d" % bad)
sys.exit(1 if bad else 0)
)PY");
  CommandResult r = RunCommand({"/usr/bin/python3", script, std::to_string(rb.Port()), dir.File("expected.txt")}, 60s);
  INFO("python:\n" << r.out << r.err << "\nlog:\n" << rb.LogTail());
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("bad=0") != std::string::npos);
}

TEST_CASE("admin console: the exact queries of pgbouncer_exporter succeed with the columns it maps",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  // The exporter's stats user is typically a stats_users member.
  PgConn c = Console(ConsoleConnString(rb, kStatsUser, kStatsPassword));
  struct Probe {
    const char* sql;
    std::vector<const char*> columns;
  };
  const Probe probes[] = {
      {"SHOW STATS", {"database", "total_xact_count", "total_query_count", "total_received", "total_sent",
                      "total_xact_time", "total_query_time", "total_wait_time", "total_server_assignment_count"}},
      {"SHOW VERSION;", {"version"}},
      {"SHOW LISTS;", {"list", "items"}},
      {"SHOW CONFIG;", {"key", "value", "default", "changeable"}},
      {"SHOW databases;", {"name", "host", "port", "database", "force_user", "pool_size", "pool_mode",
                           "max_connections", "current_connections", "paused", "disabled"}},
      {"SHOW stats_totals;", {"database", "query_count", "query_time", "bytes_received", "bytes_sent", "wait_time",
                              "xact_count", "xact_time", "client_parse_count", "server_parse_count", "bind_count"}},
      {"SHOW pools;", {"database", "user", "cl_active", "cl_active_cancel_req", "cl_waiting", "cl_waiting_cancel_req",
                       "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested",
                       "sv_login", "maxwait"}},
      {"SHOW CLIENTS;", {"user", "database", "state", "application_name", "addr"}},
  };
  for (const Probe& p : probes) {
    QueryResult r = c.Exec(p.sql);
    INFO(p.sql << ": " << r.error);
    REQUIRE(r.ok);
    for (const char* col : p.columns) {
      INFO("column " << col);
      CHECK(ColumnIndex(r, col) >= 0);
    }
  }
  // SHOW LISTS: two columns, every item a number (the exporter parses them as floats).
  QueryResult lists = c.Exec("SHOW LISTS;");
  CHECK(lists.columns.size() == 2);
  for (const auto& row : lists.rows) CHECK(row[1].find_first_not_of("0123456789") == std::string::npos);
  CHECK(Cell(lists, "list", "pools", "items") == "2");
  QueryResult config = c.Exec("SHOW CONFIG;");
  CHECK(Cell(config, "key", "max_client_conn", "value") == "1000");
  CHECK(Cell(config, "key", "max_user_connections", "value") == "0");
}

TEST_CASE("admin console: access rules for admin_users and stats_users and others and the own-uid unix login",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));

  // Neither admin nor stats user: refused at login, as PgBouncer.
  PgConn other = PgConn::Connect(rb.ConnString("rb_md5", "pgbouncer"));
  CHECK_FALSE(other.Ok());
  CHECK(other.Error().find("not allowed") != std::string::npos);
  CHECK(other.SqlState() == "08P01");

  // A stats user may look, not touch.
  PgConn stats = Console(ConsoleConnString(rb, kStatsUser, kStatsPassword));
  CHECK(stats.Exec("SHOW POOLS").ok);
  CHECK(stats.Exec("SHOW SERVERS").ok);
  for (const char* cmd : {"PAUSE", "RESUME", "RELOAD", "KILL rbtest", "SHOW FDS", "SET default_pool_size = 5",
                          "SHUTDOWN", "SUSPEND", "DISABLE rbtest", "RECONNECT"}) {
    QueryResult r = stats.Exec(cmd);
    INFO(cmd << ": " << r.error);
    CHECK_FALSE(r.ok);
    CHECK(r.sqlstate == "08P01");
    CHECK(r.error.find("admin access needed") != std::string::npos);
  }
  CHECK(stats.Exec("SHOW STATE").ok);  // still usable

  // A wrong password for an admin is a password failure.
  PgConn wrong = PgConn::Connect(ConsoleConnString(rb, kAdminUser, "wrong"));
  CHECK_FALSE(wrong.Ok());
  CHECK(wrong.SqlState() == "28P01");

  // The process's own OS user as "pgbouncer" over the unix socket: no password, every right.
  PgConn own = Console("host=" + rb.SocketDir() + " port=" + std::to_string(rb.Port()) +
                       " dbname=pgbouncer user=pgbouncer connect_timeout=20");
  QueryResult pause = own.Exec("PAUSE");
  INFO(pause.error);
  CHECK(pause.ok);
  CHECK(pause.command_tag == "PAUSE");
  CHECK(own.Exec("RESUME").command_tag == "RESUME");
  // The same name over TCP is an ordinary user, unknown to the auth_file.
  PgConn tcp = PgConn::Connect(ConsoleConnString(rb, "pgbouncer", ""));
  CHECK_FALSE(tcp.Ok());
}

TEST_CASE("admin console: unknown commands and malformed SET and over-long queries and the extended protocol get "
          "the PgBouncer errors and the console stays usable",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn c = Console(ConsoleConnString(rb));
  auto expect_error = [&](const std::string& sql, const std::string& message) {
    QueryResult r = c.Exec(sql);
    INFO(sql.substr(0, 80) << ": " << r.error.substr(0, 300));
    CHECK_FALSE(r.ok);
    CHECK(r.sqlstate == "08P01");
    CHECK(r.error.find(message) != std::string::npos);
    // The console stays usable after every error.
    QueryResult v = c.Exec("SHOW VERSION");
    REQUIRE(v.ok);
    CHECK(v.rows.size() == 1);
  };
  expect_error("FOO", "invalid command 'FOO', use SHOW HELP;");
  expect_error("SHOW NOTHING", "invalid command 'SHOW NOTHING', use SHOW HELP;");
  expect_error("SELECT 1", "invalid command 'SELECT 1', use SHOW HELP;");
  expect_error("SHOW POOLS extra", "invalid command 'SHOW POOLS extra', use SHOW HELP;");
  expect_error("PAUSE rbtest; PAUSE", "invalid command 'PAUSE rbtest; PAUSE', use SHOW HELP;");
  expect_error("BEGIN", "invalid command 'BEGIN', use SHOW HELP;");
  expect_error("SET default_pool_size =", "invalid command 'SET default_pool_size =', use SHOW HELP;");
  expect_error("SET default_pool_size = 1.5", "invalid command 'SET default_pool_size = 1.5', use SHOW HELP;");
  expect_error("SET nosuch_setting = 1", "SET failed");
  expect_error("SET default_pool_size = 'many'", "SET failed");
  expect_error("SET listen_port = 1", "SET failed");  // not changeable at run time
  expect_error("SET \"\" = 1", "bad arguments");
  expect_error("SHOW " + std::string(200, 'x'), "bad arguments");
  expect_error("SET default_pool_size = '" + std::string(300, '1') + "'", "bad arguments");
  expect_error("RELOAD now", "invalid command 'RELOAD now', use SHOW HELP;");
  expect_error("SHUTDOWN LATER", "invalid command 'SHUTDOWN LATER', use SHOW HELP;");
  expect_error("KILL_CLIENT nobody", "invalid client pointer supplied");
  expect_error("KILL_CLIENT 999999", "client not found");
  expect_error("PAUSE nosuchdb", "no such database: nosuchdb");
  expect_error("RESUME rbtest", "database rbtest is not paused");
  expect_error("RESUME", "pooler is not paused/suspended");
  expect_error("DISABLE", "a database is required");
  expect_error("PAUSE pgbouncer", "cannot pause admin db: pgbouncer");
  // 100 KB of text: the error quotes it, cut at 1023 bytes as PgBouncer's buffer does.
  {
    std::string huge = "SELECT '" + std::string(100000, 'y') + "'";
    QueryResult r = c.Exec(huge);
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("invalid command 'SELECT 'yyy") != std::string::npos);
    CHECK(r.error.find(std::string(1100, 'y')) == std::string::npos);
    CHECK(c.Exec("SHOW STATE").ok);
  }
  std::string log = rb.LogText();
  CHECK(log.find("ERROR unknown parameter: pgbouncer/nosuch_setting") != std::string::npos);
  CHECK(log.find("ERROR invalid command 'FOO', use SHOW HELP;") != std::string::npos);

  // SET of a parameter drivers send on connect: PgBouncer ignores it, with a notice.
  QueryResult ignored = c.Exec("SET client_encoding TO 'UTF8'");
  CHECK(ignored.ok);
  CHECK(ignored.command_tag == "SET");
  QueryResult fake = c.Exec("SHOW client_encoding");
  CHECK(fake.ok);
  CHECK(fake.Scalar() == "UTF-8");

  // The extended protocol: an ERROR, then a FATAL "bad packet", and the connection is closed.
  PGresult* res = PQexecParams(c.Raw(), "SHOW VERSION", 0, nullptr, nullptr, nullptr, nullptr, 0);
  std::string message = PQresultErrorMessage(res);
  PQclear(res);
  INFO(message);
  CHECK(message.find("extended query protocol not supported by admin console") != std::string::npos);
  bool closed = WaitUntil(
      [&] {
        PGresult* r = PQexec(c.Raw(), "SHOW VERSION");
        bool bad = PQresultStatus(r) != PGRES_TUPLES_OK;
        PQclear(r);
        return bad;
      },
      5s);
  CHECK(closed);
  CHECK(rb.Running());
}

TEST_CASE("admin console: SET applies at once and SHOW CONFIG shows it", "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn c = Console(ConsoleConnString(rb));
  QueryResult set = c.Exec("SET default_pool_size = 7");
  INFO(set.error);
  REQUIRE(set.ok);
  CHECK(set.command_tag == "SET default_pool_size=7");
  CHECK(Cell(c.Exec("SHOW CONFIG"), "key", "default_pool_size", "value") == "7");
  CHECK(Cell(c.Exec("SHOW DATABASES"), "name", "rbtest", "pool_size") == "7");
  QueryResult quoted = c.Exec("set server_reset_query to 'DISCARD ALL; SELECT 1'");
  CHECK(quoted.command_tag == "SET server_reset_query=DISCARD ALL; SELECT 1");
  CHECK(Cell(c.Exec("SHOW CONFIG"), "key", "server_reset_query", "value") == "DISCARD ALL; SELECT 1");
  // Every worker has the new value: the pool is sized by it from whichever worker opens servers.
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  CHECK(rb.Running());
}

TEST_CASE("admin console: KILL_CLIENT then DISABLE and ENABLE then RECONNECT and WAIT_CLOSE then KILL and RESUME then SUSPEND",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn admin = Console(ConsoleConnString(rb));

  // KILL_CLIENT by the id SHOW CLIENTS gives.
  PgConn victim = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(victim.Ok());
  REQUIRE(victim.Exec("SELECT 1").ok);
  QueryResult clients = admin.Exec("SHOW CLIENTS");
  std::string id = Cell(clients, "user", "rb_md5", "id");
  REQUIRE_FALSE(id.empty());
  QueryResult kill = admin.Exec("KILL_CLIENT " + id);
  INFO(kill.error);
  CHECK(kill.command_tag == "KILL_CLIENT");
  QueryResult after = victim.Exec("SELECT 1");
  CHECK_FALSE(after.ok);
  CHECK(after.error.find("admin forced disconnect") != std::string::npos);
  CHECK(Cell(admin.Exec("SHOW CLIENTS"), "user", "rb_md5", "id").empty());

  // DISABLE and ENABLE flip SHOW DATABASES' flag.
  CHECK(admin.Exec("DISABLE rbtest").command_tag == "DISABLE");
  CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", "rbtest", "disabled") == "1");
  CHECK(admin.Exec("ENABLE rbtest").command_tag == "ENABLE");
  CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", "rbtest", "disabled") == "0");

  // RECONNECT closes the idle server at once; WAIT_CLOSE then has nothing to wait for.
  REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
  std::string server = Cell(admin.Exec("SHOW SERVERS"), "database", "rbtest", "ptr");
  REQUIRE_FALSE(server.empty());
  CHECK(admin.Exec("RECONNECT rbtest").command_tag == "RECONNECT");
  QueryResult wait = admin.Exec("WAIT_CLOSE rbtest", 10s);
  CHECK(wait.command_tag == "WAIT_CLOSE");
  CHECK(Cell(admin.Exec("SHOW SERVERS"), "ptr", server, "ptr").empty());
  CHECK(admin.Exec("WAIT_CLOSE", 10s).command_tag == "WAIT_CLOSE");

  // KILL drops the database's clients and servers and leaves it paused until RESUME.
  PgConn killed = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(killed.Ok());
  REQUIRE(killed.Exec("SELECT 1").ok);
  CHECK(admin.Exec("KILL rbtest").command_tag == "KILL");
  QueryResult dead = killed.Exec("SELECT 1");
  CHECK_FALSE(dead.ok);
  CHECK(dead.error.find("database removed") != std::string::npos);
  CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", "rbtest", "paused") == "1");
  CHECK(CellInt(admin.Exec("SHOW DATABASES"), "name", "rbtest", "current_connections") == 0);
  CHECK(admin.Exec("RESUME rbtest").command_tag == "RESUME");
  CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", "rbtest", "paused") == "0");
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 2").ok);

  // SUSPEND: no new transactions until RESUME; SHOW STATE says so.
  QueryResult suspend = admin.Exec("SUSPEND", 10s);
  CHECK(suspend.command_tag == "SUSPEND");
  CHECK(Cell(admin.Exec("SHOW STATE"), "key", "suspended", "value") == "yes");
  CHECK(admin.Exec("PAUSE").error.find("already suspended/paused") != std::string::npos);
  CHECK(admin.Exec("RESUME").command_tag == "RESUME");
  CHECK(Cell(admin.Exec("SHOW STATE"), "key", "active", "value") == "yes");
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 3").ok);
}

TEST_CASE("admin console: PAUSE waits for servers and queries wait through it and RESUME lets pgbench finish with no "
          "failure",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn admin = Console(ConsoleConnString(rb));
  BackgroundPgbench bench(rb, 8, 8);
  REQUIRE(WaitUntil([&] { return TotalXacts(admin) > 100; }, 20s));

  QueryResult pause = admin.Exec("PAUSE", 30s);
  INFO(pause.error << "\nlog:\n" << rb.LogTail());
  REQUIRE(pause.ok);
  CHECK(pause.command_tag == "PAUSE");
  // Every server went back and was closed; pgbench's next queries wait.
  QueryResult pools = admin.Exec("SHOW POOLS");
  CHECK(CellInt(pools, "database", kTestDb, "sv_active") == 0);
  CHECK(WaitUntil([&] { return CellInt(admin.Exec("SHOW POOLS"), "database", kTestDb, "cl_waiting") > 0; }, 5s));
  CHECK(Cell(admin.Exec("SHOW STATE"), "key", "paused", "value") == "yes");
  int64_t during = TotalXacts(admin);
  std::this_thread::sleep_for(1s);
  CHECK(TotalXacts(admin) == during);
  CHECK(admin.Exec("PAUSE").error.find("already suspended/paused") != std::string::npos);

  CHECK(admin.Exec("RESUME").command_tag == "RESUME");
  CHECK(WaitUntil([&] { return TotalXacts(admin) > during; }, 5s));
  const PgbenchResult& result = bench.Join();
  INFO(result.output << "\nlog:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);

  // PAUSE of one database waits for that database only.
  CHECK(admin.Exec("PAUSE rbtest", 30s).command_tag == "PAUSE");
  CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", "rbtest", "paused") == "1");
  CHECK(admin.Exec("RESUME rbtest").command_tag == "RESUME");
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
}

TEST_CASE("admin console: SHOW STATS averages are per second over the last stats_period and totals add up over workers",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg, {{"stats_period", "1"}}));
  PgConn admin = Console(ConsoleConnString(rb));
  BackgroundPgbench bench(rb, 4, 4);
  REQUIRE(WaitUntil([&] { return TotalXacts(admin) > 100; }, 20s));
  std::this_thread::sleep_for(2500ms);  // two stats periods: the averages cover real traffic
  QueryResult stats = admin.Exec("SHOW STATS");
  REQUIRE(stats.ok);
  CHECK(CellInt(stats, "database", kTestDb, "avg_xact_count") > 0);
  CHECK(CellInt(stats, "database", kTestDb, "avg_query_count") > CellInt(stats, "database", kTestDb, "avg_xact_count"));
  CHECK(CellInt(stats, "database", kTestDb, "avg_xact_time") > 0);
  CHECK(CellInt(stats, "database", kTestDb, "avg_recv") > 0);
  const PgbenchResult& result = bench.Join();
  CHECK(result.failed == 0);
  // Totals: pgbench's own count, and SHOW TOTALS agrees with SHOW STATS summed.
  QueryResult totals = admin.Exec("SHOW STATS_TOTALS");
  CHECK(CellInt(totals, "database", kTestDb, "xact_count") >= result.transactions);
  QueryResult all = admin.Exec("SHOW TOTALS");
  CHECK(CellInt(all, "name", "total_xact_count", "value") == CellInt(totals, "database", kTestDb, "xact_count"));
  // SHOW WORKERS splits the same transactions over the workers.
  QueryResult workers = admin.Exec("SHOW WORKERS");
  int64_t sum = 0;
  for (const auto& row : workers.rows) sum += std::stoll(row[static_cast<size_t>(ColumnIndex(workers, "xact_count"))]);
  CHECK(sum == CellInt(totals, "database", kTestDb, "xact_count"));
  // After two idle periods the averages fall back to zero.
  std::this_thread::sleep_for(2500ms);
  CHECK(CellInt(admin.Exec("SHOW STATS"), "database", kTestDb, "avg_xact_count") == 0);
}

TEST_CASE("signals: SIGUSR1 pauses and SIGUSR2 resumes while pgbench runs with no failed transaction",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn admin = Console(ConsoleConnString(rb));
  BackgroundPgbench bench(rb, 8, 6);
  REQUIRE(WaitUntil([&] { return TotalXacts(admin) > 100; }, 20s));
  rb.Signal(SIGUSR1);
  CHECK(WaitUntil([&] { return Cell(admin.Exec("SHOW STATE"), "key", "paused", "value") == "yes"; }, 5s));
  // The janitor's work: servers drain and close; clients wait.
  CHECK(WaitUntil(
      [&] {
        QueryResult p = admin.Exec("SHOW POOLS");
        return CellInt(p, "database", kTestDb, "sv_active") == 0 && CellInt(p, "database", kTestDb, "sv_idle") == 0 &&
               CellInt(p, "database", kTestDb, "cl_waiting") > 0;
      },
      10s));
  int64_t during = TotalXacts(admin);
  std::this_thread::sleep_for(500ms);
  CHECK(TotalXacts(admin) == during);
  rb.Signal(SIGUSR2);
  CHECK(WaitUntil([&] { return TotalXacts(admin) > during; }, 5s));
  const PgbenchResult& result = bench.Join();
  INFO(result.output << "\nlog:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.failed == 0);
  std::string log = rb.LogText();
  CHECK(log.find("LOG got SIGUSR1, pausing all activity") != std::string::npos);
  CHECK(log.find("LOG got SIGUSR2, continuing from PAUSE") != std::string::npos);
  rb.Signal(SIGUSR2);
  CHECK(WaitUntil([&] { return rb.LogText().find("got SIGUSR2, but not paused/suspended") != std::string::npos; }, 5s));
}

TEST_CASE("reload: RELOAD and SIGHUP apply a pool-size change while pgbench runs and a broken file changes "
          "nothing",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg, {{"default_pool_size", "2"}}));
  PgConn admin = Console(ConsoleConnString(rb));
  auto servers = [&] { return CellInt(admin.Exec("SHOW DATABASES"), "name", kTestDb, "current_connections"); };
  {
    BackgroundPgbench bench(rb, 8, 6);
    REQUIRE(WaitUntil([&] { return TotalXacts(admin) > 100; }, 20s));
    CHECK(servers() <= 2);
    SetConfigLine(rb, "default_pool_size", "6");
    QueryResult reload = admin.Exec("RELOAD");
    INFO(reload.error << "\nlog:\n" << rb.LogTail());
    REQUIRE(reload.ok);
    CHECK(reload.command_tag == "RELOAD");
    CHECK(Cell(admin.Exec("SHOW CONFIG"), "key", "default_pool_size", "value") == "6");
    CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", kTestDb, "pool_size") == "6");
    // Eight clients want servers: the pool grows to its new size.
    CHECK(WaitUntil([&] { return servers() > 2; }, 5s));
    CHECK(servers() <= 6);
    const PgbenchResult& result = bench.Join();
    INFO(result.output << "\nlog:\n" << rb.LogTail());
    CHECK(result.exit_code == 0);
    CHECK(result.failed == 0);
  }
  {
    BackgroundPgbench bench(rb, 8, 5);
    REQUIRE(WaitUntil([&] { return TotalXacts(admin) > 100; }, 20s));
    SetConfigLine(rb, "default_pool_size", "8");
    rb.Signal(SIGHUP);
    CHECK(WaitUntil([&] { return Cell(admin.Exec("SHOW CONFIG"), "key", "default_pool_size", "value") == "8"; }, 5s));
    CHECK(Cell(admin.Exec("SHOW DATABASES"), "name", kTestDb, "pool_size") == "8");
    const PgbenchResult& result = bench.Join();
    INFO(result.output << "\nlog:\n" << rb.LogTail());
    CHECK(result.exit_code == 0);
    CHECK(result.failed == 0);
  }
  CHECK(rb.LogText().find("LOG got SIGHUP, re-reading config") != std::string::npos);

  // A broken file: RELOAD says so with PgBouncer's text and SQLSTATE, and nothing changes.
  std::string good = ReadFile(rb.ConfigPath());
  {
    FILE* f = fopen(rb.ConfigPath().c_str(), "a");
    REQUIRE(f != nullptr);
    fputs("default_pool_size = 3\nthis line is not a setting\n", f);
    fclose(f);
  }
  QueryResult bad = admin.Exec("RELOAD");
  CHECK_FALSE(bad.ok);
  CHECK(bad.sqlstate == "F0000");
  CHECK(bad.error.find("RELOAD failed, see logs for additional details") != std::string::npos);
  CHECK(Cell(admin.Exec("SHOW CONFIG"), "key", "default_pool_size", "value") == "8");
  CHECK(rb.LogText().find("RELOAD Failed, see logs for more details") != std::string::npos);

  // A setting that needs a restart is reported and kept.
  {
    FILE* f = fopen(rb.ConfigPath().c_str(), "w");
    REQUIRE(f != nullptr);
    fputs(good.c_str(), f);
    fclose(f);
  }
  SetConfigLine(rb, "listen_port", std::to_string(rb.Port() + 1));
  CHECK(admin.Exec("RELOAD").command_tag == "RELOAD");
  CHECK(Cell(admin.Exec("SHOW CONFIG"), "key", "listen_port", "value") == std::to_string(rb.Port()));
  CHECK(rb.LogText().find("setting \"listen_port\" changed, but needs a restart to take effect") != std::string::npos);
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
}

TEST_CASE("shutdown: SHUTDOWN WAIT_FOR_CLIENTS answers and serves connected clients and exits when they leave",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, AdminOptions(pg));
  PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(client.Ok());
  {
    PgConn admin = Console(ConsoleConnString(rb));
    QueryResult r = admin.Exec("SHUTDOWN WAIT_FOR_CLIENTS");
    INFO(r.error);
    CHECK(r.command_tag == "SHUTDOWN");
  }
  // Connected clients go on; new ones are not taken.
  std::this_thread::sleep_for(300ms);
  CHECK(client.Exec("SELECT 1").ok);
  CHECK(rb.Running());
  CHECK_FALSE(Query(rb.ConnString("rb_md5"), "SELECT 1", 5s).ok);
  client = PgConn();
  INFO("log:\n" << rb.LogTail());
  CHECK(WaitUntil([&] { return !rb.Running(); }, 10s));
  std::string log = rb.LogText();
  CHECK(log.find("LOG SHUTDOWN WAIT_FOR_CLIENTS command issued") != std::string::npos);
  CHECK(log.find("client connections dropped, exiting") != std::string::npos);
}

TEST_CASE("shutdown: SHUTDOWN WAIT_FOR_SERVERS answers and exits and plain SHUTDOWN exits without an answer",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  {
    RingbouncerProcess rb(pg, AdminOptions(pg));
    REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
    PgConn admin = Console(ConsoleConnString(rb));
    QueryResult r = admin.Exec("SHUTDOWN WAIT_FOR_SERVERS");
    INFO(r.error << "\nlog:\n" << rb.LogTail());
    CHECK(r.command_tag == "SHUTDOWN");
    CHECK(WaitUntil([&] { return !rb.Running(); }, 10s));
    CHECK(rb.LogText().find("LOG SHUTDOWN WAIT_FOR_SERVERS command issued") != std::string::npos);
  }
  {
    RingbouncerProcess rb(pg, AdminOptions(pg));
    PgConn admin = Console(ConsoleConnString(rb));
    QueryResult r = admin.Exec("SHUTDOWN", 10s);
    INFO(r.error << "\nlog:\n" << rb.LogTail());
    CHECK_FALSE(r.ok);  // the process went away with no answer
    CHECK(WaitUntil([&] { return !rb.Running(); }, 10s));
    CHECK(rb.Stop() == 0);
    CHECK(rb.LogText().find("LOG SHUTDOWN command issued") != std::string::npos);
  }
}

TEST_CASE("rolling restart: two processes share one port and SIGTERM of one while pgbench runs fails no "
          "transaction and it exits once its clients are gone",
          "[integration][admin]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess a(pg, AdminOptions(pg, {{"so_reuseport", "1"}, {"workers", "2"}}));
  RingbouncerProcess b(pg, AdminOptions(pg, {{"so_reuseport", "1"}, {"workers", "2"},
                                             {"listen_port", std::to_string(a.Port())}}));
  REQUIRE(WaitUntil([&] { return b.LogText().find("process up") != std::string::npos; }, 30s));
  PgConn admin_a = Console(UnixConsoleConnString(a));
  PgConn admin_b = Console(UnixConsoleConnString(b));

  BackgroundPgbench bench(a, 8, 8);
  REQUIRE(WaitUntil([&] { return TotalXacts(admin_a) + TotalXacts(admin_b) > 200; }, 20s));
  QueryResult pools_a = admin_a.Exec("SHOW POOLS");
  int64_t clients_a = std::max<int64_t>(0, CellInt(pools_a, "database", kTestDb, "cl_active")) +
                      std::max<int64_t>(0, CellInt(pools_a, "database", kTestDb, "cl_waiting"));
  admin_a = PgConn();  // the console is a client too: TERM waits for it
  a.Signal(SIGTERM);
  std::this_thread::sleep_for(1s);
  // New connections land on the survivor.
  for (int i = 0; i < 5; ++i) {
    QueryResult r = Query(a.ConnString("rb_md5"), "SELECT 1");
    INFO(r.error);
    CHECK(r.ok);
  }
  // The TERMed one still serves its pgbench clients (if the kernel gave it any).
  if (clients_a > 0) CHECK(a.Running());
  const PgbenchResult& result = bench.Join();
  INFO(result.output << "\nA:\n" << a.LogTail() << "\nB:\n" << b.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
  CHECK(WaitUntil([&] { return !a.Running(); }, 15s));
  CHECK(a.LogText().find("got SIGTERM, shutting down, waiting for all clients disconnect") != std::string::npos);
  CHECK(b.Running());
  CHECK(admin_b.Exec("SHOW VERSION").ok);
}

}  // namespace
}  // namespace rb::test
