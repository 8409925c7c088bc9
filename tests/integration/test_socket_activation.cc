// Socket activation and sd_notify, end to end: ringbouncer started by tools/socket_activate
// (rb-socket-activate), which does what systemd does for a socket unit (bind as root, pass
// fds 3.. with LISTEN_FDNAMES, NOTIFY_SOCKET, User=), and two ringbouncers sharing one port
// through SO_REUSEPORT without systemd. Everything talks to a real PostgreSQL (PgCluster).
//
// Which worker served a client is read from the log: a client's id, printed in "C-0x...:
// login attempt" lines (log_connections is on by default), carries its worker in the top 16
// bits (Worker::AdoptClient). An admin SHOW WORKERS would be a better observable.
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

// Generous: the machine has 2 cores shared with other builds and tests.
constexpr auto kStartTimeout = 60s;
constexpr auto kExitTimeout = 60s;

std::string SocketActivatePath() { return BinaryDir() + "/tools/socket_activate/rb-socket-activate"; }

// A pooler config for rbtest on `pg`, md5 auth as rb_md5 (also an admin), with `settings`
// (listen_*, workers, ...) appended to [pgbouncer]. Written to dir/pgbouncer.ini.
std::string WriteConfig(const TempDir& dir, const PgCluster& pg, const std::string& settings) {
  std::string userlist = dir.WriteFile("userlist.txt", pg.UserlistEntry("rb_md5") + "\n");
  std::ostringstream ini;
  ini << "[databases]\n"
      << "rbtest = host=127.0.0.1 port=" << pg.Port() << " dbname=rbtest\n"
      << "[pgbouncer]\n"
      << "auth_type = md5\n"
      << "auth_file = " << userlist << "\n"
      << "admin_users = rb_md5\n"
      << "pool_mode = transaction\n"
      << "default_pool_size = 20\n"
      << "max_client_conn = 1000\n"
      << settings;
  return dir.WriteFile("pgbouncer.ini", ini.str());
}

std::string TcpConnString(int port, std::string_view dbname = kTestDb) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " user=rb_md5 password=md5pass dbname=" +
         std::string(dbname);
}

std::string UnixConnString(const std::string& dir, int port) {
  return "host=" + dir + " port=" + std::to_string(port) + " user=rb_md5 password=md5pass dbname=" +
         std::string(kTestDb);
}

// The complete lines of the notify log (a line still being written is left out).
std::vector<std::string> NotifyLines(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  return lines;
}

size_t CountPrefixed(const std::vector<std::string>& lines, std::string_view prefix) {
  size_t n = 0;
  for (const std::string& l : lines) n += l.rfind(prefix, 0) == 0;
  return n;
}

// Waits until the notify log holds `count` lines starting with `prefix`. False on timeout, or
// as soon as the process has exited without them.
bool WaitForNotify(Subprocess& proc, const std::string& path, std::string_view prefix, size_t count,
                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool running = proc.Running();
    if (CountPrefixed(NotifyLines(path), prefix) >= count) return true;
    if (!running || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

// rb-socket-activate [launcher_args] --notify-log FILE -- ringbouncer CONFIG, waiting for READY=1.
Subprocess StartActivated(std::vector<std::string> launcher_args, const std::string& notify_log,
                          const std::string& config) {
  std::vector<std::string> argv{SocketActivatePath()};
  argv.insert(argv.end(), launcher_args.begin(), launcher_args.end());
  for (const std::string& a : {std::string("--notify-log"), notify_log, std::string("--"), RingbouncerPath(), config}) {
    argv.push_back(a);
  }
  Subprocess proc(SubprocessOptions{.argv = argv});
  bool ready = WaitForNotify(proc, notify_log, "READY=1", 1, kStartTimeout);
  INFO("stderr:\n" << proc.Stderr());
  REQUIRE(ready);
  return proc;
}

// The pids whose parent is `parent`.
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream status(entry.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("PPid:", 0) == 0) {
        if (std::stoi(line.substr(5)) == parent) out.push_back(std::stoi(name));
        break;
      }
    }
  }
  return out;
}

