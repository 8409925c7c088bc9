#include "proto/message_assembler.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "proto/messages.h"
#include "proto/startup.h"
#include "proto/wire.h"
#include "tests/catch.h"
#include "tests/proto/proto_test_util.h"

namespace rb::proto {
namespace {

using testing::B;
using testing::Bytes;
using testing::Rng;
using testing::Typed;

// What a run of the assembler produced: the messages, and how it ended.
struct Outcome {
  std::vector<Bytes> messages;
  std::vector<uint8_t> types;
  AssembleStatus final_status = AssembleStatus::kNeedMore;
  size_t consumed = 0;
  bool operator==(const Outcome&) const = default;
};

// Feeds `data` cut at `cuts`. Each Feed is called again on the rest of its chunk after a message
// completes, as the engine would.
Outcome Run(AssemblerMode mode, uint32_t max_length, const Bytes& data, const std::vector<size_t>& cuts) {
  MessageAssembler a(mode, max_length);
  Outcome out;
  std::vector<size_t> bounds = cuts;
  bounds.push_back(data.size());
  size_t from = 0;
  for (size_t to : bounds) {
    while (from < to) {
      AssembleResult r = a.Feed(data.data() + from, static_cast<uint32_t>(to - from));
      from += r.consumed;
      out.consumed += r.consumed;
      if (r.status == AssembleStatus::kReady) {
        out.messages.emplace_back(a.message().begin(), a.message().end());
        out.types.push_back(a.type());
        continue;
      }
      if (r.status != AssembleStatus::kNeedMore) {
        out.final_status = r.status;
        return out;
      }
      REQUIRE(from == to);  // kNeedMore consumed the whole chunk
    }
  }
  return out;
}

std::vector<Bytes> TypedMessages() {
  return {
      Typed('p', B().Str("secret password").Get()),
      Typed('p', B().Str("SCRAM-SHA-256").U32(8).Raw("n,,n=,r=").Get()),
      Typed('Q', B().Str("SHOW POOLS;").Get()),
      Typed('S', {}),
      Typed('X', {}),
  };
}

Bytes Concat(const std::vector<Bytes>& v) {
  Bytes out;
  for (const Bytes& b : v) out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST_CASE("assembler delivers typed messages the same when split at every byte offset") {
  const std::vector<Bytes> msgs = TypedMessages();
  const Bytes data = Concat(msgs);
  Outcome expected;
  expected.messages = msgs;
  expected.types = {'p', 'p', 'Q', 'S', 'X'};
  expected.consumed = data.size();
  REQUIRE(Run(AssemblerMode::kTyped, 1 << 20, data, {}) == expected);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    INFO("cut at " << cut);
    REQUIRE(Run(AssemblerMode::kTyped, 1 << 20, data, {cut}) == expected);
  }
  for (size_t a = 0; a <= data.size(); ++a) {
    for (size_t b = a; b <= data.size(); ++b) {
      REQUIRE(Run(AssemblerMode::kTyped, 1 << 20, data, {a, b}) == expected);
    }
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < data.size(); ++i) every_byte.push_back(i);
  REQUIRE(Run(AssemblerMode::kTyped, 1 << 20, data, every_byte) == expected);
}

TEST_CASE("assembler stops at the end of one message and leaves the rest of the chunk") {
  const Bytes ssl = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
  Bytes data = ssl;
  data.push_back(0x16);  // the TLS ClientHello that follows
  data.push_back(0x03);
  MessageAssembler a(AssemblerMode::kStartup, kMaxStartupPacketLength);
  AssembleResult r = a.Feed(data.data(), static_cast<uint32_t>(data.size()));
  REQUIRE(r.status == AssembleStatus::kReady);
  CHECK(r.consumed == 8);
  CHECK(testing::ToString(a.message()) == testing::ToString(ssl));
  CHECK(a.type() == 0);
  CHECK(a.body().size() == 4);  // the code
  CHECK_FALSE(a.InMessage());
}

TEST_CASE("assembler exposes type, body and header of a typed message") {
  const Bytes q = Typed('Q', B().Str("SELECT 1").Get());
  MessageAssembler a(AssemblerMode::kTyped, 1000);
  REQUIRE(a.Feed(q.data(), 3).status == AssembleStatus::kNeedMore);
  CHECK(a.InMessage());
  CHECK(a.header().size() == 3);
  AssembleResult r = a.Feed(q.data() + 3, static_cast<uint32_t>(q.size() - 3));
  REQUIRE(r.status == AssembleStatus::kReady);
  CHECK(a.ready());
  CHECK(a.type() == 'Q');
  CHECK(a.header().size() == 5);
  absl::string_view sql;
  REQUIRE(ParseQuery(a.body(), &sql) == ParseError::kOk);
  CHECK(sql == "SELECT 1");
  // The message stays readable until the next Feed.
  CHECK(a.message().size() == q.size());
  REQUIRE(a.Feed(q.data(), 0).status == AssembleStatus::kNeedMore);
  CHECK(a.message().empty());
}

TEST_CASE("assembler delivers an empty typed message as soon as its header is complete") {
  const Bytes sync = Typed('S', {});
  for (size_t cut = 0; cut <= sync.size(); ++cut) {
    Outcome o = Run(AssemblerMode::kTyped, 100, sync, {cut});
    REQUIRE(o.messages.size() == 1);
    REQUIRE(o.types[0] == 'S');
  }
}

TEST_CASE("assembler reports too long and bad lengths at every split, and stays failed") {
  struct Case {
    AssemblerMode mode;
    uint32_t max;
    Bytes bad;
    AssembleStatus status;
    size_t header;
  };
  const std::vector<Case> cases = {
      {AssemblerMode::kTyped, 100, B().U8('Q').U32(3).Raw("xxxx").Get(), AssembleStatus::kBadLength, 5},
      {AssemblerMode::kTyped, 100, B().U8('Q').U32(0).Raw("xxxx").Get(), AssembleStatus::kBadLength, 5},
      {AssemblerMode::kTyped, 100, B().U8('Q').U32(101).Raw("xxxx").Get(), AssembleStatus::kTooLong, 5},
      {AssemblerMode::kTyped, 0xffffffff, B().U8('Q').U32(0xffffffff).Raw("x").Get(), AssembleStatus::kTooLong, 5},
      {AssemblerMode::kStartup, kMaxStartupPacketLength, B().U32(7).U32(kProtocol30).Get(), AssembleStatus::kBadLength, 4},
      {AssemblerMode::kStartup, kMaxStartupPacketLength, B().U32(10001).U32(kProtocol30).Get(), AssembleStatus::kTooLong, 4},
      // A TLS ClientHello sent where a startup packet belongs reads as a huge length.
      {AssemblerMode::kStartup, kMaxStartupPacketLength, B().U8(0x16).U8(3).U8(1).U8(2).U32(0).Get(), AssembleStatus::kTooLong, 4},
  };
  for (const Case& c : cases) {
    // A good message first, so the failure comes mid-stream.
    Bytes good = c.mode == AssemblerMode::kTyped ? Typed('S', {}) : Bytes{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    Bytes data = good;
    data.insert(data.end(), c.bad.begin(), c.bad.end());
    for (size_t cut = 0; cut <= data.size(); ++cut) {
      INFO("case " << absl::BytesToHexString(testing::ToString(c.bad)) << " cut at " << cut);
      Outcome o = Run(c.mode, c.max, data, {cut});
      REQUIRE(o.messages.size() == 1);
      REQUIRE(o.final_status == c.status);
      REQUIRE(o.consumed == good.size() + c.header);
    }
    MessageAssembler a(c.mode, c.max);
    AssembleResult r = a.Feed(c.bad.data(), static_cast<uint32_t>(c.bad.size()));
    REQUIRE(r.status == c.status);
    CHECK(a.header().size() == c.header);
    if (c.mode == AssemblerMode::kStartup) {
      CHECK(BadPacketHeaderMessage(a.header()).rfind("bad packet header: '", 0) == 0);
    }
    AssembleResult again = a.Feed(good.data(), static_cast<uint32_t>(good.size()));
    CHECK(again.status == c.status);
    CHECK(again.consumed == 0);
    a.Reset();
    CHECK(a.Feed(good.data(), static_cast<uint32_t>(good.size())).status == AssembleStatus::kReady);
  }
}

TEST_CASE("assembler accepts a message exactly at the limit") {
  const Bytes m = Typed('d', Bytes(96, 1));  // length field 100
  CHECK(Run(AssemblerMode::kTyped, 100, m, {50}).messages.size() == 1);
  CHECK(Run(AssemblerMode::kTyped, 99, m, {50}).final_status == AssembleStatus::kTooLong);
}

TEST_CASE("assembler switches from startup packets to typed messages between messages") {
  std::string startup;
  const StartupParam params[] = {{"user", "u"}};
  AppendStartupMessage(&startup, params);
  std::string pw;
  AppendPasswordMessage(&pw, "hunter2");
  const Bytes data = testing::ToBytes(startup + pw);

  MessageAssembler a(AssemblerMode::kStartup, kMaxStartupPacketLength);
  AssembleResult r = a.Feed(data.data(), static_cast<uint32_t>(data.size()));
  REQUIRE(r.status == AssembleStatus::kReady);
  REQUIRE(r.consumed == startup.size());
  StartupPacket s;
  REQUIRE(ParseStartupPacket(a.message().data(), static_cast<uint32_t>(a.message().size()), &s) ==
          StartupError::kOk);
  a.SetMode(AssemblerMode::kTyped, 1 << 20);
  AssembleResult r2 = a.Feed(data.data() + r.consumed, static_cast<uint32_t>(data.size() - r.consumed));
  REQUIRE(r2.status == AssembleStatus::kReady);
  CHECK(a.type() == 'p');
  absl::string_view password;
  REQUIRE(ParsePasswordMessage(a.body(), &password) == ParseError::kOk);
  CHECK(password == "hunter2");
}

TEST_CASE("assembler survives 100,000 junk streams and answers the same however they are cut") {
  std::vector<Bytes> samples = TypedMessages();
  samples.push_back(Concat(TypedMessages()));
  Rng rng(0xa55e);
  for (int i = 0; i < 100000; ++i) {
    const bool typed = rng.Below(2) == 0;
    const Bytes data = testing::Mutate(rng, samples, 80);
    const uint32_t max = typed ? 16 + rng.Below(200) : kMaxStartupPacketLength;
    const AssemblerMode mode = typed ? AssemblerMode::kTyped : AssemblerMode::kStartup;
    Outcome whole = Run(mode, max, data, {});
    std::vector<size_t> cuts;
    for (size_t at = rng.Below(6) + 1; at < data.size(); at += rng.Below(10) + 1) cuts.push_back(at);
    Outcome split = Run(mode, max, data, cuts);
    INFO("input " << i << ": " << absl::BytesToHexString(testing::ToString(data)));
    REQUIRE(whole == split);
    // Every message delivered is exactly as long as it says.
    for (const Bytes& m : whole.messages) {
      const size_t at = typed ? 1 : 0;
      REQUIRE(m.size() >= at + 4);
      uint32_t length = (uint32_t{m[at]} << 24) | (uint32_t{m[at + 1]} << 16) |
                        (uint32_t{m[at + 2]} << 8) | m[at + 3];
      REQUIRE(m.size() == length + at);
      REQUIRE(length <= max);
    }
  }
}

}  // namespace
}  // namespace rb::proto
