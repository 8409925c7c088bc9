#include "proto/startup.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/message_assembler.h"
#include "proto/messages.h"
#include "proto/wire.h"
#include "tests/catch.h"
#include "tests/proto/proto_test_util.h"

namespace rb::proto {
namespace {

using testing::B;
using testing::Bytes;
using testing::Rng;

// An untyped packet: length (counting itself), code, payload.
Bytes Packet(uint32_t code, const Bytes& payload) {
  return B().U32(static_cast<uint32_t>(payload.size() + 8)).U32(code).Add(payload).Get();
}

Bytes Params(std::initializer_list<std::pair<const char*, const char*>> kv) {
  B b;
  for (const auto& [k, v] : kv) b.Str(k).Str(v);
  b.U8(0);
  return b.Get();
}

StartupError Parse(const Bytes& p, StartupPacket* out) {
  return ParseStartupPacket(p.data(), static_cast<uint32_t>(p.size()), out);
}

TEST_CASE("startup parser reads a StartupMessage's parameters in order") {
  const Bytes p = Packet(kProtocol30, Params({{"user", "alice"},
                                              {"database", "shop"},
                                              {"application_name", "psql"},
                                              {"options", "-c search_path=app"},
                                              {"replication", "database"},
                                              {"client_encoding", "UTF8"}}));
  StartupPacket s;
  REQUIRE(Parse(p, &s) == StartupError::kOk);
  CHECK(s.kind() == StartupKind::kStartupMessage);
  CHECK(s.code() == 196608);
  REQUIRE(s.param_count() == 6);
  CHECK(s.key(0) == "user");
  CHECK(s.value(0) == "alice");
  CHECK(s.key(5) == "client_encoding");
  CHECK(s.value(5) == "UTF8");
  CHECK(s.user() == "alice");
  CHECK(s.database() == "shop");
  CHECK(s.DatabaseOrUser() == "shop");
  CHECK(s.application_name() == "psql");
  CHECK(s.options() == "-c search_path=app");
  CHECK(s.replication() == "database");
  CHECK(s.Find("client_encoding") == std::optional<absl::string_view>("UTF8"));
  CHECK_FALSE(s.Find("TimeZone").has_value());
  CHECK_FALSE(s.NeedsNegotiation());
}

TEST_CASE("startup parser keeps empty values and falls back to the user name for the database") {
  StartupPacket s;
  REQUIRE(Parse(Packet(kProtocol30, Params({{"user", "bob"}, {"database", ""}, {"options", ""}})), &s) ==
          StartupError::kOk);
  CHECK(s.database().empty());
  CHECK(s.DatabaseOrUser() == "bob");
  CHECK(s.Find("options") == std::optional<absl::string_view>(""));
}

TEST_CASE("startup parser reads SSLRequest and GSSENCRequest from their exact bytes") {
  StartupPacket s;
  const Bytes ssl = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
  REQUIRE(Parse(ssl, &s) == StartupError::kOk);
  CHECK(s.kind() == StartupKind::kSslRequest);
  const Bytes gss = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
  REQUIRE(Parse(gss, &s) == StartupError::kOk);
  CHECK(s.kind() == StartupKind::kGssEncRequest);
}

TEST_CASE("startup parser rejects an SSLRequest with a payload") {
  StartupPacket s;
  CHECK(Parse(Packet(kSslRequestCode, {1, 2, 3, 4}), &s) == StartupError::kBadLength);
  CHECK(Parse(Packet(kGssEncRequestCode, {0}), &s) == StartupError::kBadLength);
}

TEST_CASE("startup parser reads a CancelRequest with our 8-byte key") {
  const Bytes p = {0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0};
  StartupPacket s;
  REQUIRE(Parse(p, &s) == StartupError::kOk);
  CHECK(s.kind() == StartupKind::kCancelRequest);
  CHECK(s.cancel_pid() == 0x12345678u);
  CHECK(s.CancelKeyIsOurs());
  CHECK(testing::ToString(s.cancel_key_bytes()) == testing::ToString(Bytes(p.begin() + 8, p.end())));
}

TEST_CASE("startup parser reads a protocol 3.2 CancelRequest with a long key but marks it foreign") {
  for (uint32_t secret : {5u, 32u, 256u}) {
    Bytes payload = B().U32(77).Get();
    for (uint32_t i = 0; i < secret; ++i) payload.push_back(static_cast<uint8_t>(i));
    StartupPacket s;
    REQUIRE(Parse(Packet(kCancelRequestCode, payload), &s) == StartupError::kOk);
    CHECK(s.kind() == StartupKind::kCancelRequest);
    CHECK(s.cancel_pid() == 77);
    CHECK(s.cancel_key_bytes().size() == 4 + secret);
    CHECK_FALSE(s.CancelKeyIsOurs());
  }
}

TEST_CASE("startup parser rejects a CancelRequest with a secret under 4 or over 256 bytes") {
  StartupPacket s;
  for (size_t payload : {0u, 3u, 4u, 7u, 261u, 400u}) {
    INFO("payload " << payload);
    const Bytes p = Packet(kCancelRequestCode, Bytes(payload, 1));
    REQUIRE(Parse(p, &s) == StartupError::kBadCancelRequest);
    CHECK(StartupErrorMessage(StartupError::kBadCancelRequest, s) == "bad cancel request");
    CHECK_FALSE(StartupErrorNotifiesClient(StartupError::kBadCancelRequest));
  }
}

TEST_CASE("startup parser rejects protocol 2 with a typed error") {
  StartupPacket s;
  const Bytes p = Packet(ProtocolVersion(2, 0), Bytes(64, 'a'));
  REQUIRE(Parse(p, &s) == StartupError::kProtocolV2);
  CHECK(StartupErrorMessage(StartupError::kProtocolV2, s) == "old V2 protocol not supported");
  CHECK(StartupErrorSqlState(StartupError::kProtocolV2) == "08P01");
  CHECK(StartupErrorNotifiesClient(StartupError::kProtocolV2));
}

TEST_CASE("startup parser rejects other majors and unknown codes as a bad packet header") {
  StartupPacket s;
  for (uint32_t code : {ProtocolVersion(1, 0), ProtocolVersion(4, 0), ProtocolVersion(0, 3),
                        80877105u, 0xffffffffu}) {
    INFO("code " << code);
    const Bytes p = Packet(code, Params({{"user", "x"}}));
    REQUIRE(Parse(p, &s) == StartupError::kUnknownCode);
    CHECK(StartupErrorMessage(StartupError::kUnknownCode, s) ==
          absl::StrCat("bad packet header: '", absl::BytesToHexString(testing::ToString(
                                                   Bytes(p.begin(), p.begin() + 8))),
                       "'"));
  }
  REQUIRE(Parse(Packet(ProtocolVersion(4, 0), {}), &s) == StartupError::kUnknownCode);
  CHECK(StartupErrorMessage(StartupError::kUnknownCode, s) == "bad packet header: '0000000800040000'");
}

TEST_CASE("startup parser rejects lengths below 8, above 10000, or not matching the packet") {
  StartupPacket s;
  CHECK(Parse({}, &s) == StartupError::kBadLength);
  CHECK(Parse({0, 0, 0, 7, 0, 3, 0}, &s) == StartupError::kBadLength);
  CHECK(Parse({0, 0, 0, 4, 0, 3, 0, 0}, &s) == StartupError::kBadLength);
  CHECK(StartupErrorMessage(StartupError::kBadLength, s) == "bad packet header: '0000000400030000'");
  // Declared 20, handed 16.
  CHECK(Parse(B().U32(20).U32(kProtocol30).Str("user").Raw("ab").Get(), &s) == StartupError::kBadLength);

  // 8 header + "user\0u\0" 7 + "pad\0" 4 + value + NUL + terminator = 21 + value.
  const Bytes exactly =
      Packet(kProtocol30, B().Str("user").Str("u").Str("pad").Str(std::string(9979, 'p')).U8(0).Get());
  REQUIRE(exactly.size() == 10000);
  CHECK(Parse(exactly, &s) == StartupError::kOk);
  CHECK(s.Find("pad")->size() == 9979);

  const Bytes over =
      Packet(kProtocol30, B().Str("user").Str("u").Str("pad").Str(std::string(9980, 'p')).U8(0).Get());
  REQUIRE(over.size() == 10001);
  CHECK(Parse(over, &s) == StartupError::kTooLong);
  CHECK(StartupErrorMessage(StartupError::kTooLong, s) == "bad packet header: '0000271100030000'");
}

TEST_CASE("startup parser rejects a missing terminator") {
  StartupPacket s;
  // The last value's NUL is missing.
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Raw("bob").Get()), &s) == StartupError::kUnterminated);
  // Pairs complete, but no empty key at the end.
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Str("bob").Get()), &s) == StartupError::kUnterminated);
  // No parameters at all, not even the terminator.
  CHECK(Parse(Packet(kProtocol30, {}), &s) == StartupError::kUnterminated);
  // A key without its NUL.
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Str("bob").Raw("data").Get()), &s) ==
        StartupError::kUnterminated);
  CHECK(StartupErrorMessage(StartupError::kUnterminated, s) ==
        "invalid startup packet layout: expected terminator as last byte");
}

