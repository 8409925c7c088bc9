#include "proto/messages.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "proto/wire.h"
#include "tests/catch.h"
#include "tests/proto/proto_test_util.h"

namespace rb::proto {
namespace {

using testing::B;
using testing::Bytes;
using testing::Rng;
using testing::ToBytes;

// The body of the single typed message in `s`, after checking its header.
absl::Span<const uint8_t> BodyOf(const std::string& s, uint8_t type) {
  REQUIRE(s.size() >= 5);
  REQUIRE(static_cast<uint8_t>(s[0]) == type);
  REQUIRE(LoadBE32(reinterpret_cast<const uint8_t*>(s.data()) + 1) == s.size() - 1);
  return AsBytes(absl::string_view(s).substr(5));
}

// --- Exact bytes ---------------------------------------------------------------------------------

TEST_CASE("builders produce PgBouncer's exact FATAL error bytes") {
  std::string out;
  AppendPoolerError(&out, "no username supplied");
  const Bytes expected = B().U8('E').U32(4 + 7 + 7 + 7 + 22 + 1)
                             .U8('S').Str("FATAL").U8('V').Str("FATAL").U8('C').Str("08P01")
                             .U8('M').Str("no username supplied").U8(0).Get();
  CHECK(ToBytes(out) == expected);
}

TEST_CASE("builders produce exact bytes for the login replies") {
  std::string out;
  AppendAuthenticationOk(&out);
  CHECK(ToBytes(out) == Bytes{'R', 0, 0, 0, 8, 0, 0, 0, 0});

  out.clear();
  AppendAuthenticationCleartextPassword(&out);
  CHECK(ToBytes(out) == Bytes{'R', 0, 0, 0, 8, 0, 0, 0, 3});

  out.clear();
  AppendAuthenticationMd5Password(&out, {0xde, 0xad, 0xbe, 0xef});
  CHECK(ToBytes(out) == Bytes{'R', 0, 0, 0, 12, 0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef});

  out.clear();
  const absl::string_view mechs[] = {"SCRAM-SHA-256"};
  AppendAuthenticationSasl(&out, mechs);
  CHECK(ToBytes(out) == B().U8('R').U32(23).U32(10).Str("SCRAM-SHA-256").U8(0).Get());

  out.clear();
  AppendAuthenticationSaslContinue(&out, "r=abc,s=c2FsdA==,i=4096");
  CHECK(ToBytes(out) == B().U8('R').U32(31).U32(11).Raw("r=abc,s=c2FsdA==,i=4096").Get());

  out.clear();
  AppendAuthenticationSaslFinal(&out, "v=sig");
  CHECK(ToBytes(out) == B().U8('R').U32(13).U32(12).Raw("v=sig").Get());

  out.clear();
  AppendParameterStatus(&out, "client_encoding", "UTF8");
  CHECK(ToBytes(out) == B().U8('S').U32(25).Str("client_encoding").Str("UTF8").Get());

  out.clear();
  AppendBackendKeyData(&out, {0x01020304, 0xa0b0c0d0});
  CHECK(ToBytes(out) == Bytes{'K', 0, 0, 0, 12, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0});

  out.clear();
  AppendReadyForQuery(&out, kTxnIdle);
  CHECK(ToBytes(out) == Bytes{'Z', 0, 0, 0, 5, 'I'});

  out.clear();
  AppendEncryptionRefused(&out);
  CHECK(out == "N");
}

TEST_CASE("builders produce exact bytes for what the pooler sends to PostgreSQL") {
  std::string out;
  const StartupParam params[] = {{"user", "app"}, {"database", "db"}};
  AppendStartupMessage(&out, params);
  CHECK(ToBytes(out) == B().U32(30).U32(196608).Str("user").Str("app").Str("database").Str("db").U8(0).Get());

  out.clear();
  AppendCancelRequest(&out, {1234, 0xcafebabe});
  CHECK(ToBytes(out) == Bytes{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x04, 0xd2, 0xca, 0xfe, 0xba, 0xbe});

  out.clear();
  AppendPasswordMessage(&out, "md5abc");
  CHECK(ToBytes(out) == B().U8('p').U32(11).Str("md5abc").Get());

  out.clear();
  AppendSaslInitialResponse(&out, "SCRAM-SHA-256", "n,,n=,r=nonce");
  CHECK(ToBytes(out) == B().U8('p').U32(35).Str("SCRAM-SHA-256").U32(13).Raw("n,,n=,r=nonce").Get());

  out.clear();
  AppendSaslInitialResponse(&out, "SCRAM-SHA-256", std::nullopt);
  CHECK(ToBytes(out) == B().U8('p').U32(22).Str("SCRAM-SHA-256").U32(0xffffffff).Get());

  out.clear();
  AppendSaslResponse(&out, "c=biws,r=x,p=y");
  CHECK(ToBytes(out) == B().U8('p').U32(18).Raw("c=biws,r=x,p=y").Get());

  out.clear();
  AppendQuery(&out, "DISCARD ALL");
  CHECK(ToBytes(out) == B().U8('Q').U32(16).Str("DISCARD ALL").Get());

  out.clear();
  AppendTerminate(&out);
  CHECK(ToBytes(out) == Bytes{'X', 0, 0, 0, 4});
}

TEST_CASE("builders produce exact bytes for an admin console result") {
  std::string out;
  const Column columns[] = {{"database", ColumnType::kText}, {"cl_active", ColumnType::kInt4}};
  AppendRowDescription(&out, columns);
  const Bytes expected = B().U8('T').U32(4 + 2 + (9 + 18) + (10 + 18)).U16(2)
                             .Str("database").U32(0).U16(0).U32(25).U16(0xffff).U32(0xffffffff).U16(0)
                             .Str("cl_active").U32(0).U16(0).U32(23).U16(4).U32(0xffffffff).U16(0)
                             .Get();
  CHECK(ToBytes(out) == expected);

  out.clear();
  DataRowWriter row(&out);
  row.AddText("pgbouncer");
  row.AddNull();
  row.AddInt(-12);
  row.AddBool(true);
  row.Finish();
  CHECK(ToBytes(out) == B().U8('D').U32(4 + 2 + 13 + 4 + 7 + 5).U16(4)
                            .U32(9).Raw("pgbouncer").U32(0xffffffff).U32(3).Raw("-12").U32(1).Raw("t")
                            .Get());

  out.clear();
  AppendCommandComplete(&out, "SHOW");
  CHECK(ToBytes(out) == B().U8('C').U32(9).Str("SHOW").Get());

  out.clear();
  AppendEmptyQueryResponse(&out);
  CHECK(ToBytes(out) == Bytes{'I', 0, 0, 0, 4});
}

TEST_CASE("column types carry PostgreSQL's OIDs and sizes") {
  CHECK(ColumnTypeOid(ColumnType::kText) == 25);
  CHECK(ColumnTypeOid(ColumnType::kInt4) == 23);
  CHECK(ColumnTypeOid(ColumnType::kInt8) == 20);
  CHECK(ColumnTypeOid(ColumnType::kNumeric) == 1700);
  CHECK(ColumnTypeOid(ColumnType::kTimestamptz) == 1184);
  CHECK(ColumnTypeOid(ColumnType::kBool) == 16);
  CHECK(ColumnTypeOid(ColumnType::kBytea) == 17);
  CHECK(ColumnTypeSize(ColumnType::kText) == -1);
  CHECK(ColumnTypeSize(ColumnType::kInt4) == 4);
  CHECK(ColumnTypeSize(ColumnType::kInt8) == 8);
  CHECK(ColumnTypeSize(ColumnType::kNumeric) == -1);
  CHECK(ColumnTypeSize(ColumnType::kTimestamptz) == 8);
  CHECK(ColumnTypeSize(ColumnType::kBool) == 1);
  CHECK(ColumnTypeSize(ColumnType::kBytea) == -1);
}

TEST_CASE("builders append, so one buffer carries many messages and keeps its capacity") {
  std::string out;
  out.reserve(256);
  const char* before = out.data();
  AppendAuthenticationOk(&out);
  AppendParameterStatus(&out, "a", "b");
  AppendReadyForQuery(&out, 'I');
  CHECK(out.size() == 9 + 9 + 6);
  CHECK(out.data() == before);
  out.clear();
  AppendTerminate(&out);
  CHECK(out.data() == before);
}

TEST_CASE("C strings are cut at an embedded NUL so later fields stay aligned") {
  std::string out;
  AppendParameterStatus(&out, absl::string_view("ab\0cd", 5), "v");
  absl::string_view name, value;
  REQUIRE(ParseParameterStatus(BodyOf(out, 'S'), &name, &value) == ParseError::kOk);
  CHECK(name == "ab");
  CHECK(value == "v");
}

TEST_CASE("NoticeResponse uses the same fields as ErrorResponse") {
  std::string out;
  ErrorFields f{"WARNING", "WARNING", "01000", "pool is full", "", ""};
  AppendNoticeResponse(&out, f);
  ErrorFields parsed;
  REQUIRE(ParseErrorFields(BodyOf(out, 'N'), &parsed) == ParseError::kOk);
  CHECK(parsed == f);
}

// --- Round trips -------------------------------------------------------------------------------

TEST_CASE("ErrorResponse round-trips with and without detail and hint") {
  const std::vector<ErrorFields> cases = {
      {"FATAL", "FATAL", "08P01", "bad packet", "", ""},
      {"ERREUR", "ERROR", "42P01", "la relation n'existe pas", "detail text", "try this"},
      {"ERROR", "ERROR", "53300", "no more connections allowed (max_client_conn)", "", "hint only"},
  };
  for (const ErrorFields& f : cases) {
    std::string out;
    AppendErrorResponse(&out, f);
    ErrorFields parsed;
    REQUIRE(ParseErrorFields(BodyOf(out, 'E'), &parsed) == ParseError::kOk);
    CHECK(parsed == f);
  }
  // V defaults to S when not given.
  std::string out;
  AppendErrorResponse(&out, {"FATAL", "", "08P01", "x", "", ""});
  ErrorFields parsed;
  REQUIRE(ParseErrorFields(BodyOf(out, 'E'), &parsed) == ParseError::kOk);
  CHECK(parsed.severity_nonlocalized == "FATAL");
}

TEST_CASE("error field parser skips unknown fields as the protocol asks") {
  const Bytes body = B().U8('S').Str("ERROR").U8('P').Str("12").U8('W').Str("context").U8('C').Str("22012")
                         .U8('M').Str("division by zero").U8('F').Str("int.c").U8('L').Str("841").U8(0).Get();
  ErrorFields f;
  REQUIRE(ParseErrorFields(body, &f) == ParseError::kOk);
  CHECK(f.severity == "ERROR");
  CHECK(f.sqlstate == "22012");
  CHECK(f.message == "division by zero");
  CHECK(f.severity_nonlocalized.empty());
}

TEST_CASE("ParameterStatus, BackendKeyData, ReadyForQuery and CommandComplete round-trip") {
  std::string out;
  AppendParameterStatus(&out, "TimeZone", "");
  absl::string_view name, value;
  REQUIRE(ParseParameterStatus(BodyOf(out, 'S'), &name, &value) == ParseError::kOk);
  CHECK(name == "TimeZone");
  CHECK(value.empty());

  out.clear();
  AppendBackendKeyData(&out, {0xffffffff, 0});
  BackendKey key;
  REQUIRE(ParseBackendKeyData(BodyOf(out, 'K'), &key) == ParseError::kOk);
  CHECK(key == BackendKey{0xffffffff, 0});

  for (uint8_t status : {kTxnIdle, kTxnInBlock, kTxnFailed}) {
    out.clear();
    AppendReadyForQuery(&out, status);
    uint8_t parsed;
    REQUIRE(ParseReadyForQuery(BodyOf(out, 'Z'), &parsed) == ParseError::kOk);
    CHECK(parsed == status);
  }

  out.clear();
  AppendCommandComplete(&out, "INSERT 0 1");
  absl::string_view tag;
  REQUIRE(ParseCommandComplete(BodyOf(out, 'C'), &tag) == ParseError::kOk);
  CHECK(tag == "INSERT 0 1");
}

TEST_CASE("Authentication requests round-trip for every code the pooler answers") {
  AuthRequest r;
  std::string out;

  AppendAuthenticationOk(&out);
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kOk);

