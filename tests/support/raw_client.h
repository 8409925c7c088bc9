// RawClient: a PostgreSQL client socket with no protocol manners, for tests that send what libpq
// never would (junk, oversized lengths, half messages, one byte a second) or that stop reading.
// It can start from a bare TCP connection or take over a libpq connection after its login
// (whatever the auth method was).
//
//   RawClient c = RawClient::Connect("127.0.0.1", port);
//   c.Send(RawClient::StartupMessage({{"user", "x"}, {"database", "y"}}));
//   RawOutcome o = c.ReadUntilErrorOrClose(10s);   // o.sqlstate, o.closed
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/pg_client.h"

namespace rb::test {

struct RawMessage {
  char type = 0;
  std::string body;  // after the length field
};

// What a misbehaving client saw.
struct RawOutcome {
  bool error = false;      // an ErrorResponse came
  std::string sqlstate;    // its 'C' field
  std::string message;     // its 'M' field
  std::string severity;    // its 'S' field
  bool closed = false;     // the server closed the connection (EOF or reset)
  bool timed_out = false;  // neither, within the timeout
  std::string types;       // the message types that came, in order
  std::chrono::milliseconds elapsed{0};
  std::string Describe() const;
};

class RawClient {
 public:
  // A TCP connection to host:port (numeric IPv4); throws if it can't connect.
  static RawClient Connect(const std::string& host, int port);
  // Takes over a logged-in libpq connection: the socket is now ours (libpq is never called
  // again until the RawClient goes, and then only to free its memory).
  static RawClient Adopt(PgConn conn);

  RawClient() = default;
  ~RawClient();
  RawClient(RawClient&& other) noexcept;
  RawClient& operator=(RawClient&& other) noexcept;
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  int fd() const { return fd_; }
  // Writes all of `bytes` (MSG_NOSIGNAL). False if the peer is gone.
  bool Send(std::string_view bytes);
  // Shrinks the socket's receive buffer (SO_RCVBUF) so that a client that stops reading stops
  // the flow early.
  void SetReceiveBuffer(int bytes);

  // Reads one message. std::nullopt on EOF, error or timeout; `closed` (if given) says which.
  std::optional<RawMessage> ReadMessage(std::chrono::milliseconds timeout, bool* closed = nullptr);
  // Reads messages until an ErrorResponse arrives (then waits up to `after_error` more for the
  // close that should follow) or the connection is closed, or `timeout` passes.
  RawOutcome ReadUntilErrorOrClose(std::chrono::milliseconds timeout,
                                   std::chrono::milliseconds after_error = std::chrono::seconds(5));
  // Reads messages until a ReadyForQuery; the messages read, or std::nullopt on close/timeout.
  std::optional<std::vector<RawMessage>> ReadUntilReady(std::chrono::milliseconds timeout);

  // Half-close: the peer sees EOF, we can still read.
  void ShutdownWrite();
  // Closes the socket at once (shutdown first, so that a libpq duplicate can't keep it open).
  void Close();

  // --- message builders ---
  // A protocol 3.0 StartupMessage with these parameters (user, database, ...).
  static std::string StartupMessage(const std::vector<std::pair<std::string, std::string>>& params,
                                    uint32_t version = 196608);
  static std::string QueryMessage(std::string_view sql);
  // A typed message: type, int32 length (4 + body), body.
  static std::string TypedMessage(char type, std::string_view body);
  static std::string Int32(uint32_t value);
  // Parses an ErrorResponse/NoticeResponse body into (field code, value) pairs.
  static std::vector<std::pair<char, std::string>> ErrorFields(std::string_view body);

 private:
  int fd_ = -1;
  std::optional<PgConn> adopted_;
  std::string in_;  // bytes read but not yet returned as messages
};

}  // namespace rb::test
