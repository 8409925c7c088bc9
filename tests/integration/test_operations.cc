// Operations features against a real PostgreSQL and real clients: the shutdown signals (INT, a
// second INT, TERM twice, QUIT) with PgBouncer 1.25's log lines; reload re-reading the auth_file
// and the auth_hba_file; timeouts lowered by RELOAD applying to clients already connected; the
// admin console's ParameterStatus; cancels forwarded across three peered instances (two hops,
// an unknown peer, a loop cut by the TTL, SHOW PEERS and SHOW PEER_POOLS); syslog lines.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/instance_group.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kConsolePassword = "adminpass";

RingbouncerOptions OpsOptions(const PgCluster& pg, std::map<std::string, std::string> extra = {}) {
  RingbouncerOptions o;
  o.settings = {{"admin_users", std::string(kAdminUser)}, {"workers", "2"}};
  for (auto& [k, v] : extra) o.settings[k] = v;
  o.userlist = DefaultUserlist(pg);
  o.userlist.push_back(UserlistPlain(kAdminUser, kConsolePassword));
  return o;
}

std::string ConsoleConnString(const RingbouncerProcess& rb) {
  return "host=" + rb.Host() + " port=" + std::to_string(rb.Port()) + " dbname=pgbouncer user=" +
         std::string(kAdminUser) + " password=" + std::string(kConsolePassword) + " connect_timeout=10";
}

PgConn Console(const std::string& conninfo) {
  PgConn c = PgConn::Connect(conninfo);
  INFO("console connect: " << c.Error());
  REQUIRE(c.Ok());
  return c;
}

std::string ConfigValue(PgConn& admin, std::string_view key) {
  return Cell(admin.Exec("SHOW CONFIG"), "key", key, "value");
}

void WriteText(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
}

// Rewrites one "key = value" line of pgbouncer.ini, or appends it to the [pgbouncer] section
// (RingbouncerProcess writes that section last, one setting per line).
void SetConfigLine(const RingbouncerProcess& rb, const std::string& key, const std::string& value) {
  std::string text = ReadFile(rb.ConfigPath());
  size_t at = text.find("\n" + key + " = ");
  if (at == std::string::npos) {
    if (!text.empty() && text.back() != '\n') text += "\n";
    text += key + " = " + value + "\n";
  } else {
    size_t end = text.find('\n', at + 1);
    text.replace(at + 1, end - at - 1, key + " = " + value);
  }
  WriteText(rb.ConfigPath(), text);
}

// PostgreSQL runs `sql` right now (as seen by pg_stat_activity).
bool RunningInPostgres(const PgCluster& pg, const std::string& sql, std::chrono::milliseconds timeout = 10s) {
  return Eventually(
      [&] {
        QueryResult r = pg.SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = " +
                                          SqlLiteral(sql));
        return r.ok && r.Scalar() != "0";
      },
      timeout, 20ms);
}

// =============================================================================================
// 1. Signals.

TEST_CASE("signals: SIGINT lets a running query finish and refuses new logins, then exits with PgBouncer's lines",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, OpsOptions(pg));
  PgConn busy = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(busy.Ok());
  const std::string sleep = "SELECT pg_sleep(2), 'finished'";
  REQUIRE(busy.Send(sleep));
  REQUIRE(RunningInPostgres(pg, sleep));
  const auto signalled = Clock::now();
  rb.Signal(SIGINT);
  // While the query runs the process stays, and takes no new client.
  REQUIRE(Eventually([&] { return Contains(rb.LogText(), "got SIGINT"); }, 5s));
  QueryResult refused = Query(rb.ConnString("rb_md5", kTestDb, "connect_timeout=3"), "SELECT 1", 5s);
  INFO("new login during the shutdown: " << refused.error);
  CHECK_FALSE(refused.ok);
  CHECK(rb.Running());

  QueryResult r = busy.Finish(10s);
  INFO(r.error << "\nlog:\n" << rb.LogTail());
  REQUIRE(r.ok);
  CHECK(r.rows.at(0).at(1) == "finished");
  CHECK(Clock::now() - signalled >= 1500ms);
  // Its server is released: the process goes.
  CHECK(Eventually([&] { return !rb.Running(); }, 5s));
  CHECK(rb.Stop() == 0);
  const std::string log = rb.LogText();
  CHECK(Contains(log, "LOG got SIGINT, shutting down, waiting for all servers connections to be released"));
  CHECK(Contains(log, "LOG server connections dropped, exiting"));
  CHECK_FALSE(Contains(log, "fast exit"));
}