  out.clear();
  AppendAuthenticationCleartextPassword(&out);
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kCleartextPassword);

  out.clear();
  AppendAuthenticationMd5Password(&out, {1, 2, 3, 4});
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kMd5Password);
  CHECK(r.md5_salt == std::array<uint8_t, 4>{1, 2, 3, 4});

  out.clear();
  const absl::string_view mechs[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  AppendAuthenticationSasl(&out, mechs);
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kSasl);
  REQUIRE(r.mechanisms.size() == 2);
  CHECK(r.mechanisms[0] == "SCRAM-SHA-256-PLUS");
  CHECK(r.mechanisms[1] == "SCRAM-SHA-256");

  out.clear();
  AppendAuthenticationSaslContinue(&out, "r=n,s=s,i=1");
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kSaslContinue);
  CHECK(r.data == "r=n,s=s,i=1");
  CHECK(r.mechanisms.empty());

  out.clear();
  AppendAuthenticationSaslFinal(&out, "");
  REQUIRE(ParseAuthentication(BodyOf(out, 'R'), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kSaslFinal);
  CHECK(r.data.empty());

  // A code we can't answer still parses; refusing it is the engine's call.
  REQUIRE(ParseAuthentication(B().U32(7).Get(), &r) == ParseError::kOk);
  CHECK(r.code == AuthCode::kGss);
  const Bytes unknown = B().U32(99).Raw("xyz").Get();
  REQUIRE(ParseAuthentication(unknown, &r) == ParseError::kOk);
  CHECK(static_cast<uint32_t>(r.code) == 99);
  CHECK(r.data == "xyz");
}