// The real uid of a process, from /proc/<pid>/status ("Uid:\treal\teffective\t...").
int UidOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Uid:", 0) == 0) return std::stoi(line.substr(4));
  }
  return -1;
}

// How many clients each worker adopted, from the "C-0x<id>: ... login attempt" log lines.
std::map<int, int> ClientsPerWorker(const std::string& log) {
  static const std::regex kLogin(R"(C-0x([0-9a-f]+): \S+ login attempt)");
  std::map<int, int> out;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kLogin); it != std::sregex_iterator(); ++it) {
    uint64_t id = std::stoull((*it)[1].str(), nullptr, 16);
    ++out[static_cast<int>(id >> 48)];
  }
  return out;
}

int LoginCount(const std::string& log) {
  int n = 0;
  for (const auto& [worker, count] : ClientsPerWorker(log)) n += count;
  return n;
}

// Sends `signal` to the launcher (which forwards it) and waits for a clean exit.
void StopAndExpectCleanExit(Subprocess& proc, int signal) {
  proc.Kill(signal);
  std::optional<int> code = proc.Wait(kExitTimeout);
  INFO("stderr:\n" << proc.Stderr());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

// A socket file left behind by a process that died: bound, never listening, closed.
void MakeStaleSocketFile(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof(sun.sun_path));
  memcpy(sun.sun_path, path.data(), path.size());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
  close(fd);
  REQUIRE(std::filesystem::is_socket(path));
}

