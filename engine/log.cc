#include "engine/log.h"

#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

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

}  // namespace

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
    syslog(SyslogPriority(level), "%s", message.c_str());
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
