#include "engine/log.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace rb::engine {

LogSettings& Log() {
  static LogSettings settings;
  return settings;
}

namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kFatal: return "FATAL";
    case LogLevel::kError: return "ERROR";
    case LogLevel::kWarning: return "WARNING";
    case LogLevel::kLog: return "LOG";
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kNoise: return "NOISE";
  }
  return "LOG";
}

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kFatal: return LOG_CRIT;
    case LogLevel::kError: return LOG_ERR;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kLog: return LOG_INFO;
    default: return LOG_DEBUG;
  }
}

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;  // logging must never take the process down
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Test-only syslog sink (RB_SYSLOG_PATH_FOR_TEST): a unix datagram socket that stands in for
// /dev/log, so that a test can read what syslog would get without a syslog daemon. It gets
// the datagram glibc's syslog(3) sends: "<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE".
struct TestSyslogSink {
  std::mutex mu;
  int fd = -1;
  std::string ident = "pgbouncer";
  int facility = LOG_DAEMON;
};

TestSyslogSink* TestSink() {
  static TestSyslogSink* sink = [] () -> TestSyslogSink* {
    const char* path = getenv("RB_SYSLOG_PATH_FOR_TEST");
    if (path == nullptr || *path == '\0') return nullptr;
    auto* s = new TestSyslogSink;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s->fd >= 0 && connect(s->fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(s->fd);
      s->fd = -1;
    }
    return s;
  }();
  return sink;
}

void SendToTestSink(TestSyslogSink* sink, int priority, const std::string& message) {
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  char stamp[32];
  size_t n = strftime(stamp, sizeof(stamp), "%h %e %T", &tm);
  std::lock_guard<std::mutex> lock(sink->mu);
  if (sink->fd < 0) return;
  std::string datagram = absl::StrFormat("<%d>%s %s[%d]: %s", sink->facility | priority, absl::string_view(stamp, n),
                                         sink->ident, getpid(), message);
  (void)!send(sink->fd, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace

void OpenSyslog(const std::string& ident, int facility) {
  if (TestSyslogSink* sink = TestSink()) {
    std::lock_guard<std::mutex> lock(sink->mu);
    sink->ident = ident;
    sink->facility = facility;
    return;
  }
  // openlog keeps the pointer, and workers may be inside syslog() reading it: an ident is never
  // freed, and a new one is made only when a reload changes it.
  static auto* idents = new std::deque<std::string>();  // push_back keeps references valid
  static int kept_facility = -1;
  if (!idents->empty() && idents->back() == ident && kept_facility == facility) return;
  if (idents->empty() || idents->back() != ident) idents->push_back(ident);
  kept_facility = facility;
  openlog(idents->back().c_str(), LOG_PID, facility);
}

void LogWrite(LogLevel level, const std::string& message) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char stamp[64];
  size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
  char zone[16];
  strftime(zone, sizeof(zone), "%Z", &tm);
  std::string line = absl::StrFormat("%s.%03d %s [%d] %s %s\n", absl::string_view(stamp, n),
                                     static_cast<int>(tv.tv_usec / 1000), zone, getpid(),
                                     LevelName(level), message);
  LogSettings& s = Log();
  if (s.to_stderr.load(std::memory_order_relaxed)) WriteAll(STDERR_FILENO, line.data(), line.size());
  int fd = s.file_fd.load(std::memory_order_relaxed);
  if (fd >= 0) WriteAll(fd, line.data(), line.size());
  if (s.to_syslog.load(std::memory_order_relaxed)) {
    // As PgBouncer: the priority carries the level; the message goes alone.
    if (TestSyslogSink* sink = TestSink()) {
      SendToTestSink(sink, SyslogPriority(level), message);
    } else {
      syslog(SyslogPriority(level), "%s", message.c_str());
    }
  }
}

std::string ConnLogId(uint64_t id) { return absl::StrFormat("0x%x", id); }

std::string SocketLogPrefix(char kind, uint64_t id, std::string_view db, std::string_view user,
                            std::string_view host, bool ipv6, int port) {
  auto av = [](std::string_view v) { return absl::string_view(v.data(), v.size()); };
  return absl::StrCat(absl::StrFormat("%c-0x%x: ", kind, id), db.empty() ? "(nodb)" : av(db), "/",
                      user.empty() ? "(nouser)" : av(user), "@", ipv6 ? "[" : "", av(host), ipv6 ? "]" : "", ":",
                      port);
}

}  // namespace rb::engine
