// Several ringbouncer instances on one host, started as containers/systemd's template units
// describe (InstanceGroup: rb-socket-activate gives each instance its own SO_REUSEPORT socket on
// a shared port, its admin port and its unix socket; User=postgres; per-instance ini including
// a shared one; [peers] over the unix sockets). PgBouncer's multi-instance deployment, without
// systemd: the same files under real systemd are tested by test_systemd_units.cc.
//
// Which instance and worker serve a client is read from the client's own cancel key (the
// BackendKeyData pid carries peer_id and worker id, proto/cancel_key.h), and compared with what
// each instance's admin console says.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/instance_group.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `condition` every `step` until it holds (true) or `timeout` passes (false).
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step = 50ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

// ---------------------------------------------------------------------------------------------
// A raw v3 session over a unix socket, for the cancel test: libpq keeps the cancel secret to
// itself and sends a CancelRequest only to the address it connected to, and this test must send
// it to another instance. Trust auth only (the group runs auth_type = trust for it).
class RawSession {
 public:
  explicit RawSession(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
    }
  }
  ~RawSession() {
    if (fd_ >= 0) close(fd_);
  }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  static std::string Int32(uint32_t v) {
    uint32_t n = htonl(v);
    return std::string(reinterpret_cast<const char*>(&n), 4);
  }

  bool Send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }

  // Reads one message: type and body; nullopt on EOF or timeout.
  std::optional<std::pair<char, std::string>> Read(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (in_.size() >= 5) {
        uint32_t len = 0;
        std::memcpy(&len, in_.data() + 1, 4);
        len = ntohl(len);
        if (in_.size() >= 1 + len) {
          std::pair<char, std::string> m{in_[0], in_.substr(5, len - 4)};
          in_.erase(0, 1 + len);
          return m;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      in_.append(buf, static_cast<size_t>(n));
    }
  }

  // Startup with trust auth; returns the BackendKeyData (pid, secret) once ReadyForQuery came.
  std::pair<uint32_t, uint32_t> Login(const std::string& user, const std::string& db) {
    std::string params = "user" + std::string(1, '\0') + user + '\0' + "database" + '\0' + db + '\0' + '\0';
    Send(Int32(static_cast<uint32_t>(8 + params.size())) + Int32(196608) + params);
    std::pair<uint32_t, uint32_t> key{0, 0};
    for (;;) {
      auto m = Read(10s);
      if (!m) throw std::runtime_error("login: no ReadyForQuery");
      if (m->first == 'E') throw std::runtime_error("login failed: " + Printable(m->second));
      if (m->first == 'K' && m->second.size() == 8) {
        uint32_t a, b;
        std::memcpy(&a, m->second.data(), 4);
        std::memcpy(&b, m->second.data() + 4, 4);
        key = {ntohl(a), ntohl(b)};
      }
      if (m->first == 'Z') return key;
    }
  }

  void Query(const std::string& sql) {
    std::string body = sql + '\0';
    Send(std::string(1, 'Q') + Int32(static_cast<uint32_t>(4 + body.size())) + body);
  }

  // Reads until an ErrorResponse (returns its SQLSTATE) or ReadyForQuery without one ("").
  std::optional<std::string> ReadUntilErrorOrReady(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto m = Read(left);
      if (!m) return std::nullopt;
      if (m->first == 'Z') return std::string();
      if (m->first != 'E') continue;
      for (size_t i = 0; i < m->second.size() && m->second[i] != '\0';) {
        char code = m->second[i];
        size_t end = m->second.find('\0', i + 1);
        if (end == std::string::npos) break;
        if (code == 'C') return m->second.substr(i + 1, end - i - 1);
        i = end + 1;
      }
      return std::string("?");
    }
  }

  static std::string Printable(std::string s) {
    std::replace(s.begin(), s.end(), '\0', ' ');
    return s;
  }

 private:
  int fd_ = -1;
  std::string in_;
};

// Sends a CancelRequest over a new connection to `path` and waits for the pooler to close it.
void SendCancel(const std::string& path, uint32_t pid, uint32_t secret) {
  RawSession c(path);
  c.Send(RawSession::Int32(16) + RawSession::Int32(80877102) + RawSession::Int32(pid) + RawSession::Int32(secret));
  c.Read(2s);  // nothing comes back: returns at EOF
}