TEST_CASE("client password and SASL messages round-trip") {
  std::string out;
  AppendPasswordMessage(&out, "md5f0e1d2c3b4a5968778695a4b3c2d1e0f");
  absl::string_view password;
  REQUIRE(ParsePasswordMessage(BodyOf(out, 'p'), &password) == ParseError::kOk);
  CHECK(password == "md5f0e1d2c3b4a5968778695a4b3c2d1e0f");

  for (std::optional<absl::string_view> data :
       {std::optional<absl::string_view>("n,,n=,r=rOprNGfwEbeRWgbNEkqO"),
        std::optional<absl::string_view>(""), std::optional<absl::string_view>()}) {
    out.clear();
    AppendSaslInitialResponse(&out, "SCRAM-SHA-256", data);
    SaslInitialResponse parsed;
    REQUIRE(ParseSaslInitialResponse(BodyOf(out, 'p'), &parsed) == ParseError::kOk);
    CHECK(parsed == SaslInitialResponse{"SCRAM-SHA-256", data});
  }

  out.clear();
  const std::string binary("c=biws\0\xff", 8);
  AppendSaslResponse(&out, binary);
  absl::string_view sasl;
  REQUIRE(ParseSaslResponse(BodyOf(out, 'p'), &sasl) == ParseError::kOk);
  CHECK(sasl == binary);
}

