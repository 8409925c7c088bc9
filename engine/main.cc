// ringbouncer [OPTION]... CONFIG_FILE: PgBouncer's command line, plus -c and --check.
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/config.h"
#include "engine/config_check.h"
#include "engine/log.h"
#include "engine/supervisor.h"
#include "netio/features.h"
#include "netio/systemd.h"

namespace {

constexpr const char* kUsage =
    "ringbouncer is a connection pooler for PostgreSQL, a drop-in replacement for PgBouncer.\n"
    "\n"
    "Usage:\n"
    "  ringbouncer [OPTION]... CONFIG_FILE\n"
    "\n"
    "Options:\n"
    "  -c, --config=FILE    the configuration file (instead of CONFIG_FILE)\n"
    "  -d, --daemon         run in background (as a daemon)\n"
    "  -q, --quiet          run quietly\n"
    "  -v, --verbose        increase verbosity (repeat for more)\n"
    "  -u, --user=USERNAME  assume identity of USERNAME\n"
    "      --check          validate the configuration and exit (1 if it has errors)\n"
    "  -V, --version        show version, then exit\n"
    "  -h, --help           show this help, then exit\n";

// PgBouncer refuses to start over a live instance's pidfile.
bool PidfileBusy(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return false;
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &pid) || pid <= 0) return false;
  return kill(pid, 0) == 0;
}

bool Daemonize() {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid > 0) _exit(0);
  if (setsid() < 0) return false;
  pid = fork();  // no controlling terminal, ever
  if (pid < 0) return false;
  if (pid > 0) _exit(0);
  int fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO) close(fd);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rb::engine;
  SupervisorOptions opts;
  bool check = false;
  enum { kCheck = 1000 };
  static const option long_options[] = {
      {"config", required_argument, nullptr, 'c'}, {"daemon", no_argument, nullptr, 'd'},
      {"quiet", no_argument, nullptr, 'q'},        {"verbose", no_argument, nullptr, 'v'},
      {"user", required_argument, nullptr, 'u'},   {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},         {"check", no_argument, nullptr, kCheck},
      {"reboot", no_argument, nullptr, 'R'},       {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "c:dqvu:VhR", long_options, nullptr)) != -1) {
    switch (c) {
      case 'c':
        opts.config_path = optarg;
        break;
      case 'd':
        opts.daemon = true;
        break;
      case 'q':
        opts.quiet = true;
        break;
      case 'v':
        ++opts.verbose;
        break;
      case 'u':
        opts.user = optarg;
        break;
      case 'V':
        std::cout << "ringbouncer " << RB_VERSION << " (PgBouncer 1.25 compatible)\n";
        return 0;
      case 'h':
        std::cout << kUsage;
        return 0;
      case 'R':
        std::cerr << "ringbouncer: -R (online reboot) is not supported; use SO_REUSEPORT and a rolling restart\n";
        return 1;
      case kCheck:
        check = true;
        break;
      default:
        std::cerr << "Try \"ringbouncer --help\" for more information.\n";
        return 1;
    }
  }
  if (optind < argc) {
    if (!opts.config_path.empty() || optind + 1 < argc) {
      std::cerr << "ringbouncer: too many command-line arguments\n";
      return 1;
    }
    opts.config_path = argv[optind];
  }
  if (opts.config_path.empty()) {
    std::cerr << "ringbouncer: need a config file\n" << kUsage;
    return 1;
  }
  if (check) return RunConfigCheck(opts.config_path, std::cout);

  LoadResult loaded = LoadConfigFile(opts.config_path);
  Log().verbose.store(opts.verbose, std::memory_order_relaxed);
  Log().to_stderr.store(!opts.quiet, std::memory_order_relaxed);
  for (const auto& w : loaded.warnings) RB_WARN("%s", w.ToString());
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) RB_ERROR("%s", e.ToString());
    return 1;
  }
  Config config = std::move(*loaded.config);
  const Settings& s = config.settings;
  // TLS is not implemented yet. Where the operator demands it, serving plain text instead
  // would be a silent downgrade: refuse to start. (prefer/allow/disable degrade to plain
  // text, which is what those modes permit.)
  if (s.client_tls_sslmode >= SslMode::kRequire || s.server_tls_sslmode >= SslMode::kRequire) {
    RB_ERROR("TLS is not supported yet by ringbouncer, but %s requires it; refusing to start",
             s.client_tls_sslmode >= SslMode::kRequire ? "client_tls_sslmode" : "server_tls_sslmode");
    return 1;
  }
  if (opts.daemon) {
    if (s.pidfile.empty()) {
      RB_ERROR("daemon needs pidfile configured");
      return 1;
    }
    if (s.logfile.empty() && !s.syslog) {
      RB_ERROR("daemon needs logging configured");
      return 1;
    }
  }
  if (!s.pidfile.empty() && PidfileBusy(s.pidfile)) {
    RB_ERROR("pidfile exists, another instance running?");
    return 1;
  }

  rb::netio::Features features = rb::netio::ProbeFeatures();
  RB_DEBUG("%s", features.Describe());
  std::string missing;
  if (!features.MeetsFloor(&missing)) {
    RB_ERROR("this kernel lacks io_uring features ringbouncer needs: %s (kernel %s)", missing, features.kernel_release);
    return 1;
  }
  // LISTEN_PID names this process; -d forks, so take the sockets first.
  opts.passed = rb::netio::TakeSystemdSockets();
  if (opts.daemon && !Daemonize()) {
    RB_ERROR("could not daemonize: %s", strerror(errno));
    return 1;
  }
  Supervisor supervisor(std::move(opts), std::move(config), features);
  return supervisor.Run();
}
