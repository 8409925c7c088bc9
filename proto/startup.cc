#include "proto/startup.h"

#include "absl/container/flat_hash_set.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/messages.h"

namespace rb::proto {

namespace {

// Duplicate detection switches from pairwise comparison to a hash set above this many keys. Real
// clients send fewer than ten; a hostile 10,000-byte packet can carry about 2,500.
constexpr size_t kPairwiseDuplicateLimit = 16;

// PgBouncer formats its disconnect reasons into a 128-byte buffer, so a reason never exceeds
// 127 bytes; reasons that embed client text are cut the same way.
constexpr size_t kMaxReasonLength = 127;

StartupError Fail(StartupError error, const uint8_t* data, uint32_t len, std::string* detail) {
  if (detail->empty()) {
    // Like PgBouncer's hdr2hex: the first (up to) 8 bytes of the packet.
    *detail = absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(data), std::min<uint32_t>(len, kStartupHeaderLength)));
  }
  return error;
}

}  // namespace

const char* StartupErrorName(StartupError error) {
  switch (error) {
    case StartupError::kOk: return "ok";
    case StartupError::kBadLength: return "bad length";
    case StartupError::kTooLong: return "too long";
    case StartupError::kUnknownCode: return "unknown code";
    case StartupError::kProtocolV2: return "protocol 2";
    case StartupError::kBadCancelRequest: return "bad cancel request";
    case StartupError::kUnterminated: return "unterminated";
    case StartupError::kTrailingBytes: return "trailing bytes";
    case StartupError::kMissingValue: return "missing value";
    case StartupError::kMissingUser: return "missing user";
  }
  return "unknown";
}

void StartupPacket::Clear() {
  kind_ = StartupKind::kStartupMessage;
  has_protocol_options_ = false;
  code_ = 0;
  cancel_pid_ = 0;
  strings_.clear();
  params_.clear();
  error_detail_.clear();
}

std::optional<absl::string_view> StartupPacket::Find(absl::string_view key) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (this->key(i) == key) return value(i);
  }
  return std::nullopt;
}

absl::string_view StartupPacket::DatabaseOrUser() const {
  absl::string_view db = database();
  return db.empty() ? user() : db;
}

absl::InlinedVector<absl::string_view, 2> StartupPacket::ProtocolOptions() const {
  absl::InlinedVector<absl::string_view, 2> options;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (IsProtocolOption(key(i))) options.push_back(key(i));
  }
  return options;
}

void StartupPacket::AppendNegotiateProtocolVersion(std::string* out) const {
  absl::InlinedVector<absl::string_view, 2> options = ProtocolOptions();
  rb::proto::AppendNegotiateProtocolVersion(out, kNewestSupportedMinor, options);
}

