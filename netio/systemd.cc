#include "netio/systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "netio/listener.h"

namespace rb::netio {

namespace {
constexpr int kListenFdsStart = 3;
}

std::vector<PassedSocket> TakeSystemdSockets() {
  std::vector<PassedSocket> out;
  const char* pid_s = getenv("LISTEN_PID");
  const char* fds_s = getenv("LISTEN_FDS");
  const char* names_s = getenv("LISTEN_FDNAMES");
  int64_t pid = 0, n = 0;
  bool mine = pid_s && fds_s && absl::SimpleAtoi(pid_s, &pid) && pid == getpid() && absl::SimpleAtoi(fds_s, &n) && n > 0;
  std::vector<std::string> names;
  if (names_s) names = absl::StrSplit(names_s, ':');
  if (mine) {
    for (int i = 0; i < n; ++i) {
      PassedSocket s;
      s.fd = kListenFdsStart + i;
      s.name = i < static_cast<int>(names.size()) && !names[i].empty() ? names[i] : "unknown";
      fcntl(s.fd, F_SETFD, FD_CLOEXEC);
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      if (getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) s.family = ss.ss_family;
      int acc = 0;
      socklen_t alen = sizeof(acc);
      s.listening = getsockopt(s.fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0 && acc;
      s.address = DescribeLocalAddress(s.fd);
      out.push_back(std::move(s));
    }
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return out;
}

bool SdNotifyEnabled() {
  const char* p = getenv("NOTIFY_SOCKET");
  return p && *p;
}

bool SdNotify(const std::string& state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  size_t plen = strlen(path);
  sockaddr_un sun{};
  if (plen >= sizeof(sun.sun_path)) return false;
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, plen);
  if (path[0] == '@') sun.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + plen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ssize_t w = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sun), len);
  close(fd);
  return w == static_cast<ssize_t>(state.size());
}

}  // namespace rb::netio
