// Builders for every message the pooler sends, and parsers for the few it reads.
//
// Builders append to a caller-owned std::string, so a connection's output buffer keeps its
// capacity from one message to the next and building allocates nothing once it is warm.
// Parsers take the body of one message (what follows the type byte and the length), return a
// ParseError, and hand out string_views into that body: they never copy and never read past it.
// A body is untrusted input, so every length is checked before it is used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/wire.h"

namespace rb::proto {

// --- Writing ------------------------------------------------------------------------------------

// Appends one message at a time to `out`: Begin, the fields, End. End patches the length, which
// counts itself and the body but not the type byte.
class MessageWriter {
 public:
  explicit MessageWriter(std::string* out) : out_(out) {}

  // A typed message: type byte, then a length placeholder.
  void Begin(uint8_t type);
  // An untyped startup-phase packet (StartupMessage, CancelRequest): just the length placeholder.
  void BeginUntyped();
  void End();

  void AddByte(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void AddInt16(uint16_t v) { AppendBE16(out_, v); }
  void AddInt32(uint32_t v) { AppendBE32(out_, v); }
  // A C string. The protocol has no way to carry a NUL inside one, so the text is cut at the
  // first NUL rather than letting it end the field early and shift every field after it.
  void AddCString(absl::string_view s);
  void AddBytes(absl::string_view bytes) { out_->append(bytes.data(), bytes.size()); }
  void AddBytes(absl::Span<const uint8_t> bytes) {
    out_->append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }

  std::string* out() const { return out_; }

 private:
  std::string* out_;
  size_t length_at_ = 0;  // offset of the length field of the open message
  bool open_ = false;
};

// --- Common values ------------------------------------------------------------------------------

namespace severity {
inline constexpr absl::string_view kFatal = "FATAL";
inline constexpr absl::string_view kError = "ERROR";
inline constexpr absl::string_view kWarning = "WARNING";
inline constexpr absl::string_view kNotice = "NOTICE";
inline constexpr absl::string_view kLog = "LOG";
}  // namespace severity

// The SQLSTATEs the pooler itself reports. PgBouncer uses 08P01 unless it has a reason to
// match what PostgreSQL would say.
namespace sqlstate {
inline constexpr absl::string_view kProtocolViolation = "08P01";
inline constexpr absl::string_view kConnectionFailure = "08006";
inline constexpr absl::string_view kFeatureNotSupported = "0A000";
inline constexpr absl::string_view kInvalidAuthorization = "28000";
inline constexpr absl::string_view kInvalidPassword = "28P01";
inline constexpr absl::string_view kInvalidCatalogName = "3D000";
inline constexpr absl::string_view kSyntaxError = "42601";
inline constexpr absl::string_view kTooManyConnections = "53300";
inline constexpr absl::string_view kQueryCanceled = "57014";
inline constexpr absl::string_view kAdminShutdown = "57P01";
inline constexpr absl::string_view kInternalError = "XX000";
}  // namespace sqlstate

// The fields of an ErrorResponse or NoticeResponse that the pooler writes or reads. Other field
// types (position, context, file, line, ...) are skipped on parse, as the protocol asks.
struct ErrorFields {
  absl::string_view severity;               // S: may be localised
  absl::string_view severity_nonlocalized;  // V: PostgreSQL 9.6+; a builder writes S here if empty
  absl::string_view sqlstate;               // C
  absl::string_view message;                // M
  absl::string_view detail;                 // D: omitted when empty
  absl::string_view hint;                   // H: omitted when empty

  bool operator==(const ErrorFields&) const = default;
};

// A server's cancel key (BackendKeyData). We always speak 3.0 to servers, so the secret is the
// 4 bytes that protocol version has.
struct BackendKey {
  uint32_t pid = 0;
  uint32_t secret = 0;