TEST_CASE("signals: a second SIGINT, a second SIGTERM and SIGQUIT exit at once while a query runs",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  struct Case {
    std::vector<int> signals;
    std::vector<std::string> lines;
  };
  const std::vector<Case> cases = {
      {{SIGINT, SIGINT},
       {"LOG got SIGINT, shutting down, waiting for all servers connections to be released",
        "LOG got SIGINT while shutting down, fast exit"}},
      {{SIGTERM, SIGTERM},
       {"LOG got SIGTERM, shutting down, waiting for all clients disconnect",
        "LOG got SIGTERM while shutting down, fast exit"}},
      {{SIGTERM, SIGINT},
       {"LOG got SIGTERM, shutting down, waiting for all clients disconnect",
        "LOG got SIGINT while shutting down, fast exit"}},
      {{SIGQUIT}, {"LOG got SIGQUIT, fast exit"}},
  };
  for (const Case& c : cases) {
    INFO("signals " << c.signals.size() << ", first " << strsignal(c.signals.front()));
    RingbouncerProcess rb(pg, OpsOptions(pg));
    PgConn busy = PgConn::Connect(rb.ConnString("rb_md5"));
    REQUIRE(busy.Ok());
    const std::string sleep = "SELECT pg_sleep(30), " + std::to_string(c.signals.size() * 100 + c.signals.front());
    REQUIRE(busy.Send(sleep));
    REQUIRE(RunningInPostgres(pg, sleep));
    for (size_t i = 0; i + 1 < c.signals.size(); ++i) {
      rb.Signal(c.signals[i]);
      REQUIRE(Eventually([&] { return Contains(rb.LogText(), c.lines[i]); }, 5s));
      // The first signal waits: for the server (INT) or for the client (TERM).
      std::this_thread::sleep_for(300ms);
      CHECK(rb.Running());
    }
    const auto last = Clock::now();
    rb.Signal(c.signals.back());
    INFO("log:\n" << rb.LogTail());
    REQUIRE(Eventually([&] { return !rb.Running(); }, 5s));
    CHECK(Clock::now() - last < 3s);
    CHECK(rb.Stop() == 0);
    // The client loses its connection rather than waiting out pg_sleep(30).
    QueryResult r = busy.Finish(5s);
    CHECK_FALSE(r.ok);
    CHECK(r.error != "timeout");
    const std::string log = rb.LogText();
    for (const std::string& line : c.lines) CHECK(Contains(log, line));
    CHECK_FALSE(Contains(log, "connections dropped, exiting"));
  }
}

// =============================================================================================
// 2. Reload re-reads the auth_file and the auth_hba_file.

TEST_CASE("reload: a password rotated in the auth_file applies after SIGHUP and after RELOAD",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  // The client user "alice" exists only in the auth_file; the server login is rb_md5's.
  RingbouncerOptions o = OpsOptions(pg);
  o.databases = {DatabaseLine(pg, kTestDb, "user=rb_md5 password=md5pass")};
  o.userlist.push_back(UserlistPlain("alice", "first-secret"));
  RingbouncerProcess rb(pg, o);
  PgConn admin = Console(ConsoleConnString(rb));
  const std::string userlist_path = rb.SocketDir() + "/userlist.txt";
  REQUIRE(Contains(ReadFile(userlist_path), "\"alice\""));
  auto login = [&](std::string_view password) {
    return Query(rb.ConnString("alice", kTestDb, "password=" + ConnInfoQuote(password)), "SELECT current_user", 10s);
  };
  auto rotate = [&](std::string_view password) {
    std::vector<std::string> lines = DefaultUserlist(pg);
    lines.push_back(UserlistPlain(kAdminUser, kConsolePassword));
    lines.push_back(UserlistPlain("alice", password));
    std::string text;
    for (const std::string& l : lines) text += l + "\n";
    WriteText(userlist_path, text);
  };

  QueryResult first = login("first-secret");
  INFO(first.error);
  REQUIRE(first.ok);
  CHECK(first.Scalar() == "rb_md5");
  // A client logged in before the rotation keeps working through it.
  PgConn before = PgConn::Connect(rb.ConnString("alice", kTestDb, "password=first-secret"));
  REQUIRE(before.Ok());

  SECTION("SIGHUP") {
    rotate("second-secret");
    // Nothing changes until the reload.
    CHECK(login("first-secret").ok);
    rb.Signal(SIGHUP);
    REQUIRE(Eventually([&] { return Contains(rb.LogText(), "got SIGHUP, re-reading config"); }, 5s));
    CHECK(Eventually([&] { return login("second-secret").ok; }, 5s));
  }
  SECTION("RELOAD") {
    rotate("second-secret");
    CHECK(login("first-secret").ok);
    QueryResult reload = admin.Exec("RELOAD");
    INFO(reload.error);
    REQUIRE(reload.ok);
    CHECK(login("second-secret").ok);
  }
  QueryResult old = login("first-secret");
  INFO(old.error << "\nlog:\n" << rb.LogTail());
  CHECK_FALSE(old.ok);
  CHECK(old.sqlstate == "28P01");
  CHECK(Contains(old.error, "password authentication failed"));
  CHECK(before.Exec("SELECT 1").ok);
}

