#include "proto/frame_scanner.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/messages.h"
#include "proto/wire.h"
#include "tests/catch.h"
#include "tests/proto/proto_test_util.h"

namespace rb::proto {
namespace {

using testing::B;
using testing::Bytes;
using testing::Rng;
using testing::Typed;

constexpr uint32_t kStash = 256;
constexpr uint32_t kMaxBody = 1 << 20;

// Records every visitor call as text, so runs can be compared event by event.
struct Recorder {
  std::set<uint8_t> collect;  // types whose bodies are collected
  uint8_t stop_at = 0;        // OnType refuses this type (0: none)
  std::vector<std::string> events;
  // Where each collected body pointed, to tell in-chunk bodies from stashed ones.
  std::vector<const uint8_t*> body_ptrs;

  bool OnType(uint8_t type) {
    if (stop_at != 0 && type == stop_at) return false;
    events.push_back(absl::StrCat("type ", std::string(1, static_cast<char>(type))));
    return true;
  }
  bool OnHeader(uint8_t type, uint32_t body_len) {
    events.push_back(absl::StrCat("header ", std::string(1, static_cast<char>(type)), " ", body_len));
    return collect.count(type) != 0;
  }
  void OnBody(uint8_t type, const uint8_t* body, uint32_t body_len) {
    body_ptrs.push_back(body);
    events.push_back(absl::StrCat(
        "body ", std::string(1, static_cast<char>(type)), " ",
        absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(body), body_len))));
  }
  void OnEnd(uint8_t type) {
    events.push_back(absl::StrCat("end ", std::string(1, static_cast<char>(type))));
  }
};

struct Msg {
  uint8_t type;
  Bytes body;
};

// A realistic stream from a server: the tail of a login, then a query with rows, an error, and
// the empty-bodied messages of the extended protocol.
std::vector<Msg> ServerMessages() {
  std::vector<Msg> m;
  m.push_back({'R', B().U32(0).Get()});
  m.push_back({'S', B().Str("client_encoding").Str("UTF8").Get()});
  m.push_back({'S', B().Str("server_version").Str("15.6").Get()});
  m.push_back({'K', B().U32(4242).U32(0xdeadbeef).Get()});
  m.push_back({'Z', B().U8('I').Get()});
  m.push_back({'1', {}});  // ParseComplete
  m.push_back({'2', {}});  // BindComplete
  m.push_back({'T', B().U16(2)
                        .Str("id").U32(0).U16(0).U32(23).U16(4).U32(0xffffffff).U16(0)
                        .Str("name").U32(0).U16(0).U32(25).U16(0xffff).U32(0xffffffff).U16(0)
                        .Get()});
  for (int i = 0; i < 3; ++i) {
    std::string id = absl::StrCat(i);
    m.push_back({'D', B().U16(2).U32(static_cast<uint32_t>(id.size())).Raw(id)
                          .U32(i == 1 ? 0xffffffffu : 5).Raw(i == 1 ? "" : "alice").Get()});
  }
  m.push_back({'C', B().Str("SELECT 3").Get()});
  m.push_back({'Z', B().U8('T').Get()});
  m.push_back({'E', B().U8('S').Str("ERROR").U8('V').Str("ERROR").U8('C').Str("42P01")
                        .U8('M').Str("relation \"nope\" does not exist").U8(0).Get()});
  m.push_back({'n', {}});  // NoData
  m.push_back({'I', {}});  // EmptyQueryResponse
  m.push_back({'Z', B().U8('E').Get()});
  m.push_back({'3', {}});  // CloseComplete
  m.push_back({'Z', B().U8('I').Get()});
  return m;
}

Bytes Concat(const std::vector<Msg>& msgs) {
  Bytes out;
  for (const Msg& m : msgs) {
    Bytes t = Typed(m.type, m.body);
    out.insert(out.end(), t.begin(), t.end());
  }
  return out;
}

