// The two systemd protocols ringbouncer speaks, without libsystemd:
//  - socket activation: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES name fds starting at 3;
//  - sd_notify: datagrams like "READY=1" to the unix socket in $NOTIFY_SOCKET (a leading '@'
//    means the abstract namespace).
#pragma once

#include <string>
#include <vector>

namespace rb::netio {

struct PassedSocket {
  int fd = -1;
  std::string name;   // from LISTEN_FDNAMES, or "unknown"
  int family = 0;     // AF_INET, AF_INET6, AF_UNIX
  bool listening = false;
  std::string address;  // DescribeLocalAddress
};

// Sockets passed by systemd (or by tools/socket_activate, rb-socket-activate) to this process,
// or an empty list.
// Unsets the variables, as sd_listen_fds(1) does, so children don't inherit them.
std::vector<PassedSocket> TakeSystemdSockets();

// Sends `state` (e.g. "READY=1\nSTATUS=...") to $NOTIFY_SOCKET. No-op when unset.
bool SdNotify(const std::string& state);
bool SdNotifyEnabled();

}  // namespace rb::netio
