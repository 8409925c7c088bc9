#include "proto/cancel_key.h"

#include <cassert>

#include "proto/wire.h"

namespace rb::proto {

CancelKey CancelKey::Make(uint16_t peer_id, uint8_t worker_id, uint64_t random) {
  CancelKey key;
  for (size_t i = 0; i < kSize; ++i) key.bytes_[i] = static_cast<uint8_t>(random >> (8 * i));
  key.bytes_[0] &= 0x7f;
  if (peer_id > 0) {
    key.bytes_[1] = static_cast<uint8_t>(peer_id & 0xff);
    key.bytes_[2] = static_cast<uint8_t>(peer_id >> 8);
    key.bytes_[7] |= kTtlMask;
  }
  key.bytes_[3] = worker_id;
  return key;
}

CancelKey CancelKey::FromBytes(absl::Span<const uint8_t> bytes) {
  assert(bytes.size() == kSize);
  CancelKey key;
  if (bytes.size() == kSize) std::memcpy(key.bytes_.data(), bytes.data(), kSize);
  return key;
}

CancelKey CancelKey::FromBackendKey(BackendKey wire) {
  CancelKey key;
  StoreBE32(key.bytes_.data(), wire.pid);
  StoreBE32(key.bytes_.data() + 4, wire.secret);
  return key;
}

BackendKey CancelKey::ToBackendKey() const {
  return {LoadBE32(bytes_.data()), LoadBE32(bytes_.data() + 4)};
}

bool CancelKey::DecrementTtl() {
  if (ttl() == 0) return false;
  bytes_[7] = static_cast<uint8_t>((bytes_[7] & ~kTtlMask) | (ttl() - 1));
  return true;
}

uint64_t CancelKey::AsUint64() const {
  uint64_t v = 0;
  for (uint8_t b : bytes_) v = (v << 8) | b;
  return v;
}

}  // namespace rb::proto
