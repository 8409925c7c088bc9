#include "engine/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/admin_request.h"
#include "engine/log.h"
#include "netio/listener.h"
#include "netio/systemd.h"

namespace rb::engine {

namespace {

constexpr uint32_t kMailboxCapacity = 16384;
// How often the admin console's tick reaches the workers: quickly while a PAUSE, SUSPEND or
// WAIT_CLOSE waits for servers or the process is paused, otherwise just enough to close idle
// servers marked close_needed.
constexpr int64_t kFastTickNs = 100'000'000;
constexpr int64_t kSlowTickNs = 1'000'000'000;

int64_t NowNs() { return MonotonicNanos(); }

}  // namespace

Supervisor::Supervisor(SupervisorOptions options, Config config, netio::Features features)
    : options_(std::move(options)), config_(std::make_shared<const Config>(std::move(config))), features_(features) {}

Supervisor::~Supervisor() {
  if (log_fd_ >= 0) close(log_fd_);
}

void Supervisor::ApplyLogSettings(const Settings& s) {
  LogSettings& log = Log();
  log.verbose.store(std::max(options_.verbose, s.verbose), std::memory_order_relaxed);
  log.to_stderr.store(!options_.quiet && !options_.daemon, std::memory_order_relaxed);
  // logfile is (re)opened on every reload, so that log rotation works with HUP. The new file
  // is dup3()ed onto the descriptor number already in use, never closed under the workers: one
  // that loaded the number just before still writes to a log file, not to a number that a
  // freshly accepted socket may have taken (a log line in a client's stream).
  if (!s.logfile.empty()) {
    int fresh = open(s.logfile.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fresh < 0) {
      RB_WARN("cannot open logfile \"%s\": %s", s.logfile, strerror(errno));  // the old file stays
    } else if (log_fd_ < 0) {
      log_fd_ = fresh;
    } else {
      if (dup3(fresh, log_fd_, O_CLOEXEC) < 0) RB_WARN("cannot reopen logfile \"%s\": %s", s.logfile, strerror(errno));
      close(fresh);
    }
    log.file_fd.store(log_fd_, std::memory_order_relaxed);
  } else {
    log.file_fd.store(-1, std::memory_order_relaxed);
    // The number stays taken (by /dev/null) for the same reason, and for a later logfile.
    int null_fd = log_fd_ >= 0 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
    if (null_fd >= 0) {
      (void)dup3(null_fd, log_fd_, O_CLOEXEC);
      close(null_fd);
    }
  }
  if (s.syslog) {
    static const std::pair<const char*, int> kFacilities[] = {
        {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON}, {"user", LOG_USER},
        {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},     {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
        {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
    int facility = LOG_DAEMON;
    for (const auto& [name, value] : kFacilities)
      if (s.syslog_facility == name) facility = value;
    OpenSyslog(s.syslog_ident, facility);
  }
  log.to_syslog.store(s.syslog, std::memory_order_relaxed);
}

absl::Status Supervisor::OpenListeners(std::vector<std::vector<ListenerSpec>>* per_worker) {
  const Settings& s = config_->settings;
  int workers = static_cast<int>(per_worker->size());
  netio::TcpOptions tcp;
  tcp.backlog = s.listen_backlog;
  tcp.keepalive = s.tcp_keepalive ? 1 : 0;
  tcp.keepidle = s.tcp_keepidle;
  tcp.keepintvl = s.tcp_keepintvl;
  tcp.keepcnt = s.tcp_keepcnt;
  tcp.user_timeout_ms = s.tcp_user_timeout;
  tcp.defer_accept = s.tcp_defer_accept ? 45 : 0;
  tcp.socket_buffer = s.tcp_socket_buffer;

  if (!s.metrics_listen.empty()) {
    // The metrics endpoint: one socket, on worker 0, never shared through SO_REUSEPORT (a
    // second instance on the same address would get half the scrapes and report only its own
    // numbers; give each instance its own metrics address instead).
    std::string host;
    int port = 0;
    absl::Status st = ParseHostPort(s.metrics_listen, &host, &port);
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("metrics_listen: ", st.message()));
    auto addrs = netio::ResolveListenAddress(host, static_cast<uint16_t>(port));
    if (!addrs.ok()) return addrs.status();
    netio::TcpOptions http;
    http.reuseport = false;
    for (const sockaddr_storage& addr : *addrs) {
      auto fd = netio::ListenTcp(addr, http);
      if (!fd.ok()) return absl::Status(fd.status().code(), absl::StrCat("metrics_listen: ", fd.status().message()));
      socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
      ListenerSpec spec;
      spec.fd = *fd;
      spec.kind = ListenerKind::kMetrics;
      spec.description = absl::StrCat(netio::DescribeSocketAddress(addr, len), " (metrics, GET /metrics)");
      (*per_worker)[0].push_back(spec);
    }
  }

  const std::vector<netio::PassedSocket>& passed = options_.passed;
  if (!passed.empty()) {
    // Socket activation: the passed sockets replace listen_addr and unix_socket_dir, as in
    // PgBouncer. Each is accepted on by one worker, which hands connections to the least
    // loaded one (a socket made by systemd can't be joined by our own reuseport sockets).
    std::string names;
    int next = 0;
    for (const auto& p : passed) {
      absl::StrAppend(&names, names.empty() ? "" : ", ", p.name, "=", p.address);
      if (!p.listening) {
        RB_WARN("systemd passed fd %d (%s), which is not a listening socket; ignored", p.fd, p.name);
        continue;
      }
      ListenerSpec spec;
      spec.fd = p.fd;
      spec.kind = p.family == AF_UNIX ? ListenerKind::kUnix : ListenerKind::kTcp;
      spec.hand_off = workers > 1;
      spec.description = p.address;
      if (spec.kind == ListenerKind::kTcp) netio::ApplyTcpOptions(p.fd, tcp);
      (*per_worker)[next++ % workers].push_back(spec);
    }
    RB_LOG("socket activation: %zu socket(s) from systemd: %s", passed.size(), names);
    bool any = false;
    for (const auto& per : *per_worker)
      for (const ListenerSpec& spec : per) any |= spec.kind != ListenerKind::kMetrics;
    if (!any) return absl::FailedPreconditionError("systemd passed no listening socket; nothing to accept on");
    return absl::OkStatus();
  }

  for (const std::string& host : s.listen_addr) {
    auto addrs = netio::ResolveListenAddress(host, static_cast<uint16_t>(s.listen_port));
    if (!addrs.ok()) return addrs.status();
    for (const sockaddr_storage& addr : *addrs) {
      socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
      if (!s.so_reuseport) {
        // Our workers share the port through SO_REUSEPORT among themselves; without
        // so_reuseport a port already taken by another process must still be an error.
        netio::TcpOptions probe = tcp;
        probe.reuseport = false;
        auto fd = netio::ListenTcp(addr, probe);
        if (!fd.ok()) return fd.status();
        close(*fd);
      }
      for (int w = 0; w < workers; ++w) {
        auto fd = netio::ListenTcp(addr, tcp);
        if (!fd.ok()) return fd.status();
        ListenerSpec spec;
        spec.fd = *fd;
        spec.kind = ListenerKind::kTcp;
        spec.description = netio::DescribeSocketAddress(addr, len);
        (*per_worker)[w].push_back(spec);
      }
    }
  }
  if (!s.unix_socket_dir.empty()) {
    std::string path = absl::StrCat(s.unix_socket_dir, "/.s.PGSQL.", s.listen_port);
    auto fd = netio::ListenUnix(path, s.listen_backlog, static_cast<uint32_t>(s.unix_socket_mode), s.unix_socket_group);
    if (!fd.ok()) return fd.status();
    ListenerSpec spec;
    spec.fd = *fd;
    spec.kind = ListenerKind::kUnix;
    spec.hand_off = workers > 1;
    spec.description = absl::StrCat("unix:", path);
    (*per_worker)[0].push_back(spec);
  }
  return absl::OkStatus();
}

absl::Status Supervisor::DropPrivileges() {
  std::string user = !options_.user.empty() ? options_.user : config_->settings.user;
  if (user.empty()) return absl::OkStatus();
  passwd* pw = getpwnam(user.c_str());
  if (!pw) return absl::NotFoundError(absl::StrCat("could not find user '", user, "' to switch to"));
  if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid) return absl::OkStatus();
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("could not switch to user '", user, "': ", strerror(errno)));
  }
  return absl::OkStatus();
}