// The events a correct scanner must report, derived from the message list alone.
std::vector<std::string> ExpectedEvents(const std::vector<Msg>& msgs, const std::set<uint8_t>& collect) {
  Recorder r;
  for (const Msg& m : msgs) {
    (void)r.OnType(m.type);
    (void)r.OnHeader(m.type, static_cast<uint32_t>(m.body.size()));
    if (collect.count(m.type) && m.body.size() <= kStash) r.OnBody(m.type, m.body.data(), static_cast<uint32_t>(m.body.size()));
    r.OnEnd(m.type);
  }
  return r.events;
}

std::set<uint8_t> ServerCollect() { return {'Z', 'S', 'K', 'E', '1'}; }

// Feeds `data` cut at the given offsets; returns the events, and checks every chunk is consumed.
template <uint32_t kN>
std::vector<std::string> ScanCuts(const Bytes& data, const std::vector<size_t>& cuts,
                                  const std::set<uint8_t>& collect) {
  FrameScanner<kN> scanner;
  Recorder r;
  r.collect = collect;
  size_t from = 0;
  std::vector<size_t> bounds = cuts;
  bounds.push_back(data.size());
  for (size_t to : bounds) {
    ScanResult res = scanner.Scan(data.data() + from, static_cast<uint32_t>(to - from), kMaxBody, r);
    REQUIRE(res.status == ScanStatus::kOk);
    REQUIRE(res.consumed == to - from);
    from = to;
  }
  CHECK_FALSE(scanner.InMessage());
  return r.events;
}

TEST_CASE("frame scanner stays 12 bytes for connections that never collect") {
  STATIC_REQUIRE(sizeof(FrameScanner<0>) == 12);
  STATIC_REQUIRE(sizeof(FrameScanner<64>) <= 12 + 64);
}

TEST_CASE("frame scanner reports identical events for a server stream split at every byte offset") {
  const std::vector<Msg> msgs = ServerMessages();
  const Bytes data = Concat(msgs);
  const auto expected = ExpectedEvents(msgs, ServerCollect());
  REQUIRE(ScanCuts<kStash>(data, {}, ServerCollect()) == expected);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    INFO("cut at " << cut);
    REQUIRE(ScanCuts<kStash>(data, {cut}, ServerCollect()) == expected);
  }
}

TEST_CASE("frame scanner reports identical events for every pair of cuts") {
  std::vector<Msg> msgs = ServerMessages();
  msgs.resize(8);  // up to the RowDescription: ~130 bytes, ~8,000 pairs
  const Bytes data = Concat(msgs);
  const auto expected = ExpectedEvents(msgs, ServerCollect());
  for (size_t a = 0; a <= data.size(); ++a) {
    for (size_t b = a; b <= data.size(); ++b) {
      INFO("cuts at " << a << " and " << b);
      REQUIRE(ScanCuts<kStash>(data, {a, b}, ServerCollect()) == expected);
    }
  }
}

TEST_CASE("frame scanner reports identical events one byte at a time and in random chunks") {
  const std::vector<Msg> msgs = ServerMessages();
  const Bytes data = Concat(msgs);
  const auto expected = ExpectedEvents(msgs, ServerCollect());

  std::vector<size_t> every_byte;
  for (size_t i = 1; i < data.size(); ++i) every_byte.push_back(i);
  REQUIRE(ScanCuts<kStash>(data, every_byte, ServerCollect()) == expected);

  Rng rng(20240517);
  for (int run = 0; run < 2000; ++run) {
    std::vector<size_t> cuts;
    size_t at = 0;
    while (true) {
      at += 1 + rng.Below(run % 2 ? 8 : 64);
      if (at >= data.size()) break;
      cuts.push_back(at);
    }
    INFO("run " << run);
    REQUIRE(ScanCuts<kStash>(data, cuts, ServerCollect()) == expected);
  }
}