TEST_CASE("reload: a rule changed in the auth_hba_file from md5 to reject and to trust applies after reload",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  TempDir dir("rb-hba");
  const std::string hba = dir.WriteFile("hba.conf", "host all all 127.0.0.1/32 md5\nlocal all all md5\n");
  RingbouncerProcess rb(pg, OpsOptions(pg, {{"auth_type", "hba"}, {"auth_hba_file", hba}}));
  const std::string unix_admin = "host=" + rb.SocketDir() + " port=" + std::to_string(rb.Port()) +
                                 " dbname=pgbouncer user=rb_admin password=adminpass connect_timeout=10";
  PgConn admin = Console(unix_admin);
  const std::string right = rb.ConnString("rb_md5");
  const std::string wrong = rb.ConnString("rb_md5", kTestDb, "password=not-it");
  // md5: the right password only.
  REQUIRE(Query(right, "SELECT 1").ok);
  QueryResult bad = Query(wrong, "SELECT 1");
  CHECK_FALSE(bad.ok);
  CHECK(bad.sqlstate == "28P01");
  PgConn kept = PgConn::Connect(right);
  REQUIRE(kept.Ok());

  // reject: nobody over TCP, whatever the password.
  WriteText(hba, "host all all 127.0.0.1/32 reject\nlocal all all md5\n");
  CHECK(Query(right, "SELECT 1").ok);  // not before the reload
  QueryResult reload = admin.Exec("RELOAD");
  INFO(reload.error << "\nlog:\n" << rb.LogTail());
  REQUIRE(reload.ok);
  QueryResult rejected = Query(right, "SELECT 1");
  INFO(rejected.error);
  CHECK_FALSE(rejected.ok);
  CHECK(rejected.sqlstate == "28000");
  // A reload does not drop the client that logged in under the old rule.
  CHECK(kept.Exec("SELECT 2").ok);

  // trust: any password, even a wrong one.
  WriteText(hba, "host all all 127.0.0.1/32 trust\nlocal all all md5\n");
  rb.Signal(SIGHUP);
  CHECK(Eventually([&] { return Query(wrong, "SELECT 1").ok; }, 5s));
  CHECK(Query(rb.ConnString("rb_md5", kTestDb, "password=also-wrong"), "SELECT 1").ok);
}

