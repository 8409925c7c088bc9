// Listening sockets: per-worker SO_REUSEPORT TCP sockets, the unix socket `.s.PGSQL.<port>`,
// and sockets passed in by systemd.
//
// Options that accepted sockets should have (TCP_NODELAY, keepalive) are set on the listener,
// because an accepted socket inherits them and a direct descriptor can't be setsockopt'd later.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rb::netio {

struct TcpOptions {
  int backlog = 128;
  bool reuseport = true;
  bool nodelay = true;
  int keepalive = -1;      // -1: leave the kernel default; 0/1: off/on
  int keepidle = 0;        // seconds, 0: kernel default
  int keepintvl = 0;
  int keepcnt = 0;
  int user_timeout_ms = 0;
  int defer_accept = 0;    // seconds
  int socket_buffer = 0;   // SO_SNDBUF/SO_RCVBUF, inherited by accepted sockets; 0: kernel default
};

// Resolves one listen_addr entry ("*", "0.0.0.0", "::", "localhost", "10.0.0.1") to the
// socket addresses to bind. "*" means every IPv4 and IPv6 address.
absl::StatusOr<std::vector<sockaddr_storage>> ResolveListenAddress(const std::string& host, uint16_t port);

// A bound, listening, non-blocking TCP socket.
absl::StatusOr<int> ListenTcp(const sockaddr_storage& addr, const TcpOptions& options);

// A listening unix socket at `path`. A stale socket file left by a dead process is removed;
// a live one (something accepts on it) is an error, as in PgBouncer. mode is e.g. 0777;
// group may be empty.
absl::StatusOr<int> ListenUnix(const std::string& path, int backlog, uint32_t mode, const std::string& group);

// Applies TcpOptions that make sense on an already-created socket (passed in by systemd).
void ApplyTcpOptions(int fd, const TcpOptions& options);

// "127.0.0.1:6432", "[::1]:6432" or "unix:/tmp/.s.PGSQL.6432".
std::string DescribeSocketAddress(const sockaddr_storage& addr, socklen_t len);
std::string DescribeLocalAddress(int fd);

// The peer's uid over a unix socket (SO_PEERCRED), or -1.
int64_t UnixPeerUid(int fd);

}  // namespace rb::netio
