// Logging in PgBouncer's line shape, so that scripts that grep PgBouncer logs keep working:
//
//   2026-11-28 06:40:47.123 UTC [1234] LOG stats: 12 xacts/s, ...
//
// One write(2) per line, so lines from different workers never interleave. Formatting happens
// only when the level is enabled. Never log a password or a secret.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace rb::engine {

enum class LogLevel : int { kFatal = 0, kError = 1, kWarning = 2, kLog = 3, kDebug = 4, kNoise = 5 };

// Process-wide log settings. Set by main at start-up and by reload; read lock-free.
struct LogSettings {
  std::atomic<int> verbose{0};         // -v count and the `verbose` setting: 1 shows DEBUG, 2 NOISE
  std::atomic<bool> to_stderr{true};   // -q and -d turn this off
  std::atomic<int> file_fd{-1};        // logfile, reopened on HUP
  std::atomic<bool> to_syslog{false};
};
LogSettings& Log();

inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(LogLevel::kLog) + Log().verbose.load(std::memory_order_relaxed);
}

void LogWrite(LogLevel level, const std::string& message);

// openlog(3) with this ident and facility (LOG_PID). With RB_SYSLOG_PATH_FOR_TEST set in the
// environment, syslog lines go instead to that unix datagram socket, in the datagram shape
// glibc's syslog(3) sends to /dev/log: for tests, which have no syslog daemon.
void OpenSyslog(const std::string& ident, int facility);

// PgBouncer's log_socket_prefix, which scripts match on: "C-0x1000000000005: db/user@host:port"
// ('S' for a server). Where PgBouncer prints the connection's address, we print its
// process-unique id in the same "0x..." form (ConnLogId), which SHOW CLIENTS and SHOW SERVERS
// also list as ptr and link. An empty db or user reads "(nodb)" or "(nouser)"; an IPv6 host is
// bracketed; a unix peer's host is "unix(pid)", or "unix" when its pid is unknown.
std::string SocketLogPrefix(char kind, uint64_t id, std::string_view db, std::string_view user,
                            std::string_view host, bool ipv6, int port);
std::string ConnLogId(uint64_t id);

template <typename... Args>
void LogF(LogLevel level, const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (LogEnabled(level)) LogWrite(level, absl::StrFormat(format, args...));
}

}  // namespace rb::engine

#define RB_LOG(...) ::rb::engine::LogF(::rb::engine::LogLevel::kLog, __VA_ARGS__)
#define RB_WARN(...) ::rb::engine::LogF(::rb::engine::LogLevel::kWarning, __VA_ARGS__)
#define RB_ERROR(...) ::rb::engine::LogF(::rb::engine::LogLevel::kError, __VA_ARGS__)
#define RB_DEBUG(...) ::rb::engine::LogF(::rb::engine::LogLevel::kDebug, __VA_ARGS__)
#define RB_NOISE(...) ::rb::engine::LogF(::rb::engine::LogLevel::kNoise, __VA_ARGS__)
