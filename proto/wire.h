// PostgreSQL v3 wire constants and big-endian helpers.
//
// Every integer on the wire is big-endian ("network order"). Typed messages are a type byte, an
// int32 length that counts itself but not the type byte, then the body. The packets a client
// sends before it is logged in (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) are
// untyped: an int32 length that counts itself, then an int32 code that says which packet it is.
#pragma once

#include <cstdint>
#include <string>

namespace rb::proto {

// --- Protocol versions and the special startup codes -----------------------------------------

// A protocol version is (major << 16) | minor.
constexpr uint32_t ProtocolVersion(uint16_t major, uint16_t minor) {
  return (uint32_t{major} << 16) | minor;
}
constexpr uint16_t ProtocolMajor(uint32_t code) { return static_cast<uint16_t>(code >> 16); }
constexpr uint16_t ProtocolMinor(uint32_t code) { return static_cast<uint16_t>(code & 0xffff); }

inline constexpr uint32_t kProtocol30 = ProtocolVersion(3, 0);  // 196608
inline constexpr uint32_t kProtocol32 = ProtocolVersion(3, 2);
// The newest 3.x minor we speak. A client asking for more gets a NegotiateProtocolVersion that
// names this minor and carries on in 3.0, as PostgreSQL and PgBouncer do.
inline constexpr uint16_t kNewestSupportedMinor = 0;

// The special codes were chosen so that they never look like a real version: major 1234.
inline constexpr uint32_t kCancelRequestCode = 80877102;  // 1234.5678
inline constexpr uint32_t kSslRequestCode = 80877103;     // 1234.5679
inline constexpr uint32_t kGssEncRequestCode = 80877104;  // 1234.5680

// PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH); so do we, so
// that an unauthenticated peer can't make us buffer much.
inline constexpr uint32_t kMaxStartupPacketLength = 10000;
// int32 length + int32 code: the smallest well-formed startup-phase packet (SSLRequest).
inline constexpr uint32_t kStartupHeaderLength = 8;
// CancelRequest: length, code, int32 process id, then the secret. 3.0 secrets are 4 bytes;
// protocol 3.2 allows 4..256 (PostgreSQL 18 decodes 1..256).
inline constexpr uint32_t kCancelRequestLength = 16;
inline constexpr uint32_t kMaxCancelSecretLength = 256;

// A TLS record starts with content type 22. PostgreSQL 17's direct TLS (sslnegotiation=direct)
// opens the connection with a ClientHello instead of an SSLRequest; read as a startup length,
// 0x16030... would be "too long", so check this byte first.
inline constexpr uint8_t kTlsHandshakeByte = 0x16;

// Typed messages: 1 type byte + 4 length bytes.
inline constexpr uint32_t kTypedHeaderLength = 5;

// --- Message type bytes ------------------------------------------------------------------------
// Several letters mean one thing from the client and another from the server ('S' is Sync from a
// client and ParameterStatus from a server), so each direction gets its own names.
namespace msg {
// Frontend (client to server).
inline constexpr uint8_t kBind = 'B';
inline constexpr uint8_t kClose = 'C';
inline constexpr uint8_t kCopyData = 'd';
inline constexpr uint8_t kCopyDone = 'c';
inline constexpr uint8_t kCopyFail = 'f';
inline constexpr uint8_t kDescribe = 'D';
inline constexpr uint8_t kExecute = 'E';
inline constexpr uint8_t kFlush = 'H';
inline constexpr uint8_t kFunctionCall = 'F';
inline constexpr uint8_t kParse = 'P';
// PasswordMessage, SASLInitialResponse and SASLResponse share 'p'; the login state says which.
inline constexpr uint8_t kPassword = 'p';
inline constexpr uint8_t kQuery = 'Q';
inline constexpr uint8_t kSync = 'S';
inline constexpr uint8_t kTerminate = 'X';

// Backend (server to client).
inline constexpr uint8_t kAuthentication = 'R';
inline constexpr uint8_t kBackendKeyData = 'K';
inline constexpr uint8_t kBindComplete = '2';
inline constexpr uint8_t kCloseComplete = '3';
inline constexpr uint8_t kCommandComplete = 'C';
inline constexpr uint8_t kCopyInResponse = 'G';
inline constexpr uint8_t kCopyOutResponse = 'H';
inline constexpr uint8_t kCopyBothResponse = 'W';
inline constexpr uint8_t kDataRow = 'D';
inline constexpr uint8_t kEmptyQueryResponse = 'I';
inline constexpr uint8_t kErrorResponse = 'E';
inline constexpr uint8_t kFunctionCallResponse = 'V';
inline constexpr uint8_t kNegotiateProtocolVersion = 'v';
inline constexpr uint8_t kNoData = 'n';
inline constexpr uint8_t kNoticeResponse = 'N';
inline constexpr uint8_t kNotificationResponse = 'A';
inline constexpr uint8_t kParameterDescription = 't';
inline constexpr uint8_t kParameterStatus = 'S';
inline constexpr uint8_t kParseComplete = '1';
inline constexpr uint8_t kPortalSuspended = 's';
inline constexpr uint8_t kReadyForQuery = 'Z';
inline constexpr uint8_t kRowDescription = 'T';
}  // namespace msg

// The one-byte answers to SSLRequest / GSSENCRequest.
inline constexpr uint8_t kEncryptionAccepted = 'S';  // SSLRequest: go ahead with TLS
inline constexpr uint8_t kGssEncAccepted = 'G';      // GSSENCRequest: go ahead with GSSAPI
inline constexpr uint8_t kEncryptionRefused = 'N';   // either: carry on in plaintext

// ReadyForQuery transaction status.
inline constexpr uint8_t kTxnIdle = 'I';
inline constexpr uint8_t kTxnInBlock = 'T';
inline constexpr uint8_t kTxnFailed = 'E';

// Authentication request codes (the int32 after 'R').
enum class AuthCode : uint32_t {
  kOk = 0,
  kKerberosV5 = 2,
  kCleartextPassword = 3,
  kMd5Password = 5,
  kScmCredential = 6,
  kGss = 7,
  kGssContinue = 8,
  kSspi = 9,
  kSasl = 10,
  kSaslContinue = 11,
  kSaslFinal = 12,
};

// --- Big-endian helpers -------------------------------------------------------------------------

inline uint16_t LoadBE16(const uint8_t* p) {
  return static_cast<uint16_t>((uint16_t{p[0]} << 8) | p[1]);
}
inline uint32_t LoadBE32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline void StoreBE16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void StoreBE32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void AppendBE16(std::string* out, uint16_t v) {
  char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 2);
}
inline void AppendBE32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  out->append(b, 4);
}

}  // namespace rb::proto
