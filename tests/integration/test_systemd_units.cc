// containers/systemd's template units under real systemd:
//  - `systemd-analyze verify` on instance names, failing on any output (it exits 0 on typos);
//  - a systemd-nspawn boot of this very host's root, read-only (--volatile=yes), with systemd
//    as PID 1, the real unit files, the real binary and the real instance configs
//    (containers/config/instance.d), four instances enabled: 6432 spreads across them, each
//    admin port and unix socket reaches its own instance, `systemctl reload` reloads,
//    Restart=on-failure brings a killed instance back, and an instance whose config is broken
//    or missing fails with a clear journal message while the others keep serving.
//
// The container has a private network (--private-network): its 6432 and 50001-50004 are its
// own, so nothing on the host (the demo, other tests) can collide with them. The test reaches
// them by entering the container's network namespace (setns) around its connections; the unix
// sockets live in the container's /tmp, which is a directory of the test. PostgreSQL is a
// PgCluster on the host, reached through its unix socket, bound into the container.
#include <fcntl.h>
#include <libpq-fe.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/instance_group.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

const std::vector<int> kInstances = {50001, 50002, 50003, 50004};

std::string UnitDir() { return SourceDir() + "/containers/systemd"; }
std::string ConfigDir() { return SourceDir() + "/containers/config"; }

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step = 100ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("\"" + from + "\" not found");
  return text.replace(at, from.size(), to);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool HaveProgram(const std::string& name) {
  return RunCommand({"sh", "-c", "command -v " + name}, 10s).exit_code == 0;
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("systemd-analyze verify has nothing to say about ringbouncer@50001.socket and .service") {
  REQUIRE(HaveProgram("systemd-analyze"));
  // verify needs the ExecStart binary at its path: a copy of the units whose ExecStart names the
  // binary just built. Nothing else changes.
  TempDir dir("rb-units");
  const std::string service = ReadFile(UnitDir() + "/ringbouncer@.service");
  const std::string exec = "ExecStart=/usr/local/bin/ringbouncer /etc/ringbouncer/instance.d/%i.ini";
  REQUIRE(service.find(exec) != std::string::npos);
  dir.WriteFile("ringbouncer@.socket", ReadFile(UnitDir() + "/ringbouncer@.socket"));
  dir.WriteFile("ringbouncer@.service",
                Replace(service, "ExecStart=/usr/local/bin/ringbouncer", "ExecStart=" + RingbouncerPath()));
  CommandResult r = RunCommand({"systemd-analyze", "verify", dir.File("ringbouncer@50001.socket"),
                                dir.File("ringbouncer@50001.service")},
                               60s);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(r.err.empty());

  // The check itself sees a typo (systemd-analyze still exits 0 then).
  TempDir typo("rb-units");
  typo.WriteFile("ringbouncer@.socket", ReadFile(UnitDir() + "/ringbouncer@.socket"));
  typo.WriteFile("ringbouncer@.service", Replace(ReadFile(dir.File("ringbouncer@.service")), "Restart=", "Restrat="));
  CommandResult t = RunCommand({"systemd-analyze", "verify", typo.File("ringbouncer@50001.service")}, 60s);
  CHECK_THAT(t.out + t.err, Catch::Contains("Unknown key 'Restrat'"));
}

// ---------------------------------------------------------------------------------------------

// Runs the calling thread in another process's network namespace while it exists, so that
// connections made meanwhile (libpq included) are made in there.
class NetnsGuard {
 public:
  explicit NetnsGuard(pid_t pid) {
    self_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
    if (self_ < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
      std::string why = std::strerror(errno);
      if (target >= 0) close(target);
      if (self_ >= 0) close(self_);
      throw std::runtime_error("setns into the container's network: " + why);
    }
    close(target);
  }
  ~NetnsGuard() {
    setns(self_, CLONE_NEWNET);
    close(self_);
  }
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

 private:
  int self_ = -1;
};

// systemd-nspawn booting the host's root read-only, in a private mount namespace (for the tmpfs
// on /run/systemd/nspawn that nspawn needs here). A watchdog stops the container if the test
// process dies first: SIGKILL on nspawn alone would leave the container's systemd running.
class NspawnBoot {
 public:
  NspawnBoot(const std::string& name, const std::vector<std::string>& nspawn_args, const std::string& console_log) {
    static const char* kScript = R"sh(
set -eu
owner=$1; shift
mkdir -p /run/systemd/nspawn
mount -t tmpfs tmpfs /run/systemd/nspawn
me=$$
(
  set +e
  # kill -0 succeeds on a zombie: look at the state too.
  alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
  leader=
  while alive "$owner" && alive "$me"; do
    if [ -z "$leader" ]; then
      for c in $(cat "/proc/$me/task/$me/children" 2>/dev/null); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
      done
    fi
    sleep 1
  done
  if alive "$me"; then
    kill -TERM "$me" 2>/dev/null || true
    for i in $(seq 15); do alive "$leader" || exit 0; sleep 1; done
  fi
  if alive "$leader" && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]; then kill -KILL "$leader"; fi
) </dev/null >/dev/null 2>&1 &
exec systemd-nspawn "$@"
)sh";
    std::vector<std::string> argv = {"unshare", "-m", "--propagation", "private", "sh", "-c", kScript,
                                     "rb-nspawn", std::to_string(getpid()), "-q", "-D", "/", "--volatile=yes",
                                     "-b", "--register=no", "--keep-unit", "--private-network", "-M", name,
                                     "--console=passive"};
    argv.insert(argv.end(), nspawn_args.begin(), nspawn_args.end());
    // No first-boot prompts; the machine-id the caller binds keeps its transient copy (its
    // commit would fail on the read-only bind); and no waiting for a network that
    // --private-network never brings up (networkd-wait-online would hold the boot 2 minutes).
    argv.push_back("systemd.firstboot=off");
    argv.push_back("systemd.mask=systemd-machine-id-commit.service");
    argv.push_back("systemd.mask=systemd-networkd-wait-online.service");
    process_.emplace(SubprocessOptions{.argv = argv, .stdout_path = console_log, .stderr_path = console_log + ".err"});
    console_log_ = console_log;
  }

  ~NspawnBoot() { Stop(); }
  NspawnBoot(const NspawnBoot&) = delete;
  NspawnBoot& operator=(const NspawnBoot&) = delete;

  // nspawn itself: the launcher shell exec'd it after forking the watchdog.
  pid_t NspawnPid() const { return process_->Pid(); }
  // The container's PID 1, nspawn's child.
  pid_t Leader() {
    if (leader_ > 0) return leader_;
    pid_t n = NspawnPid();
    std::ifstream children("/proc/" + std::to_string(n) + "/task/" + std::to_string(n) + "/children");
    // Its children: the container's PID 1, and the watchdog shell forked before the exec.
    for (pid_t child; children >> child;) {
      std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
      std::string c;
      comm >> c;
      if (c == "systemd") leader_ = child;
    }
    return leader_;
  }

  // Runs argv inside the container (every namespace of its PID 1).
  CommandResult Exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 60s) {
    std::vector<std::string> full = {"nsenter", "-t", std::to_string(Leader()), "-a"};
    full.insert(full.end(), argv.begin(), argv.end());
    return RunCommand(full, timeout);
  }
  std::string Systemctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"systemctl", "--no-pager"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Trim(Exec(argv).out);
  }
  std::string Property(const std::string& unit, const std::string& property) {
    return Systemctl({"show", "-p", property, "--value", unit});
  }
  std::string Journal(const std::string& unit) {
    return Exec({"journalctl", "--no-pager", "-o", "cat", "-u", unit}).out;
  }

  bool WaitBooted(std::chrono::milliseconds timeout) {
    return WaitUntil(
        [&] {
          if (!process_->Running()) return false;
          if (Leader() <= 0) return false;
          std::string state = Trim(Exec({"systemctl", "is-system-running"}, 10s).out);
          return state == "running" || state == "degraded";
        },
        timeout, 200ms);
  }

  bool Running() { return process_->Running(); }
  std::string ConsoleLog() const {
    std::ifstream in(console_log_);
    std::ostringstream s;
    s << in.rdbuf();
    std::ifstream err(console_log_ + ".err");
    s << err.rdbuf();
    return s.str();
  }

  // Powers the container off (nspawn turns SIGTERM into SIGRTMIN+3 for systemd), and kills its
  // PID 1 if it is still up after a while. Idempotent.
  void Stop() {
    if (!process_ || !process_->Running()) return;
    pid_t leader = Leader();
    process_->Kill(SIGTERM);
    if (!process_->Wait(30s)) {
      if (leader > 0) kill(leader, SIGKILL);
      process_->Wait(10s);
    }
    process_->KillAndWait();
  }

 private:
  std::optional<Subprocess> process_;
  pid_t leader_ = -1;
  std::string console_log_;
};

