#include "proto/messages.h"

#include <cassert>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rb::proto {

// --- MessageWriter ------------------------------------------------------------------------------

void MessageWriter::Begin(uint8_t type) {
  assert(!open_ && "MessageWriter: Begin inside an open message");
  out_->push_back(static_cast<char>(type));
  BeginUntyped();
}

void MessageWriter::BeginUntyped() {
  assert(!open_ && "MessageWriter: Begin inside an open message");
  length_at_ = out_->size();
  out_->append(4, '\0');
  open_ = true;
}

void MessageWriter::End() {
  assert(open_ && "MessageWriter: End without Begin");
  uint32_t length = static_cast<uint32_t>(out_->size() - length_at_);
  StoreBE32(reinterpret_cast<uint8_t*>(out_->data() + length_at_), length);
  open_ = false;
}

void MessageWriter::AddCString(absl::string_view s) {
  const void* nul = std::memchr(s.data(), '\0', s.size());
  if (nul != nullptr) s = s.substr(0, static_cast<const char*>(nul) - s.data());
  out_->append(s.data(), s.size());
  out_->push_back('\0');
}

// --- Server-to-client builders ------------------------------------------------------------------

namespace {

void AppendNoticeOrError(std::string* out, uint8_t type, const ErrorFields& f) {
  MessageWriter w(out);
  w.Begin(type);
  w.AddByte('S');
  w.AddCString(f.severity);
  w.AddByte('V');
  w.AddCString(f.severity_nonlocalized.empty() ? f.severity : f.severity_nonlocalized);
  w.AddByte('C');
  w.AddCString(f.sqlstate);
  w.AddByte('M');
  w.AddCString(f.message);
  if (!f.detail.empty()) {
    w.AddByte('D');
    w.AddCString(f.detail);
  }
  if (!f.hint.empty()) {
    w.AddByte('H');
    w.AddCString(f.hint);
  }
  w.AddByte(0);
  w.End();
}

void AppendAuth(std::string* out, AuthCode code, absl::string_view payload) {
  MessageWriter w(out);
  w.Begin(msg::kAuthentication);
  w.AddInt32(static_cast<uint32_t>(code));
  w.AddBytes(payload);
  w.End();
}

void AppendEmpty(std::string* out, uint8_t type) {
  MessageWriter w(out);
  w.Begin(type);
  w.End();
}

}  // namespace

void AppendErrorResponse(std::string* out, const ErrorFields& fields) {
  AppendNoticeOrError(out, msg::kErrorResponse, fields);
}

void AppendNoticeResponse(std::string* out, const ErrorFields& fields) {
  AppendNoticeOrError(out, msg::kNoticeResponse, fields);
}

void AppendPoolerError(std::string* out, absl::string_view message, absl::string_view sqlstate,
                       bool fatal) {
  ErrorFields f;
  f.severity = fatal ? severity::kFatal : severity::kError;
  f.sqlstate = sqlstate;
  f.message = message;
  AppendErrorResponse(out, f);
}

void AppendParameterStatus(std::string* out, absl::string_view name, absl::string_view value) {
  MessageWriter w(out);
  w.Begin(msg::kParameterStatus);
  w.AddCString(name);
  w.AddCString(value);
  w.End();
}

void AppendBackendKeyData(std::string* out, BackendKey key) {
  MessageWriter w(out);
  w.Begin(msg::kBackendKeyData);
  w.AddInt32(key.pid);
  w.AddInt32(key.secret);
  w.End();
}

void AppendReadyForQuery(std::string* out, uint8_t txn_status) {
  MessageWriter w(out);
  w.Begin(msg::kReadyForQuery);
  w.AddByte(txn_status);
  w.End();
}

void AppendAuthenticationOk(std::string* out) { AppendAuth(out, AuthCode::kOk, {}); }

void AppendAuthenticationCleartextPassword(std::string* out) {
  AppendAuth(out, AuthCode::kCleartextPassword, {});
}

