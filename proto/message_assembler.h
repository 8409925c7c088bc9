// Gathers whole messages from arbitrarily cut chunks, for the places that need a message in one
// piece: the login phase (startup packet, password, SASL) and the admin console. The forwarding
// path never uses this; it reports on bytes in place with FrameScanner.
//
// Feed() stops at the end of one message, so whatever follows it in the chunk stays with the
// caller: after a StartupMessage the next bytes may already be a password, and after an
// SSLRequest they must be TLS (or nothing). The result is the same however the input is split.
#pragma once

#include <cstdint>
#include <string>

#include "absl/types/span.h"

namespace rb::proto {

enum class AssemblerMode : uint8_t {
  kStartup,  // untyped: int32 length (counting itself), then the rest; at least 8 bytes
  kTyped,    // type byte, int32 length (counting itself, not the type byte), body
};

enum class AssembleStatus : uint8_t {
  kNeedMore,   // every byte was consumed and the message is not complete yet
  kReady,      // a whole message is in message(); `consumed` ends exactly at its last byte
  kTooLong,    // the length field is above the limit; the connection can't go on
  kBadLength,  // the length field is below the minimum (8 untyped, 4 typed)
};

struct [[nodiscard]] AssembleResult {
  AssembleStatus status;
  uint32_t consumed;  // bytes of this chunk that were taken
};

class MessageAssembler {
 public:
  // max_length bounds the length field: kMaxStartupPacketLength for startup packets,
  // max_packet_size for typed messages.
  MessageAssembler(AssemblerMode mode, uint32_t max_length) : mode_(mode), max_length_(max_length) {}

  // Takes bytes until one message is complete. After kReady the message stays readable until the
  // next Feed, which starts a new one. kTooLong and kBadLength are final: later calls return the
  // same status and consume nothing.
  [[nodiscard]] AssembleResult Feed(const uint8_t* data, uint32_t len);

  // Switch between startup packets and typed messages (after the StartupMessage, say). Only
  // allowed between messages.
  void SetMode(AssemblerMode mode, uint32_t max_length);

  bool ready() const { return ready_; }
  // Some bytes of an unfinished message are buffered.
  bool InMessage() const { return !ready_ && !buf_.empty(); }

  // The type byte (typed mode; 0 in startup mode). Valid once ready().
  uint8_t type() const { return mode_ == AssemblerMode::kTyped && !buf_.empty() ? Byte(0) : 0; }
  // The whole message, header included: what ParseStartupPacket wants.
  absl::Span<const uint8_t> message() const { return {Data(), buf_.size()}; }
  // What follows the length field: what the message parsers in messages.h want.
  absl::Span<const uint8_t> body() const {
    size_t header = HeaderLength();
    return buf_.size() < header ? absl::Span<const uint8_t>()
                                : absl::Span<const uint8_t>(Data() + header, buf_.size() - header);
  }
  // The header bytes seen so far; on kBadLength / kTooLong, what BadPacketHeaderMessage prints.
  absl::Span<const uint8_t> header() const {
    return {Data(), buf_.size() < HeaderLength() ? buf_.size() : HeaderLength()};
  }

  void Reset();

 private:
  size_t HeaderLength() const { return mode_ == AssemblerMode::kTyped ? 5 : 4; }
  const uint8_t* Data() const { return reinterpret_cast<const uint8_t*>(buf_.data()); }
  uint8_t Byte(size_t i) const { return static_cast<uint8_t>(buf_[i]); }

  AssemblerMode mode_;
  uint32_t max_length_;
  uint32_t total_ = 0;  // bytes of the current message, header included; 0 until the length is in
  bool ready_ = false;
  AssembleStatus error_ = AssembleStatus::kNeedMore;  // kTooLong / kBadLength once failed
  std::string buf_;
};

// PgBouncer's "bad packet header: '0000000400...'" for a header it can't make sense of (startup
// packets and typed messages alike): up to the first 8 bytes, lower-case hex. Pass header() after
// kBadLength / kTooLong.
std::string BadPacketHeaderMessage(absl::Span<const uint8_t> header);

}  // namespace rb::proto