TEST_CASE("frame scanner without a stash reports every boundary and skips every body") {
  const std::vector<Msg> msgs = ServerMessages();
  const Bytes data = Concat(msgs);
  const auto expected = ExpectedEvents(msgs, {});
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    REQUIRE(ScanCuts<0>(data, {cut}, {}) == expected);
  }
}

TEST_CASE("frame scanner InMessage and CurrentType are right at every cut") {
  const std::vector<Msg> msgs = ServerMessages();
  const Bytes data = Concat(msgs);
  // Message boundaries, and the type of the message covering each byte.
  std::set<size_t> boundaries{0};
  std::vector<uint8_t> owner;
  for (const Msg& m : msgs) {
    for (size_t i = 0; i < m.body.size() + 5; ++i) owner.push_back(m.type);
    boundaries.insert(owner.size());
  }
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    FrameScanner<kStash> scanner;
    Recorder r;
    r.collect = ServerCollect();
    ScanResult res = scanner.Scan(data.data(), static_cast<uint32_t>(cut), kMaxBody, r);
    REQUIRE(res.status == ScanStatus::kOk);
    INFO("cut at " << cut);
    const bool inside = boundaries.count(cut) == 0;
    REQUIRE(scanner.InMessage() == inside);
    if (inside) REQUIRE(scanner.CurrentType() == owner[cut - 1]);
  }
}

TEST_CASE("frame scanner hands collected bodies in place when whole and from the stash when split") {
  const Bytes z = Typed('Z', B().U8('I').Get());
  const Bytes s = Typed('S', B().Str("TimeZone").Str("Europe/Berlin").Get());
  Bytes data = z;
  data.insert(data.end(), s.begin(), s.end());

  SECTION("whole") {
    FrameScanner<kStash> scanner;
    Recorder r;
    r.collect = {'Z', 'S'};
    REQUIRE(scanner.Scan(data.data(), static_cast<uint32_t>(data.size()), kMaxBody, r).status ==
            ScanStatus::kOk);
    REQUIRE(r.body_ptrs.size() == 2);
    CHECK(r.body_ptrs[0] == data.data() + 5);
    CHECK(r.body_ptrs[1] == data.data() + z.size() + 5);
  }
  SECTION("split inside the ParameterStatus body, over three chunks") {
    FrameScanner<kStash> scanner;
    Recorder r;
    r.collect = {'Z', 'S'};
    const size_t a = z.size() + 8, b = z.size() + 15;
    REQUIRE(scanner.Scan(data.data(), static_cast<uint32_t>(a), kMaxBody, r).status == ScanStatus::kOk);
    REQUIRE(scanner.Scan(data.data() + a, static_cast<uint32_t>(b - a), kMaxBody, r).status == ScanStatus::kOk);
    REQUIRE(scanner.Scan(data.data() + b, static_cast<uint32_t>(data.size() - b), kMaxBody, r).status ==
            ScanStatus::kOk);
    REQUIRE(r.body_ptrs.size() == 2);
    CHECK(r.body_ptrs[0] == data.data() + 5);
    // Not in any of the chunks: the stash.
    CHECK((r.body_ptrs[1] < data.data() || r.body_ptrs[1] >= data.data() + data.size()));
    CHECK(r.events == ExpectedEvents({{'Z', B().U8('I').Get()},
                                      {'S', B().Str("TimeZone").Str("Europe/Berlin").Get()}},
                                     {'Z', 'S'}));
  }
  SECTION("split right after the header: the body is whole in the next chunk, in place") {
    FrameScanner<kStash> scanner;
    Recorder r;
    r.collect = {'S'};
    const size_t a = z.size() + 5;
    REQUIRE(scanner.Scan(data.data(), static_cast<uint32_t>(a), kMaxBody, r).status == ScanStatus::kOk);
    REQUIRE(scanner.Scan(data.data() + a, static_cast<uint32_t>(data.size() - a), kMaxBody, r).status ==
            ScanStatus::kOk);
    REQUIRE(r.body_ptrs.size() == 1);
    CHECK(r.body_ptrs[0] == data.data() + a);
  }
}

