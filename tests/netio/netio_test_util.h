// Small helpers shared by the netio tests: owned fds, fd-table counting, collecting CQEs with a
// deadline, and the feature probe done once per test binary.
#pragma once

#include <dirent.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "netio/features.h"
#include "netio/ring.h"

namespace rb::netio::testing {

// An owned file descriptor; closes on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    Reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Entries of /proc/self/fd (the directory's own fd is counted the same way on every call).
inline int CountOpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

inline int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
};

// Waits (submitting whatever is queued) until `want` completions were collected or
// `timeout_ns` passed. Returns what arrived, in order.
inline std::vector<Completion> CollectCompletions(Ring& ring, size_t want, int64_t timeout_ns = 5'000'000'000) {
  std::vector<Completion> out;
  const int64_t deadline = MonotonicNs() + timeout_ns;
  for (;;) {
    ring.DrainCompletions([&](const io_uring_cqe& c) { out.push_back({c.user_data, c.res, c.flags}); });
    int64_t left = deadline - MonotonicNs();
    if (out.size() >= want || left <= 0) return out;
    ring.SubmitAndWait(std::min<int64_t>(left, 100'000'000));
  }
}

// The probe is a handful of rings; do it once per binary.
inline const Features& ProbedFeatures() {
  static const Features features = ProbeFeatures();
  return features;
}

// A ring configured like a worker's (SINGLE_ISSUER|DEFER_TASKRUN on this kernel): create it on
// the thread that uses it.
inline std::unique_ptr<Ring> MakeWorkerRing(uint32_t sq_entries = 64, uint32_t cq_entries = 256) {
  RingOptions o;
  o.sq_entries = sq_entries;
  o.cq_entries = cq_entries;
  o.setup_flags = ProbedFeatures().WorkerSetupFlags();
  auto r = Ring::Create(o);
  return r.ok() ? std::move(*r) : nullptr;
}

}  // namespace rb::netio::testing