TEST_CASE("startup parser rejects odd pairs and bytes after the terminator") {
  StartupPacket s;
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Str("bob").Str("database").Get()), &s) ==
        StartupError::kMissingValue);
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Str("bob").U8(0).Raw("junk").Get()), &s) ==
        StartupError::kTrailingBytes);
  CHECK(Parse(Packet(kProtocol30, B().Str("user").Str("bob").U8(0).U8(0).Get()), &s) ==
        StartupError::kTrailingBytes);
}

TEST_CASE("startup parser requires a non-empty user") {
  StartupPacket s;
  CHECK(Parse(Packet(kProtocol30, Params({{"database", "db"}})), &s) == StartupError::kMissingUser);
  CHECK(StartupErrorMessage(StartupError::kMissingUser, s) == "no username supplied");
  CHECK(Parse(Packet(kProtocol30, Params({{"user", ""}, {"database", "db"}})), &s) ==
        StartupError::kMissingUser);
  CHECK(Parse(Packet(kProtocol30, B().U8(0).Get()), &s) == StartupError::kMissingUser);
}

TEST_CASE("startup parser keeps the last of a repeated key, as PostgreSQL does, among few or many parameters") {
  StartupPacket s;
  REQUIRE(Parse(Packet(kProtocol30, Params({{"user", "a"}, {"database", "d"}, {"user", "b"}})), &s) ==
          StartupError::kOk);
  CHECK(s.user() == "b");
  CHECK(s.param_count() == 2);
  CHECK(s.key(0) == "database");

  // Enough keys to take the hashing path.
  B many;
  many.Str("user").Str("u");
  for (int i = 0; i < 40; ++i) many.Str(absl::StrCat("k", i)).Str("v");
  Bytes unique = Packet(kProtocol30, B().Add(many.Get()).U8(0).Get());
  REQUIRE(Parse(unique, &s) == StartupError::kOk);
  CHECK(s.param_count() == 41);
  Bytes dup = Packet(kProtocol30, B().Add(many.Get()).Str("k17").Str("w").U8(0).Get());
  REQUIRE(Parse(dup, &s) == StartupError::kOk);
  CHECK(s.param_count() == 41);
  CHECK(s.Find("k17") == absl::string_view("w"));
  CHECK(s.key(40) == "k17");
}