TEST_CASE("frame scanner skips a body too big for its stash instead of overflowing it") {
  const Bytes big = Typed('E', Bytes(100, 'x'));
  for (size_t cut = 0; cut <= big.size(); ++cut) {
    FrameScanner<16> scanner;
    Recorder r;
    r.collect = {'E'};
    REQUIRE(scanner.Scan(big.data(), static_cast<uint32_t>(cut), kMaxBody, r).status == ScanStatus::kOk);
    REQUIRE(scanner.Scan(big.data() + cut, static_cast<uint32_t>(big.size() - cut), kMaxBody, r).status ==
            ScanStatus::kOk);
    REQUIRE(r.events == std::vector<std::string>{"type E", "header E 100", "end E"});
  }
}

TEST_CASE("frame scanner collects an empty body even without a stash") {
  const Bytes data = Typed('1', {});
  FrameScanner<0> scanner;
  Recorder r;
  r.collect = {'1'};
  REQUIRE(scanner.Scan(data.data(), 5, kMaxBody, r).status == ScanStatus::kOk);
  CHECK(r.events == std::vector<std::string>{"type 1", "header 1 0", "body 1 ", "end 1"});
}

TEST_CASE("frame scanner stops before Terminate wherever the stream is cut") {
  // A client's Query, Sync, then Terminate, then bytes that must never be looked at.
  Bytes data = Typed('Q', B().Str("SELECT 1").Get());
  const Bytes sync = Typed('S', {});
  data.insert(data.end(), sync.begin(), sync.end());
  const size_t x_at = data.size();
  const Bytes term = Typed('X', {});
  data.insert(data.end(), term.begin(), term.end());
  data.push_back('Q');

  for (size_t cut = 0; cut <= data.size(); ++cut) {
    INFO("cut at " << cut);
    FrameScanner<0> scanner;
    Recorder r;
    r.stop_at = 'X';
    size_t total = 0;
    ScanResult first = scanner.Scan(data.data(), static_cast<uint32_t>(cut), kMaxBody, r);
    total += first.consumed;
    if (cut <= x_at) {
      REQUIRE(first.status == ScanStatus::kOk);
      REQUIRE(first.consumed == cut);
      ScanResult second = scanner.Scan(data.data() + cut, static_cast<uint32_t>(data.size() - cut), kMaxBody, r);
      REQUIRE(second.status == ScanStatus::kStopped);
      total += second.consumed;
    } else {
      REQUIRE(first.status == ScanStatus::kStopped);
    }
    REQUIRE(total == x_at);
    REQUIRE_FALSE(scanner.InMessage());
    REQUIRE(r.events == std::vector<std::string>{"type Q", "header Q 9", "end Q", "type S",
                                                 "header S 0", "end S"});
    // Asking again stops again, at the same byte: the Terminate is never half-consumed.
    ScanResult again = scanner.Scan(data.data() + x_at, static_cast<uint32_t>(data.size() - x_at), kMaxBody, r);
    REQUIRE(again.status == ScanStatus::kStopped);
    REQUIRE(again.consumed == 0);
  }
}

