#include "netio/systemd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "netio/listener.h"
#include "tests/catch.h"
#include "tests/netio/netio_test_util.h"

namespace rb::netio {
namespace {

using testing::Fd;

// Saves an environment variable and puts it back (or unsets it) on scope exit.
class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = getenv(name)) old_ = v;
  }
  ~EnvGuard() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Fds 3 and 4 are where systemd puts passed sockets, but in a test binary something else (the
// runtime, the sanitizer, a test runner) may hold them. Move whatever is there out of the way,
// and put it back, with its close-on-exec flag, on scope exit, whatever the test did meanwhile.
class ListenFdSlots {
 public:
  ListenFdSlots() {
    for (int i = 0; i < 2; ++i) {
      int fd = 3 + i;
      int fdflags = fcntl(fd, F_GETFD);
      if (fdflags == -1) continue;  // free
      saved_[i] = fcntl(fd, F_DUPFD_CLOEXEC, 100);
      REQUIRE(saved_[i] >= 0);
      saved_flags_[i] = fdflags;
    }
  }
  ~ListenFdSlots() {
    for (int i = 0; i < 2; ++i) {
      int fd = 3 + i;
      if (saved_[i] >= 0) {
        dup2(saved_[i], fd);
        fcntl(fd, F_SETFD, saved_flags_[i]);
        close(saved_[i]);
      } else {
        close(fd);
      }
    }
  }
  // Puts `fd` on slot 3 + i (closing the original). `fd` must not be 3 or 4 itself.
  void Place(int i, Fd fd) {
    REQUIRE(fd.get() != 3);
    REQUIRE(fd.get() != 4);
    REQUIRE(dup2(fd.get(), 3 + i) == 3 + i);
    // dup2 clears FD_CLOEXEC, as systemd leaves passed fds.
  }

 private:
  int saved_[2] = {-1, -1};
  int saved_flags_[2] = {0, 0};
};

// An fd numbered far above 3 and 4, so that placing one socket never closes another.
Fd High(int fd) {
  REQUIRE(fd >= 0);
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 200);
  close(fd);
  REQUIRE(high >= 200);
  return Fd(high);
}

struct ListenEnv {
  EnvGuard pid{"LISTEN_PID"}, fds{"LISTEN_FDS"}, names{"LISTEN_FDNAMES"};
};

bool EnvSet(const char* name) { return getenv(name) != nullptr; }

TEST_CASE("TakeSystemdSockets returns the passed sockets with names, families and listening state",
          "[netio][systemd]") {
  ListenEnv env;
  // Create everything before touching fds 3 and 4, and keep it above them.
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto tcp = ListenTcp(ss, TcpOptions{});
  REQUIRE(tcp.ok());
  Fd tcp_fd = High(*tcp);
  const std::string tcp_address = DescribeLocalAddress(tcp_fd.get());
  const std::string unix_name = "@rb-systemd-test-" + std::to_string(getpid());
  auto unix_l = ListenUnix(unix_name, 8, 0777, "");
  REQUIRE(unix_l.ok());
  Fd unix_fd = High(*unix_l);

  std::vector<PassedSocket> got;
  {
    ListenFdSlots slots;
    slots.Place(0, std::move(tcp_fd));
    slots.Place(1, std::move(unix_fd));
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "a:b", 1);
    got = TakeSystemdSockets();
    // Checked while the fds are still ours.
    CHECK((fcntl(3, F_GETFD) & FD_CLOEXEC));
    CHECK((fcntl(4, F_GETFD) & FD_CLOEXEC));
  }
  // Unset, as sd_listen_fds(1) does, so children don't inherit them.
  CHECK_FALSE(EnvSet("LISTEN_PID"));
  CHECK_FALSE(EnvSet("LISTEN_FDS"));
  CHECK_FALSE(EnvSet("LISTEN_FDNAMES"));

  REQUIRE(got.size() == 2);
  CHECK(got[0].fd == 3);
  CHECK(got[0].name == "a");
  CHECK(got[0].family == AF_INET);
  CHECK(got[0].listening);
  CHECK(got[0].address == tcp_address);
  CHECK(got[1].fd == 4);
  CHECK(got[1].name == "b");
  CHECK(got[1].family == AF_UNIX);
  CHECK(got[1].listening);
  CHECK(got[1].address == "unix:" + unix_name);
}

