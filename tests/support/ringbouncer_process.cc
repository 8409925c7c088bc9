#include "tests/support/ringbouncer_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/support/paths.h"

namespace rb::test {
namespace {

using Clock = std::chrono::steady_clock;

// Binds 127.0.0.1:0 with SO_REUSEADDR and SO_REUSEPORT and keeps the socket, unlistened. The
// kernel then hands this port to nobody else (no FreeTcpPort race with parallel tests), while
// ringbouncer, which binds its listeners with SO_REUSEPORT as the same user, may still bind it.
// A socket that never listens is not in the listening hash, so it takes no connections.
int ReservePort(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("ReservePort: socket: ") + strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string error = strerror(errno);
    close(fd);
    throw std::runtime_error("ReservePort: bind: " + error);
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

std::map<std::string, std::string> DefaultRingbouncerSettings() {
  return {
      {"listen_addr", "127.0.0.1"},
      {"workers", "4"},
      {"auth_type", "md5"},
      {"pool_mode", "transaction"},
      {"default_pool_size", "20"},
      {"max_client_conn", "1000"},
      {"ignore_startup_parameters", "extra_float_digits"},
      {"server_login_retry", "1"},
      {"log_connections", "0"},
  };
}

std::string UserlistPlain(std::string_view user, std::string_view password) {
  return "\"" + std::string(user) + "\" \"" + std::string(password) + "\"";
}

std::vector<std::string> DefaultUserlist(const PgCluster& pg) {
  return {pg.UserlistEntry(kMd5User.name), pg.UserlistEntry(kScramUser.name),
          UserlistPlain(kTrustUser.name, "")};
}

std::string DatabaseLine(const PgCluster& pg, std::string_view name, std::string_view extra) {
  std::string line = std::string(name) + " = host=" + pg.TcpHost() +
                     " port=" + std::to_string(pg.Port()) + " dbname=" + std::string(kTestDb);
  if (!extra.empty()) line += " " + std::string(extra);
  return line;
}

RingbouncerProcess::RingbouncerProcess(const PgCluster& pg, RingbouncerOptions options)
    : dir_("rb-rbp") {
  reserve_fd_ = ReservePort(&port_);

  std::map<std::string, std::string> settings = DefaultRingbouncerSettings();
  settings["listen_port"] = std::to_string(port_);
  settings["unix_socket_dir"] = dir_.Path();
  settings["auth_file"] = dir_.File("userlist.txt");
  for (const auto& [key, value] : options.settings) {
    if (value.empty()) {
      settings.erase(key);
    } else {
      settings[key] = value;
    }
  }
  if (auto it = settings.find("listen_port"); it != settings.end()) port_ = std::stoi(it->second);

  std::vector<std::string> databases =
      options.databases.empty() ? std::vector<std::string>{DatabaseLine(pg)} : options.databases;
  std::vector<std::string> userlist =
      options.userlist.empty() ? DefaultUserlist(pg) : options.userlist;

  std::string userlist_text;
  for (const std::string& line : userlist) userlist_text += line + "\n";
  dir_.WriteFile("userlist.txt", userlist_text);

  config_text_ = "[databases]\n";
  for (const std::string& line : databases) config_text_ += line + "\n";
  if (!options.users.empty()) {
    config_text_ += "\n[users]\n";
    for (const std::string& line : options.users) config_text_ += line + "\n";
  }
  config_text_ += "\n[pgbouncer]\n";
  for (const auto& [key, value] : settings) config_text_ += key + " = " + value + "\n";
  config_path_ = dir_.WriteFile("pgbouncer.ini", config_text_);

  std::vector<std::string> argv = {RingbouncerPath()};
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  argv.push_back(config_path_);
  // Under -fsanitize=undefined a report is only printed by default; make it stop the process, so
  // that a test sees it fail (and the report is in the log) instead of passing over it.
  std::vector<std::string> env;
  if (getenv("UBSAN_OPTIONS") == nullptr) {
    env.emplace_back("UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1");
  }
  process_.emplace(SubprocessOptions{.argv = argv, .env = env});

  const auto deadline = Clock::now() + options.start_timeout;
  for (;;) {
    if (!process_->Running()) {
      throw std::runtime_error("ringbouncer exited during start-up:\n" + LogText() +
                               "\n--- pgbouncer.ini ---\n" + config_text_);
    }
    if (WaitForTcpPort(Host(), port_, std::chrono::milliseconds(200))) break;
    if (Clock::now() >= deadline) {
      throw std::runtime_error("ringbouncer did not listen on port " + std::to_string(port_) +
                               ":\n" + LogText());
    }
  }
}

RingbouncerProcess::~RingbouncerProcess() {
  if (process_) {
    process_->KillAndWait();
    if (std::string report = SanitizerReport(); !report.empty()) {
      std::fprintf(stderr, "ringbouncer (pid %d) printed a sanitizer report:\n%s\n",
                   static_cast<int>(process_->Pid()), report.c_str());
    }
  }
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

std::string RingbouncerProcess::SanitizerReport() const {
  std::string log = LogText();
  for (const char* marker :
       {"runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"}) {
    size_t at = log.find(marker);
    if (at != std::string::npos) {
      size_t start = log.rfind('\n', at);
      start = start == std::string::npos ? 0 : start + 1;
      return log.substr(start, 4000);
    }
  }
  return "";
}

std::string RingbouncerProcess::ConnString(std::string_view user, std::string_view db,
                                           std::string_view extra) const {
  std::string out = "host=" + Host() + " port=" + std::to_string(port_) +
                    " user=" + ConnInfoQuote(user) + " dbname=" + ConnInfoQuote(db) +
                    " connect_timeout=20";
  if (std::string_view password = PgCluster::PasswordOf(user); !password.empty()) {
    out += " password=" + ConnInfoQuote(password);
  }
  if (!extra.empty()) out += " " + std::string(extra);
  return out;
}

std::string RingbouncerProcess::UnixConnString(std::string_view user, std::string_view db,
                                               std::string_view extra) const {
  std::string out = ConnString(user, db, extra);
  return "host=" + ConnInfoQuote(SocketDir()) + out.substr(out.find(' '));
}

std::vector<std::string> RingbouncerProcess::PgbenchArgs(std::string_view user) const {
  return {"-h", Host(), "-p", std::to_string(port_), "-U", std::string(user)};
}

std::vector<std::string> RingbouncerProcess::PasswordEnv(std::string_view user) const {
  return {"PGPASSWORD=" + std::string(PgCluster::PasswordOf(user))};
}

std::string RingbouncerProcess::LogText() const {
  return process_ ? process_->Stdout() + process_->Stderr() : std::string();
}

std::string RingbouncerProcess::LogTail(size_t bytes) const {
  std::string log = LogText();
  return log.size() <= bytes ? log : "..." + log.substr(log.size() - bytes);
}

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

long RingbouncerProcess::RssKiB() const {
  std::ifstream status("/proc/" + std::to_string(process_->Pid()) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int RingbouncerProcess::Stop(std::chrono::milliseconds grace) {
  if (exit_status_) return *exit_status_;
  if (process_->Running()) process_->Kill(SIGQUIT);
  std::optional<int> status = process_->Wait(grace);
  exit_status_ = status ? *status : process_->KillAndWait();
  return *exit_status_;
}

}  // namespace rb::test