TEST_CASE("startup parser asks for NegotiateProtocolVersion on a newer minor") {
  StartupPacket s;
  REQUIRE(Parse(Packet(kProtocol32, Params({{"user", "u"}})), &s) == StartupError::kOk);
  CHECK(s.NeedsNegotiation());
  CHECK(s.ProtocolOptions().empty());
  std::string out;
  s.AppendNegotiateProtocolVersion(&out);
  CHECK(testing::ToBytes(out) == B().U8('v').U32(12).U32(0).U32(0).Get());
}

TEST_CASE("startup parser lists unknown _pq_ options for NegotiateProtocolVersion") {
  StartupPacket s;
  REQUIRE(Parse(Packet(kProtocol30, Params({{"user", "u"}, {"_pq_.compression", "on"},
                                            {"database", "d"}, {"_pq_.x", ""}})),
                &s) == StartupError::kOk);
  CHECK(s.NeedsNegotiation());
  auto options = s.ProtocolOptions();
  REQUIRE(options.size() == 2);
  CHECK(options[0] == "_pq_.compression");
  CHECK(options[1] == "_pq_.x");
  CHECK(StartupPacket::IsProtocolOption("_pq_.x"));
  CHECK_FALSE(StartupPacket::IsProtocolOption("_pq_"));
  std::string out;
  s.AppendNegotiateProtocolVersion(&out);
  CHECK(testing::ToBytes(out) ==
        B().U8('v').U32(4 + 8 + 17 + 7).U32(0).U32(2).Str("_pq_.compression").Str("_pq_.x").Get());
}

TEST_CASE("startup parser result is reusable and owns its strings") {
  StartupPacket s;
  {
    Bytes p = Packet(kProtocol30, Params({{"user", "first"}, {"database", "one"}}));
    REQUIRE(Parse(p, &s) == StartupError::kOk);
    std::fill(p.begin(), p.end(), 0xee);  // the receive buffer is reused
  }
  CHECK(s.user() == "first");
  CHECK(s.database() == "one");
  REQUIRE(Parse(Packet(kProtocol30, Params({{"user", "second"}})), &s) == StartupError::kOk);
  CHECK(s.user() == "second");
  CHECK(s.database().empty());
  CHECK(s.param_count() == 1);
}

TEST_CASE("startup error texts follow PgBouncer") {
  StartupPacket s;
  CHECK(BadPacketHeaderMessage(Bytes{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}) ==
        "bad packet header: '1603010200010001'");
  CHECK(BadPacketHeaderMessage(Bytes{0, 0}) == "bad packet header: '0000'");
  for (int e = 1; e <= static_cast<int>(StartupError::kMissingUser); ++e) {
    StartupError err = static_cast<StartupError>(e);
    CHECK_FALSE(StartupErrorMessage(err, s).empty());
    CHECK(StartupErrorSqlState(err) == "08P01");
    CHECK(std::string(StartupErrorName(err)) != "unknown");
  }
}

