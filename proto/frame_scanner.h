// Streaming scanner for typed PostgreSQL v3 messages (everything after the startup packet).
//
// The pooler forwards bytes it does not own: a received buffer goes to the peer as it is. To
// make pooling decisions it still has to know where each message starts, its type, its
// length, and the body of the few messages that drive pooling (ReadyForQuery, ParameterStatus
// and friends). FrameScanner gives exactly that, and gives the same answer however the
// stream is cut into chunks: a header split over three recv()s is stitched in a 5-byte
// stash, and a collected body split over several chunks is stitched in a small inline stash.
//
// This is PgBouncer's "forward / skip / fetch" contract, inverted: the scanner never owns the
// bytes, it only reports on them, and the caller decides where to cut.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace rb::proto {

// Every typed message has a 4-byte length that counts itself, so anything below 4 is garbage.
inline constexpr uint32_t kMinMessageLength = 4;

enum class ScanStatus : uint8_t {
  kOk,         // every byte was consumed
  kStopped,    // the visitor refused a message; `consumed` is the offset of its type byte
  kBadLength,  // a length field is < 4 or over the limit; the stream is unusable from here on
};

struct [[nodiscard]] ScanResult {
  ScanStatus status;
  uint32_t consumed;  // bytes of this chunk that were consumed
};

// Visitor contract (all calls are inlined; no virtual dispatch on the hot path):
//
//   bool OnType(uint8_t type);
//       Called at the type byte, before the length is known. Returning false stops the scan
//       before this message (ScanStatus::kStopped, `consumed` = offset of the type byte). Used to
//       cut before a client's Terminate, which must not reach a pooled server. The type byte
//       always lies in the current chunk, so the cut never falls inside a forwarded header.
//
//   bool OnHeader(uint8_t type, uint32_t body_len);
//       Called once the 5-byte header is known. Return true to have the body collected and
//       handed to OnBody in one piece; only allowed when body_len <= kStashBytes.
//
//   void OnBody(uint8_t type, const uint8_t* body, uint32_t body_len);
//       The whole body of a message OnHeader asked to collect. `body` points into the chunk
//       when the body lies in it entirely, otherwise into the scanner's stash.
//
//   void OnEnd(uint8_t type);
//       The last byte of a message has been scanned (collected or not).
//
//   bool OnTypeAt(uint8_t type, uint32_t offset);   (optional, replaces OnType)
//       OnType with the type byte's offset in the current chunk, for visitors that may have to
//       cut the chunk at a message they only judge once its body is in.
//
// kStashBytes is 0 for connections that never collect (clients): the scanner is then 12 bytes.
template <uint32_t kStashBytes>
class FrameScanner {
 public:
  FrameScanner() = default;

  // True between a message's type byte and its last byte. A server whose client stream is
  // mid-message is not clean, whatever the transaction status says.
  bool InMessage() const { return header_len_ != 0 || remaining_ != 0; }

  // Type of the message being scanned; meaningful only while InMessage().
  uint8_t CurrentType() const { return header_[0]; }