void AppendAuthenticationMd5Password(std::string* out, const std::array<uint8_t, 4>& salt) {
  AppendAuth(out, AuthCode::kMd5Password,
             absl::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
}

void AppendAuthenticationSasl(std::string* out, absl::Span<const absl::string_view> mechanisms) {
  MessageWriter w(out);
  w.Begin(msg::kAuthentication);
  w.AddInt32(static_cast<uint32_t>(AuthCode::kSasl));
  for (absl::string_view m : mechanisms) w.AddCString(m);
  w.AddByte(0);  // the list ends with an empty name
  w.End();
}

void AppendAuthenticationSaslContinue(std::string* out, absl::string_view data) {
  AppendAuth(out, AuthCode::kSaslContinue, data);
}

void AppendAuthenticationSaslFinal(std::string* out, absl::string_view data) {
  AppendAuth(out, AuthCode::kSaslFinal, data);
}

void AppendNegotiateProtocolVersion(std::string* out, uint16_t newest_minor,
                                    absl::Span<const absl::string_view> unrecognized_options) {
  MessageWriter w(out);
  w.Begin(msg::kNegotiateProtocolVersion);
  w.AddInt32(newest_minor);
  w.AddInt32(static_cast<uint32_t>(unrecognized_options.size()));
  for (absl::string_view o : unrecognized_options) w.AddCString(o);
  w.End();
}

void AppendEncryptionRefused(std::string* out) {
  out->push_back(static_cast<char>(kEncryptionRefused));
}

void AppendCommandComplete(std::string* out, absl::string_view tag) {
  MessageWriter w(out);
  w.Begin(msg::kCommandComplete);
  w.AddCString(tag);
  w.End();
}

void AppendEmptyQueryResponse(std::string* out) { AppendEmpty(out, msg::kEmptyQueryResponse); }

// --- Client-to-server builders ------------------------------------------------------------------

void AppendStartupMessage(std::string* out, absl::Span<const StartupParam> params,
                          uint32_t protocol) {
  MessageWriter w(out);
  w.BeginUntyped();
  w.AddInt32(protocol);
  for (const auto& [key, value] : params) {
    w.AddCString(key);
    w.AddCString(value);
  }
  w.AddByte(0);  // an empty key ends the list
  w.End();
}

void AppendCancelRequest(std::string* out, BackendKey key) {
  MessageWriter w(out);
  w.BeginUntyped();
  w.AddInt32(kCancelRequestCode);
  w.AddInt32(key.pid);
  w.AddInt32(key.secret);
  w.End();
}

void AppendPasswordMessage(std::string* out, absl::string_view password) {
  MessageWriter w(out);
  w.Begin(msg::kPassword);
  w.AddCString(password);
  w.End();
}

void AppendSaslInitialResponse(std::string* out, absl::string_view mechanism,
                               std::optional<absl::string_view> data) {
  MessageWriter w(out);
  w.Begin(msg::kPassword);
  w.AddCString(mechanism);
  if (data.has_value()) {
    w.AddInt32(static_cast<uint32_t>(data->size()));
    w.AddBytes(*data);
  } else {
    w.AddInt32(0xffffffffu);  // -1
  }
  w.End();
}

void AppendSaslResponse(std::string* out, absl::string_view data) {
  MessageWriter w(out);
  w.Begin(msg::kPassword);
  w.AddBytes(data);
  w.End();
}

void AppendQuery(std::string* out, absl::string_view sql) {
  MessageWriter w(out);
  w.Begin(msg::kQuery);
  w.AddCString(sql);
  w.End();
}

void AppendTerminate(std::string* out) { AppendEmpty(out, msg::kTerminate); }

// --- Admin console result sets ------------------------------------------------------------------

uint32_t ColumnTypeOid(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return 25;
    case ColumnType::kInt4: return 23;
    case ColumnType::kInt8: return 20;
    case ColumnType::kNumeric: return 1700;
    case ColumnType::kTimestamptz: return 1184;
    case ColumnType::kBool: return 16;
    case ColumnType::kBytea: return 17;
  }
  return 25;
}