// True when this process can bind a SO_REUSEPORT socket on 127.0.0.1:port right now.
bool CanJoinReuseport(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

TEST_CASE("socket activation: rb-socket-activate passes named fds from 3 with LISTEN_PID of the command") {
  TempDir dir("rb-sa");
  const int port = FreeTcpPort();
  const int plain_port = FreeTcpPort();
  const std::string stale = dir.File("stale.sock");
  MakeStaleSocketFile(stale);
  Subprocess proc({SocketActivatePath(), "--tcp", "127.0.0.1:" + std::to_string(port) + ",reuseport,name=web",
                   "--tcp", "127.0.0.1:" + std::to_string(plain_port), "--unix", stale + ",mode=0600,name=local",
                   "--", "sh", "-c",
                   "echo \"fds=$LISTEN_FDS names=$LISTEN_FDNAMES\"; [ \"$LISTEN_PID\" = $$ ] && echo pid-ok; "
                   "echo up; exec sleep 60"});
  REQUIRE(proc.WaitForOutput("up", 30s));
  std::string out = proc.Stdout();
  INFO("stdout:\n" << out << "stderr:\n" << proc.Stderr());
  CHECK(out.find("fds=3 names=web:unknown:local\n") != std::string::npos);
  CHECK(out.find("pid-ok\n") != std::string::npos);
  // The command (sleep, exec'd by sh) holds stdio and the three sockets, nothing else.
  std::vector<pid_t> children = ChildrenOf(proc.Pid());
  REQUIRE(children.size() == 1);
  std::set<std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(children[0]) + "/fd")) {
    fds.insert(e.path().filename().string());
  }
  CHECK(fds == std::set<std::string>{"0", "1", "2", "3", "4", "5"});
  // The stale file was replaced by a listening socket with the asked mode.
  CHECK(WaitForUnixSocket(stale, 5s));
  CHECK((std::filesystem::status(stale).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  CHECK(WaitForTcpPort("127.0.0.1", port, 5s));
  // A socket of the same uid can join a ReusePort group, and only that one.
  CHECK(CanJoinReuseport(port));
  CHECK_FALSE(CanJoinReuseport(plain_port));

  // A live socket is never removed: a second launcher refuses to start.
  CommandResult busy = RunCommand({SocketActivatePath(), "--unix", stale, "--", "true"});
  CHECK(busy.exit_code == 1);
  CHECK(busy.err.find("is in use") != std::string::npos);

  // Forwarded SIGTERM kills sleep: the launcher reports it as 128+15, as a shell would.
  proc.Kill(SIGTERM);
  std::optional<int> code = proc.Wait(kExitTimeout);
  REQUIRE(code.has_value());
  CHECK(*code == 128 + SIGTERM);
}

TEST_CASE("socket activation: rb-socket-activate exits with the command's code and explains bad options") {
  CHECK(RunCommand({SocketActivatePath(), "--", "sh", "-c", "exit 7"}).exit_code == 7);
  CommandResult missing = RunCommand({SocketActivatePath(), "--", "/nonexistent/command"});
  CHECK(missing.exit_code == 127);
  CHECK(missing.err.find("cannot run /nonexistent/command") != std::string::npos);
  CommandResult bad_port = RunCommand({SocketActivatePath(), "--tcp", "127.0.0.1:70000", "--", "true"});
  CHECK(bad_port.exit_code == 2);
  CHECK(bad_port.err.find("invalid port \"70000\"") != std::string::npos);
  CommandResult bad_name = RunCommand({SocketActivatePath(), "--tcp", "6432,name=a:b", "--", "true"});
  CHECK(bad_name.exit_code == 2);
  CHECK(bad_name.err.find("invalid name \"a:b\"") != std::string::npos);
  CommandResult no_command = RunCommand({SocketActivatePath(), "--tcp", "6432"});
  CHECK(no_command.exit_code == 2);
  CHECK(no_command.err.find("no command given") != std::string::npos);
  CommandResult help = RunCommand({SocketActivatePath(), "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("LISTEN_FDNAMES") != std::string::npos);
}

TEST_CASE("socket activation: passed TCP and admin TCP and unix sockets replace listen_addr and "
          "unix_socket_dir") {
  PgCluster pg(PgClusterOptions{.max_connections = 100});
  TempDir dir("rb-sa");
  TempDir config_sockets("rb-sa-cfg");  // where unix_socket_dir points: must stay empty
  const int shared_port = FreeTcpPort();
  const int admin_port = FreeTcpPort();
  const int config_port = FreeTcpPort();  // listen_port in the config: must stay closed
  const std::string unix_path = dir.File(".s.PGSQL." + std::to_string(shared_port));
  std::string config = WriteConfig(dir, pg,
                                   "listen_addr = 127.0.0.1\n"
                                   "listen_port = " + std::to_string(config_port) + "\n"
                                   "unix_socket_dir = " + config_sockets.Path() + "\n"
                                   "workers = 4\n");
  Subprocess proc = StartActivated({"--tcp", "127.0.0.1:" + std::to_string(shared_port) + ",name=shared",
                                    "--tcp", "127.0.0.1:" + std::to_string(admin_port) + ",name=admin",
                                    "--unix", unix_path + ",name=local"},
                                   dir.File("notify.log"), config);
  INFO("stderr:\n" << proc.Stderr());

  // The supervisor names every passed socket with its LISTEN_FDNAMES name and address.
  CHECK(proc.Stderr().find("socket activation: 3 socket(s) from systemd: shared=127.0.0.1:" +
                           std::to_string(shared_port) + ", admin=127.0.0.1:" + std::to_string(admin_port) +
                           ", local=unix:" + unix_path) != std::string::npos);

  QueryResult tcp = Query(TcpConnString(shared_port), "SELECT 'via shared', current_user");
  REQUIRE(tcp.ok);
  CHECK(tcp.rows[0] == std::vector<std::string>{"via shared", "rb_md5"});
  QueryResult admin_tcp = Query(TcpConnString(admin_port), "SELECT 'via admin'");
  REQUIRE(admin_tcp.ok);
  CHECK(admin_tcp.Scalar() == "via admin");
  // The admin port reaches the admin console too (rb_md5 is in admin_users).
  QueryResult version = Query(TcpConnString(admin_port, "pgbouncer"), "SHOW VERSION");
  REQUIRE(version.ok);
  CHECK_FALSE(version.Scalar().empty());
  // The unix socket, as psql -h DIR -p PORT finds it.
  QueryResult local = Query(UnixConnString(dir.Path(), shared_port), "SELECT 'via unix', inet_client_addr()");
  REQUIRE(local.ok);
  CHECK(local.rows[0][0] == "via unix");

  // Nothing of listen_addr/listen_port/unix_socket_dir was opened.
  CHECK_FALSE(WaitForTcpPort("127.0.0.1", config_port, 300ms));
  CHECK_FALSE(std::filesystem::exists(config_sockets.File(".s.PGSQL." + std::to_string(config_port))));
  CHECK(proc.Stderr().find("listening on 127.0.0.1:" + std::to_string(config_port)) == std::string::npos);

  StopAndExpectCleanExit(proc, SIGTERM);
}

TEST_CASE("socket activation: one passed TCP socket is handed off to several of 4 workers and 200 "
          "clients all get answers") {
  PgCluster pg(PgClusterOptions{.max_connections = 100});
  TempDir dir("rb-sa");
  const int port = FreeTcpPort();
  std::string config = WriteConfig(dir, pg,
                                   "listen_addr = 127.0.0.1\n"
                                   "listen_port = " + std::to_string(FreeTcpPort()) + "\n"
                                   "unix_socket_dir =\n"
                                   "workers = 4\n");
  Subprocess proc = StartActivated({"--tcp", "127.0.0.1:" + std::to_string(port) + ",name=main"},
                                   dir.File("notify.log"), config);

  // 200 clients connected at once (8 threads connecting side by side), each then asked a
  // question while all are still connected. Catch2 isn't thread-safe: threads only record.
  constexpr int kThreads = 8;
  constexpr int kClients = 200;
  std::vector<PgConn> conns(kClients);
  std::vector<std::string> answers(kClients);
  std::vector<std::string> errors(kClients);
  auto run = [&](auto&& body) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < kClients; i += kThreads) body(i);
      });
    }
    for (auto& th : threads) th.join();
  };
  run([&](int i) {
    conns[i] = PgConn::Connect(TcpConnString(port), 60s);
    if (!conns[i].Ok()) errors[i] = "connect: " + conns[i].Error();
  });
  run([&](int i) {
    if (!conns[i].Ok()) return;
    QueryResult r = conns[i].Exec("SELECT " + std::to_string(i) + " * 2", 60s);
    if (r.ok && !r.rows.empty()) {
      answers[i] = r.rows[0][0];
    } else {
      errors[i] = "query: " + r.error;
    }
  });
  int answered = 0;
  for (int i = 0; i < kClients; ++i) {
    INFO("client " << i << ": " << errors[i]);
    CHECK(answers[i] == std::to_string(i * 2));
    answered += answers[i] == std::to_string(i * 2);
  }
  CHECK(answered == kClients);

  std::string log = proc.Stderr();
  INFO("stderr:\n" << log);
  std::map<int, int> per_worker = ClientsPerWorker(log);
  for (const auto& [worker, count] : per_worker) UNSCOPED_INFO("worker " << worker << ": " << count << " clients");
  CHECK(LoginCount(log) == kClients);
  CHECK(per_worker.size() > 1);  // the accepting worker handed clients to others
  for (const auto& [worker, count] : per_worker) CHECK((worker >= 0 && worker < 4));

  conns.clear();  // SIGTERM waits for clients to disconnect
  StopAndExpectCleanExit(proc, SIGTERM);
}