TEST_CASE("four instances on one port: 400 clients reach all of them and each admin port and unix socket reaches its own instance") {
  PgCluster pg;
  InstanceGroup group(pg);
  constexpr int kClients = 400;
  constexpr int kThreads = 8;

  std::vector<PgConn> conns(kClients);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kClients; i += kThreads) conns[i] = PgConn::Connect(group.ConnString("rb_md5"));
    });
  }
  for (auto& t : threads) t.join();

  std::map<int, int> per_peer;
  std::map<std::pair<int, int>, int> per_worker;  // (peer, worker) -> clients
  for (int i = 0; i < kClients; ++i) {
    INFO("client " << i << ": " << conns[i].Error() << "\n" << group.Describe());
    REQUIRE(conns[i].Ok());
    int pid = PQbackendPID(conns[i].Raw());
    ++per_peer[InstanceGroup::PeerOfBackendPid(pid)];
    ++per_worker[{InstanceGroup::PeerOfBackendPid(pid), InstanceGroup::WorkerOfBackendPid(pid)}];
  }
  std::string spread;
  for (const auto& [peer, n] : per_peer) spread += " peer " + std::to_string(peer) + ": " + std::to_string(n);
  INFO("clients per instance:" << spread);
  REQUIRE(per_peer.size() == 4);
  for (int i = 0; i < group.Size(); ++i) {
    CHECK(per_peer[i + 1] >= kClients / 10);
  }

  for (int i = 0; i < group.Size(); ++i) {
    INFO("instance " << i + 1 << " (admin port " << group.AdminPort(i) << ")");
    PgConn admin = PgConn::Connect(group.AdminConnString(i));
    REQUIRE(admin.Ok());

    QueryResult config = admin.Exec("SHOW CONFIG");
    REQUIRE(config.ok);
    CHECK(Cell(config, "key", "peer_id", "value") == std::to_string(i + 1));

    // SHOW PEER_POOLS: one row per configured peer, as in PgBouncer.
    QueryResult peer_pools = admin.Exec("SHOW PEER_POOLS");
    REQUIRE(peer_pools.ok);
    CHECK(peer_pools.rows.size() == static_cast<size_t>(group.Size()));

    // SHOW POOLS: this instance's clients of rbtest, and no one else's.
    QueryResult pools = admin.Exec("SHOW POOLS");
    REQUIRE(pools.ok);
    CHECK(Cell(pools, "database", "rbtest", "cl_active") == std::to_string(per_peer[i + 1]));
    CHECK(Cell(pools, "database", "rbtest", "cl_waiting") == "0");

    QueryResult clients = admin.Exec("SHOW CLIENTS");
    REQUIRE(clients.ok);
    int db = ColumnIndex(clients, "database");
    REQUIRE(db >= 0);
    CHECK(std::count_if(clients.rows.begin(), clients.rows.end(),
                        [&](const auto& row) { return row[db] == "rbtest"; }) == per_peer[i + 1]);

    // SHOW WORKERS: the spread inside the instance, worker by worker, plus this admin session
    // on one of them (an admin session's cancel key is random: it does not say which).
    QueryResult workers = admin.Exec("SHOW WORKERS");
    REQUIRE(workers.ok);
    REQUIRE(workers.rows.size() == 2);
    int sum = 0;
    for (const auto& row : workers.rows) {
      int w = std::stoi(row[ColumnIndex(workers, "id")]);
      int n = std::stoi(row[ColumnIndex(workers, "clients")]);
      INFO("worker " << w << ": " << n << " clients, " << per_worker[std::make_pair(i + 1, w)] << " by the clients' keys");
      CHECK((n == per_worker[std::make_pair(i + 1, w)] || n == per_worker[std::make_pair(i + 1, w)] + 1));
      sum += n;
    }
    CHECK(sum == per_peer[i + 1] + 1);

    // The instance's unix socket leads to the instance itself.
    PgConn local = PgConn::Connect(group.UnixConnString(i, "rb_md5"));
    REQUIRE(local.Ok());
    CHECK(InstanceGroup::PeerOfBackendPid(PQbackendPID(local.Raw())) == i + 1);
    CHECK(local.Exec("SELECT 1").Scalar() == "1");
  }

  // Every client still works after all that.
  for (int i = 0; i < kClients; i += 37) CHECK(conns[i].Exec("SELECT 2").Scalar() == "2");

  // A wrong admin password gets PgBouncer's error, on any admin port.
  QueryResult wrong = Query(group.AdminConnString(2, "not-the-password"), "SHOW POOLS");
  CHECK_FALSE(wrong.ok);
  CHECK(wrong.sqlstate == "28P01");
  CHECK_THAT(wrong.error, Catch::Contains("FATAL:  28P01: password authentication failed"));
}