int16_t ColumnTypeSize(ColumnType type) {
  switch (type) {
    case ColumnType::kInt4: return 4;
    case ColumnType::kInt8: return 8;
    case ColumnType::kTimestamptz: return 8;
    case ColumnType::kBool: return 1;
    case ColumnType::kText:
    case ColumnType::kNumeric:
    case ColumnType::kBytea: return -1;
  }
  return -1;
}

void AppendRowDescription(std::string* out, absl::Span<const Column> columns) {
  MessageWriter w(out);
  w.Begin(msg::kRowDescription);
  w.AddInt16(static_cast<uint16_t>(columns.size()));
  for (const Column& c : columns) {
    w.AddCString(c.name);
    w.AddInt32(0);  // not a table column: table OID 0 ...
    w.AddInt16(0);  // ... and attribute number 0
    w.AddInt32(ColumnTypeOid(c.type));
    w.AddInt16(static_cast<uint16_t>(ColumnTypeSize(c.type)));
    w.AddInt32(0xffffffffu);  // type modifier -1: none
    w.AddInt16(0);            // text format
  }
  w.End();
}

DataRowWriter::DataRowWriter(std::string* out) : writer_(out) {
  writer_.Begin(msg::kDataRow);
  count_at_ = out->size();
  writer_.AddInt16(0);
}

void DataRowWriter::AddText(absl::string_view value) {
  writer_.AddInt32(static_cast<uint32_t>(value.size()));
  writer_.AddBytes(value);
  ++columns_;
}

void DataRowWriter::AddNull() {
  writer_.AddInt32(0xffffffffu);  // length -1 is NULL
  ++columns_;
}

void DataRowWriter::AddInt(int64_t value) { AddText(absl::AlphaNum(value).Piece()); }
void DataRowWriter::AddUint(uint64_t value) { AddText(absl::AlphaNum(value).Piece()); }
void DataRowWriter::AddBool(bool value) { AddText(value ? "t" : "f"); }

void DataRowWriter::Finish() {
  StoreBE16(reinterpret_cast<uint8_t*>(writer_.out()->data() + count_at_), columns_);
  writer_.End();
}

void AppendDataRow(std::string* out, absl::Span<const std::optional<absl::string_view>> values) {
  DataRowWriter row(out);
  for (const auto& v : values) {
    if (v.has_value()) {
      row.AddText(*v);
    } else {
      row.AddNull();
    }
  }
  row.Finish();
}

// --- BodyReader ---------------------------------------------------------------------------------

bool BodyReader::ReadByte(uint8_t* v) {
  if (remaining() < 1) return false;
  *v = data_[pos_++];
  return true;
}

bool BodyReader::ReadInt16(uint16_t* v) {
  if (remaining() < 2) return false;
  *v = LoadBE16(data_ + pos_);
  pos_ += 2;
  return true;
}

bool BodyReader::ReadInt32(uint32_t* v) {
  if (remaining() < 4) return false;
  *v = LoadBE32(data_ + pos_);
  pos_ += 4;
  return true;
}

bool BodyReader::ReadCString(absl::string_view* s) {
  if (remaining() == 0) return false;
  const void* nul = std::memchr(data_ + pos_, 0, remaining());
  if (nul == nullptr) return false;
  size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nul) - (data_ + pos_));
  *s = absl::string_view(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n + 1;
  return true;
}