// Logins that are half way (the startup packet answered, the password not yet sent) when a
// reload replaces the config, twice over so that the config they started under is freed, finish
// and run a query: a login must not keep pointers into the config it started with. Over the
// "*" fallback too, whose entries a reload rebuilds. (SIGHUP during pgbench's logins crashed a
// worker this way; the ASan run catches any use of the freed config.)
TEST_CASE("reload: logins in progress across two reloads finish for a listed database and for the * fallback",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerOptions o = OpsOptions(pg, {{"auth_type", "plain"}});
  o.userlist = {UserlistPlain("rb_md5", "md5pass"), UserlistPlain(kAdminUser, kConsolePassword)};
  o.databases = {DatabaseLine(pg), "* = host=" + pg.TcpHost() + " port=" + std::to_string(pg.Port())};
  RingbouncerProcess rb(pg, o);
  PgConn admin = Console(ConsoleConnString(rb));

  std::vector<RawClient> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(RawClient::Connect(rb.Host(), rb.Port()));
    const std::string db = i % 2 == 0 ? std::string(kTestDb) : "postgres";  // "postgres" via "*"
    REQUIRE(clients.back().Send(RawClient::StartupMessage({{"user", "rb_md5"}, {"database", db}})));
    std::optional<RawMessage> ask = clients.back().ReadMessage(5s);
    REQUIRE(ask.has_value());
    REQUIRE(ask->type == 'R');  // AuthenticationCleartextPassword
  }
  for (const char* size : {"7", "9"}) {
    SetConfigLine(rb, "default_pool_size", size);
    REQUIRE(admin.Exec("RELOAD").command_tag == "RELOAD");
    CHECK(Cell(admin.Exec("SHOW CONFIG"), "key", "default_pool_size", "value") == size);
  }
  for (size_t i = 0; i < clients.size(); ++i) {
    INFO("client " << i);
    REQUIRE(clients[i].Send(RawClient::TypedMessage('p', std::string("md5pass") + '\0')));
    std::optional<std::vector<RawMessage>> welcome = clients[i].ReadUntilReady(10s);
    REQUIRE(welcome.has_value());
    REQUIRE(clients[i].Send(RawClient::QueryMessage("SELECT 41 + 1")));
    std::optional<std::vector<RawMessage>> answer = clients[i].ReadUntilReady(10s);
    REQUIRE(answer.has_value());
    bool row = false;
    for (const RawMessage& m : *answer) row |= m.type == 'D' && m.body.find("42") != std::string::npos;
    CHECK(row);
  }
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(Query(rb.ConnString("rb_md5", kTestDb, "password=md5pass"), "SELECT 1").ok);
}

// =============================================================================================
// 3. Timeouts changed by reload apply to clients already connected.

TEST_CASE("reload: client_idle_timeout set by RELOAD closes an idle client that was already connected, and no "
          "other",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, OpsOptions(pg));
  PgConn admin = Console(ConsoleConnString(rb));
  PgConn idle = PgConn::Connect(rb.ConnString("rb_md5"));
  PgConn busy = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(idle.Ok());
  REQUIRE(busy.Ok());
  REQUIRE(idle.Exec("SELECT 1").ok);
  std::this_thread::sleep_for(1500ms);  // idle longer than the coming timeout already

  SetConfigLine(rb, "client_idle_timeout", "2");
  REQUIRE(admin.Exec("RELOAD").ok);
  CHECK(ConfigValue(admin, "client_idle_timeout") == "2");
  const auto reloaded = Clock::now();
  // The busy client keeps talking and stays; the idle one goes within the new timeout.
  bool idle_gone = false;
  while (Clock::now() - reloaded < 6s && !idle_gone) {
    QueryResult b = busy.Exec("SELECT 1");
    INFO(b.error << "\nlog:\n" << rb.LogTail());
    REQUIRE(b.ok);
    QueryResult clients = admin.Exec("SHOW CLIENTS");
    int user = ColumnIndex(clients, "user");
    int n = 0;
    for (const auto& row : clients.rows) n += row.at(static_cast<size_t>(user)) == "rb_md5";
    idle_gone = n == 1;
    std::this_thread::sleep_for(200ms);
  }
  INFO("log:\n" << rb.LogTail());
  CHECK(idle_gone);
  CHECK(Clock::now() - reloaded < 5s);
  QueryResult late = idle.Exec("SELECT 1", 5s);
  CHECK_FALSE(late.ok);
  CHECK(Contains(late.error, "client_idle_timeout"));
  CHECK(Contains(rb.LogText(), "client_idle_timeout"));
}

TEST_CASE("reload: query_timeout set by RELOAD stops a connected client's long query, and SHOW CONFIG shows it",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, OpsOptions(pg, {{"query_timeout", "30"}}));
  PgConn admin = Console(ConsoleConnString(rb));
  PgConn client = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(client.Ok());
  REQUIRE(client.Exec("SELECT 1").ok);
  CHECK(ConfigValue(admin, "query_timeout") == "30");

  SetConfigLine(rb, "query_timeout", "1");
  REQUIRE(admin.Exec("RELOAD").ok);
  CHECK(ConfigValue(admin, "query_timeout") == "1");
  // Still connected through the reload; a short query is fine.
  REQUIRE(client.Exec("SELECT pg_sleep(0.2)").ok);
  const auto start = Clock::now();
  QueryResult r = client.Exec("SELECT pg_sleep(10)", 15s);
  const auto took = Clock::now() - start;
  INFO(r.error << "\nlog:\n" << rb.LogTail());
  CHECK_FALSE(r.ok);
  CHECK(Contains(r.error, "query timeout"));
  CHECK(took >= 900ms);
  CHECK(took < 4s);
  // The server-side query was cancelled, not left running.
  CHECK(Eventually(
      [&] {
        return pg.SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND "
                                 "state = 'active'")
                   .Scalar() == "0";
      },
      5s));
}