TEST_CASE("Query, NegotiateProtocolVersion, RowDescription and DataRow round-trip") {
  std::string out;
  AppendQuery(&out, "SHOW STATS;");
  absl::string_view sql;
  REQUIRE(ParseQuery(BodyOf(out, 'Q'), &sql) == ParseError::kOk);
  CHECK(sql == "SHOW STATS;");

  out.clear();
  AppendQuery(&out, "");
  REQUIRE(ParseQuery(BodyOf(out, 'Q'), &sql) == ParseError::kOk);
  CHECK(sql.empty());

  out.clear();
  const absl::string_view options[] = {"_pq_.a", "_pq_.b"};
  AppendNegotiateProtocolVersion(&out, 0, options);
  NegotiateProtocol np;
  REQUIRE(ParseNegotiateProtocolVersion(BodyOf(out, 'v'), &np) == ParseError::kOk);
  CHECK(np.newest_minor == 0);
  CHECK(np.unrecognized_options == std::vector<absl::string_view>{"_pq_.a", "_pq_.b"});

  out.clear();
  const Column columns[] = {{"a", ColumnType::kText},    {"b", ColumnType::kInt4},
                            {"c", ColumnType::kInt8},    {"d", ColumnType::kNumeric},
                            {"e", ColumnType::kTimestamptz}, {"f", ColumnType::kBool},
                            {"g", ColumnType::kBytea}};
  AppendRowDescription(&out, columns);
  std::vector<FieldDescription> fields;
  REQUIRE(ParseRowDescription(BodyOf(out, 'T'), &fields) == ParseError::kOk);
  REQUIRE(fields.size() == 7);
  for (size_t i = 0; i < fields.size(); ++i) {
    CHECK(fields[i].name == columns[i].name);
    CHECK(fields[i].type_oid == ColumnTypeOid(columns[i].type));
    CHECK(fields[i].type_size == ColumnTypeSize(columns[i].type));
    CHECK(fields[i].type_modifier == -1);
    CHECK(fields[i].format == 0);
  }

  out.clear();
  const std::vector<std::optional<absl::string_view>> row = {"x", std::nullopt, "", "12345678901234567890"};
  AppendDataRow(&out, row);
  std::vector<std::optional<absl::string_view>> parsed_row;
  REQUIRE(ParseDataRow(BodyOf(out, 'D'), &parsed_row) == ParseError::kOk);
  CHECK(parsed_row == row);

  out.clear();
  DataRowWriter w(&out);
  w.AddUint(18446744073709551615ull);
  w.AddInt(-9223372036854775807ll - 1);
  w.AddBool(false);
  w.Finish();
  REQUIRE(ParseDataRow(BodyOf(out, 'D'), &parsed_row) == ParseError::kOk);
  CHECK(parsed_row == std::vector<std::optional<absl::string_view>>{
                          "18446744073709551615", "-9223372036854775808", "f"});
}