// --- Assembler + parser, split at every offset ---------------------------------------------------

std::vector<Bytes> LoginPackets() {
  return {
      {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f},  // SSLRequest
      Packet(kProtocol32, Params({{"user", "alice"}, {"database", "shop"}, {"_pq_.opt", "1"},
                                  {"application_name", "test"}})),
      Packet(kCancelRequestCode, B().U32(1).U32(2).Get()),
      Packet(kProtocol30, Params({{"user", "x"}})),
  };
}

struct Parsed {
  StartupError error;
  StartupKind kind;
  std::vector<std::pair<std::string, std::string>> params;
  bool negotiation;
  bool operator==(const Parsed&) const = default;
};

Parsed ParseOne(absl::Span<const uint8_t> p) {
  StartupPacket s;
  Parsed out;
  out.error = ParseStartupPacket(p.data(), static_cast<uint32_t>(p.size()), &s);
  out.kind = s.kind();
  for (size_t i = 0; i < s.param_count(); ++i) out.params.emplace_back(s.key(i), s.value(i));
  out.negotiation = out.error == StartupError::kOk && s.NeedsNegotiation();
  return out;
}

// Feeds `data` to a startup-mode assembler cut at `cuts`, parsing every packet it produces.
std::vector<Parsed> AssembleAndParse(const Bytes& data, const std::vector<size_t>& cuts) {
  MessageAssembler a(AssemblerMode::kStartup, kMaxStartupPacketLength);
  std::vector<Parsed> out;
  std::vector<size_t> bounds = cuts;
  bounds.push_back(data.size());
  size_t from = 0;
  for (size_t to : bounds) {
    while (from < to) {
      AssembleResult r = a.Feed(data.data() + from, static_cast<uint32_t>(to - from));
      from += r.consumed;
      if (r.status == AssembleStatus::kReady) {
        out.push_back(ParseOne(a.message()));
      } else {
        REQUIRE(r.status == AssembleStatus::kNeedMore);
        REQUIRE(from == to);
      }
    }
  }
  REQUIRE_FALSE(a.InMessage());
  return out;
}

TEST_CASE("startup packets parse the same when split at every byte offset") {
  Bytes data;
  std::vector<Parsed> expected;
  for (const Bytes& p : LoginPackets()) {
    data.insert(data.end(), p.begin(), p.end());
    expected.push_back(ParseOne(p));
  }
  REQUIRE(expected[1].negotiation);
  REQUIRE(AssembleAndParse(data, {}) == expected);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    INFO("cut at " << cut);
    REQUIRE(AssembleAndParse(data, {cut}) == expected);
  }
  for (size_t a = 0; a <= data.size(); a += 3) {
    for (size_t b = a; b <= data.size(); ++b) REQUIRE(AssembleAndParse(data, {a, b}) == expected);
  }
}

TEST_CASE("startup parser survives 100,000 junk packets with typed errors") {
  std::vector<Bytes> samples = LoginPackets();
  samples.push_back(Packet(kProtocol30, Params({{"user", "u"}, {"database", "d"}, {"options", "-c a=b"}})));
  samples.push_back(Packet(ProtocolVersion(2, 0), Bytes(20, 1)));
  samples.push_back(Packet(kCancelRequestCode, Bytes(40, 2)));
  Rng rng(0x57a27);
  StartupPacket s;
  int ok = 0;
  for (int i = 0; i < 100000; ++i) {
    Bytes p = testing::Mutate(rng, samples, 48);
    // Half the time, make the length field agree with the buffer so the parser gets past it.
    if (rng.Below(2) && p.size() >= 4) {
      uint32_t n = static_cast<uint32_t>(p.size());
      p[0] = static_cast<uint8_t>(n >> 24);
      p[1] = static_cast<uint8_t>(n >> 16);
      p[2] = static_cast<uint8_t>(n >> 8);
      p[3] = static_cast<uint8_t>(n);
    }
    StartupError e = ParseStartupPacket(p.data(), static_cast<uint32_t>(p.size()), &s);
    REQUIRE(static_cast<int>(e) <= static_cast<int>(StartupError::kMissingUser));
    if (e == StartupError::kOk) {
      ++ok;
      // A valid result is consistent with itself.
      if (s.kind() == StartupKind::kStartupMessage) {
        REQUIRE_FALSE(s.user().empty());
        for (size_t k = 0; k < s.param_count(); ++k) REQUIRE_FALSE(s.key(k).empty());
      }
    } else {
      REQUIRE_FALSE(StartupErrorMessage(e, s).empty());
    }
  }
  CHECK(ok > 1000);
}

}  // namespace
}  // namespace rb::proto