// =============================================================================================
// 4. The admin console's ParameterStatus.

TEST_CASE("admin console: the ParameterStatus messages are PgBouncer 1.25's, server_version first of all",
          "[integration][operations]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, OpsOptions(pg));
  PgConn admin = Console(ConsoleConnString(rb));
  // PgBouncer's admin welcome (admin.c admin_setup): PACKAGE_VERSION "/bouncer", then fixed values.
  const char* version = PQparameterStatus(admin.Raw(), "server_version");
  REQUIRE(version != nullptr);
  CHECK(std::string(version) == "1.25.0/bouncer");
  // The same version as SHOW VERSION reports.
  QueryResult v = admin.Exec("SHOW VERSION");
  REQUIRE(v.ok);
  CHECK(v.Scalar().rfind("PgBouncer 1.25.0", 0) == 0);
  const std::map<std::string, std::string> expected = {
      {"client_encoding", "UTF8"}, {"server_encoding", "UTF8"},
      {"DateStyle", "ISO"},        {"TimeZone", "GMT"},
      {"standard_conforming_strings", "on"}, {"is_superuser", "on"},
  };
  for (const auto& [name, value] : expected) {
    const char* got = PQparameterStatus(admin.Raw(), name.c_str());
    INFO(name);
    REQUIRE(got != nullptr);
    CHECK(std::string(got) == value);
  }
  // libpq derives its server version from it: 1.25.0 reads as 12500.
  CHECK(PQserverVersion(admin.Raw()) == 12500);
}

// =============================================================================================
// 5. Cancels across three peered instances.

// A session logged in with trust over the instance's admin port (a plain listener of that
// instance only), whose BackendKeyData the test keeps: libpq keeps the secret to itself.
struct KeyedSession {
  RawClient client;
  uint32_t pid = 0;
  uint32_t secret = 0;
};

KeyedSession Login(const InstanceGroup& group, int instance) {
  KeyedSession s{RawClient::Connect("127.0.0.1", group.AdminPort(instance))};
  s.client.Send(RawClient::StartupMessage({{"user", "rb_trust"}, {"database", std::string(kTestDb)}}));
  std::optional<std::vector<RawMessage>> login = s.client.ReadUntilReady(10s);
  REQUIRE(login.has_value());
  for (const RawMessage& m : *login) {
    REQUIRE(m.type != 'E');
    if (m.type == 'K' && m.body.size() == 8) {
      uint32_t a, b;
      std::memcpy(&a, m.body.data(), 4);
      std::memcpy(&b, m.body.data() + 4, 4);
      s.pid = ntohl(a);
      s.secret = ntohl(b);
    }
  }
  REQUIRE(s.pid != 0);
  return s;
}

std::string CancelRequest(uint32_t pid, uint32_t secret) {
  return RawClient::Int32(16) + RawClient::Int32(80877102) + RawClient::Int32(pid) + RawClient::Int32(secret);
}

// Sends a CancelRequest to instance `lander`; returns the connection, still open.
RawClient SendCancel(const InstanceGroup& group, int lander, uint32_t pid, uint32_t secret) {
  RawClient c = RawClient::Connect("127.0.0.1", group.AdminPort(lander));
  REQUIRE(c.Send(CancelRequest(pid, secret)));
  return c;
}

// A cancel key as proto/cancel_key.h lays it out, for a peer that may not exist: bytes 1-2 the
// peer id (low byte first), byte 3 the worker, and a TTL of 3 in the low bits of byte 7.
std::pair<uint32_t, uint32_t> KeyForPeer(int peer_id) {
  uint32_t pid = (0x21u << 24) | (static_cast<uint32_t>(peer_id & 0xff) << 16) |
                 (static_cast<uint32_t>(peer_id >> 8) << 8) | 0u;
  return {pid, 0x5a5a5a03u};
}