// --- Typed errors ------------------------------------------------------------------------------

TEST_CASE("parsers reject malformed bodies with typed errors") {
  ErrorFields f;
  CHECK(ParseErrorFields({}, &f) == ParseError::kTruncated);
  CHECK(ParseErrorFields(B().U8('S').Str("ERROR").Get(), &f) == ParseError::kTruncated);
  CHECK(ParseErrorFields(B().U8('S').Raw("ERROR").Get(), &f) == ParseError::kUnterminated);
  CHECK(ParseErrorFields(B().U8('S').Str("ERROR").U8(0).U8('x').Get(), &f) == ParseError::kTrailingBytes);

  absl::string_view a, b;
  CHECK(ParseParameterStatus(B().Str("name").Get(), &a, &b) == ParseError::kUnterminated);
  CHECK(ParseParameterStatus(B().Str("name").Raw("value").Get(), &a, &b) == ParseError::kUnterminated);
  CHECK(ParseParameterStatus(B().Str("n").Str("v").U8(0).Get(), &a, &b) == ParseError::kTrailingBytes);

  BackendKey key;
  CHECK(ParseBackendKeyData(B().U32(1).Get(), &key) == ParseError::kTruncated);
  CHECK(ParseBackendKeyData(B().U32(1).U32(2).U32(3).Get(), &key) == ParseError::kTrailingBytes);

  uint8_t status;
  CHECK(ParseReadyForQuery({}, &status) == ParseError::kTruncated);
  CHECK(ParseReadyForQuery(B().U8('I').U8('I').Get(), &status) == ParseError::kTrailingBytes);
  CHECK(ParseReadyForQuery(B().U8('X').Get(), &status) == ParseError::kBadValue);

  AuthRequest r;
  CHECK(ParseAuthentication(B().U8(0).U8(0).Get(), &r) == ParseError::kTruncated);
  CHECK(ParseAuthentication(B().U32(0).U8(1).Get(), &r) == ParseError::kTrailingBytes);
  CHECK(ParseAuthentication(B().U32(3).U8(1).Get(), &r) == ParseError::kTrailingBytes);
  CHECK(ParseAuthentication(B().U32(5).U8(1).U8(2).Get(), &r) == ParseError::kTruncated);
  CHECK(ParseAuthentication(B().U32(5).U32(1).U8(2).Get(), &r) == ParseError::kTrailingBytes);
  CHECK(ParseAuthentication(B().U32(10).Str("SCRAM-SHA-256").Get(), &r) == ParseError::kUnterminated);
  CHECK(ParseAuthentication(B().U32(10).Raw("SCRAM").Get(), &r) == ParseError::kUnterminated);
  CHECK(ParseAuthentication(B().U32(10).Str("SCRAM-SHA-256").U8(0).U8(7).Get(), &r) ==
        ParseError::kTrailingBytes);

  NegotiateProtocol np;
  CHECK(ParseNegotiateProtocolVersion(B().U32(0).Get(), &np) == ParseError::kTruncated);
  CHECK(ParseNegotiateProtocolVersion(B().U32(0).U32(0xffffffff).Get(), &np) == ParseError::kBadValue);
  CHECK(ParseNegotiateProtocolVersion(B().U32(0).U32(2).Str("a").Raw("b").Get(), &np) ==
        ParseError::kUnterminated);
  CHECK(ParseNegotiateProtocolVersion(B().U32(0).U32(1).Str("a").Str("b").Get(), &np) ==
        ParseError::kTrailingBytes);

  absl::string_view s;
  CHECK(ParsePasswordMessage({}, &s) == ParseError::kUnterminated);
  CHECK(ParsePasswordMessage(B().Raw("secret").Get(), &s) == ParseError::kUnterminated);
  CHECK(ParsePasswordMessage(B().Str("secret").U8('x').Get(), &s) == ParseError::kTrailingBytes);
  // The first NUL must be the last byte, as PostgreSQL's pq_getmsgend insists.
  CHECK(ParsePasswordMessage(B().Str("sec").Str("ret").Get(), &s) == ParseError::kTrailingBytes);
  CHECK(ParseQuery(B().Raw("SELECT 1").Get(), &s) == ParseError::kUnterminated);
  CHECK(ParseQuery(B().Str("SELECT 1").Str("").Get(), &s) == ParseError::kTrailingBytes);
  CHECK(ParseCommandComplete({}, &s) == ParseError::kUnterminated);

  SaslInitialResponse sir;
  CHECK(ParseSaslInitialResponse(B().Raw("SCRAM").Get(), &sir) == ParseError::kUnterminated);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U8(0).U8(0).Get(), &sir) == ParseError::kTruncated);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U32(5).Raw("abcd").Get(), &sir) == ParseError::kTruncated);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U32(0x80000000).Get(), &sir) == ParseError::kBadValue);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U32(0xfffffffe).Get(), &sir) == ParseError::kBadValue);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U32(1).Raw("ab").Get(), &sir) == ParseError::kTrailingBytes);
  CHECK(ParseSaslInitialResponse(B().Str("SCRAM").U32(0xffffffff).U8(1).Get(), &sir) ==
        ParseError::kTrailingBytes);

  std::vector<FieldDescription> fields;
  CHECK(ParseRowDescription({}, &fields) == ParseError::kTruncated);
  CHECK(ParseRowDescription(B().U16(1).Str("a").U32(0).Get(), &fields) == ParseError::kBadValue);
  CHECK(ParseRowDescription(B().U16(1).Str("a").Add(Bytes(17, 0)).U8(0).Get(), &fields) ==
        ParseError::kOk);
  CHECK(ParseRowDescription(B().U16(1).Raw("a").Add(Bytes(18, 1)).Get(), &fields) == ParseError::kUnterminated);
  CHECK(ParseRowDescription(B().U16(1).Str("abc").Add(Bytes(16, 0)).Get(), &fields) == ParseError::kTruncated);
  CHECK(ParseRowDescription(B().U16(0xffff).Add(Bytes(40, 0)).Get(), &fields) == ParseError::kBadValue);

  std::vector<std::optional<absl::string_view>> row;
  CHECK(ParseDataRow(B().U8(0).Get(), &row) == ParseError::kTruncated);
  CHECK(ParseDataRow(B().U16(1).U32(10).Raw("abc").Get(), &row) == ParseError::kTruncated);
  CHECK(ParseDataRow(B().U16(1).U32(0xfffffffe).Get(), &row) == ParseError::kBadValue);
  CHECK(ParseDataRow(B().U16(1).U32(0).U8(0).Get(), &row) == ParseError::kTrailingBytes);
  CHECK(ParseDataRow(B().U16(500).U32(0).Get(), &row) == ParseError::kBadValue);

  for (int e = 0; e <= static_cast<int>(ParseError::kBadValue); ++e) {
    CHECK(std::string(ParseErrorName(static_cast<ParseError>(e))) != "unknown");
  }
}

