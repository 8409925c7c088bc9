// Cuts a byte stream into whole PostgreSQL messages for a tool that reads every message (the
// load generator reading a server, the fake backend reading a client).
//
// A message that lies entirely in the received chunk is handed over in place, with no copy:
// with small requests and replies that is nearly every message. Only a message cut by a chunk
// boundary goes through proto's MessageAssembler, which stitches it. So the result does not
// depend on how the kernel cut the stream, and an idle connection holds no buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "proto/message_assembler.h"
#include "proto/wire.h"

namespace rb::tools {

struct Message {
  uint8_t type;                     // 0 for an untyped startup-phase packet
  absl::Span<const uint8_t> whole;  // header included: what ParseStartupPacket takes
  absl::Span<const uint8_t> body;   // after the length field: what the messages.h parsers take
};

enum class StreamStatus : uint8_t {
  kOk,         // every byte was taken
  kStopped,    // the callback returned false; the rest of the chunk was dropped
  kBadLength,  // a length field below the protocol's minimum: the stream is unusable
  kTooLong,    // a length field above the limit
};

class MessageStream {
 public:
  MessageStream(proto::AssemblerMode mode, uint32_t max_length)
      : assembler_(mode, max_length), mode_(mode), max_length_(max_length) {}

  // Switches framing (after a StartupMessage: to typed messages). Takes effect from the next
  // message, so it may be called from Feed's callback.
  void SetMode(proto::AssemblerMode mode, uint32_t max_length) {
    pending_mode_ = true;
    mode_ = mode;
    max_length_ = max_length;
  }

  // Calls fn(const Message&) -> bool for every message completed by `data`.
  template <typename Fn>
  StreamStatus Feed(const uint8_t* data, size_t len, Fn&& fn) {
    while (len > 0) {
      if (pending_mode_) {
        assembler_.SetMode(mode_, max_length_);
        pending_mode_ = false;
      }
      if (!assembler_.InMessage()) {
        const bool typed = mode_ == proto::AssemblerMode::kTyped;
        const size_t header = typed ? proto::kTypedHeaderLength : 4;
        if (len >= header) {
          const uint32_t length = proto::LoadBE32(data + header - 4);
          const uint32_t min_length = typed ? 4 : proto::kStartupHeaderLength;
          const size_t total = typed ? size_t{length} + 1 : length;
          // Anything odd (bad length, split message) is left to the assembler, which reports it.
          if (length >= min_length && length <= max_length_ && total <= len) {
            Message m{typed ? data[0] : uint8_t{0}, {data, total}, {data + header, total - header}};
            if (!fn(m)) return StreamStatus::kStopped;
            data += total;
            len -= total;
            continue;
          }
        }
      }
      proto::AssembleResult r = assembler_.Feed(data, static_cast<uint32_t>(len));
      data += r.consumed;
      len -= r.consumed;
      switch (r.status) {
        case proto::AssembleStatus::kNeedMore:
          break;
        case proto::AssembleStatus::kReady:
          if (!fn(Message{assembler_.type(), assembler_.message(), assembler_.body()})) {
            return StreamStatus::kStopped;
          }
          break;
        case proto::AssembleStatus::kTooLong:
          return StreamStatus::kTooLong;
        case proto::AssembleStatus::kBadLength:
          return StreamStatus::kBadLength;
      }
    }
    return StreamStatus::kOk;
  }

 private:
  proto::MessageAssembler assembler_;
  proto::AssemblerMode mode_;
  uint32_t max_length_;
  bool pending_mode_ = false;
};

}  // namespace rb::tools