// Writes each instance's own [peers] (lines "id = host=... port=...") into its instance file,
// removes the shared [peers], and reloads every instance with SIGHUP; returns once SHOW PEERS of
// each lists what it was given.
void Repeer(InstanceGroup& group, const std::vector<std::vector<std::string>>& peers) {
  std::string shared = ReadFile(group.SharedConfigPath());
  size_t from = shared.find("[peers]\n");
  size_t to = shared.find("[pgbouncer]\n");
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  shared.erase(from, to - from);
  WriteText(group.SharedConfigPath(), shared);
  for (int i = 0; i < group.Size(); ++i) {
    std::string text = "%include " + group.SharedConfigPath() + "\npeer_id = " + std::to_string(i + 1) + "\n\n[peers]\n";
    for (const std::string& line : peers.at(static_cast<size_t>(i))) text += line + "\n";
    WriteText(group.InstanceConfigPath(i), text);
    group.Signal(i, SIGHUP);
  }
  for (int i = 0; i < group.Size(); ++i) {
    INFO("instance " << i + 1 << "\n" << group.Describe());
    REQUIRE(Eventually(
        [&] {
          QueryResult r = Query(group.AdminConnString(i), "SHOW PEERS");
          return r.ok && r.rows.size() == peers.at(static_cast<size_t>(i)).size();
        },
        10s));
  }
}

std::string PeerLine(const InstanceGroup& group, int peer_id, int instance) {
  return std::to_string(peer_id) + " = host=" + group.Dir() + " port=" + std::to_string(group.AdminPort(instance));
}

// Runs pg_sleep(30) in a session on `owner`, sends its cancel to `lander`, and returns how long
// the answer took (or a failure).
void CancelAcross(const PgCluster& pg, InstanceGroup& group, int owner, int lander, const std::string& tag) {
  INFO("session on instance " << owner + 1 << ", cancel sent to instance " << lander + 1 << " (" << tag << ")");
  KeyedSession s = Login(group, owner);
  REQUIRE(InstanceGroup::PeerOfBackendPid(static_cast<int>(s.pid)) == owner + 1);
  const std::string sleep = "SELECT pg_sleep(30), '" + tag + "'";
  REQUIRE(s.client.Send(RawClient::QueryMessage(sleep)));
  REQUIRE(RunningInPostgres(pg, sleep));
  const auto sent = Clock::now();
  RawClient cancel = SendCancel(group, lander, s.pid, s.secret);
  RawOutcome o = s.client.ReadUntilErrorOrClose(5s, 0ms);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
  INFO(o.Describe() << " after " << took.count() << " ms\n" << group.Describe());
  CHECK(o.error);
  CHECK(o.sqlstate == "57014");
  CHECK(took < 1s);
  // The cancel connection is closed without a word once the request is on its way.
  bool closed = false;
  CHECK_FALSE(cancel.ReadMessage(3s, &closed).has_value());
  CHECK(closed);
  // The session goes on: its ReadyForQuery comes after the error, then a query works.
  if (o.types.find('Z') == std::string::npos) REQUIRE(s.client.ReadUntilReady(5s).has_value());
  REQUIRE(s.client.Send(RawClient::QueryMessage("SELECT 1")));
  std::optional<std::vector<RawMessage>> after = s.client.ReadUntilReady(5s);
  REQUIRE(after.has_value());
  bool error = false;
  for (const RawMessage& m : *after) error |= m.type == 'E';
  CHECK_FALSE(error);
}

