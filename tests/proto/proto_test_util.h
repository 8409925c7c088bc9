// Helpers shared by the proto tests: byte vectors written by hand, and a seeded generator of
// junk and mutated messages for the fuzz-style tests.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rb::proto::testing {

using Bytes = std::vector<uint8_t>;

inline Bytes ToBytes(absl::string_view s) { return Bytes(s.begin(), s.end()); }
inline std::string ToString(absl::Span<const uint8_t> b) { return std::string(b.begin(), b.end()); }

// Builds byte vectors from a mix of numbers and strings, the way a protocol doc lists fields:
//   B().U8('Q').U32(13).Str("SELECT 1").Get()
class B {
 public:
  B& U8(uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  B& U16(uint16_t v) {
    b_.push_back(static_cast<uint8_t>(v >> 8));
    b_.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  B& U32(uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b_.push_back(static_cast<uint8_t>(v >> s));
    return *this;
  }
  B& Raw(absl::string_view s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  B& Str(absl::string_view s) {  // C string with its NUL
    Raw(s);
    b_.push_back(0);
    return *this;
  }
  B& Add(const Bytes& more) {
    b_.insert(b_.end(), more.begin(), more.end());
    return *this;
  }
  Bytes Get() const { return b_; }

 private:
  Bytes b_;
};

// Typed message: type, length (body + 4), body.
inline Bytes Typed(uint8_t type, const Bytes& body) {
  return B().U8(type).U32(static_cast<uint32_t>(body.size() + 4)).Add(body).Get();
}

// Fast seeded generator (splitmix64): std::mt19937 is slow under ASan and we want ~10^5 inputs
// per parser in well under a second.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint32_t Below(uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(Next() % n); }
  uint8_t Byte() { return static_cast<uint8_t>(Next()); }

 private:
  uint64_t s_;
};

// One fuzz input: either random bytes, or a valid sample mutated (flipped bytes, truncation,
// extension, a length field set to something huge or tiny, bytes spliced from another sample).
inline Bytes Mutate(Rng& rng, const std::vector<Bytes>& samples, size_t max_random = 64) {
  Bytes out;
  uint32_t mode = rng.Below(10);
  if (mode == 0 || samples.empty()) {
    out.resize(rng.Below(static_cast<uint32_t>(max_random) + 1));
    for (auto& b : out) b = rng.Byte();
    return out;
  }
  out = samples[rng.Below(static_cast<uint32_t>(samples.size()))];
  int rounds = 1 + static_cast<int>(rng.Below(3));
  for (int r = 0; r < rounds; ++r) {
    switch (rng.Below(7)) {
      case 0:  // flip a byte
        if (!out.empty()) out[rng.Below(static_cast<uint32_t>(out.size()))] ^= rng.Byte() | 1;
        break;
      case 1:  // truncate
        out.resize(rng.Below(static_cast<uint32_t>(out.size()) + 1));
        break;
      case 2:  // extend with junk
        for (uint32_t i = rng.Below(16) + 1; i > 0; --i) out.push_back(rng.Byte());
        break;
      case 3: {  // overwrite 4 bytes with a huge / tiny / random length
        if (out.size() < 4) break;
        uint32_t at = rng.Below(static_cast<uint32_t>(out.size() - 3));
        static constexpr uint32_t kLengths[] = {0, 1, 3, 4, 5, 7, 8, 0x7fffffff, 0x80000000,
                                                0xffffffff, 10000, 10001, 65536};
        uint32_t v = rng.Below(2) ? kLengths[rng.Below(sizeof(kLengths) / 4)]
                                  : static_cast<uint32_t>(rng.Next());
        for (int i = 0; i < 4; ++i) out[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
        break;
      }
      case 4:  // zero a byte (creates early terminators)
        if (!out.empty()) out[rng.Below(static_cast<uint32_t>(out.size()))] = 0;
        break;
      case 5: {  // splice a piece of another sample
        const Bytes& other = samples[rng.Below(static_cast<uint32_t>(samples.size()))];
        if (other.empty()) break;
        uint32_t from = rng.Below(static_cast<uint32_t>(other.size()));
        uint32_t n = rng.Below(static_cast<uint32_t>(other.size() - from) + 1);
        uint32_t at = rng.Below(static_cast<uint32_t>(out.size()) + 1);
        out.insert(out.begin() + at, other.begin() + from, other.begin() + from + n);
        break;
      }
      default:  // delete a byte
        if (!out.empty()) out.erase(out.begin() + rng.Below(static_cast<uint32_t>(out.size())));
        break;
    }
  }
  return out;
}

}  // namespace rb::proto::testing
