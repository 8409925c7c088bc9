// A provided-buffer ring: a group of equal buffers the kernel picks from when a recv with
// IOSQE_BUFFER_SELECT completes, so an idle connection holds no buffer at all.
//
// liburing 2.3 has no io_uring_setup_buf_ring, so the ring is mmapped and registered here.
// Buffers are handed back with Recycle() and made visible to the kernel with Publish(), which
// stores the tail with release semantics (never io_uring_buf_ring_cq_advance: see
// uring_compat.h).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace rb::netio {

class BufferRing {
 public:
  // count must be a power of two, at most 32768. incremental asks for IOU_PBUF_RING_INC.
  static absl::StatusOr<std::unique_ptr<BufferRing>> Create(io_uring* ring, uint16_t group, uint32_t count,
                                                            uint32_t size, bool incremental);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint8_t* Data(uint16_t bid) { return base_ + size_t{bid} * size_; }
  uint16_t group() const { return group_; }
  uint32_t count() const { return count_; }
  uint32_t buffer_size() const { return size_; }
  // Buffers currently owned by the kernel (published and not yet consumed is not tracked;
  // this counts buffers not handed out to the application).
  uint32_t available() const { return available_; }

  // A recv CQE consumed buffer `bid`.
  void OnConsumed() { --available_; }
  // Queue `bid` for return to the kernel. Call Publish() once after a batch.
  void Recycle(uint16_t bid);
  void Publish();

 private:
  BufferRing() = default;
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  uint8_t* base_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t data_bytes_ = 0;
  uint32_t count_ = 0;
  uint32_t size_ = 0;
  uint32_t available_ = 0;
  uint16_t group_ = 0;
  uint16_t pending_ = 0;  // recycled since the last Publish
  bool registered_ = false;
};

}  // namespace rb::netio