TEST_CASE("TakeSystemdSockets: missing names are unknown and a connected socket is not listening",
          "[netio][systemd]") {
  ListenEnv env;
  int sp[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  Fd end = High(sp[0]);
  Fd other = High(sp[1]);
  std::vector<PassedSocket> got;
  {
    ListenFdSlots slots;
    slots.Place(0, std::move(end));
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    unsetenv("LISTEN_FDNAMES");
    got = TakeSystemdSockets();
  }
  REQUIRE(got.size() == 1);
  CHECK(got[0].name == "unknown");
  CHECK(got[0].family == AF_UNIX);
  CHECK_FALSE(got[0].listening);
}

TEST_CASE("TakeSystemdSockets ignores sockets meant for another process", "[netio][systemd]") {
  ListenEnv env;
  ListenFdSlots slots;  // fds 3 and 4 hold whatever they held, or nothing
  SECTION("wrong LISTEN_PID") {
    setenv("LISTEN_PID", std::to_string(getpid() + 1).c_str(), 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "a:b", 1);
    CHECK(TakeSystemdSockets().empty());
    CHECK_FALSE(EnvSet("LISTEN_PID"));
    CHECK_FALSE(EnvSet("LISTEN_FDS"));
  }
  SECTION("no variables at all") {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    CHECK(TakeSystemdSockets().empty());
  }
  SECTION("garbage counts") {
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    for (const char* bad : {"0", "-2", "two", ""}) {
      setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
      setenv("LISTEN_FDS", bad, 1);
      INFO("LISTEN_FDS=" << bad);
      CHECK(TakeSystemdSockets().empty());
    }
  }
}

// A unix datagram socket standing in for systemd's notify socket.
Fd NotifyReceiver(const std::string& name_or_path, bool abstract) {
  Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.get() >= 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  socklen_t len;
  if (abstract) {
    sun.sun_path[0] = '\0';
    memcpy(sun.sun_path + 1, name_or_path.data(), name_or_path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_or_path.size());
  } else {
    memcpy(sun.sun_path, name_or_path.data(), name_or_path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_or_path.size() + 1);
  }
  REQUIRE(bind(s.get(), reinterpret_cast<sockaddr*>(&sun), len) == 0);
  return s;
}

std::string ReceiveDatagram(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 5000) != 1) return "<nothing>";
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  return n < 0 ? "<error>" : std::string(buf, static_cast<size_t>(n));
}

TEST_CASE("SdNotify sends one datagram to the NOTIFY_SOCKET path", "[netio][systemd]") {
  EnvGuard guard("NOTIFY_SOCKET");
  char tmpl[] = "/tmp/rb-notify-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string path = std::string(tmpl) + "/notify";
  Fd receiver = NotifyReceiver(path, /*abstract=*/false);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  CHECK(SdNotifyEnabled());
  const std::string state = "READY=1\nSTATUS=accepting connections";
  CHECK(SdNotify(state));
  CHECK(ReceiveDatagram(receiver.get()) == state);
  CHECK(SdNotify("RELOADING=1"));
  CHECK(ReceiveDatagram(receiver.get()) == "RELOADING=1");
  receiver.Reset();
  unlink(path.c_str());
  rmdir(tmpl);
  // Nobody listening any more: reported, not fatal.
  CHECK_FALSE(SdNotify("STOPPING=1"));
}

TEST_CASE("SdNotify sends to an abstract @name", "[netio][systemd]") {
  EnvGuard guard("NOTIFY_SOCKET");
  const std::string name = "rb-notify-test-" + std::to_string(getpid());
  Fd receiver = NotifyReceiver(name, /*abstract=*/true);
  setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  CHECK(SdNotify("READY=1"));
  CHECK(ReceiveDatagram(receiver.get()) == "READY=1");
}

TEST_CASE("SdNotify is a no-op without NOTIFY_SOCKET", "[netio][systemd]") {
  EnvGuard guard("NOTIFY_SOCKET");
  unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(SdNotifyEnabled());
  CHECK_FALSE(SdNotify("READY=1"));
  setenv("NOTIFY_SOCKET", "", 1);
  CHECK_FALSE(SdNotifyEnabled());
  CHECK_FALSE(SdNotify("READY=1"));
}

}  // namespace
}  // namespace rb::netio