TEST_CASE("socket activation: --user postgres runs ringbouncer as postgres on sockets root created") {
  if (geteuid() != 0) {
    WARN("not root: the --user case needs to bind as root and drop to postgres; skipped");
    return;
  }
  passwd* pw = getpwnam("postgres");
  REQUIRE(pw != nullptr);
  const int postgres_uid = static_cast<int>(pw->pw_uid);

  PgCluster pg(PgClusterOptions{.max_connections = 100});
  TempDir dir("rb-sa", /*chown_to_postgres=*/true);  // postgres reads the config from here
  const int port = FreeTcpPort();
  const std::string unix_path = dir.File(".s.PGSQL." + std::to_string(port));
  std::string config = WriteConfig(dir, pg,
                                   "listen_addr = 127.0.0.1\n"
                                   "listen_port = " + std::to_string(port) + "\n"
                                   "unix_socket_dir =\n"
                                   "so_reuseport = 1\n"
                                   "workers = 2\n");
  // ReusePort=true on a root-made socket: exactly the case where ringbouncer, as postgres,
  // could not join that reuseport group with sockets of its own, and must hand off instead.
  Subprocess proc = StartActivated({"--user", "postgres",
                                    "--tcp", "127.0.0.1:" + std::to_string(port) + ",reuseport,name=main",
                                    "--unix", unix_path + ",name=local"},
                                   dir.File("notify.log"), config);
  INFO("stderr:\n" << proc.Stderr());

  std::vector<pid_t> children = ChildrenOf(proc.Pid());
  REQUIRE(children.size() == 1);
  CHECK(UidOf(children[0]) == postgres_uid);
  CHECK(UidOf(proc.Pid()) == 0);  // the launcher stays root, as PID 1 would

  for (int i = 0; i < 10; ++i) {
    QueryResult tcp = Query(TcpConnString(port), "SELECT 'tcp ' || " + std::to_string(i));
    REQUIRE(tcp.ok);
    CHECK(tcp.Scalar() == "tcp " + std::to_string(i));
  }
  QueryResult local = Query(UnixConnString(dir.Path(), port), "SELECT 'unix'");
  REQUIRE(local.ok);
  CHECK(local.Scalar() == "unix");
  // Concurrent clients, so the accepting worker hands some to the other one.
  std::vector<PgConn> held;
  for (int i = 0; i < 20; ++i) {
    held.push_back(PgConn::Connect(TcpConnString(port), 30s));
    REQUIRE(held.back().Ok());
  }
  for (PgConn& c : held) CHECK(c.Exec("SELECT 1").Scalar() == "1");
  held.clear();

  StopAndExpectCleanExit(proc, SIGTERM);
}