bool BodyReader::ReadBytes(size_t n, absl::string_view* s) {
  if (remaining() < n) return false;
  *s = absl::string_view(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n;
  return true;
}

absl::string_view BodyReader::Rest() {
  absl::string_view s(reinterpret_cast<const char*>(data_ + pos_), remaining());
  pos_ = size_;
  return s;
}

// --- Parsers ------------------------------------------------------------------------------------

const char* ParseErrorName(ParseError error) {
  switch (error) {
    case ParseError::kOk: return "ok";
    case ParseError::kTruncated: return "truncated";
    case ParseError::kUnterminated: return "unterminated string";
    case ParseError::kTrailingBytes: return "trailing bytes";
    case ParseError::kBadValue: return "bad value";
  }
  return "unknown";
}

namespace {

// A body that is exactly one C string.
ParseError ParseSingleCString(absl::Span<const uint8_t> body, absl::string_view* s) {
  BodyReader r(body);
  if (!r.ReadCString(s)) return ParseError::kUnterminated;
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

}  // namespace

ParseError ParseErrorFields(absl::Span<const uint8_t> body, ErrorFields* out) {
  *out = ErrorFields{};
  BodyReader r(body);
  for (;;) {
    uint8_t field;
    if (!r.ReadByte(&field)) return ParseError::kTruncated;  // the closing 0 is missing
    if (field == 0) break;
    absl::string_view value;
    if (!r.ReadCString(&value)) return ParseError::kUnterminated;
    switch (field) {
      case 'S': out->severity = value; break;
      case 'V': out->severity_nonlocalized = value; break;
      case 'C': out->sqlstate = value; break;
      case 'M': out->message = value; break;
      case 'D': out->detail = value; break;
      case 'H': out->hint = value; break;
      default: break;  // the protocol says to ignore field types we don't know
    }
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseParameterStatus(absl::Span<const uint8_t> body, absl::string_view* name,
                                absl::string_view* value) {
  BodyReader r(body);
  if (!r.ReadCString(name) || !r.ReadCString(value)) return ParseError::kUnterminated;
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseBackendKeyData(absl::Span<const uint8_t> body, BackendKey* out) {
  BodyReader r(body);
  if (!r.ReadInt32(&out->pid) || !r.ReadInt32(&out->secret)) return ParseError::kTruncated;
  // A longer secret means the server speaks 3.2, which we never ask for.
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseReadyForQuery(absl::Span<const uint8_t> body, uint8_t* status) {
  BodyReader r(body);
  if (!r.ReadByte(status)) return ParseError::kTruncated;
  if (!r.AtEnd()) return ParseError::kTrailingBytes;
  if (*status != kTxnIdle && *status != kTxnInBlock && *status != kTxnFailed) {
    return ParseError::kBadValue;
  }
  return ParseError::kOk;
}

ParseError ParseCommandComplete(absl::Span<const uint8_t> body, absl::string_view* tag) {
  return ParseSingleCString(body, tag);
}

ParseError ParseAuthentication(absl::Span<const uint8_t> body, AuthRequest* out) {
  out->mechanisms.clear();
  out->data = {};
  out->md5_salt = {};
  BodyReader r(body);
  uint32_t code;
  if (!r.ReadInt32(&code)) return ParseError::kTruncated;
  out->code = static_cast<AuthCode>(code);
  switch (out->code) {
    case AuthCode::kOk:
    case AuthCode::kKerberosV5:
    case AuthCode::kCleartextPassword:
    case AuthCode::kScmCredential:
    case AuthCode::kGss:
    case AuthCode::kSspi:
      break;
    case AuthCode::kMd5Password: {
      absl::string_view salt;
      if (!r.ReadBytes(4, &salt)) return ParseError::kTruncated;
      std::memcpy(out->md5_salt.data(), salt.data(), 4);
      break;
    }
    case AuthCode::kSasl:
      for (;;) {
        absl::string_view mech;
        if (!r.ReadCString(&mech)) return ParseError::kUnterminated;
        if (mech.empty()) break;
        out->mechanisms.push_back(mech);
      }
      break;
    case AuthCode::kGssContinue:
    case AuthCode::kSaslContinue:
    case AuthCode::kSaslFinal:
    default:
      out->data = r.Rest();
      break;
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseNegotiateProtocolVersion(absl::Span<const uint8_t> body, NegotiateProtocol* out) {
  out->unrecognized_options.clear();
  BodyReader r(body);
  uint32_t count;
  if (!r.ReadInt32(&out->newest_minor) || !r.ReadInt32(&count)) return ParseError::kTruncated;
  // Each option takes at least its NUL, so a count above the bytes left is a lie; checking first
  // keeps a hostile count from sizing anything.
  if (count > r.remaining()) return ParseError::kBadValue;
  for (uint32_t i = 0; i < count; ++i) {
    absl::string_view option;
    if (!r.ReadCString(&option)) return ParseError::kUnterminated;
    out->unrecognized_options.push_back(option);
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParsePasswordMessage(absl::Span<const uint8_t> body, absl::string_view* password) {
  return ParseSingleCString(body, password);
}

ParseError ParseSaslInitialResponse(absl::Span<const uint8_t> body, SaslInitialResponse* out) {
  BodyReader r(body);
  if (!r.ReadCString(&out->mechanism)) return ParseError::kUnterminated;
  uint32_t length;
  if (!r.ReadInt32(&length)) return ParseError::kTruncated;
  if (length == 0xffffffffu) {
    out->data.reset();
  } else if (length > 0x7fffffffu) {
    return ParseError::kBadValue;  // negative, and not -1
  } else {
    absl::string_view data;
    if (!r.ReadBytes(length, &data)) return ParseError::kTruncated;
    out->data = data;
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseSaslResponse(absl::Span<const uint8_t> body, absl::string_view* data) {
  BodyReader r(body);
  *data = r.Rest();
  return ParseError::kOk;
}

ParseError ParseQuery(absl::Span<const uint8_t> body, absl::string_view* sql) {
  return ParseSingleCString(body, sql);
}

ParseError ParseRowDescription(absl::Span<const uint8_t> body, std::vector<FieldDescription>* out) {
  out->clear();
  BodyReader r(body);
  uint16_t count;
  if (!r.ReadInt16(&count)) return ParseError::kTruncated;
  // Each field takes at least 19 bytes (NUL + 18 fixed); refuse counts the body can't hold
  // before reserving anything.
  if (count > r.remaining() / 19) return ParseError::kBadValue;
  out->reserve(count);
  for (uint16_t i = 0; i < count; ++i) {
    FieldDescription f;
    uint16_t size, format;
    uint32_t modifier;
    if (!r.ReadCString(&f.name)) return ParseError::kUnterminated;
    if (!r.ReadInt32(&f.table_oid) || !r.ReadInt16(&f.column) || !r.ReadInt32(&f.type_oid) ||
        !r.ReadInt16(&size) || !r.ReadInt32(&modifier) || !r.ReadInt16(&format)) {
      return ParseError::kTruncated;
    }
    f.type_size = static_cast<int16_t>(size);
    f.type_modifier = static_cast<int32_t>(modifier);
    f.format = format;
    out->push_back(f);
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

ParseError ParseDataRow(absl::Span<const uint8_t> body,
                        std::vector<std::optional<absl::string_view>>* out) {
  out->clear();
  BodyReader r(body);
  uint16_t count;
  if (!r.ReadInt16(&count)) return ParseError::kTruncated;
  if (count > r.remaining() / 4) return ParseError::kBadValue;  // 4 bytes per column at least
  out->reserve(count);
  for (uint16_t i = 0; i < count; ++i) {
    uint32_t length;
    if (!r.ReadInt32(&length)) return ParseError::kTruncated;
    if (length == 0xffffffffu) {
      out->push_back(std::nullopt);
      continue;
    }
    if (length > 0x7fffffffu) return ParseError::kBadValue;
    absl::string_view value;
    if (!r.ReadBytes(length, &value)) return ParseError::kTruncated;
    out->push_back(value);
  }
  return r.AtEnd() ? ParseError::kOk : ParseError::kTrailingBytes;
}

}  // namespace rb::proto