  // max_body_len is max_packet_size minus the 4 length bytes; it is passed on every call so that
  // the per-connection state stays small and a reload applies at once.
  template <typename Visitor>
  ScanResult Scan(const uint8_t* data, uint32_t len, uint32_t max_body_len, Visitor& v) {
    // A bad length leaves the stream unframed: nothing after it can be trusted.
    if (bad_) return {ScanStatus::kBadLength, 0};
    uint32_t pos = 0;
    while (pos < len) {
      if (remaining_ != 0) {
        // Inside a body: skip or collect.
        uint32_t take = len - pos < remaining_ ? len - pos : remaining_;
        if (collecting_) {
          // Fast path: the whole body is in this chunk and nothing is stashed yet.
          if (stash_len_ == 0 && take == remaining_) {
            remaining_ = 0;
            pos += take;
            FinishCollected(v, data + pos - take, take);
            continue;
          }
          if constexpr (kStashBytes > 0) {
            std::memcpy(stash_.data() + stash_len_, data + pos, take);
          }
          stash_len_ += take;
        }
        remaining_ -= take;
        pos += take;
        if (remaining_ == 0) {
          if (collecting_) {
            FinishCollected(v, StashData(), stash_len_);
          } else {
            header_len_ = 0;
            v.OnEnd(header_[0]);
          }
        }
        continue;
      }

      if (header_len_ == 0) {
        bool go;
        if constexpr (requires { v.OnTypeAt(uint8_t{}, uint32_t{}); }) {
          go = v.OnTypeAt(data[pos], pos);
        } else {
          go = v.OnType(data[pos]);
        }
        if (!go) return {ScanStatus::kStopped, pos};
        // Fast path: the whole header is in this chunk.
        if (len - pos >= 5) {
          std::memcpy(header_.data(), data + pos, 5);
          pos += 5;
          header_len_ = 5;
        } else {
          header_[0] = data[pos++];
          header_len_ = 1;
          continue;
        }
      } else {
        uint32_t take = 5 - header_len_;
        if (take > len - pos) take = len - pos;
        std::memcpy(header_.data() + header_len_, data + pos, take);
        header_len_ += take;
        pos += take;
        if (header_len_ < 5) continue;
      }

      // Header complete.
      uint32_t length = (uint32_t{header_[1]} << 24) | (uint32_t{header_[2]} << 16) |
                        (uint32_t{header_[3]} << 8) | uint32_t{header_[4]};
      if (length < kMinMessageLength || length - kMinMessageLength > max_body_len) {
        // Leave the scanner in the error state; the caller closes the connection.
        bad_ = true;
        return {ScanStatus::kBadLength, pos};
      }
      uint32_t body_len = length - kMinMessageLength;
      collecting_ = v.OnHeader(header_[0], body_len);
      if (collecting_ && body_len > kStashBytes) collecting_ = false;  // contract violation: degrade to skip
      stash_len_ = 0;
      remaining_ = body_len;
      if (body_len == 0) {
        if (collecting_) {
          FinishCollected(v, nullptr, 0);
        } else {
          header_len_ = 0;
          v.OnEnd(header_[0]);
        }
      }
    }
    // remaining_ > 0 or header_len_ != 0 here means a message continues in the next chunk.
    return {ScanStatus::kOk, pos};
  }

  bool bad() const { return bad_; }

 private:
  template <typename Visitor>
  void FinishCollected(Visitor& v, const uint8_t* body, uint32_t body_len) {
    uint8_t type = header_[0];
    header_len_ = 0;
    collecting_ = false;
    stash_len_ = 0;
    v.OnBody(type, body, body_len);
    v.OnEnd(type);
  }

  const uint8_t* StashData() const {
    if constexpr (kStashBytes > 0) {
      return stash_.data();
    } else {
      return nullptr;
    }
  }

  // One scanner per connection direction, so the layout is kept tight: the three small fields
  // share one byte, which keeps FrameScanner<0> at 12 bytes (the tests pin that).
  uint32_t remaining_ = 0;      // body bytes still to come for the current message
  std::array<uint8_t, 5> header_{};
  uint8_t header_len_ : 3 = 0;  // 0: between messages; 1..4: header split; 5: header done
  uint8_t collecting_ : 1 = 0;
  uint8_t bad_ : 1 = 0;
  uint16_t stash_len_ = 0;
  // std::array<uint8_t, 0> still takes a byte, which would round the scanner up to 16 bytes; an
  // empty struct under [[no_unique_address]] takes none.
  struct NoStash {};
  [[no_unique_address]] std::conditional_t<(kStashBytes > 0), std::array<uint8_t, kStashBytes>,
                                           NoStash> stash_{};
  static_assert(kStashBytes < 65536, "stash length is 16-bit");
};

}  // namespace rb::proto