// --- Junk ------------------------------------------------------------------------------------------

// Each parser gets 100,000 inputs: random bytes and mutations of valid bodies. A result is
// either a typed error or a value whose views all lie inside the input.
TEST_CASE("every message parser survives 100,000 junk bodies") {
  struct Parser {
    const char* name;
    std::vector<Bytes> samples;
    std::function<ParseError(absl::Span<const uint8_t>)> parse;
  };
  auto body = [](const std::string& msg) { return Bytes(msg.begin() + 5, msg.end()); };
  auto built = [&](auto fn) {
    std::string s;
    fn(&s);
    return body(s);
  };
  // Every string_view a parser hands out must point into the body it was given.
  auto inside = [](absl::Span<const uint8_t> in, absl::string_view v) {
    const char* lo = reinterpret_cast<const char*>(in.data());
    return v.empty() || (v.data() >= lo && v.data() + v.size() <= lo + in.size());
  };

  std::vector<Parser> parsers;
  parsers.push_back({"ErrorResponse",
                     {built([](std::string* s) { AppendPoolerError(s, "x"); }),
                      built([](std::string* s) {
                        AppendErrorResponse(s, {"ERROR", "ERROR", "42601", "syntax", "detail", "hint"});
                      })},
                     [&](absl::Span<const uint8_t> in) {
                       ErrorFields f;
                       ParseError e = ParseErrorFields(in, &f);
                       if (e == ParseError::kOk) {
                         REQUIRE((inside(in, f.severity) && inside(in, f.sqlstate) && inside(in, f.message) &&
                                  inside(in, f.detail) && inside(in, f.hint)));
                       }
                       return e;
                     }});
  parsers.push_back({"ParameterStatus",
                     {built([](std::string* s) { AppendParameterStatus(s, "DateStyle", "ISO, MDY"); })},
                     [&](absl::Span<const uint8_t> in) {
                       absl::string_view n, v;
                       ParseError e = ParseParameterStatus(in, &n, &v);
                       if (e == ParseError::kOk) REQUIRE((inside(in, n) && inside(in, v)));
                       return e;
                     }});
  parsers.push_back({"BackendKeyData",
                     {built([](std::string* s) { AppendBackendKeyData(s, {1, 2}); })},
                     [](absl::Span<const uint8_t> in) {
                       BackendKey k;
                       return ParseBackendKeyData(in, &k);
                     }});
  parsers.push_back({"ReadyForQuery",
                     {built([](std::string* s) { AppendReadyForQuery(s, 'T'); })},
                     [](absl::Span<const uint8_t> in) {
                       uint8_t st;
                       return ParseReadyForQuery(in, &st);
                     }});
  parsers.push_back({"CommandComplete",
                     {built([](std::string* s) { AppendCommandComplete(s, "SELECT 1"); })},
                     [&](absl::Span<const uint8_t> in) {
                       absl::string_view t;
                       ParseError e = ParseCommandComplete(in, &t);
                       if (e == ParseError::kOk) REQUIRE(inside(in, t));
                       return e;
                     }});
  parsers.push_back({"Authentication",
                     {built([](std::string* s) { AppendAuthenticationOk(s); }),
                      built([](std::string* s) { AppendAuthenticationMd5Password(s, {1, 2, 3, 4}); }),
                      built([](std::string* s) {
                        const absl::string_view m[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
                        AppendAuthenticationSasl(s, m);
                      }),
                      built([](std::string* s) { AppendAuthenticationSaslContinue(s, "r=a,s=b,i=4096"); }),
                      built([](std::string* s) { AppendAuthenticationSaslFinal(s, "v=x"); })},
                     [&](absl::Span<const uint8_t> in) {
                       AuthRequest r;
                       ParseError e = ParseAuthentication(in, &r);
                       if (e == ParseError::kOk) {
                         REQUIRE(inside(in, r.data));
                         for (absl::string_view m : r.mechanisms) REQUIRE((inside(in, m) && !m.empty()));
                       }
                       return e;
                     }});
  parsers.push_back({"NegotiateProtocolVersion",
                     {built([](std::string* s) {
                       const absl::string_view o[] = {"_pq_.a", "_pq_.bb"};
                       AppendNegotiateProtocolVersion(s, 0, o);
                     })},
                     [&](absl::Span<const uint8_t> in) {
                       NegotiateProtocol np;
                       ParseError e = ParseNegotiateProtocolVersion(in, &np);
                       if (e == ParseError::kOk) {
                         for (absl::string_view o : np.unrecognized_options) REQUIRE(inside(in, o));
                       }
                       return e;
                     }});
  parsers.push_back({"PasswordMessage",
                     {built([](std::string* s) { AppendPasswordMessage(s, "secret"); })},
                     [&](absl::Span<const uint8_t> in) {
                       absl::string_view p;
                       ParseError e = ParsePasswordMessage(in, &p);
                       if (e == ParseError::kOk) REQUIRE((inside(in, p) && p.size() + 1 == in.size()));
                       return e;
                     }});
  parsers.push_back({"SASLInitialResponse",
                     {built([](std::string* s) { AppendSaslInitialResponse(s, "SCRAM-SHA-256", "n,,n=,r=abc"); }),
                      built([](std::string* s) { AppendSaslInitialResponse(s, "SCRAM-SHA-256", std::nullopt); })},
                     [&](absl::Span<const uint8_t> in) {
                       SaslInitialResponse r;
                       ParseError e = ParseSaslInitialResponse(in, &r);
                       if (e == ParseError::kOk) {
                         REQUIRE(inside(in, r.mechanism));
                         if (r.data) REQUIRE(inside(in, *r.data));
                       }
                       return e;
                     }});
  parsers.push_back({"SASLResponse",
                     {built([](std::string* s) { AppendSaslResponse(s, "c=biws,r=abc,p=xyz"); })},
                     [&](absl::Span<const uint8_t> in) {
                       absl::string_view d;
                       ParseError e = ParseSaslResponse(in, &d);
                       REQUIRE(e == ParseError::kOk);  // any bytes are a SASLResponse
                       REQUIRE(d.size() == in.size());
                       return e;
                     }});
  parsers.push_back({"Query",
                     {built([](std::string* s) { AppendQuery(s, "SHOW POOLS"); })},
                     [&](absl::Span<const uint8_t> in) {
                       absl::string_view q;
                       ParseError e = ParseQuery(in, &q);
                       if (e == ParseError::kOk) REQUIRE(inside(in, q));
                       return e;
                     }});
  parsers.push_back({"RowDescription",
                     {built([](std::string* s) {
                       const Column c[] = {{"a", ColumnType::kText}, {"bb", ColumnType::kInt8}};
                       AppendRowDescription(s, c);
                     })},
                     [&](absl::Span<const uint8_t> in) {
                       std::vector<FieldDescription> f;
                       ParseError e = ParseRowDescription(in, &f);
                       if (e == ParseError::kOk) {
                         for (const auto& d : f) REQUIRE(inside(in, d.name));
                       }
                       return e;
                     }});
  parsers.push_back({"DataRow",
                     {built([](std::string* s) {
                       const std::vector<std::optional<absl::string_view>> v = {"a", std::nullopt, "ccc"};
                       AppendDataRow(s, v);
                     })},
                     [&](absl::Span<const uint8_t> in) {
                       std::vector<std::optional<absl::string_view>> r;
                       ParseError e = ParseDataRow(in, &r);
                       if (e == ParseError::kOk) {
                         for (const auto& v : r) {
                           if (v) REQUIRE(inside(in, *v));
                         }
                       }
                       return e;
                     }});

  uint64_t seed = 0xfeed;
  for (Parser& p : parsers) {
    INFO("parser " << p.name);
    Rng rng(seed++);
    int ok = 0, failed = 0;
    for (int i = 0; i < 100000; ++i) {
      const Bytes in = testing::Mutate(rng, p.samples, 40);
      // Parse from a buffer of exactly the input's size, so ASan sees any overread.
      std::unique_ptr<uint8_t[]> exact(new uint8_t[in.size()]);
      std::copy(in.begin(), in.end(), exact.get());
      ParseError e = p.parse(absl::Span<const uint8_t>(exact.get(), in.size()));
      REQUIRE(static_cast<int>(e) <= static_cast<int>(ParseError::kBadValue));
      (e == ParseError::kOk ? ok : failed)++;
    }
    CHECK(ok > 100);
    if (std::string(p.name) != "SASLResponse") CHECK(failed > 10000);
  }
}

}  // namespace
}  // namespace rb::proto

