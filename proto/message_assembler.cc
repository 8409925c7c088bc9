#include "proto/message_assembler.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/wire.h"

namespace rb::proto {

namespace {
// Reserve no more than this up front: the length field is a claim, not a promise, and a peer
// announcing a 1 GB message must send 1 GB before it costs us 1 GB.
constexpr uint32_t kMaxUpfrontReserve = 64 * 1024;
}  // namespace

void MessageAssembler::SetMode(AssemblerMode mode, uint32_t max_length) {
  assert(!InMessage() && "MessageAssembler: SetMode inside a message");
  Reset();
  mode_ = mode;
  max_length_ = max_length;
}

void MessageAssembler::Reset() {
  buf_.clear();
  total_ = 0;
  ready_ = false;
  error_ = AssembleStatus::kNeedMore;
}

AssembleResult MessageAssembler::Feed(const uint8_t* data, uint32_t len) {
  if (error_ != AssembleStatus::kNeedMore) return {error_, 0};
  if (ready_) {
    buf_.clear();
    total_ = 0;
    ready_ = false;
  }
  const size_t header = HeaderLength();
  uint32_t pos = 0;
  while (pos < len) {
    if (total_ == 0) {
      uint32_t take = std::min<uint32_t>(static_cast<uint32_t>(header - buf_.size()), len - pos);
      buf_.append(reinterpret_cast<const char*>(data + pos), take);
      pos += take;
      if (buf_.size() < header) break;

      uint32_t length = LoadBE32(Data() + header - 4);
      const uint32_t min_length =
          mode_ == AssemblerMode::kStartup ? kStartupHeaderLength : uint32_t{4};
      if (length < min_length) {
        error_ = AssembleStatus::kBadLength;
        return {error_, pos};
      }
      // The length is an int32 on the wire; above 2^31-1 it is negative, whatever the limit.
      if (length > max_length_ || length > 0x7fffffffu) {
        error_ = AssembleStatus::kTooLong;
        return {error_, pos};
      }
      total_ = mode_ == AssemblerMode::kTyped ? length + 1 : length;
      buf_.reserve(std::min(total_, kMaxUpfrontReserve));
    } else {
      uint32_t take = std::min<uint32_t>(total_ - static_cast<uint32_t>(buf_.size()), len - pos);
      buf_.append(reinterpret_cast<const char*>(data + pos), take);
      pos += take;
    }
    if (buf_.size() == total_) {
      ready_ = true;
      return {AssembleStatus::kReady, pos};
    }
  }
  return {AssembleStatus::kNeedMore, pos};
}

std::string BadPacketHeaderMessage(absl::Span<const uint8_t> header) {
  absl::string_view bytes(reinterpret_cast<const char*>(header.data()),
                          std::min<size_t>(header.size(), kStartupHeaderLength));
  return absl::StrCat("bad packet header: '", absl::BytesToHexString(bytes), "'");
}

}  // namespace rb::proto