StartupError ParseStartupPacket(const uint8_t* data, uint32_t len, StartupPacket* out) {
  out->Clear();
  std::string* detail = &out->error_detail_;
  if (len < kStartupHeaderLength) return Fail(StartupError::kBadLength, data, len, detail);
  uint32_t length = LoadBE32(data);
  if (length > kMaxStartupPacketLength) {
    return Fail(StartupError::kTooLong, data, len, detail);
  }
  if (length < kStartupHeaderLength || length != len) {
    return Fail(StartupError::kBadLength, data, len, detail);
  }
  uint32_t code = LoadBE32(data + 4);
  out->code_ = code;
  const uint8_t* payload = data + kStartupHeaderLength;
  uint32_t payload_len = len - kStartupHeaderLength;

  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (payload_len != 0) return Fail(StartupError::kBadLength, data, len, detail);
      out->kind_ = code == kSslRequestCode ? StartupKind::kSslRequest : StartupKind::kGssEncRequest;
      return StartupError::kOk;
    case kCancelRequestCode:
      // pid (4) + secret (4 in 3.0, up to 256 in 3.2). PgBouncer accepts only 8 bytes; we also
      // take the longer form, which is someone else's key, so the caller can drop it quietly.
      if (payload_len < 8 || payload_len > 4 + kMaxCancelSecretLength) {
        return Fail(StartupError::kBadCancelRequest, data, len, detail);
      }
      out->kind_ = StartupKind::kCancelRequest;
      out->cancel_pid_ = LoadBE32(payload);
      out->strings_.assign(reinterpret_cast<const char*>(payload), payload_len);
      return StartupError::kOk;
    default:
      break;
  }
  uint16_t major = ProtocolMajor(code);
  if (major == 2) return Fail(StartupError::kProtocolV2, data, len, detail);
  if (major != 3) return Fail(StartupError::kUnknownCode, data, len, detail);

  out->kind_ = StartupKind::kStartupMessage;
  out->strings_.assign(reinterpret_cast<const char*>(payload), payload_len);
  const char* base = out->strings_.data();
  uint32_t pos = 0;
  // Reads the C string at pos; false when it has no NUL before the end of the payload.
  auto read_string = [&](uint16_t* at, uint16_t* n) {
    const void* nul = std::memchr(base + pos, '\0', payload_len - pos);
    if (nul == nullptr) return false;
    *at = static_cast<uint16_t>(pos);
    *n = static_cast<uint16_t>(static_cast<const char*>(nul) - (base + pos));
    pos += *n + 1u;
    return true;
  };
  for (;;) {
    if (pos == payload_len) return Fail(StartupError::kUnterminated, data, len, detail);
    StartupPacket::Param p;
    if (!read_string(&p.key_at, &p.key_len)) {
      return Fail(StartupError::kUnterminated, data, len, detail);
    }
    if (p.key_len == 0) break;  // the empty key ends the list
    if (pos == payload_len) return Fail(StartupError::kMissingValue, data, len, detail);
    if (!read_string(&p.value_at, &p.value_len)) {
      return Fail(StartupError::kUnterminated, data, len, detail);
    }
    out->params_.push_back(p);
  }
  // PostgreSQL insists the terminator is the last byte ("invalid startup packet layout").
  if (pos != payload_len) return Fail(StartupError::kTrailingBytes, data, len, detail);

  // PostgreSQL and PgBouncer let a repeated key overwrite the earlier one, so a drop-in must
  // accept it too. Earlier copies are dropped here, so that every reader (auth, routing, the
  // tracked parameters) sees the same single value: two readers disagreeing on first-wins and
  // last-wins is how a login ends up authenticated as one user and pooled as another.
  {
    const size_t total = out->params_.size();
    std::vector<bool> keep(total, true);
    if (total <= kPairwiseDuplicateLimit) {
      for (size_t i = 0; i < total; ++i)
        for (size_t j = i + 1; j < total && keep[i]; ++j) keep[i] = out->key(i) != out->key(j);
    } else {
      absl::flat_hash_set<absl::string_view> seen;
      for (size_t i = total; i-- > 0;) keep[i] = seen.insert(out->key(i)).second;
    }
    size_t w = 0;
    for (size_t i = 0; i < total; ++i)
      if (keep[i]) out->params_[w++] = out->params_[i];
    out->params_.resize(w);
  }
  const size_t n = out->params_.size();
  for (size_t i = 0; i < n; ++i) {
    if (StartupPacket::IsProtocolOption(out->key(i))) out->has_protocol_options_ = true;
  }
  if (out->user().empty()) return Fail(StartupError::kMissingUser, data, len, detail);
  return StartupError::kOk;
}

std::string StartupErrorMessage(StartupError error, const StartupPacket& packet) {
  switch (error) {
    case StartupError::kOk:
      return "";
    case StartupError::kBadLength:
    case StartupError::kTooLong:
    case StartupError::kUnknownCode:
      // PgBouncer's header check refuses all three the same way.
      return absl::StrCat("bad packet header: '", packet.error_detail(), "'");
    case StartupError::kProtocolV2:
      return "old V2 protocol not supported";
    case StartupError::kBadCancelRequest:
      return "bad cancel request";
    case StartupError::kUnterminated:
    case StartupError::kTrailingBytes:
    case StartupError::kMissingValue:
      // PgBouncer stops at the first bad string and says nothing; PostgreSQL's wording:
      return "invalid startup packet layout: expected terminator as last byte";
    case StartupError::kMissingUser:
      return "no username supplied";
  }
  return "bad packet";
}

absl::string_view StartupErrorSqlState(StartupError) { return sqlstate::kProtocolViolation; }

bool StartupErrorNotifiesClient(StartupError error) {
  return error != StartupError::kBadCancelRequest;
}

}  // namespace rb::proto