TEST_CASE("socket activation: sd_notify sends READY=1 once accepting then STATUS with stats and STOPPING=1") {
  PgCluster pg(PgClusterOptions{.max_connections = 100});
  for (int signal : {SIGTERM, SIGINT}) {
    INFO("stopped with " << strsignal(signal));
    TempDir dir("rb-sa");
    const int port = FreeTcpPort();
    std::string config = WriteConfig(dir, pg,
                                     "listen_addr = 127.0.0.1\n"
                                     "listen_port = " + std::to_string(port) + "\n"
                                     "unix_socket_dir =\n"
                                     "workers = 2\n");
    const std::string notify_log = dir.File("notify.log");
    Subprocess proc = StartActivated({"--tcp", "127.0.0.1:" + std::to_string(port)}, notify_log, config);
    INFO("stderr:\n" << proc.Stderr());
    // The moment READY=1 is logged, a client gets in.
    QueryResult first = Query(TcpConnString(port), "SELECT 'first'");
    REQUIRE(first.ok);
    CHECK(first.Scalar() == "first");

    std::vector<std::string> lines = NotifyLines(notify_log);
    INFO("notify log:\n" << [&] {
      std::string all;
      for (const std::string& l : NotifyLines(notify_log)) all += l + "\n";
      return all;
    }());
    REQUIRE_FALSE(lines.empty());
    CHECK(lines[0] == "READY=1");
    CHECK(CountPrefixed(lines, "READY=1") == 1);
    CHECK(CountPrefixed(lines, "STOPPING=1") == 0);
    // READY=1 comes with a status line saying what runs.
    static const std::regex kStatus(R"(STATUS=2 workers, \d+ clients, \d+ servers, \d+ transactions)");
    REQUIRE(CountPrefixed(lines, "STATUS=") >= 1);
    for (const std::string& l : lines) {
      if (l.rfind("STATUS=", 0) == 0) CHECK(std::regex_match(l, kStatus));
    }
    if (signal == SIGTERM) {
      // And a fresh one every 10 seconds while running (only waited for once: it takes time).
      REQUIRE(WaitForNotify(proc, notify_log, "STATUS=", 2, 40s));
      for (const std::string& l : NotifyLines(notify_log)) {
        if (l.rfind("STATUS=", 0) == 0) CHECK(std::regex_match(l, kStatus));
      }
    }

    StopAndExpectCleanExit(proc, signal);
    lines = NotifyLines(notify_log);
    REQUIRE_FALSE(lines.empty());
    CHECK(CountPrefixed(lines, "STOPPING=1") == 1);
    CHECK(lines.back() == "STOPPING=1");  // nothing after it, READY=1 well before
  }
}

