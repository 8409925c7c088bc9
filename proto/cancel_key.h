// The cancel key ringbouncer hands to clients in BackendKeyData.
//
// A client cancels a query by opening a new connection and sending CancelRequest with the 8 bytes
// it was given (int32 "process id" + int32 secret). That connection may land on any worker, or
// on any process of a peered group, so the key itself must say where its session lives. The
// layout follows PgBouncer's peering so that mixed groups keep working:
//
//   byte 0      random, top bit cleared: the first 4 bytes are read as a pid, and some clients
//               (pg_basebackup was one) break on a negative pid
//   bytes 1-2   peer_id, low byte first, when peering is on (peer_id > 0); random otherwise
//   byte 3      the worker that owns the session (0-255)
//   bytes 4-6   random
//   byte 7      random; when peering is on its low 2 bits are a TTL, set to 3, decremented on
//               every forward between peers, so a misconfigured ring of peers can't bounce a
//               cancel forever
//
// With peering on that leaves 37 random bits, enough against guessing over a network. The owner
// worker keeps a hash map from key to session, so the key needs no slot index.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/types/span.h"
#include "proto/messages.h"

namespace rb::proto {

class CancelKey {
 public:
  static constexpr size_t kSize = 8;
  static constexpr uint8_t kTtlMask = 0x03;
  static constexpr uint8_t kMaxTtl = 3;

  CancelKey() = default;

  // `random` supplies every bit the layout leaves random (use a CSPRNG: the key is the only
  // thing that stops a stranger from cancelling someone else's query). peer_id 0: no peering.
  static CancelKey Make(uint16_t peer_id, uint8_t worker_id, uint64_t random);

  // From the 8 bytes of a CancelRequest (pid + secret, as on the wire).
  static CancelKey FromBytes(absl::Span<const uint8_t> bytes);
  static CancelKey FromBackendKey(BackendKey key);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  // What goes into BackendKeyData and CancelRequest.
  BackendKey ToBackendKey() const;

  // Meaningful only when the group runs with peering (peer_id > 0); otherwise these bytes are
  // random and the key belongs to this process.
  uint16_t peer_id() const { return static_cast<uint16_t>(bytes_[1] | (bytes_[2] << 8)); }
  uint8_t worker_id() const { return bytes_[3]; }
  uint8_t ttl() const { return bytes_[7] & kTtlMask; }

  // Before forwarding to a peer. Returns false, and leaves the key alone, once the TTL is 0:
  // the request has been forwarded enough and must be dropped.
  [[nodiscard]] bool DecrementTtl();

  uint64_t AsUint64() const;

  bool operator==(const CancelKey&) const = default;

  template <typename H>
  friend H AbslHashValue(H h, const CancelKey& key) {
    return H::combine(std::move(h), key.AsUint64());
  }

 private:
  std::array<uint8_t, kSize> bytes_{};
};

}  // namespace rb::proto
