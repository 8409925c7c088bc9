#include "netio/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>
#include <string>

#include "tests/catch.h"
#include "tests/netio/netio_test_util.h"

namespace rb::netio {
namespace {

using testing::Fd;

sockaddr_storage V4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  REQUIRE(inet_pton(AF_INET, ip, &a->sin_addr) == 1);
  return ss;
}

sockaddr_storage V6(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  REQUIRE(inet_pton(AF_INET6, ip, &a->sin6_addr) == 1);
  return ss;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                 : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// Accepts everything pending on a non-blocking listener; returns how many.
int AcceptAll(int listener) {
  int n = 0;
  for (;;) {
    int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return n;
    close(c);
    ++n;
  }
}

// A private temporary directory, removed with its contents.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/rb-netio-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

bool Ipv6Loopback() {
  Fd s(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return false;
  sockaddr_storage ss = V6("::1", 0);
  return bind(s.get(), reinterpret_cast<sockaddr*>(&ss), sizeof(sockaddr_in6)) == 0;
}

TEST_CASE("two reuseport listeners on one port both bind and share the connections", "[netio][listener]") {
  TcpOptions o;  // reuseport by default
  auto first = ListenTcp(V4("127.0.0.1", 0), o);
  REQUIRE(first.ok());
  Fd a(*first);
  const uint16_t port = LocalPort(a.get());
  auto second = ListenTcp(V4("127.0.0.1", port), o);
  REQUIRE(second.ok());
  Fd b(*second);
  CHECK(LocalPort(b.get()) == port);

  // The kernel hashes each connection's 4-tuple onto one socket of the group.
  constexpr int kConnections = 200;
  int on_a = 0, on_b = 0;
  for (int i = 0; i < kConnections; ++i) {
    Fd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(c.get() >= 0);
    sockaddr_storage to = V4("127.0.0.1", port);
    REQUIRE(connect(c.get(), reinterpret_cast<sockaddr*>(&to), sizeof(sockaddr_in)) == 0);
    on_a += AcceptAll(a.get());
    on_b += AcceptAll(b.get());
  }
  on_a += AcceptAll(a.get());
  on_b += AcceptAll(b.get());
  INFO("first " << on_a << ", second " << on_b);
  CHECK(on_a + on_b == kConnections);
  CHECK(on_a > 0);
  CHECK(on_b > 0);
}

TEST_CASE("a second listener without reuseport cannot bind the same port", "[netio][listener]") {
  TcpOptions plain;
  plain.reuseport = false;
  auto first = ListenTcp(V4("127.0.0.1", 0), plain);
  REQUIRE(first.ok());
  Fd a(*first);
  const uint16_t port = LocalPort(a.get());
  auto second = ListenTcp(V4("127.0.0.1", port), plain);
  REQUIRE_FALSE(second.ok());
  CHECK(std::string(second.status().message()).find("bind 127.0.0.1:" + std::to_string(port)) != std::string::npos);

  // Mixing does not work either: the group needs SO_REUSEPORT on every member.
  TcpOptions reuse;
  CHECK_FALSE(ListenTcp(V4("127.0.0.1", port), reuse).ok());
  auto r1 = ListenTcp(V4("127.0.0.1", 0), reuse);
  REQUIRE(r1.ok());
  Fd c(*r1);
  CHECK_FALSE(ListenTcp(V4("127.0.0.1", LocalPort(c.get())), plain).ok());
}

TEST_CASE("listener options are set on the listener and inherited by accepted sockets", "[netio][listener]") {
  TcpOptions o;
  o.nodelay = true;
  o.keepalive = 1;
  o.keepidle = 77;
  auto l = ListenTcp(V4("127.0.0.1", 0), o);
  REQUIRE(l.ok());
  Fd listener(*l);
  int v = 0;
  socklen_t len = sizeof(v);
  REQUIRE(getsockopt(listener.get(), SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0);
  CHECK(v == 1);
  CHECK((fcntl(listener.get(), F_GETFL) & O_NONBLOCK));
  CHECK((fcntl(listener.get(), F_GETFD) & FD_CLOEXEC));

  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage to = V4("127.0.0.1", LocalPort(listener.get()));
  REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&to), sizeof(sockaddr_in)) == 0);
  Fd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(accepted.get() >= 0);
  len = sizeof(v);
  REQUIRE(getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
  CHECK(v == 1);
  REQUIRE(getsockopt(accepted.get(), SOL_SOCKET, SO_KEEPALIVE, &v, &len) == 0);
  CHECK(v == 1);
  REQUIRE(getsockopt(accepted.get(), IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) == 0);
  CHECK(v == 77);
}

TEST_CASE("the wildcard listen_addr resolves to the IPv4 and the IPv6 any address", "[netio][listener]") {
  auto r = ResolveListenAddress("*", 6432);
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(&(*r)[0]);
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&(*r)[1]);
  CHECK(v4->sin_family == AF_INET);
  CHECK(v4->sin_addr.s_addr == htonl(INADDR_ANY));
  CHECK(ntohs(v4->sin_port) == 6432);
  CHECK(v6->sin6_family == AF_INET6);
  CHECK(memcmp(&v6->sin6_addr, &in6addr_any, sizeof(in6_addr)) == 0);
  CHECK(ntohs(v6->sin6_port) == 6432);
  CHECK(DescribeSocketAddress((*r)[0], sizeof(sockaddr_in)) == "0.0.0.0:6432");
  CHECK(DescribeSocketAddress((*r)[1], sizeof(sockaddr_in6)) == "[::]:6432");
}

TEST_CASE("numeric and local names resolve without duplicates", "[netio][listener]") {
  auto v4 = ResolveListenAddress("127.0.0.1", 5432);
  REQUIRE(v4.ok());
  REQUIRE(v4->size() == 1);
  CHECK(DescribeSocketAddress((*v4)[0], sizeof(sockaddr_in)) == "127.0.0.1:5432");
  auto v6 = ResolveListenAddress("::1", 5432);
  REQUIRE(v6.ok());
  REQUIRE(v6->size() == 1);
  CHECK(DescribeSocketAddress((*v6)[0], sizeof(sockaddr_in6)) == "[::1]:5432");
  auto any6 = ResolveListenAddress("::", 1);
  REQUIRE(any6.ok());
  CHECK(any6->size() == 1);
}

TEST_CASE("IPv4 and IPv6 any listeners from the wildcard coexist on one port", "[netio][listener]") {
  if (!Ipv6Loopback()) {
    WARN("no IPv6 here; skipped");
    return;
  }
  TcpOptions o;
  auto first = ListenTcp(V4("0.0.0.0", 0), o);
  REQUIRE(first.ok());
  Fd a(*first);
  const uint16_t port = LocalPort(a.get());
  auto addrs = ResolveListenAddress("*", port);
  REQUIRE(addrs.ok());
  auto v6 = ListenTcp((*addrs)[1], o);  // IPV6_V6ONLY: does not collide with the IPv4 socket
  REQUIRE(v6.ok());
  Fd b(*v6);
  CHECK(DescribeLocalAddress(b.get()) == "[::]:" + std::to_string(port));
}

TEST_CASE("ListenUnix creates the socket with the given mode", "[netio][listener][unix]") {
  TempDir dir;
  const std::string path = dir.path + "/.s.PGSQL.6432";
  for (uint32_t mode : {0600u, 0777u, 0660u}) {
    INFO("mode " << std::oct << mode);
    auto l = ListenUnix(path, 16, mode, "");
    REQUIRE(l.ok());
    Fd listener(*l);
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == mode);  // umask does not apply: chmod after bind
    CHECK(DescribeLocalAddress(listener.get()) == "unix:" + path);

    Fd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path.c_str());
    REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
    Fd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(accepted.get() >= 0);
    CHECK(UnixPeerUid(accepted.get()) == static_cast<int64_t>(getuid()));
    listener.Reset();
    unlink(path.c_str());
  }
}