TEST_CASE("socket sharing without systemd: two ringbouncers with so_reuseport on one port both serve "
          "100 new clients") {
  PgCluster pg(PgClusterOptions{.max_connections = 100});
  const int port = FreeTcpPort();
  TempDir dir_a("rb-rp-a");
  TempDir dir_b("rb-rp-b");
  auto config_for = [&](const TempDir& dir) {
    return WriteConfig(dir, pg,
                       "listen_addr = 127.0.0.1\n"
                       "listen_port = " + std::to_string(port) + "\n"
                       "unix_socket_dir = " + dir.Path() + "\n"
                       "so_reuseport = 1\n"
                       "workers = 2\n");
  };
  std::string config_a = config_for(dir_a);
  std::string config_b = config_for(dir_b);
  Subprocess a({RingbouncerPath(), config_a});
  {
    bool up = a.WaitForOutput("process up", kStartTimeout);
    INFO("first ringbouncer:\n" << a.Stderr());
    REQUIRE(up);
  }
  Subprocess b({RingbouncerPath(), config_b});
  {
    bool up = b.WaitForOutput("process up", kStartTimeout);
    INFO("second ringbouncer:\n" << b.Stderr());
    REQUIRE(up);
  }
  // Both answer on their own unix socket, so each is serving, not only bound.
  REQUIRE(Query(UnixConnString(dir_a.Path(), port), "SELECT 1").ok);
  REQUIRE(Query(UnixConnString(dir_b.Path(), port), "SELECT 1").ok);
  const int before_a = LoginCount(a.Stderr());
  const int before_b = LoginCount(b.Stderr());

  // 100 new connections: the kernel spreads them over the four sockets of the group (two per
  // process) by a hash of the client's address and port. All in one process: odds of 2^-99.
  constexpr int kClients = 100;
  int ok = 0;
  for (int i = 0; i < kClients; ++i) {
    QueryResult r = Query(TcpConnString(port), "SELECT " + std::to_string(i));
    INFO("client " << i << ": " << r.error);
    CHECK(r.ok);
    ok += r.ok && !r.rows.empty() && r.rows[0][0] == std::to_string(i);
  }
  CHECK(ok == kClients);

  const int served_a = LoginCount(a.Stderr()) - before_a;
  const int served_b = LoginCount(b.Stderr()) - before_b;
  INFO("first served " << served_a << ", second served " << served_b);
  INFO("first ringbouncer:\n" << a.Stderr() << "\nsecond ringbouncer:\n" << b.Stderr());
  CHECK(served_a + served_b == kClients);
  CHECK(served_a > 0);
  CHECK(served_b > 0);

  // Stopping one leaves the other serving the port alone.
  StopAndExpectCleanExit(a, SIGTERM);
  QueryResult after = Query(TcpConnString(port), "SELECT 'still here'");
  REQUIRE(after.ok);
  CHECK(after.Scalar() == "still here");
  StopAndExpectCleanExit(b, SIGTERM);
}

}  // namespace
}  // namespace rb::test