TEST_CASE("peers: three instances forward a cancel over one hop and over two, SHOW PEERS follows a reload of "
          "[peers], and an unknown peer or a loop is dropped",
          "[integration][operations][peers]") {
  PgCluster pg;
  InstanceGroup group(pg, {.instances = 3, .settings = {{"auth_type", "trust"}}});

  // SHOW PEERS: PgBouncer 1.25's columns, every configured peer in peer_id order.
  for (int i = 0; i < group.Size(); ++i) {
    QueryResult peers = Query(group.AdminConnString(i), "SHOW PEERS");
    REQUIRE(peers.ok);
    CHECK(peers.columns == std::vector<std::string>{"peer_id", "host", "port", "pool_size"});
    REQUIRE(peers.rows.size() == 3);
    for (int p = 0; p < 3; ++p) {
      CHECK(peers.rows[p][0] == std::to_string(p + 1));
      CHECK(peers.rows[p][1] == group.Dir());
      CHECK(peers.rows[p][2] == std::to_string(group.AdminPort(p)));
    }
  }
  // One hop: every instance's session cancelled through each other instance.
  for (int owner = 0; owner < 3; ++owner) {
    for (int lander = 0; lander < 3; ++lander) {
      if (lander != owner) CancelAcross(pg, group, owner, lander, "hop-" + std::to_string(owner) + std::to_string(lander));
    }
  }

  // Rewire: instance 2 knows peer 1 only as instance 3's address, so a cancel for instance 1
  // landing on 2 goes 2 -> 3 -> 1. Peer 9 is a loop between 1 and 2; peer 7 is known nowhere.
  Repeer(group, {
                    {PeerLine(group, 1, 0), PeerLine(group, 2, 1), PeerLine(group, 3, 2), PeerLine(group, 9, 1)},
                    {PeerLine(group, 1, 2), PeerLine(group, 2, 1), PeerLine(group, 3, 2), PeerLine(group, 9, 0)},
                    {PeerLine(group, 1, 0), PeerLine(group, 2, 1), PeerLine(group, 3, 2)},
                });
  QueryResult peers2 = Query(group.AdminConnString(1), "SHOW PEERS");
  CHECK(Cell(peers2, "peer_id", "1", "port") == std::to_string(group.AdminPort(2)));
  CHECK(Cell(peers2, "peer_id", "9", "port") == std::to_string(group.AdminPort(0)));
  CancelAcross(pg, group, 0, 1, "two-hops");

  // A loop: 1 -> 2 -> 1 -> 2, where the TTL runs out and the request is dropped.
  auto [loop_pid, loop_secret] = KeyForPeer(9);
  {
    RawClient c = SendCancel(group, 0, loop_pid, loop_secret);
    bool closed = false;
    CHECK_FALSE(c.ReadMessage(5s, &closed).has_value());
    CHECK(closed);
  }
  INFO(group.Describe());
  CHECK(Eventually(
      [&] {
        return Contains(group.Log(0) + group.Log(1), "failed to forward cancel request because its TTL was exhausted");
      },
      5s));
  // Exactly three forwards happened: the drop is on instance 2, after 1 -> 2 -> 1 -> 2.
  CHECK(Contains(group.Log(1), "TTL was exhausted"));
  CHECK_FALSE(Contains(group.Log(0), "TTL was exhausted"));
  // An unknown peer: logged and dropped.
  auto [unknown_pid, unknown_secret] = KeyForPeer(7);
  {
    RawClient c = SendCancel(group, 2, unknown_pid, unknown_secret);
    bool closed = false;
    CHECK_FALSE(c.ReadMessage(5s, &closed).has_value());
    CHECK(closed);
  }
  CHECK(Eventually([&] { return Contains(group.Log(2), "could not find peer to forward request to"); }, 5s));
  // Nothing crashed, every instance serves, and its cancel counters are back to zero.
  for (int i = 0; i < group.Size(); ++i) {
    CHECK(group.Running(i));
    CHECK(Query(group.UnixConnString(i, "rb_trust"), "SELECT 1").ok);
    QueryResult pools = Query(group.AdminConnString(i), "SHOW PEER_POOLS");
    REQUIRE(pools.ok);
    for (const auto& row : pools.rows) {
      for (size_t col = 1; col < row.size(); ++col) CHECK(row[col] == "0");
    }
  }
}

// A TCP listener that takes connections into its backlog and never answers until told to.
class SilentPeer {
 public:
  SilentPeer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error(std::string("silent peer: ") + std::strerror(errno));
    }
    port_ = ntohs(a.sin_port);
  }
  ~SilentPeer() {
    for (int c : accepted_) close(c);
    close(fd_);
  }
  int Port() const { return port_; }
  // Accepts what is queued and closes it: the peer has "taken" the cancel.
  int AnswerAll() {
    int n = 0;
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) return n;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return n;
      char buf[64];
      (void)!recv(c, buf, sizeof buf, MSG_DONTWAIT);
      close(c);
      ++n;
    }
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