  bool operator==(const BackendKey&) const = default;
};

// --- Builders: server-to-client messages ------------------------------------------------------

void AppendErrorResponse(std::string* out, const ErrorFields& fields);
void AppendNoticeResponse(std::string* out, const ErrorFields& fields);
// The error PgBouncer sends for its own failures: severity FATAL (the connection closes next)
// or ERROR, the SQLSTATE (08P01 unless given), and the message.
void AppendPoolerError(std::string* out, absl::string_view message,
                       absl::string_view sqlstate = sqlstate::kProtocolViolation,
                       bool fatal = true);

void AppendParameterStatus(std::string* out, absl::string_view name, absl::string_view value);
void AppendBackendKeyData(std::string* out, BackendKey key);
void AppendReadyForQuery(std::string* out, uint8_t txn_status);

void AppendAuthenticationOk(std::string* out);
void AppendAuthenticationCleartextPassword(std::string* out);
void AppendAuthenticationMd5Password(std::string* out, const std::array<uint8_t, 4>& salt);
void AppendAuthenticationSasl(std::string* out, absl::Span<const absl::string_view> mechanisms);
void AppendAuthenticationSaslContinue(std::string* out, absl::string_view data);
void AppendAuthenticationSaslFinal(std::string* out, absl::string_view data);

// Tells a client asking for 3.x (x > 0) or for `_pq_.` options what we do support; the login
// then goes on in 3.0 without those options.
void AppendNegotiateProtocolVersion(std::string* out, uint16_t newest_minor,
                                    absl::Span<const absl::string_view> unrecognized_options);
// The one byte that refuses an SSLRequest or GSSENCRequest ('N'); the client then carries on
// in plaintext or gives up, its choice.
void AppendEncryptionRefused(std::string* out);

void AppendCommandComplete(std::string* out, absl::string_view tag);
void AppendEmptyQueryResponse(std::string* out);

// --- Builders: client-to-server messages (the pooler logging in to PostgreSQL) -----------------

using StartupParam = std::pair<absl::string_view, absl::string_view>;
void AppendStartupMessage(std::string* out, absl::Span<const StartupParam> params,
                          uint32_t protocol = kProtocol30);
void AppendCancelRequest(std::string* out, BackendKey key);  // untyped, 16 bytes
void AppendPasswordMessage(std::string* out, absl::string_view password);
// `data` absent writes length -1, which the protocol reads as "no initial response".
void AppendSaslInitialResponse(std::string* out, absl::string_view mechanism,
                               std::optional<absl::string_view> data);
void AppendSaslResponse(std::string* out, absl::string_view data);
void AppendQuery(std::string* out, absl::string_view sql);
void AppendTerminate(std::string* out);

// --- Builders: admin console result sets ------------------------------------------------------

// Column types the admin console reports, with PostgreSQL's type OIDs and sizes so that
// drivers decode them as they would from a real server.
enum class ColumnType : uint8_t { kText, kInt4, kInt8, kNumeric, kTimestamptz, kBool, kBytea };
uint32_t ColumnTypeOid(ColumnType type);
int16_t ColumnTypeSize(ColumnType type);  // -1: variable length

struct Column {
  absl::string_view name;
  ColumnType type;
};
void AppendRowDescription(std::string* out, absl::Span<const Column> columns);

// One DataRow, built column by column. Text format throughout, as the admin console (and
// PgBouncer's) answers simple queries only.
class DataRowWriter {
 public:
  explicit DataRowWriter(std::string* out);
  void AddText(absl::string_view value);
  void AddNull();
  void AddInt(int64_t value);
  void AddUint(uint64_t value);
  void AddBool(bool value);  // PostgreSQL's text form: "t" / "f"
  void Finish();             // patches the column count and the length

 private:
  MessageWriter writer_;
  size_t count_at_;
  uint16_t columns_ = 0;
};
// Convenience for small rows; nullopt is SQL NULL.
void AppendDataRow(std::string* out, absl::Span<const std::optional<absl::string_view>> values);

// --- Parsing ------------------------------------------------------------------------------------

enum class [[nodiscard]] ParseError : uint8_t {
  kOk,
  kTruncated,      // the body ends inside a fixed-size field or a counted byte string
  kUnterminated,   // a C string has no NUL before the end of the body
  kTrailingBytes,  // bytes are left after the last field
  kBadValue,       // a field holds a value the protocol does not allow
};
const char* ParseErrorName(ParseError error);

// Bounds-checked cursor over one message body. Every Read returns false instead of reading past
// the end, and leaves the cursor where it was.
class BodyReader {
 public:
  explicit BodyReader(absl::Span<const uint8_t> body) : data_(body.data()), size_(body.size()) {}

