#include "netio/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rb::netio {
namespace {

absl::Status Errno(const std::string& what) { return absl::UnavailableError(absl::StrCat(what, ": ", strerror(errno))); }

void SetInt(int fd, int level, int opt, int value) { (void)setsockopt(fd, level, opt, &value, sizeof(value)); }

}  // namespace

absl::StatusOr<std::vector<sockaddr_storage>> ResolveListenAddress(const std::string& host, uint16_t port) {
  std::vector<sockaddr_storage> out;
  if (host == "*") {
    sockaddr_storage v4{};
    auto* a4 = reinterpret_cast<sockaddr_in*>(&v4);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
    out.push_back(v4);
    sockaddr_storage v6{};
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&v6);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    a6->sin6_addr = in6addr_any;
    out.push_back(v6);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat("cannot resolve listen address \"", host, "\": ", gai_strerror(rc)));
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    sockaddr_storage ss{};
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    bool dup = false;
    for (const auto& o : out) dup |= memcmp(&o, &ss, sizeof(ss)) == 0;
    if (!dup) out.push_back(ss);
  }
  freeaddrinfo(res);
  return out;
}

void ApplyTcpOptions(int fd, const TcpOptions& o) {
  if (o.nodelay) SetInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (o.keepalive >= 0) SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, o.keepalive);
  if (o.keepidle > 0) SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, o.keepidle);
  if (o.keepintvl > 0) SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, o.keepintvl);
  if (o.keepcnt > 0) SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, o.keepcnt);
  if (o.user_timeout_ms > 0) SetInt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, o.user_timeout_ms);
  if (o.defer_accept > 0) SetInt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, o.defer_accept);
  if (o.socket_buffer > 0) {
    SetInt(fd, SOL_SOCKET, SO_SNDBUF, o.socket_buffer);
    SetInt(fd, SOL_SOCKET, SO_RCVBUF, o.socket_buffer);
  }
}

absl::StatusOr<int> ListenTcp(const sockaddr_storage& addr, const TcpOptions& o) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (o.reuseport) SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  // "*" binds IPv4 and IPv6 separately, so the IPv6 socket must not claim IPv4 too.
  if (addr.ss_family == AF_INET6) SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  ApplyTcpOptions(fd, o);
  socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    absl::Status s = Errno(absl::StrCat("bind ", DescribeSocketAddress(addr, len)));
    close(fd);
    return s;
  }
  if (listen(fd, o.backlog) != 0) {
    absl::Status s = Errno("listen");
    close(fd);
    return s;
  }
  return fd;
}

absl::StatusOr<int> ListenUnix(const std::string& path, int backlog, uint32_t mode, const std::string& group) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  bool abstract = !path.empty() && path[0] == '@';
  if (path.size() >= sizeof(sun.sun_path)) return absl::InvalidArgumentError(absl::StrCat("unix socket path too long: ", path));
  memcpy(sun.sun_path, path.data(), path.size());
  if (abstract) sun.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  if (!abstract) {
    // A socket file may be left over from a crash. If nothing answers on it, it is stale.
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      // Non-blocking: a blocking connect to a live listener whose backlog is full waits until
      // that process accepts, possibly forever. EAGAIN (backlog full) means live too.
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      bool live = probe >= 0 && (connect(probe, reinterpret_cast<sockaddr*>(&sun), len) == 0 || errno == EAGAIN);
      if (probe >= 0) close(probe);
      if (live) {
        close(fd);
        return absl::AlreadyExistsError(absl::StrCat("unix socket ", path, " is in use by another process"));
      }
      unlink(path.c_str());
    }
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&sun), len) != 0) {
    absl::Status s = Errno(absl::StrCat("bind ", path));
    close(fd);
    return s;
  }
  if (!abstract) {
    if (chmod(path.c_str(), mode) != 0) {
      absl::Status s = Errno(absl::StrCat("chmod ", path));
      close(fd);
      return s;
    }
    if (!group.empty()) {
      struct group* g = getgrnam(group.c_str());
      if (!g || chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
        close(fd);
        return absl::InvalidArgumentError(absl::StrCat("cannot set group \"", group, "\" on ", path));
      }
    }
  }
  if (listen(fd, backlog) != 0) {
    absl::Status s = Errno("listen");
    close(fd);
    return s;
  }
  return fd;
}

std::string DescribeSocketAddress(const sockaddr_storage& addr, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = {0};
  switch (addr.ss_family) {
    case AF_INET: {
      auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
      return absl::StrCat(buf, ":", ntohs(a->sin_port));
    }
    case AF_INET6: {
      auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
      return absl::StrCat("[", buf, "]:", ntohs(a->sin6_port));
    }
    case AF_UNIX: {
      auto* a = reinterpret_cast<const sockaddr_un*>(&addr);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return "unix:";
      if (a->sun_path[0] == '\0') return absl::StrCat("unix:@", std::string(a->sun_path + 1, n - 1));
      return absl::StrCat("unix:", std::string(a->sun_path, strnlen(a->sun_path, n)));
    }
    default:
      return "unknown";
  }
}

std::string DescribeLocalAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  return DescribeSocketAddress(ss, len);
}

int64_t UnixPeerUid(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  return cred.uid;
}

}  // namespace rb::netio