TEST_CASE("frame scanner reports kBadLength for lengths below 4 or above the limit") {
  const uint32_t max_body = 1000;
  const Bytes ok_prefix = Typed('Z', B().U8('I').Get());
  for (uint32_t length : {0u, 1u, 2u, 3u, max_body + 5, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    Bytes data = ok_prefix;
    Bytes bad = B().U8('D').U32(length).Raw("xxxxxxxx").Get();
    data.insert(data.end(), bad.begin(), bad.end());
    const size_t header_end = ok_prefix.size() + 5;
    for (size_t cut = 0; cut <= data.size(); ++cut) {
      INFO("length " << length << " cut at " << cut);
      FrameScanner<kStash> scanner;
      Recorder r;
      r.collect = {'Z'};
      ScanResult a = scanner.Scan(data.data(), static_cast<uint32_t>(cut), max_body, r);
      size_t total = a.consumed;
      ScanStatus status = a.status;
      if (status == ScanStatus::kOk) {
        ScanResult b = scanner.Scan(data.data() + cut, static_cast<uint32_t>(data.size() - cut), max_body, r);
        total += b.consumed;
        status = b.status;
      }
      REQUIRE(status == ScanStatus::kBadLength);
      REQUIRE(total == header_end);
      REQUIRE(scanner.bad());
      // The bad message's header was reported no further than its type byte.
      REQUIRE(r.events.back() == "type D");
      // Sticky: the stream is unusable from here on.
      ScanResult again = scanner.Scan(ok_prefix.data(), static_cast<uint32_t>(ok_prefix.size()), max_body, r);
      REQUIRE(again.status == ScanStatus::kBadLength);
      REQUIRE(again.consumed == 0);
    }
  }
}

TEST_CASE("frame scanner accepts a body exactly at the limit") {
  const uint32_t max_body = 300;
  const Bytes data = Typed('d', Bytes(max_body, 7));
  FrameScanner<0> scanner;
  Recorder r;
  ScanResult res = scanner.Scan(data.data(), static_cast<uint32_t>(data.size()), max_body, r);
  CHECK(res.status == ScanStatus::kOk);
  CHECK(res.consumed == data.size());
  CHECK_FALSE(scanner.bad());
}

// Runs the scanner over `data` cut at `cuts` until it reports a status other than kOk; returns
// the events, that status, and the total bytes consumed.
struct RunResult {
  std::vector<std::string> events;
  ScanStatus status = ScanStatus::kOk;
  size_t consumed = 0;
  bool in_message = false;
  bool operator==(const RunResult&) const = default;
};

RunResult RunChunks(const Bytes& data, const std::vector<size_t>& cuts, uint32_t max_body) {
  FrameScanner<32> scanner;
  Recorder r;
  r.collect = {'Z', 'S', 'K', 'E', 'n'};
  r.stop_at = 'X';
  RunResult out;
  size_t from = 0;
  std::vector<size_t> bounds = cuts;
  bounds.push_back(data.size());
  for (size_t to : bounds) {
    ScanResult res = scanner.Scan(data.data() + from, static_cast<uint32_t>(to - from), max_body, r);
    out.consumed += res.consumed;
    if (res.status != ScanStatus::kOk) {
      out.status = res.status;
      break;
    }
    from = to;
  }
  out.events = std::move(r.events);
  out.in_message = scanner.InMessage();
  return out;
}

TEST_CASE("frame scanner survives 100,000 junk streams and answers the same however they are cut") {
  std::vector<Bytes> samples;
  const std::vector<Msg> msgs = ServerMessages();
  for (const Msg& m : msgs) samples.push_back(Typed(m.type, m.body));
  samples.push_back(Concat(msgs));
  samples.push_back(Typed('X', {}));
  Rng rng(0x5ca77e5);
  int bad = 0, stopped = 0;
  for (int i = 0; i < 100000; ++i) {
    const Bytes data = testing::Mutate(rng, samples, 96);
    const uint32_t max_body = 64 + rng.Below(512);
    RunResult whole = RunChunks(data, {}, max_body);
    std::vector<size_t> cuts;
    for (size_t at = rng.Below(8) + 1; at < data.size(); at += rng.Below(12) + 1) cuts.push_back(at);
    RunResult split = RunChunks(data, cuts, max_body);
    INFO("input " << i << ": " << absl::BytesToHexString(testing::ToString(data)));
    REQUIRE(whole == split);
    bad += whole.status == ScanStatus::kBadLength;
    stopped += whole.status == ScanStatus::kStopped;
  }
  // The mutations reach both failure paths often.
  CHECK(bad > 1000);
  CHECK(stopped > 100);
}

}  // namespace
}  // namespace rb::proto
