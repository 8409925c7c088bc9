// One io_uring per worker, created on the worker's own thread (a SINGLE_ISSUER ring refuses
// submissions from any other thread with -EEXIST).
//
// Completion identity: every SQE carries a 64-bit tag packing an operation code, a generation
// and a slot (see Tag). The owner of the slot checks the generation, so a completion that
// arrives after its connection was freed and the slot reused is recognised and dropped.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace rb::netio {

// user_data layout: [op:8][generation:24][slot:32].
struct Tag {
  uint8_t op;
  uint32_t generation;  // 24 bits used
  uint32_t slot;

  static constexpr uint32_t kGenerationMask = 0xffffff;
  uint64_t Pack() const {
    return (uint64_t{op} << 56) | (uint64_t{generation & kGenerationMask} << 32) | slot;
  }
  static Tag Unpack(uint64_t v) {
    return Tag{static_cast<uint8_t>(v >> 56), static_cast<uint32_t>(v >> 32) & kGenerationMask,
               static_cast<uint32_t>(v)};
  }
};

struct RingOptions {
  uint32_t sq_entries = 1024;
  uint32_t cq_entries = 8192;  // completions outnumber submissions with multishot ops
  uint32_t setup_flags = 0;    // from Features::WorkerSetupFlags()
  bool register_ring_fd = false;
};

class Ring {
 public:
  static absl::StatusOr<std::unique_ptr<Ring>> Create(const RingOptions& options);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // An SQE, never null: when the submission queue is full it is flushed to the kernel first.
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    return sqe ? sqe : SqeSlow();
  }

  // Submits what is queued and waits until at least one completion is ready or `timeout_ns`
  // passes (no timeout SQE: the timeout rides on io_uring_enter); a negative timeout_ns waits
  // without a timeout. Returns a negative errno only for errors that are not a timeout or a signal.
  int SubmitAndWait(int64_t timeout_ns);
  // Submits without waiting.
  int Submit() { return io_uring_submit(&ring_); }

  // Calls fn(const io_uring_cqe&) for each ready completion, then marks them seen at once.
  template <typename Fn>
  unsigned DrainCompletions(Fn&& fn) {
    unsigned head, count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      fn(*cqe);
      ++count;
    }
    if (count) io_uring_cq_advance(&ring_, count);
    return count;
  }

  io_uring* raw() { return &ring_; }
  int fd() const { return ring_.ring_fd; }
  uint32_t setup_flags() const { return ring_.flags; }

 private:
  Ring() = default;
  io_uring_sqe* SqeSlow();
  io_uring ring_{};
  bool initialised_ = false;
};

}  // namespace rb::netio