TEST_CASE("ListenUnix sets the group when asked and refuses an unknown one", "[netio][listener][unix]") {
  TempDir dir;
  const std::string path = dir.path + "/.s.PGSQL.6433";
  auto l = ListenUnix(path, 16, 0770, "root");
  REQUIRE(l.ok());
  Fd listener(*l);
  struct stat st {};
  REQUIRE(lstat(path.c_str(), &st) == 0);
  CHECK(st.st_gid == 0);
  listener.Reset();
  unlink(path.c_str());
  auto bad = ListenUnix(path, 16, 0770, "no-such-group-rb-test");
  CHECK_FALSE(bad.ok());
}

TEST_CASE("ListenUnix removes a stale socket file and refuses a live one", "[netio][listener][unix]") {
  TempDir dir;
  const std::string path = dir.path + "/.s.PGSQL.6434";
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  strcpy(sun.sun_path, path.c_str());

  SECTION("stale: a socket file that nobody listens on") {
    {
      Fd dead(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      REQUIRE(bind(dead.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
      REQUIRE(listen(dead.get(), 1) == 0);
    }  // closed without unlink, as after a crash
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    auto l = ListenUnix(path, 16, 0777, "");
    REQUIRE(l.ok());
    Fd listener(*l);
    Fd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    CHECK(connect(client.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
  }
  SECTION("live: another listener answers on it") {
    auto first = ListenUnix(path, 16, 0777, "");
    REQUIRE(first.ok());
    Fd live(*first);
    auto second = ListenUnix(path, 16, 0777, "");
    REQUIRE_FALSE(second.ok());
    CHECK(second.status().code() == absl::StatusCode::kAlreadyExists);
    // The live socket is untouched and still accepts.
    Fd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
    Fd accepted(accept4(live.get(), nullptr, nullptr, SOCK_CLOEXEC));
    CHECK(accepted.get() >= 0);
  }
  SECTION("live with a full backlog: refused without hanging") {
    auto first = ListenUnix(path, 0, 0777, "");
    REQUIRE(first.ok());
    Fd live(*first);
    std::vector<Fd> pending;
    for (int i = 0; i < 64; ++i) {
      Fd c(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (connect(c.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) break;
      pending.push_back(std::move(c));
    }
    REQUIRE(pending.size() < 64);  // the backlog is full now
    std::promise<absl::Status> done;
    auto result = done.get_future();
    std::thread t([&] { done.set_value(ListenUnix(path, 16, 0777, "").status()); });
    if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      live.Reset();  // unblocks a blocking probe connect
      t.join();
      FAIL("ListenUnix blocked on a live socket with a full backlog");
    }
    t.join();
    CHECK(result.get().code() == absl::StatusCode::kAlreadyExists);
  }
  SECTION("a regular file in the way is not deleted") {
    { std::FILE* f = std::fopen(path.c_str(), "w"); REQUIRE(f); std::fclose(f); }
    CHECK_FALSE(ListenUnix(path, 16, 0777, "").ok());
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
  }
  SECTION("a path longer than sun_path is refused") {
    CHECK(ListenUnix(dir.path + "/" + std::string(120, 'x'), 16, 0777, "").status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("ListenUnix binds an abstract socket for an @name", "[netio][listener][unix]") {
  const std::string name = "@rb-netio-test-" + std::to_string(getpid());
  auto l = ListenUnix(name, 16, 0777, "");
  REQUIRE(l.ok());
  Fd listener(*l);
  CHECK(DescribeLocalAddress(listener.get()) == "unix:" + name);
  // And a second one is refused (the kernel says EADDRINUSE for abstract names).
  CHECK_FALSE(ListenUnix(name, 16, 0777, "").ok());
}

TEST_CASE("DescribeSocketAddress formats IPv4, IPv6, unix paths and abstract names", "[netio][listener]") {
  CHECK(DescribeSocketAddress(V4("127.0.0.1", 6432), sizeof(sockaddr_in)) == "127.0.0.1:6432");
  CHECK(DescribeSocketAddress(V4("10.1.2.3", 1), sizeof(sockaddr_in)) == "10.1.2.3:1");
  CHECK(DescribeSocketAddress(V6("::1", 6432), sizeof(sockaddr_in6)) == "[::1]:6432");
  CHECK(DescribeSocketAddress(V6("fe80::1:2", 65535), sizeof(sockaddr_in6)) == "[fe80::1:2]:65535");
  CHECK(DescribeSocketAddress(V6("::ffff:1.2.3.4", 80), sizeof(sockaddr_in6)) == "[::ffff:1.2.3.4]:80");

  sockaddr_storage ss{};
  auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
  sun->sun_family = AF_UNIX;
  const std::string path = "/tmp/.s.PGSQL.6432";
  memcpy(sun->sun_path, path.c_str(), path.size() + 1);
  CHECK(DescribeSocketAddress(ss, offsetof(sockaddr_un, sun_path) + path.size() + 1) == "unix:/tmp/.s.PGSQL.6432");
  CHECK(DescribeSocketAddress(ss, sizeof(sockaddr_un)) == "unix:/tmp/.s.PGSQL.6432");
  // Abstract: a leading NUL, the name's length from the address length.
  sockaddr_storage ab{};
  auto* asun = reinterpret_cast<sockaddr_un*>(&ab);
  asun->sun_family = AF_UNIX;
  memcpy(asun->sun_path, "\0pgb", 4);
  CHECK(DescribeSocketAddress(ab, offsetof(sockaddr_un, sun_path) + 4) == "unix:@pgb");
  // Unnamed (a socketpair end).
  CHECK(DescribeSocketAddress(ab, offsetof(sockaddr_un, sun_path)) == "unix:");
  sockaddr_storage unknown{};
  unknown.ss_family = AF_PACKET;
  CHECK(DescribeSocketAddress(unknown, sizeof(unknown)) == "unknown");
  CHECK(DescribeLocalAddress(-1) == "unknown");
}

}  // namespace
}  // namespace rb::netio
