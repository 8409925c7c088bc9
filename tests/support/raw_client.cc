#include "tests/support/raw_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace rb::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds Left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? milliseconds(0) : left;
}

uint32_t ReadInt32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

}  // namespace

std::string RawOutcome::Describe() const {
  std::string out = "types=[" + types + "]";
  if (error) out += " error " + severity + " " + sqlstate + ": " + message;
  if (closed) out += " closed";
  if (timed_out) out += " timed out";
  out += " after " + std::to_string(elapsed.count()) + " ms";
  return out;
}

RawClient RawClient::Connect(const std::string& host, int port) {
  RawClient c;
  c.fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c.fd_ < 0) throw std::runtime_error(std::string("RawClient: socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw std::invalid_argument("RawClient: not an IPv4 address: " + host);
  }
  if (connect(c.fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("RawClient: connect " + host + ":" + std::to_string(port) + ": " +
                             strerror(errno));
  }
  return c;
}

RawClient RawClient::Adopt(PgConn conn) {
  if (!conn.Ok()) throw std::runtime_error("RawClient::Adopt: not connected: " + conn.Error());
  RawClient c;
  c.fd_ = fcntl(PQsocket(conn.Raw()), F_DUPFD_CLOEXEC, 0);
  if (c.fd_ < 0) throw std::runtime_error(std::string("RawClient: dup: ") + strerror(errno));
  // libpq's socket is non-blocking; the duplicate shares that flag, and we poll before reads.
  c.adopted_.emplace(std::move(conn));
  return c;
}

RawClient::~RawClient() { Close(); }

RawClient::RawClient(RawClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      adopted_(std::move(other.adopted_)),
      in_(std::move(other.in_)) {
  other.adopted_.reset();
}

RawClient& RawClient::operator=(RawClient&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    adopted_ = std::move(other.adopted_);
    other.adopted_.reset();
    in_ = std::move(other.in_);
  }
  return *this;
}

bool RawClient::Send(std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{.fd = fd_, .events = POLLOUT, .revents = 0};
      if (poll(&pfd, 1, 10000) <= 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

void RawClient::SetReceiveBuffer(int bytes) {
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

std::optional<RawMessage> RawClient::ReadMessage(milliseconds timeout, bool* closed) {
  if (closed != nullptr) *closed = false;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (in_.size() >= 5) {
      uint32_t len = ReadInt32(in_, 1);
      if (len < 4) {
        // Not a message; report what we have as a bogus type and drop it.
        RawMessage m{in_[0], in_.substr(1)};
        in_.clear();
        return m;
      }
      if (in_.size() >= 1 + static_cast<size_t>(len)) {
        RawMessage m{in_[0], in_.substr(5, len - 4)};
        in_.erase(0, 1 + len);
        return m;
      }
    } else if (in_.size() == 1 && in_[0] == 'N') {
      // The one-byte answer to an SSLRequest.
    }
    pollfd pfd{.fd = fd_, .events = POLLIN, .revents = 0};
    int ready = poll(&pfd, 1, static_cast<int>(Left(deadline).count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;  // timeout
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (closed != nullptr) *closed = true;  // EOF or reset
    return std::nullopt;
  }
}

RawOutcome RawClient::ReadUntilErrorOrClose(milliseconds timeout, milliseconds after_error) {
  RawOutcome out;
  const auto start = Clock::now();
  auto deadline = start + timeout;
  for (;;) {
    bool closed = false;
    std::optional<RawMessage> m = ReadMessage(Left(deadline), &closed);
    if (!m) {
      out.closed = closed;
      out.timed_out = !closed && !out.error;
      break;
    }
    out.types += m->type;
    if (m->type == 'E' && !out.error) {
      out.error = true;
      for (auto& [code, value] : ErrorFields(m->body)) {
        if (code == 'C') out.sqlstate = value;
        if (code == 'M') out.message = value;
        if (code == 'S') out.severity = value;
      }
      deadline = std::min(deadline, Clock::now() + after_error);
    }
  }
  out.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  return out;
}

std::optional<std::vector<RawMessage>> RawClient::ReadUntilReady(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<RawMessage> out;
  for (;;) {
    std::optional<RawMessage> m = ReadMessage(Left(deadline));
    if (!m) return std::nullopt;
    out.push_back(*m);
    if (m->type == 'Z') return out;
  }
}

void RawClient::ShutdownWrite() {
  if (fd_ >= 0) shutdown(fd_, SHUT_WR);
}

void RawClient::Close() {
  if (fd_ >= 0) {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    fd_ = -1;
  }
  adopted_.reset();  // PQfinish: its Terminate goes nowhere, the socket is shut down
}

std::string RawClient::Int32(uint32_t value) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(value >> 24);
  out[1] = static_cast<char>(value >> 16);
  out[2] = static_cast<char>(value >> 8);
  out[3] = static_cast<char>(value);
  return out;
}

std::string RawClient::StartupMessage(
    const std::vector<std::pair<std::string, std::string>>& params, uint32_t version) {
  std::string body = Int32(version);
  for (const auto& [key, value] : params) {
    body += key;
    body += '\0';
    body += value;
    body += '\0';
  }
  body += '\0';
  return Int32(static_cast<uint32_t>(body.size() + 4)) + body;
}

std::string RawClient::TypedMessage(char type, std::string_view body) {
  return std::string(1, type) + Int32(static_cast<uint32_t>(body.size() + 4)) + std::string(body);
}

std::string RawClient::QueryMessage(std::string_view sql) {
  return TypedMessage('Q', std::string(sql) + '\0');
}

std::vector<std::pair<char, std::string>> RawClient::ErrorFields(std::string_view body) {
  std::vector<std::pair<char, std::string>> out;
  size_t at = 0;
  while (at < body.size() && body[at] != '\0') {
    char code = body[at++];
    size_t end = body.find('\0', at);
    if (end == std::string_view::npos) end = body.size();
    out.emplace_back(code, std::string(body.substr(at, end - at)));
    at = end + 1;
  }
  return out;
}

}  // namespace rb::test