// Which instance (peer_id) a connection through 6432 reached, for `n` fresh connections.
std::map<int, int> SpreadOver6432(const std::string& conninfo, int n, std::vector<PgConn>* keep = nullptr) {
  std::map<int, int> per_peer;
  for (int i = 0; i < n; ++i) {
    PgConn c = PgConn::Connect(conninfo);
    if (!c.Ok()) throw std::runtime_error("connect through 6432: " + c.Error());
    ++per_peer[InstanceGroup::PeerOfBackendPid(PQbackendPID(c.Raw()))];
    if (keep) keep->push_back(std::move(c));
  }
  return per_peer;
}

std::string Describe(const std::map<int, int>& per_peer) {
  std::string s;
  for (const auto& [peer, n] : per_peer) s += " peer " + std::to_string(peer) + ": " + std::to_string(n);
  return s;
}

TEST_CASE("systemd-nspawn boots the real units: 4 instances share 6432 and survive reload and kill -9 and broken configs") {
  REQUIRE(geteuid() == 0);
  REQUIRE(HaveProgram("systemd-nspawn"));  // Debian: systemd-container (tools/lib.sh installs it)
  REQUIRE(HaveProgram("nsenter"));

  PgCluster pg;
  TempDir dir("rb-nspawn");
  // The container's /tmp (unix sockets /tmp/.s.PGSQL.<port>, [peers] reaches them there).
  fs::create_directories(dir.File("tmp"));
  fs::permissions(dir.File("tmp"), fs::perms::all | fs::perms::sticky_bit);
  // /usr/local/bin/ringbouncer, as in the unit: a link to the binary under test.
  fs::create_directories(dir.File("bin"));
  fs::create_symlink("/rb-bin/ringbouncer", dir.File("bin/ringbouncer"));
  // /etc/ringbouncer: the real shared config, its [databases] pointed at the test's PostgreSQL,
  // the real instance files, and a userlist with the test roles plus the real admin secret.
  fs::create_directories(dir.File("etc/instance.d"));
  dir.WriteFile("etc/pgbouncer.ini",
                Replace(ReadFile(ConfigDir() + "/pgbouncer.ini"), "testdb = host=postgres port=5432 dbname=testdb",
                        "rbtest = host=/rb-pg port=" + std::to_string(pg.Port()) + " dbname=rbtest"));
  for (int port : kInstances) {
    const std::string name = "instance.d/" + std::to_string(port) + ".ini";
    dir.WriteFile("etc/" + name, ReadFile(ConfigDir() + "/" + name));
  }
  std::string admin_line;
  {
    std::istringstream in(ReadFile(ConfigDir() + "/userlist.txt"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("\"pgbouncer\" ", 0) == 0) admin_line = line;
  }
  REQUIRE(!admin_line.empty());
  dir.WriteFile("etc/userlist.txt", pg.UserlistEntry("rb_scram") + "\n" + admin_line + "\n");

  // An initialized machine-id: without one, /etc being empty, systemd takes this for a first
  // boot and enables every unit the host's packages ship (presets), pgbouncer.socket on 6432
  // among them.
  char id[33];
  for (int i = 0; i < 32; ++i) id[i] = "0123456789abcdef"[(std::random_device{}() & 15)];
  id[32] = '\0';
  dir.WriteFile("machine-id", std::string(id) + "\n");

  const std::string bin_dir = fs::path(RingbouncerPath()).parent_path().string();
  std::vector<std::string> binds = {
      "--bind-ro=" + dir.File("machine-id") + ":/etc/machine-id",
      "--bind-ro=/etc/passwd",
      "--bind-ro=/etc/group",
      "--bind-ro=" + bin_dir + ":/rb-bin",
      "--bind-ro=" + dir.File("bin") + ":/usr/local/bin",
      "--bind-ro=" + UnitDir() + "/ringbouncer@.socket:/etc/systemd/system/ringbouncer@.socket",
      "--bind-ro=" + UnitDir() + "/ringbouncer@.service:/etc/systemd/system/ringbouncer@.service",
      "--bind-ro=" + dir.File("etc") + ":/etc/ringbouncer",
      "--bind=" + dir.File("tmp") + ":/tmp",
      "--bind=" + pg.SocketDir() + ":/rb-pg",
  };
  NspawnBoot box("rb-nspawn-" + std::to_string(getpid()), binds, dir.File("console.log"));
  if (!box.WaitBooted(60s)) FAIL("the container did not boot; its console:\n" << box.ConsoleLog());
  // A REQUIRE that fails unwinds through here: show what systemd and the instances said.
  struct DumpOnFailure {
    NspawnBoot& box;
    ~DumpOnFailure() {
      if (std::uncaught_exceptions() == 0) return;
      std::cerr << "--- container journal (ringbouncer units) ---\n"
                << box.Exec({"journalctl", "--no-pager", "-o", "short-monotonic", "-u", "ringbouncer@*"}).out
                << "--- systemctl status ---\n" << box.Exec({"systemctl", "--no-pager", "status", "ringbouncer@*"}).out;
    }
  } dump{box};

  auto all_units = [&](int port) {
    return std::vector<std::string>{"ringbouncer@" + std::to_string(port) + ".socket",
                                    "ringbouncer@" + std::to_string(port) + ".service"};
  };
  std::vector<std::string> enable = {"systemctl", "enable", "--now"};
  for (int port : kInstances)
    for (const auto& u : all_units(port)) enable.push_back(u);
  CommandResult en = box.Exec(enable);
  INFO("enable: " << en.out << en.err);
  REQUIRE(en.exit_code == 0);
  auto service = [](int port) { return "ringbouncer@" + std::to_string(port) + ".service"; };
  for (int port : kInstances) {
    INFO(service(port));
    REQUIRE(WaitUntil([&] { return box.Property(service(port), "ActiveState") == "active"; }, 30s));
  }

  // The instances as systemd sees them.
  {
    for (int port : kInstances) {
      INFO(service(port));
      // Type=notify: STATUS= reaches systemd; the passed sockets are logged with their names.
      // (journald and STATUS= may trail READY=1 by a moment)
      REQUIRE(WaitUntil([&] { return box.Property(service(port), "StatusText").find("workers") != std::string::npos; },
                        10s));
      const std::string logged = "socket activation: 3 socket(s) from systemd: ringbouncer-" + std::to_string(port) + "=";
      REQUIRE(WaitUntil([&] { return box.Journal(service(port)).find(logged) != std::string::npos; }, 10s));
      REQUIRE(box.Property(service(port), "User") == "postgres");
      REQUIRE(box.Property(service(port), "LimitNOFILE") == "16384");
    }
  }

  const std::string app = "host=127.0.0.1 port=6432 dbname=rbtest user=rb_scram password=scrampass connect_timeout=10";
  auto admin = [](int port) {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " dbname=pgbouncer user=pgbouncer password=pgbouncer connect_timeout=10";
  };
  auto unix_conn = [&](int port) {
    return "host=" + dir.File("tmp") + " port=" + std::to_string(port) +
           " dbname=rbtest user=rb_scram password=scrampass connect_timeout=10";
  };

  // 6432 spreads over the four; each admin port counts exactly the clients that its instance's
  // cancel keys say it has.
  {
    NetnsGuard in_container(box.Leader());
    std::vector<PgConn> held;
    std::map<int, int> per_peer = SpreadOver6432(app, 200, &held);
    INFO("200 connections through 6432:" << Describe(per_peer));
    REQUIRE(per_peer.size() == 4);
    for (size_t i = 0; i < kInstances.size(); ++i) {
      const int port = kInstances[i];
      INFO("admin port " << port);
      REQUIRE(per_peer[static_cast<int>(i) + 1] >= 20);
      PgConn a = PgConn::Connect(admin(port));
      REQUIRE(a.Ok());
      REQUIRE(Cell(a.Exec("SHOW CONFIG"), "key", "peer_id", "value") == std::to_string(i + 1));
      REQUIRE(Cell(a.Exec("SHOW POOLS"), "database", "rbtest", "cl_active") ==
            std::to_string(per_peer[static_cast<int>(i) + 1]));
    }
  }
  // Each unix socket leads to its own instance (from the host: the socket files are ours).
  for (size_t i = 0; i < kInstances.size(); ++i) {
    PgConn c = PgConn::Connect(unix_conn(kInstances[i]));
    INFO("unix socket of " << kInstances[i] << ": " << c.Error());
    REQUIRE(c.Ok());
    REQUIRE(InstanceGroup::PeerOfBackendPid(PQbackendPID(c.Raw())) == static_cast<int>(i) + 1);
  }

  // systemctl reload: HUP, the instance re-reads both files, keeps its pid.
  {
    const std::string pid = box.Property(service(50002), "MainPID");
    std::ofstream(dir.File("etc/instance.d/50002.ini"), std::ios::app) << "default_pool_size = 7\n";
    CommandResult rl = box.Exec({"systemctl", "reload", service(50002)});
    INFO("reload: " << rl.out << rl.err);
    REQUIRE(rl.exit_code == 0);
    REQUIRE(box.Property(service(50002), "MainPID") == pid);
    REQUIRE(WaitUntil(
        [&] { return box.Journal(service(50002)).find("got SIGHUP, re-reading config") != std::string::npos; }, 10s));
    NetnsGuard in_container(box.Leader());
    REQUIRE(WaitUntil([&] { return Cell(Query(admin(50002), "SHOW CONFIG"), "key", "default_pool_size", "value") == "7"; },
                    10s));
    REQUIRE(Cell(Query(admin(50001), "SHOW CONFIG"), "key", "default_pool_size", "value") == "20");
  }

  // Restart=on-failure: SIGKILL the main process; systemd starts a new one.
  {
    const std::string pid = box.Property(service(50003), "MainPID");
    REQUIRE(box.Exec({"kill", "-KILL", pid}).exit_code == 0);
    REQUIRE(WaitUntil(
        [&] {
          return box.Property(service(50003), "ActiveState") == "active" &&
                 box.Property(service(50003), "MainPID") != pid && box.Property(service(50003), "NRestarts") == "1";
        },
        30s));
    PgConn c = PgConn::Connect(unix_conn(50003));
    INFO(c.Error());
    REQUIRE(c.Ok());
    REQUIRE(InstanceGroup::PeerOfBackendPid(PQbackendPID(c.Raw())) == 3);
    REQUIRE(c.Exec("SELECT 1").Scalar() == "1");
  }

  // Bad input: instance 50005's config is broken, 50006 has none. Each fails with a clear
  // journal message; once systemd gives up (start limit), their sockets close too, and 6432
  // is served by the four others alone.
  {
    dir.WriteFile("etc/instance.d/50005.ini", "%include /etc/ringbouncer/pgbouncer.ini\n[pgbouncer\npeer_id = 5\n");
    box.Exec({"systemctl", "start", "ringbouncer@50005.socket", "ringbouncer@50006.socket"});
    box.Exec({"systemctl", "start", "--no-block", service(50005), service(50006)});
    for (int port : {50005, 50006}) {
      INFO(service(port));
      REQUIRE(WaitUntil([&] { return box.Property("ringbouncer@" + std::to_string(port) + ".socket", "ActiveState") == "failed"; },
                      40s, 250ms));
      // Not running: "failed", or "inactive" once the failed socket has stopped it (under load
      // systemd can get there before we look).
      const std::string state = box.Property(service(port), "ActiveState");
      INFO("service state: " << state);
      REQUIRE((state == "failed" || state == "inactive"));
    }
    REQUIRE_THAT(box.Journal(service(50005)),
               Catch::Contains("ERROR /etc/ringbouncer/instance.d/50005.ini:2: syntax error: section header has no closing \"]\""));
    REQUIRE_THAT(box.Journal(service(50006)),
               Catch::Contains("could not read \"/etc/ringbouncer/instance.d/50006.ini\": No such file or directory"));
    for (int port : kInstances) REQUIRE(box.Property(service(port), "ActiveState") == "active");
    NetnsGuard in_container(box.Leader());
    std::map<int, int> per_peer = SpreadOver6432(app, 200);
    INFO("200 connections through 6432 with 50005 and 50006 failed:" << Describe(per_peer));
    REQUIRE(per_peer.size() == 4);
    for (int peer = 1; peer <= 4; ++peer) REQUIRE(per_peer[peer] >= 20);
  }

  box.Stop();
  REQUIRE_FALSE(box.Running());
}

}  // namespace
}  // namespace rb::test
