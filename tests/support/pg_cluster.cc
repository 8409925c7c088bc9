#include "tests/support/pg_cluster.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "tests/support/paths.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

constexpr std::chrono::seconds kStartTimeout{180};  // initdb + start + pgbench -i, on a busy CI
constexpr std::chrono::seconds kStopTimeout{60};

}  // namespace

std::string SqlLiteral(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

PgCluster::PgCluster(PgClusterOptions options) {
  std::string pattern = "/tmp/rb-pg-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("PgCluster: mkdtemp failed");
  }
  dir_ = pattern;

  std::vector<std::string> argv = {PgtmpPath(), "start", dir_,
                                   "--owner-pid", std::to_string(getpid()),
                                   "--hba", options.hba,
                                   "--max-connections", std::to_string(options.max_connections)};
  if (options.pgbench) argv.push_back("--pgbench");
  if (options.port != 0) {
    argv.push_back("--port");
    argv.push_back(std::to_string(options.port));
  }
  CommandResult started = RunCommand(argv, kStartTimeout);
  if (started.exit_code != 0) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);  // pgtmp cleans up after itself; belt and braces
    stopped_ = true;
    throw std::runtime_error("tools/pgtmp start failed (exit " +
                             std::to_string(started.exit_code) + ")\n" + started.err +
                             started.out);
  }
  std::istringstream lines(started.out);
  for (std::string line; std::getline(lines, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env_[line.substr(0, eq)] = line.substr(eq + 1);
  }
  port_ = std::atoi(Env("PGPORT").c_str());
  if (port_ <= 0 || Env("PGHOST") != dir_) {
    Stop();
    throw std::runtime_error("tools/pgtmp start printed no usable PGHOST/PGPORT:\n" + started.out);
  }
}

PgCluster::~PgCluster() { Stop(); }

PgCluster& PgCluster::Shared() {
  // A function-local static: destroyed (and so stopped) at exit, after main returns.
  static PgCluster cluster(PgClusterOptions{.pgbench = true});
  return cluster;
}

void PgCluster::Stop() {
  if (stopped_) return;
  stopped_ = true;
  CommandResult stopped = RunCommand({PgtmpPath(), "stop", dir_}, kStopTimeout);
  if (stopped.exit_code != 0) {
    // A destructor must not throw; say what happened where the test output shows it.
    std::fprintf(stderr, "PgCluster: tools/pgtmp stop %s failed: %s%s\n", dir_.c_str(),
                 stopped.err.c_str(), stopped.out.c_str());
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void PgCluster::Restart(std::string_view mode) {
  if (stopped_) throw std::runtime_error("PgCluster::Restart: the cluster is stopped");
  std::vector<std::string> argv;
  if (geteuid() == 0) argv = {"runuser", "-u", "postgres", "--"};
  const std::vector<std::string> command = {BinDir() + "/pg_ctl", "-D", dir_ + "/data",
                                            "-l", LogPath(), "-m", std::string(mode), "-w",
                                            "-t", "60", "restart"};
  argv.insert(argv.end(), command.begin(), command.end());
  // From /: the postgres user may not be allowed into the caller's directory.
  Subprocess pg_ctl(SubprocessOptions{.argv = argv, .cwd = "/"});
  std::optional<int> code = pg_ctl.Wait(kStartTimeout);
  if (code != 0) {
    if (!code) pg_ctl.KillAndWait();
    throw std::runtime_error("pg_ctl restart failed (exit " +
                             (code ? std::to_string(*code) : std::string("timeout")) + ")\n" +
                             pg_ctl.Stderr() + pg_ctl.Stdout());
  }
}

std::string PgCluster::SocketPath() const { return dir_ + "/.s.PGSQL." + std::to_string(port_); }
std::string PgCluster::LogPath() const { return dir_ + "/postgres.log"; }

std::string PgCluster::BinDir() const {
  std::string dir = Env("PGTMP_BINDIR");
  return dir.empty() ? PgBinDir() : dir;
}

std::string PgCluster::Env(std::string_view key) const {
  auto it = env_.find(key);
  return it == env_.end() ? std::string() : it->second;
}

pid_t PgCluster::PostmasterPid() const {
  std::ifstream pid_file(dir_ + "/data/postmaster.pid");
  pid_t pid = -1;
  if (pid_file >> pid) return pid;
  return -1;
}

std::string_view PgCluster::PasswordOf(std::string_view user) {
  for (const PgUser& known : {kMd5User, kScramUser, kTrustUser}) {
    if (known.name == user) return known.password;
  }
  return "";
}

std::string PgCluster::ConnString(std::string_view user, std::string_view dbname,
                                  Transport transport, std::string_view extra) const {
  std::string out = "host=" + (transport == Transport::kTcp ? TcpHost() : ConnInfoQuote(dir_)) +
                    " port=" + std::to_string(port_) + " user=" + ConnInfoQuote(user) +
                    " dbname=" + ConnInfoQuote(dbname) + " connect_timeout=10";
  if (std::string_view password = PasswordOf(user); !password.empty()) {
    out += " password=" + ConnInfoQuote(password);
  }
  if (!extra.empty()) out += " " + std::string(extra);
  return out;
}

std::string PgCluster::SuperuserConnString(std::string_view dbname) const {
  return ConnString(kSuperuser, dbname, Transport::kUnix);
}

QueryResult PgCluster::Query(std::string_view user, std::string_view sql,
                             std::string_view dbname) const {
  return rb::test::Query(ConnString(user, dbname), sql);
}

QueryResult PgCluster::SuperuserQuery(std::string_view sql, std::string_view dbname) const {
  return rb::test::Query(SuperuserConnString(dbname), sql);
}

std::string PgCluster::StoredSecret(std::string_view role) const {
  QueryResult result = SuperuserQuery(
      "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = " + SqlLiteral(role));
  if (!result.ok) throw std::runtime_error("reading pg_authid failed: " + result.error);
  if (result.rows.empty()) throw std::runtime_error("no role " + std::string(role));
  return result.rows[0][0];
}

std::string PgCluster::UserlistEntry(std::string_view role) const {
  return "\"" + std::string(role) + "\" \"" + StoredSecret(role) + "\"";
}

}  // namespace rb::test