namespace rb::proto {
namespace {

TEST_CASE("wire constants match the protocol's numbers and big-endian helpers round-trip") {
  STATIC_REQUIRE(kProtocol30 == 196608);
  STATIC_REQUIRE(ProtocolMajor(kProtocol32) == 3);
  STATIC_REQUIRE(ProtocolMinor(kProtocol32) == 2);
  STATIC_REQUIRE(ProtocolVersion(1234, 5679) == kSslRequestCode);
  STATIC_REQUIRE(ProtocolVersion(1234, 5680) == kGssEncRequestCode);
  STATIC_REQUIRE(ProtocolVersion(1234, 5678) == kCancelRequestCode);
  uint8_t buf[4];
  StoreBE32(buf, 0x01020304);
  CHECK(buf[0] == 1);
  CHECK(buf[3] == 4);
  CHECK(LoadBE32(buf) == 0x01020304u);
  StoreBE16(buf, 0xfffe);
  CHECK(LoadBE16(buf) == 0xfffe);
  std::string s;
  AppendBE32(&s, 0xdeadbeef);
  AppendBE16(&s, 0x0102);
  CHECK(ToBytes(s) == Bytes{0xde, 0xad, 0xbe, 0xef, 1, 2});
}

}  // namespace
}  // namespace rb::proto
