#include "netio/buffer_ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "netio/uring_compat.h"

namespace rb::netio {

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::Create(io_uring* ring, uint16_t group, uint32_t count,
                                                               uint32_t size, bool incremental) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("buffer count ", count, " is not a power of two <= 32768"));
  }
  std::unique_ptr<BufferRing> b(new BufferRing());
  b->ring_ = ring;
  b->count_ = count;
  b->size_ = size;
  b->group_ = group;
  b->ring_bytes_ = count * sizeof(io_uring_buf);
  b->data_bytes_ = size_t{count} * size;
  void* r = mmap(nullptr, b->ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return absl::ResourceExhaustedError(absl::StrCat("mmap buffer ring: ", strerror(errno)));
  b->br_ = static_cast<io_uring_buf_ring*>(r);
  void* d = mmap(nullptr, b->data_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (d == MAP_FAILED) return absl::ResourceExhaustedError(absl::StrCat("mmap buffers: ", strerror(errno)));
  b->base_ = static_cast<uint8_t*>(d);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(b->br_);
  reg.ring_entries = count;
  reg.bgid = group;
  // 2.3 names the kernel's `flags` field `pad`.
  reg.pad = incremental ? kPbufRingInc : 0;
  int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret != 0) return absl::UnavailableError(absl::StrCat("register buffer ring: ", strerror(-ret)));
  b->registered_ = true;

  io_uring_buf_ring_init(b->br_);
  for (uint32_t i = 0; i < count; ++i) b->Recycle(static_cast<uint16_t>(i));
  b->Publish();
  return b;
}

BufferRing::~BufferRing() {
  if (registered_) io_uring_unregister_buf_ring(ring_, group_);
  if (br_) munmap(br_, ring_bytes_);
  if (base_) munmap(base_, data_bytes_);
}

void BufferRing::Recycle(uint16_t bid) {
  io_uring_buf_ring_add(br_, Data(bid), size_, bid, io_uring_buf_ring_mask(count_), pending_);
  ++pending_;
  ++available_;
}

void BufferRing::Publish() {
  if (pending_ == 0) return;
  // Store-release: the kernel must see the entries before the new tail.
  io_uring_buf_ring_advance(br_, pending_);
  pending_ = 0;
}

}  // namespace rb::netio
