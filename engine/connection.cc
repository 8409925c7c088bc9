#include "engine/connection.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace rb::engine {

const char* ClientStateName(ClientState s) {
  switch (s) {
    case ClientState::kLogin:
    case ClientState::kAuth:
      return "login";
    case ClientState::kWaitWelcome:
    case ClientState::kWaiting:
      return "waiting";
    case ClientState::kIdle:
    case ClientState::kActive:
    case ClientState::kAdmin:
      return "active";
    case ClientState::kClosing:
      return "justfree";
  }
  return "unknown";
}

const char* ServerStateName(ServerState s) {
  switch (s) {
    case ServerState::kConnecting:
    case ServerState::kLogin:
      return "login";
    case ServerState::kSetup:
      return "used";
    case ServerState::kIdle:
      return "idle";
    case ServerState::kActive:
      return "active";
    case ServerState::kHandover:
      return "idle";
    case ServerState::kBeingCanceled:
      return "being_canceled";
    case ServerState::kCancelRequest:
      return "active_cancel";
    case ServerState::kClosing:
      return "justfree";
  }
  return "unknown";
}

std::string PeerAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family == AF_INET) {
    inet_ntop(AF_INET, addr, buf, sizeof(buf));
    return buf;
  }
  if (family == AF_INET6) {
    inet_ntop(AF_INET6, addr, buf, sizeof(buf));
    return buf;
  }
  return "unix";
}

bool PeerAddress::IsLocal() const {
  if (family == AF_UNIX) return true;
  if (family == AF_INET) return addr[0] == 127;
  if (family == AF_INET6) {
    static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(addr, kLoopback, 16) == 0 || (memcmp(addr, kMappedPrefix, 12) == 0 && addr[12] == 127);
  }
  return false;
}

PeerAddress PeerAddress::FromSockaddr(const sockaddr* sa) {
  PeerAddress p;
  p.family = static_cast<uint8_t>(sa->sa_family);
  if (sa->sa_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    memcpy(p.addr, &a->sin_addr, 4);
    p.port = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    memcpy(p.addr, &a->sin6_addr, 16);
    p.port = ntohs(a->sin6_port);
  }
  return p;
}

}  // namespace rb::engine