TEST_CASE("peers: SHOW PEER_POOLS counts a cancel request in flight to a peer until the peer closes it",
          "[integration][operations][peers]") {
  PgCluster pg;
  InstanceGroup group(pg, {.instances = 1, .workers = 1, .settings = {{"auth_type", "trust"}}});
  SilentPeer silent;
  Repeer(group, {{PeerLine(group, 1, 0), "8 = host=127.0.0.1 port=" + std::to_string(silent.Port())}});
  auto [pid, secret] = KeyForPeer(8);
  RawClient cancel = SendCancel(group, 0, pid, secret);
  auto row = [&] {
    QueryResult r = Query(group.AdminConnString(0), "SHOW PEER_POOLS");
    std::map<std::string, std::string> m;
    for (const auto& cols : r.rows) {
      if (cols.at(0) != "8") continue;
      for (size_t i = 0; i < r.columns.size(); ++i) m[r.columns[i]] = cols[i];
    }
    return m;
  };
  // Connected to the peer, request sent, no answer yet: one client and one server busy with it.
  INFO(group.Describe());
  REQUIRE(Eventually([&] { return row()["sv_active_cancel"] == "1"; }, 5s));
  std::map<std::string, std::string> busy = row();
  CHECK(busy["cl_active_cancel_req"] == "1");
  CHECK(busy["cl_waiting_cancel_req"] == "0");
  CHECK(busy["sv_login"] == "0");
  // As under PgBouncer, the client's cancel connection stays open until the peer has answered.
  bool closed = false;
  CHECK_FALSE(cancel.ReadMessage(300ms, &closed).has_value());
  CHECK_FALSE(closed);

  CHECK(silent.AnswerAll() == 1);
  CHECK_FALSE(cancel.ReadMessage(5s, &closed).has_value());
  CHECK(closed);
  CHECK(Eventually(
      [&] {
        std::map<std::string, std::string> r = row();
        return r["sv_active_cancel"] == "0" && r["cl_active_cancel_req"] == "0" && r["sv_login"] == "0" &&
               r["cl_waiting_cancel_req"] == "0";
      },
      5s));
}

// =============================================================================================
// 6. syslog, read from a unix datagram socket that stands in for /dev/log.

TEST_CASE("logging: with syslog = 1 a login line reaches syslog in PgBouncer's shape",
          "[integration][operations][logging]") {
  PgCluster& pg = PgCluster::Shared();
  TempDir dir("rb-syslog");
  const std::string path = dir.File("log.sock");
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  chmod(path.c_str(), 0666);  // ringbouncer may run as another user
  struct Env {
    explicit Env(const std::string& p) { setenv("RB_SYSLOG_PATH_FOR_TEST", p.c_str(), 1); }
    ~Env() { unsetenv("RB_SYSLOG_PATH_FOR_TEST"); }
  } env(path);
  std::vector<std::string> got;
  auto drain = [&](std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) got.emplace_back(buf, static_cast<size_t>(n));
    }
  };
  {
    RingbouncerProcess rb(pg, OpsOptions(pg, {{"syslog", "1"}, {"syslog_ident", "rb-ident"}, {"log_connections", "1"},
                                              {"syslog_facility", "local3"}}));
    REQUIRE(Query(rb.ConnString("rb_md5"), "SELECT 1").ok);
    drain(1s);
    const std::string log = rb.LogText();
    std::string all;
    for (const std::string& d : got) all += d + "\n";
    INFO("syslog datagrams:\n" << all << "\nlog:\n" << rb.LogTail());
    // <PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE, with LOG_LOCAL3 | LOG_INFO = 19 * 8 + 6.
    const std::regex login("^<158>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} rb-ident\\[" +
                           std::to_string(rb.Pid()) +
                           "\\]: C-0x[0-9a-f]+: rbtest/rb_md5@127\\.0\\.0\\.1:[0-9]+ login attempt: db=rbtest "
                           "user=rb_md5 tls=no replication=no$");
    int logins = 0;
    for (const std::string& d : got) logins += std::regex_match(d, login);
    CHECK(logins == 1);
    // The same line went to the log with its time stamp and level; syslog gets the message alone.
    CHECK(Contains(log, "LOG C-0x"));
    for (const std::string& d : got) CHECK_FALSE(Contains(d, " LOG "));
  }
  close(fd);
}

}  // namespace
}  // namespace rb::test