TEST_CASE("a cancel that lands on another instance still cancels pg_sleep 30 within 1 s 20 times out of 20") {
  PgCluster pg;
  InstanceGroup group(pg, {.settings = {{"auth_type", "trust"}}});
  int cancelled = 0;
  for (int round = 0; round < 20; ++round) {
    const int owner = round % 4;
    const int lander = (owner + 1 + (round / 4) % 3) % 4;
    INFO("round " << round << ": session on instance " << owner + 1 << ", cancel sent to instance " << lander + 1);
    RawSession session(group.UnixSocketPath(owner));
    auto [pid, secret] = session.Login("rb_trust", "rbtest");
    REQUIRE(InstanceGroup::PeerOfBackendPid(static_cast<int>(pid)) == owner + 1);
    session.Query("SELECT pg_sleep(30)");
    // Cancel only once PostgreSQL runs the query: a cancel that arrives earlier finds nothing to
    // cancel, in PostgreSQL as through any pooler.
    REQUIRE(WaitUntil(
        [&] {
          return pg.SuperuserQuery("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                   "query = 'SELECT pg_sleep(30)'")
                     .Scalar() == "1";
        },
        10s));
    const auto sent = Clock::now();
    SendCancel(group.UnixSocketPath(lander), pid, secret);
    std::optional<std::string> sqlstate = session.ReadUntilErrorOrReady(5s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
    INFO("answer after " << took.count() << " ms\n" << group.Describe());
    REQUIRE(sqlstate.has_value());
    CHECK(*sqlstate == "57014");
    CHECK(took < 1s);
    if (sqlstate == "57014" && took < 1s) ++cancelled;
    // The session goes on: ReadyForQuery, then a query works.
    REQUIRE(session.ReadUntilErrorOrReady(5s) == std::string());
    session.Query("SELECT 1");
    CHECK(session.ReadUntilErrorOrReady(5s) == std::string());
  }
  CHECK(cancelled == 20);
}

TEST_CASE("an instance stopped with SIGTERM while pgbench runs through the shared port fails no transaction") {
  PgCluster pg({.pgbench = true});
  InstanceGroup group(pg);
  std::vector<std::string> args = {"-h", "127.0.0.1", "-p", std::to_string(group.SharedPort()), "-U", "rb_md5",
                                   "-n", "-c", "16", "-j", "2", "-T", "8", "rbtest"};
  auto bench = std::async(std::launch::async, [&] { return RunPgbench(args, {"PGPASSWORD=md5pass"}, 120s); });

  // Once pgbench's clients are in, stop the instance that has the most of them.
  int victim = -1;
  int most = 0;
  REQUIRE(WaitUntil(
      [&] {
        int total = 0;
        victim = -1;
        most = 0;
        for (int i = 0; i < group.Size(); ++i) {
          QueryResult pools = Query(group.AdminConnString(i), "SHOW POOLS");
          std::string n = pools.ok ? Cell(pools, "database", "rbtest", "cl_active") : "";
          int clients = n.empty() ? 0 : std::stoi(n);
          total += clients;
          if (clients > most) most = clients, victim = i;
        }
        return total == 16;
      },
      20s, 100ms));
  INFO("instance " << victim + 1 << " had " << most << " of pgbench's 16 clients\n" << group.Describe());
  group.Signal(victim, SIGTERM);
  // It waits for its clients, which pgbench keeps busy until -T ends.
  std::this_thread::sleep_for(2s);
  CHECK(group.Running(victim));
  // Meanwhile new clients of the shared port get in (through the other instances).
  int in = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) in += Query(group.ConnString("rb_md5", kTestDb, "connect_timeout=3"), "SELECT 1").ok;
  INFO("20 new logins while draining took " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms");
  CHECK(in == 20);

  PgbenchResult r = bench.get();
  INFO(r.output);
  CHECK(r.exit_code == 0);
  REQUIRE(r.parsed);
  CHECK(r.transactions > 0);
  CHECK(r.failed == 0);
  // pgbench is gone, so are the instance's clients: it exits, cleanly.
  std::optional<int> status = group.Wait(victim, 10s);
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK_THAT(group.Log(victim), Catch::Contains("got SIGTERM"));
  // The others serve on.
  for (int i = 0; i < 20; ++i) CHECK(Query(group.ConnString("rb_md5"), "SELECT 1").ok);
}

TEST_CASE("life_test --once --json sees traffic on every instance and no error") {
  PgCluster pg;
  InstanceGroup group(pg);
  std::string ports;
  for (int i = 0; i < group.Size(); ++i) ports += (i ? "," : "") + std::to_string(group.AdminPort(i));
  // Debian's python3 has python3-psycopg2 and python3-rich (tools/lib.sh installs them); a
  // python3 earlier in PATH (pyenv, a venv) may not.
  const std::string python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  CommandResult r = RunCommand({python, SourceDir() + "/tools/life_test/life_test.py", "--once", "--json",
                                "--duration", "4", "--host", "127.0.0.1", "--port",
                                std::to_string(group.SharedPort()), "--admin-ports", ports, "--dbname", "rbtest",
                                "--user", "rb_md5", "--password", "md5pass", "--admin-user", "rb_admin",
                                "--admin-password", "adminpass"},
                               90s);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err << "\n" << group.Describe());
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("\"errors\": 0"));
  CHECK(std::regex_search(r.out, std::regex("\"every_instance_saw_traffic\": true")));
  CHECK(std::stoll(pg.Query("rb_md5", "SELECT count(*) FROM usage_logs").Scalar()) > 0);
}

}  // namespace
}  // namespace rb::test