  [[nodiscard]] bool ReadByte(uint8_t* v);
  [[nodiscard]] bool ReadInt16(uint16_t* v);
  [[nodiscard]] bool ReadInt32(uint32_t* v);
  [[nodiscard]] bool ReadCString(absl::string_view* s);  // false: no NUL before the end
  [[nodiscard]] bool ReadBytes(size_t n, absl::string_view* s);
  absl::string_view Rest();  // everything left; the cursor moves to the end

  size_t remaining() const { return size_ - pos_; }
  bool AtEnd() const { return pos_ == size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// ErrorResponse / NoticeResponse: (field type, C string)*, then a 0 byte.
[[nodiscard]] ParseError ParseErrorFields(absl::Span<const uint8_t> body, ErrorFields* out);
[[nodiscard]] ParseError ParseParameterStatus(absl::Span<const uint8_t> body,
                                              absl::string_view* name, absl::string_view* value);
[[nodiscard]] ParseError ParseBackendKeyData(absl::Span<const uint8_t> body, BackendKey* out);
// Status must be one of I, T, E.
[[nodiscard]] ParseError ParseReadyForQuery(absl::Span<const uint8_t> body, uint8_t* status);
[[nodiscard]] ParseError ParseCommandComplete(absl::Span<const uint8_t> body,
                                              absl::string_view* tag);

// An Authentication* message from a server. Codes the pooler can't answer (GSS, SSPI, ...) parse
// fine; refusing them is the caller's decision.
struct AuthRequest {
  AuthCode code = AuthCode::kOk;
  std::array<uint8_t, 4> md5_salt{};                      // kMd5Password
  absl::InlinedVector<absl::string_view, 2> mechanisms;  // kSasl, in the server's order
  absl::string_view data;  // kSaslContinue, kSaslFinal, kGssContinue and unknown codes
};
[[nodiscard]] ParseError ParseAuthentication(absl::Span<const uint8_t> body, AuthRequest* out);

struct NegotiateProtocol {
  uint32_t newest_minor = 0;
  std::vector<absl::string_view> unrecognized_options;
};
[[nodiscard]] ParseError ParseNegotiateProtocolVersion(absl::Span<const uint8_t> body,
                                                       NegotiateProtocol* out);

// Client messages of the login phase and the admin console. A PasswordMessage and a Query are
// one C string whose NUL is the last byte of the body, as PostgreSQL insists.
[[nodiscard]] ParseError ParsePasswordMessage(absl::Span<const uint8_t> body,
                                              absl::string_view* password);
struct SaslInitialResponse {
  absl::string_view mechanism;
  std::optional<absl::string_view> data;  // nullopt: length -1, no initial response
  bool operator==(const SaslInitialResponse&) const = default;
};
[[nodiscard]] ParseError ParseSaslInitialResponse(absl::Span<const uint8_t> body,
                                                  SaslInitialResponse* out);
// SASLResponse is the raw mechanism data: the whole body.
[[nodiscard]] ParseError ParseSaslResponse(absl::Span<const uint8_t> body, absl::string_view* data);
[[nodiscard]] ParseError ParseQuery(absl::Span<const uint8_t> body, absl::string_view* sql);

// Result sets, for tests and tools that check what the admin console sends.
struct FieldDescription {
  absl::string_view name;
  uint32_t table_oid = 0;
  uint16_t column = 0;
  uint32_t type_oid = 0;
  int16_t type_size = 0;
  int32_t type_modifier = 0;
  uint16_t format = 0;
  bool operator==(const FieldDescription&) const = default;
};
[[nodiscard]] ParseError ParseRowDescription(absl::Span<const uint8_t> body,
                                             std::vector<FieldDescription>* out);
[[nodiscard]] ParseError ParseDataRow(absl::Span<const uint8_t> body,
                                      std::vector<std::optional<absl::string_view>>* out);

// absl::string_view over raw bytes, for the Span-taking parsers.
inline absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace rb::proto
