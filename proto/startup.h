// Parser for the untyped packets a client sends before it is logged in.
//
// Layout: int32 length (counting itself), int32 code, payload. The code says what the packet is:
//   3.x            StartupMessage; the payload is key\0value\0 ... \0 (an empty key ends it)
//   80877103       SSLRequest, no payload
//   80877104       GSSENCRequest, no payload
//   80877102       CancelRequest: int32 process id, then the secret (4 bytes in 3.0, up to 256
//                  bytes in 3.2)
// Anything else is refused. A 3.x request with x > 0, or `_pq_.` protocol options we don't know
// (we know none), is accepted: the login goes on in 3.0 after a NegotiateProtocolVersion, as
// PostgreSQL and PgBouncer do.
//
// The parser takes exactly one packet, as MessageAssembler (startup mode) delivers it. It runs
// once per login, so it may copy: the result owns its strings and outlives the receive buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/message_assembler.h"  // BadPacketHeaderMessage
#include "proto/wire.h"

namespace rb::proto {

enum class StartupKind : uint8_t { kStartupMessage, kSslRequest, kGssEncRequest, kCancelRequest };

enum class [[nodiscard]] StartupError : uint8_t {
  kOk,
  kBadLength,         // length < 8, a length that disagrees with the packet, or an SSLRequest
                      // or GSSENCRequest that is not exactly 8 bytes
  kTooLong,           // length > kMaxStartupPacketLength
  kUnknownCode,       // not 2.x, 3.x or a special code
  kProtocolV2,        // 2.x: refused, as PgBouncer does
  kBadCancelRequest,  // CancelRequest secret shorter than 4 or longer than 256 bytes
  kUnterminated,      // a key or value without its NUL, or no empty key at the end
  kTrailingBytes,     // bytes after the empty key that ends the parameter list
  kMissingValue,      // a key with no value after it (an odd number of strings)
  kMissingUser,       // no `user`, or an empty one
};

const char* StartupErrorName(StartupError error);

// The parsed packet. Parameters keep the order the client sent them in.
class StartupPacket {
 public:
  StartupKind kind() const { return kind_; }
  uint32_t code() const { return code_; }

  // --- StartupMessage ---
  size_t param_count() const { return params_.size(); }
  absl::string_view key(size_t i) const { return View(params_[i].key_at, params_[i].key_len); }
  absl::string_view value(size_t i) const {
    return View(params_[i].value_at, params_[i].value_len);
  }
  std::optional<absl::string_view> Find(absl::string_view key) const;

  absl::string_view user() const { return FindOrEmpty("user"); }
  absl::string_view database() const { return FindOrEmpty("database"); }
  // PgBouncer (like libpq) uses the user name when the database is missing or empty.
  absl::string_view DatabaseOrUser() const;
  absl::string_view options() const { return FindOrEmpty("options"); }
  absl::string_view application_name() const { return FindOrEmpty("application_name"); }
  absl::string_view replication() const { return FindOrEmpty("replication"); }

  // `_pq_.name` keys are protocol options, not run-time parameters: they must not reach
  // PostgreSQL as SET, and the ones we don't know go back in NegotiateProtocolVersion.
  static bool IsProtocolOption(absl::string_view key) { return absl::StartsWith(key, "_pq_."); }
  // The client asked for a newer minor or for protocol options: answer with
  // NegotiateProtocolVersion before anything else, then log in as 3.0.
  bool NeedsNegotiation() const {
    return ProtocolMinor(code_) > kNewestSupportedMinor || has_protocol_options_;
  }
  absl::InlinedVector<absl::string_view, 2> ProtocolOptions() const;
  // Appends the NegotiateProtocolVersion this packet calls for (newest minor 0, plus every
  // `_pq_.` option it carries, since we support none).
  void AppendNegotiateProtocolVersion(std::string* out) const;

  // --- CancelRequest ---
  uint32_t cancel_pid() const { return cancel_pid_; }
  // process id and secret as they were on the wire: 8 bytes for a key we handed out.
  absl::Span<const uint8_t> cancel_key_bytes() const {
    return {reinterpret_cast<const uint8_t*>(strings_.data()), strings_.size()};
  }
  // Our keys are always 8 bytes; a longer 3.2 key was issued by someone else (PostgreSQL itself,
  // or another pooler) and can't be routed by its bits.
  bool CancelKeyIsOurs() const { return strings_.size() == 8; }

  // On an error: the packet's first bytes in hex.
  absl::string_view error_detail() const { return error_detail_; }

  void Clear();

 private:
  friend StartupError ParseStartupPacket(const uint8_t* data, uint32_t len, StartupPacket* out);

  // Offsets into strings_; a startup packet is at most 10,000 bytes, so 16 bits suffice.
  struct Param {
    uint16_t key_at, key_len, value_at, value_len;
  };

  absl::string_view View(uint16_t at, uint16_t len) const {
    return absl::string_view(strings_.data() + at, len);
  }
  absl::string_view FindOrEmpty(absl::string_view key) const {
    std::optional<absl::string_view> v = Find(key);
    return v.has_value() ? *v : absl::string_view();
  }

  StartupKind kind_ = StartupKind::kStartupMessage;
  bool has_protocol_options_ = false;
  uint32_t code_ = 0;
  uint32_t cancel_pid_ = 0;
  // StartupMessage: the parameter area as sent (key\0value\0...). CancelRequest: pid + secret.
  std::string strings_;
  absl::InlinedVector<Param, 6> params_;
  std::string error_detail_;
};

// Parses exactly one packet: `len` must equal the packet's own length field.
[[nodiscard]] StartupError ParseStartupPacket(const uint8_t* data, uint32_t len,
                                              StartupPacket* out);

// The client-facing text for an error, PgBouncer's wording where PgBouncer has one (its texts are
// what users and scripts match on); PostgreSQL's otherwise. `packet` supplies error_detail().
std::string StartupErrorMessage(StartupError error, const StartupPacket& packet);
// The SQLSTATE to send with it. PgBouncer reports 08P01 (protocol violation) for all of these.
absl::string_view StartupErrorSqlState(StartupError error);
// PgBouncer closes a bad CancelRequest without a word: the connection was never a session, and
// a reply would tell a scanner something. Everything else gets a FATAL ErrorResponse first.
bool StartupErrorNotifiesClient(StartupError error);

// PgBouncer's texts for the other startup-phase refusals the engine makes itself.
// Bytes that arrived along with an SSLRequest / GSSENCRequest were sent before encryption began
// and may have been injected by a man in the middle.
inline constexpr absl::string_view kUnencryptedDataAfterSslMessage =
    "received unencrypted data after SSL request";
inline constexpr absl::string_view kUnencryptedDataAfterGssMessage =
    "received unencrypted data after GSSAPI encryption request";
inline constexpr absl::string_view kSslRequiredMessage = "SSL required";
inline constexpr absl::string_view kResentStartupMessage = "client re-sent startup pkt";
inline constexpr absl::string_view kPartialStartupMessage =
    "client sent partial pkt in startup phase";

}  // namespace rb::proto
