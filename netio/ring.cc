#include "netio/ring.h"

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "netio/uring_compat.h"

namespace rb::netio {

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(const RingOptions& options) {
  if (options.setup_flags & kForbiddenSetupFlags) {
    // liburing 2.3 does not know these layouts and would drive a broken ring.
    return absl::InvalidArgumentError("IORING_SETUP_NO_SQARRAY/NO_MMAP are not usable with this liburing");
  }
  std::unique_ptr<Ring> r(new Ring());
  io_uring_params p{};
  p.flags = options.setup_flags | IORING_SETUP_CQSIZE;
  p.cq_entries = options.cq_entries;
  int ret = io_uring_queue_init_params(options.sq_entries, &r->ring_, &p);
  if (ret < 0) return absl::UnavailableError(absl::StrCat("io_uring_queue_init: ", strerror(-ret)));
  r->initialised_ = true;
  if (options.register_ring_fd) {
    // Saves an fdget per io_uring_enter; harmless if it fails.
    (void)io_uring_register_ring_fd(&r->ring_);
  }
  return r;
}

Ring::~Ring() {
  if (initialised_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::SqeSlow() {
  for (;;) {
    io_uring_submit(&ring_);
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
  }
}

int Ring::SubmitAndWait(int64_t timeout_ns) {
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ns / 1000000000;
  ts.tv_nsec = timeout_ns % 1000000000;
  io_uring_cqe* cqe = nullptr;
  // A negative timeout (TimerWheel::NanosToNextTick's "nothing armed") means no timeout. Passed
  // through as a negative timespec, the kernel times out at once and the worker would spin.
  int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, timeout_ns < 0 ? nullptr : &ts, nullptr);
  if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) return 0;
  return ret < 0 ? ret : 0;
}

}  // namespace rb::netio
