#include "proto/cancel_key.h"

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "proto/messages.h"
#include "proto/startup.h"
#include "tests/catch.h"
#include "tests/proto/proto_test_util.h"

namespace rb::proto {
namespace {

using testing::Rng;

uint8_t RandomByte(uint64_t random, int i) { return static_cast<uint8_t>(random >> (8 * i)); }

TEST_CASE("cancel key with peering puts peer id, worker and TTL 3 in their bytes") {
  Rng rng(1);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t random = rng.Next();
    const uint16_t peer = static_cast<uint16_t>(1 + rng.Below(65535));
    const uint8_t worker = rng.Byte();
    CancelKey k = CancelKey::Make(peer, worker, random);
    const auto& b = k.bytes();
    REQUIRE((b[0] & 0x80) == 0);
    REQUIRE(b[0] == (RandomByte(random, 0) & 0x7f));
    REQUIRE(b[1] == (peer & 0xff));
    REQUIRE(b[2] == (peer >> 8));
    REQUIRE(b[3] == worker);
    REQUIRE(b[4] == RandomByte(random, 4));
    REQUIRE(b[5] == RandomByte(random, 5));
    REQUIRE(b[6] == RandomByte(random, 6));
    REQUIRE((b[7] & 0xfc) == (RandomByte(random, 7) & 0xfc));
    REQUIRE(k.peer_id() == peer);
    REQUIRE(k.worker_id() == worker);
    REQUIRE(k.ttl() == 3);
    // The pid half reads as a positive int32.
    REQUIRE(static_cast<int32_t>(k.ToBackendKey().pid) >= 0);
  }
}

TEST_CASE("cancel key without peering keeps bytes 1, 2 and the TTL bits random") {
  const uint64_t random = 0x0123456789abcdefull;
  CancelKey k = CancelKey::Make(0, 9, random);
  const auto& b = k.bytes();
  CHECK(b[0] == 0x6f);  // 0xef with the top bit cleared
  CHECK(b[1] == 0xcd);
  CHECK(b[2] == 0xab);
  CHECK(b[3] == 9);
  CHECK(b[4] == 0x67);
  CHECK(b[5] == 0x45);
  CHECK(b[6] == 0x23);
  CHECK(b[7] == 0x01);
  CHECK(k.ttl() == 1);
  CHECK(k.worker_id() == 9);
}

TEST_CASE("cancel key known layout for peer 0x0102 on worker 7") {
  CancelKey k = CancelKey::Make(0x0102, 7, 0xfffffffffffffffcull);
  // byte 7 = 0xff | 3; bytes 1-2 = 02 01; byte 0 = 0xfc & 0x7f.
  const std::array<uint8_t, 8> expected = {0x7c, 0x02, 0x01, 0x07, 0xff, 0xff, 0xff, 0xff};
  CHECK(k.bytes() == expected);
  CHECK(k.ToBackendKey() == BackendKey{0x7c020107u, 0xffffffffu});
}

TEST_CASE("cancel key TTL decrements to 0 and then stops") {
  CancelKey k = CancelKey::Make(5, 1, 0xf0f0f0f0f0f0f0f0ull);
  const uint8_t high_bits = k.bytes()[7] & 0xfc;
  CHECK(k.ttl() == 3);
  CHECK(k.DecrementTtl());
  CHECK(k.ttl() == 2);
  CHECK(k.DecrementTtl());
  CHECK(k.ttl() == 1);
  CHECK(k.DecrementTtl());
  CHECK(k.ttl() == 0);
  const CancelKey at_zero = k;
  CHECK_FALSE(k.DecrementTtl());
  CHECK(k.ttl() == 0);
  CHECK(k == at_zero);
  // Only the TTL bits moved.
  CHECK((k.bytes()[7] & 0xfc) == high_bits);
  CHECK(k.peer_id() == 5);
  CHECK(k.worker_id() == 1);
}

TEST_CASE("cancel key round-trips through wire bytes, BackendKeyData and CancelRequest") {
  Rng rng(7);
  for (int i = 0; i < 1000; ++i) {
    CancelKey k = CancelKey::Make(static_cast<uint16_t>(rng.Below(3)), rng.Byte(), rng.Next());
    CHECK(CancelKey::FromBytes(k.bytes()) == k);
    CHECK(CancelKey::FromBackendKey(k.ToBackendKey()) == k);

    // What the client receives, and what it sends back on a new connection.
    std::string bkd;
    AppendBackendKeyData(&bkd, k.ToBackendKey());
    BackendKey parsed;
    REQUIRE(ParseBackendKeyData(AsBytes(absl::string_view(bkd).substr(5)), &parsed) == ParseError::kOk);
    std::string cancel;
    AppendCancelRequest(&cancel, parsed);
    StartupPacket p;
    REQUIRE(ParseStartupPacket(reinterpret_cast<const uint8_t*>(cancel.data()),
                               static_cast<uint32_t>(cancel.size()), &p) == StartupError::kOk);
    REQUIRE(p.CancelKeyIsOurs());
    CHECK(CancelKey::FromBytes(p.cancel_key_bytes()) == k);
  }
}

TEST_CASE("cancel keys compare by value and work as hash map keys") {
  CancelKey a = CancelKey::Make(0, 1, 42);
  CancelKey b = CancelKey::Make(0, 1, 42);
  CancelKey c = CancelKey::Make(0, 2, 42);
  CHECK(a == b);
  CHECK_FALSE(a == c);
  CHECK(a.AsUint64() == b.AsUint64());
  absl::flat_hash_map<CancelKey, int> map;
  map[a] = 1;
  map[c] = 2;
  CHECK(map.at(b) == 1);
  CHECK(map.at(c) == 2);
  CHECK(map.size() == 2);
}

}  // namespace
}  // namespace rb::proto