bool Supervisor::Post(int worker, const netio::MailMessage& m) {
  if (static_cast<size_t>(worker) < workers_.size() && workers_[worker]->finished()) return false;
  WorkerEndpoint& e = shared_->endpoint(worker);
  while (!e.mailbox->Push(static_cast<uint32_t>(shared_->control_sender()), m)) {
    // The control plane may wait; the workers never do. A worker that has stopped will not
    // make room.
    if (static_cast<size_t>(worker) < workers_.size() && workers_[worker]->finished()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (e.mailbox->ClaimDoorbell()) {
    int fd = e.ring_fd.load(std::memory_order_acquire);
    if (fd < 0) return true;  // the worker has not started its loop yet; it drains on its first turn
    io_uring_sqe* sqe = ring_->Sqe();
    io_uring_prep_msg_ring(sqe, fd, 0, 0, 0);
    io_uring_sqe_set_data64(sqe, 0);
    ring_->Submit();
  }
  ring_->DrainCompletions([](const io_uring_cqe&) {});
  return true;
}

void Supervisor::Broadcast(const netio::MailMessage& m) {
  for (int w = 0; w < shared_->workers(); ++w) Post(w, m);
}

void Supervisor::PrepareScramSecrets() {
  // Plain-text auth_file passwords verified with SCRAM need a derived secret; derive them here
  // on the control thread, so no worker ever runs PBKDF2 for a client login.
  const Settings& s = config_->settings;
  if (s.auth_type == AuthType::kScramSha256 || s.auth_type == AuthType::kHba) {
    for (const AuthUser& u : config_->auth_file.users) {
      proto::ScramSecret secret;
      if (u.kind == SecretKind::kPlain) (void)ScramCache().SecretForPlainPassword(u.name, u.secret, &secret);
    }
  }
}

void Supervisor::PublishConfig(std::shared_ptr<const Config> config) {
  config_ = std::move(config);
  ApplyLogSettings(config_->settings);
  PrepareScramSecrets();
  for (int w = 0; w < shared_->workers(); ++w) {
    auto* p = new std::shared_ptr<const Config>(config_);
    if (!Post(w, netio::MailMessage{kMailConfig, 0, 0, p})) delete p;
  }
}

absl::Status Supervisor::Reload() {
  LoadResult r = LoadConfigFile(options_.config_path);
  for (const Diagnostic& d : r.warnings) RB_WARN("%s", d.ToString());
  if (!r.ok()) {
    std::vector<std::string> errors;
    for (const Diagnostic& d : r.errors) {
      RB_ERROR("%s", d.ToString());
      errors.push_back(d.ToString());
    }
    RB_ERROR("RELOAD Failed, see logs for more details");
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  Config next = std::move(*r.config);
  for (const std::string& key : KeepNonReloadable(config_->settings, next.settings)) {
    RB_WARN("setting \"%s\" changed, but needs a restart to take effect", key);
  }
  PublishConfig(std::make_shared<const Config>(std::move(next)));
  return absl::OkStatus();
}

absl::Status Supervisor::SetSetting(const std::string& key, const std::string& value) {
  Config next = *config_;
  absl::Status st = SetSettingAtRuntime(next.settings, key, value);
  if (!st.ok()) {
    if (FindSetting(key) == nullptr) {
      RB_ERROR("unknown parameter: pgbouncer/%s", key);
    } else {
      RB_ERROR("%s", std::string(st.message()));
    }
    return st;
  }
  RB_LOG("SET %s = %s", key, value);
  PublishConfig(std::make_shared<const Config>(std::move(next)));
  return absl::OkStatus();
}

void Supervisor::HandleControl() {
  for (const netio::MailMessage& m : shared_->control().Take()) {
    if (m.kind != kControlAdmin || m.ptr == nullptr) continue;
    auto* r = static_cast<AdminRequest*>(m.ptr);
    switch (r->op) {
      case AdminOp::kReload:
        r->status = Reload();
        break;
      case AdminOp::kSet:
        r->status = SetSetting(r->arg, r->value);
        break;
      case AdminOp::kShutdown: {
        // The console has answered already (or, for a plain SHUTDOWN, never will).
        ShutdownMode mode = r->shutdown_mode;
        delete r;
        Shutdown(mode);
        continue;
      }
      default:
        r->status = absl::InternalError("not a control-plane request");
        break;
    }
    // The answer goes back through the origin worker's mailbox, after the new config (Post
    // keeps order per sender).
    if (!Post(r->origin, netio::MailMessage{kMailAdminReply, static_cast<uint32_t>(shared_->control_sender()), 0, r})) {
      delete r;
    }
  }
}

void Supervisor::Pause() {
  if (shared_->pause_mode() == PauseMode::kNone) {
    RB_LOG("got SIGUSR1, pausing all activity");
    shared_->SetPauseMode(PauseMode::kPause);
  } else {
    RB_LOG("got SIGUSR1, but already paused/suspended");
  }
}

void Supervisor::Resume() {
  if (shutting_down_) {
    RB_LOG("got SIGUSR2 while shutting down, ignoring");
    return;
  }
  switch (shared_->pause_mode()) {
    case PauseMode::kSuspend:
      RB_LOG("got SIGUSR2, continuing from SUSPEND");
      break;
    case PauseMode::kPause:
      RB_LOG("got SIGUSR2, continuing from PAUSE");
      break;
    case PauseMode::kNone:
      RB_LOG("got SIGUSR2, but not paused/suspended");
      return;
  }
  shared_->SetPauseMode(PauseMode::kNone);
  // Clients that waited through the pause are served now rather than at the next upkeep.
  Broadcast(netio::MailMessage{kMailWake, 0, 0, nullptr});
}

void Supervisor::Tick(uint32_t flags) {
  Broadcast(netio::MailMessage{kMailAdmin, flags, static_cast<uint64_t>(NowNs()), nullptr});
}

void Supervisor::Shutdown(ShutdownMode mode) {
  if (!shutting_down_) netio::SdNotify("STOPPING=1");
  shutting_down_ = true;
  shared_->shutting_down.store(true, std::memory_order_relaxed);
  shutdown_mode_ = mode;
  Broadcast(netio::MailMessage{kMailShutdown, static_cast<uint32_t>(mode), 0, nullptr});
}

bool Supervisor::AllWorkersFinished() const {
  for (const auto& w : workers_)
    if (!w->finished() && !w->failed()) return false;
  return true;
}

std::string Supervisor::StatusLine() {
  int clients = 0, servers = 0;
  uint64_t xacts = 0;
  for (const auto& w : workers_) {
    clients += w->counters().clients.load(std::memory_order_relaxed);
    servers += w->counters().servers.load(std::memory_order_relaxed);
    xacts += w->counters().xacts.load(std::memory_order_relaxed);
  }
  return absl::StrFormat("%d workers, %d clients, %d servers, %u transactions", static_cast<int>(workers_.size()),
                         clients, servers, xacts);
}

// PgBouncer's stats line (stats.c refresh_stats): counts per second over the last period, and
// the average transaction, query and wait time of that period (the wait per server
// assignment), from the same pool totals as SHOW STATS.
void Supervisor::LogStats() {
  int64_t now = NowNs();
  StatsTotals t;
  for (const auto& w : workers_) {
    WorkerCounters& c = w->counters();
    t.xacts += c.xacts.load(std::memory_order_relaxed);
    t.queries += c.queries.load(std::memory_order_relaxed);
    t.client_parses += c.client_parses.load(std::memory_order_relaxed);
    t.server_parses += c.server_parses.load(std::memory_order_relaxed);
    t.binds += c.binds.load(std::memory_order_relaxed);
    t.in += c.pool_bytes_in.load(std::memory_order_relaxed);
    t.out += c.pool_bytes_out.load(std::memory_order_relaxed);
    t.xact_us += c.xact_us.load(std::memory_order_relaxed);
    t.query_us += c.query_us.load(std::memory_order_relaxed);
    t.wait_us += c.wait_us.load(std::memory_order_relaxed);
    t.assignments += c.server_assignments.load(std::memory_order_relaxed);
  }
  const StatsTotals& o = last_stats_;
  int64_t dur_us = (now - last_stats_ns_) / 1000;
  if (config_->settings.log_stats && last_stats_ns_ != 0 && dur_us > 0) {
    auto rate = [&](uint64_t cur, uint64_t old) { return 1'000'000 * (cur - old) / static_cast<uint64_t>(dur_us); };
    auto per = [](uint64_t cur_time, uint64_t old_time, uint64_t n) { return n ? (cur_time - old_time) / n : 0; };
    uint64_t dx = t.xacts - o.xacts, dq = t.queries - o.queries, da = t.assignments - o.assignments;
    RB_LOG("stats: %u xacts/s, %u queries/s, %u client parses/s, %u server parses/s, %u binds/s, in %u B/s, out %u B/s, "
           "xact %u us, query %u us, wait %u us",
           rate(t.xacts, o.xacts), rate(t.queries, o.queries), rate(t.client_parses, o.client_parses),
           rate(t.server_parses, o.server_parses), rate(t.binds, o.binds), rate(t.in, o.in), rate(t.out, o.out),
           per(t.xact_us, o.xact_us, dx), per(t.query_us, o.query_us, dq), per(t.wait_us, o.wait_us, da));
  }
  last_stats_ = t;
  last_stats_ns_ = now;
}

int Supervisor::Run() {
  const Settings& s = config_->settings;
  ApplyLogSettings(s);
  signal(SIGPIPE, SIG_IGN);

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    RB_LOG("kernel file descriptor limit: %d (hard: %d); max_client_conn: %d, max expected fd use: %d",
           static_cast<int>(rl.rlim_cur), static_cast<int>(rl.rlim_max), s.max_client_conn,
           s.max_client_conn + s.default_pool_size * std::max<size_t>(1, config_->databases.size()) + 10);
  }

  // Signals are taken from a signalfd on this thread; every other thread has them blocked.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) {
    RB_ERROR("signalfd: %s", strerror(errno));
    return 1;
  }

  int workers = std::min(s.EffectiveWorkers(), kMaxWorkers);
  shared_ = std::make_unique<SharedState>(workers, kMailboxCapacity);
  std::vector<std::vector<ListenerSpec>> listeners(static_cast<size_t>(workers));
  absl::Status st = OpenListeners(&listeners);
  if (!st.ok()) {
    RB_ERROR("%s", std::string(st.message()));
    return 1;
  }
  st = DropPrivileges();
  if (!st.ok()) {
    RB_ERROR("%s", std::string(st.message()));
    return 1;
  }
  auto ring = netio::Ring::Create(netio::RingOptions{64, 256, 0, false});
  if (!ring.ok()) {
    RB_ERROR("%s", std::string(ring.status().message()));
    return 1;
  }
  ring_ = std::move(*ring);

  if (!s.pidfile.empty()) {
    pidfile_ = s.pidfile;
    int fd = open(pidfile_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      RB_ERROR("cannot write pidfile \"%s\": %s", pidfile_, strerror(errno));
      return 1;
    }
    std::string pid = absl::StrCat(getpid(), "\n");
    (void)!write(fd, pid.data(), pid.size());
    close(fd);
  }

  PrepareScramSecrets();

  uint16_t peer_id = static_cast<uint16_t>(s.peer_id);
  for (int w = 0; w < workers; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, shared_.get(), config_, features_, std::move(listeners[w]), peer_id));
  }
  for (int w = 0; w < workers; ++w) {
    threads_.emplace_back([this, w] {
      std::string name = absl::StrCat("rb-worker-", w);
      pthread_setname_np(pthread_self(), name.c_str());
      workers_[w]->Run();
    });
  }
  // Wait until every worker accepts (or one fails to start).
  for (;;) {
    bool all = true, failed = false;
    for (const auto& w : workers_) {
      all &= w->ready();
      failed |= w->failed();
    }
    if (failed) {
      RB_ERROR("a worker failed to start");
      Shutdown(ShutdownMode::kImmediate);
      for (auto& t : threads_) t.join();
      return 1;
    }
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Each address once, though every worker has its own socket for it.
  std::vector<std::string> seen;
  for (const auto& w : workers_) {
    for (const std::string& d : w->ListenerDescriptions()) {
      if (std::find(seen.begin(), seen.end(), d) != seen.end()) continue;
      seen.push_back(d);
      RB_LOG("listening on %s", d);
    }
  }
  RB_LOG("process up: ringbouncer %s (PgBouncer 1.25 compatible), %d workers", RB_VERSION, workers);
  netio::SdNotify(absl::StrCat("READY=1\nSTATUS=", StatusLine()));

  int64_t next_stats = NowNs() + int64_t{std::max(1, s.stats_period)} * 1'000'000'000;
  int64_t next_status = NowNs() + 10'000'000'000;
  int64_t last_tick = NowNs();
  LogStats();
  bool fast_exit = false;
  while (true) {
    pollfd pfd[2] = {{sfd, POLLIN, 0}, {shared_->control().fd(), POLLIN, 0}};
    int r = poll(pfd, 2, static_cast<int>(kFastTickNs / 1'000'000));
    if (r > 0 && (pfd[1].revents & POLLIN)) HandleControl();
    if (r > 0 && (pfd[0].revents & POLLIN)) {
      signalfd_siginfo si{};
      if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
          case SIGHUP: {
            RB_LOG("got SIGHUP, re-reading config");
            // Type=notify-reload services expect RELOADING=1 with the monotonic time, then READY=1.
            timespec ts{};
            clock_gettime(CLOCK_MONOTONIC, &ts);
            netio::SdNotify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=",
                                         int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000));
            (void)Reload();
            netio::SdNotify("READY=1");
            break;
          }
          case SIGINT:
            if (shutting_down_) {
              RB_LOG("got SIGINT while shutting down, fast exit");
              fast_exit = true;
              Shutdown(ShutdownMode::kImmediate);
            } else {
              RB_LOG("got SIGINT, shutting down, waiting for all servers connections to be released");
              Shutdown(ShutdownMode::kWaitForServers);
            }
            break;
          case SIGTERM:
            if (shutting_down_) {
              RB_LOG("got SIGTERM while shutting down, fast exit");
              fast_exit = true;
              Shutdown(ShutdownMode::kImmediate);
            } else {
              RB_LOG("got SIGTERM, shutting down, waiting for all clients disconnect");
              Shutdown(ShutdownMode::kWaitForClients);
            }
            break;
          case SIGQUIT:
            RB_LOG("got SIGQUIT, fast exit");
            fast_exit = true;
            Shutdown(ShutdownMode::kImmediate);
            break;
          case SIGUSR1:
            Pause();
            break;
          case SIGUSR2:
            Resume();
            break;
          default:
            break;
        }
      }
    }
    int64_t now = NowNs();
    uint32_t tick_flags = 0;
    if (now >= next_stats) {
      LogStats();
      tick_flags |= kAdminTickRotateStats;
      next_stats = now + int64_t{std::max(1, config_->settings.stats_period)} * 1'000'000'000;
    }
    bool fast = shared_->admin_waits.load(std::memory_order_relaxed) > 0 || shared_->pause_mode() != PauseMode::kNone;
    if (tick_flags != 0 || now - last_tick >= (fast ? kFastTickNs : kSlowTickNs)) {
      Tick(tick_flags);
      last_tick = now;
    }
    if (now >= next_status && netio::SdNotifyEnabled()) {
      netio::SdNotify(absl::StrCat("STATUS=", StatusLine()));
      next_status = now + 10'000'000'000;
    }
    if (shutting_down_ && AllWorkersFinished()) break;
  }
  for (auto& t : threads_) t.join();
  if (!fast_exit) {
    RB_LOG(shutdown_mode_ == ShutdownMode::kWaitForClients ? "client connections dropped, exiting"
                                                           : "server connections dropped, exiting");
  }
  if (!pidfile_.empty()) unlink(pidfile_.c_str());
  close(sfd);
  return 0;
}

}  // namespace rb::engine
