// Kernel io_uring features, probed once at start-up by trying them, never assumed from the
// header or the kernel version. Workers read the result; `ringbouncer -v` prints it.
#pragma once

#include <cstdint>
#include <string>

namespace rb::netio {

struct Features {
  // Ring setup flags the kernel accepted.
  bool single_issuer = false;   // 6.0: only the creating thread submits (cheaper locking)
  bool defer_taskrun = false;   // 6.1: completions run only when we wait, in our thread
  bool coop_taskrun = false;    // 5.19: no IPI to interrupt us for task work
  bool submit_all = false;      // 5.18: keep submitting past a failing SQE
  // params.features bits.
  bool ext_arg = false;         // timeout passed to io_uring_enter without a timeout SQE
  bool nodrop = false;
  bool cqe_skip = false;
  // Operations and modes, tried on a socketpair.
  bool buf_ring = false;        // provided-buffer rings (5.19)
  bool recv_multishot = false;  // 6.0
  bool accept_multishot = false;
  bool send_zc = false;         // 6.0
  bool msg_ring = false;        // 5.18: data messages between rings
  bool msg_ring_fd = false;     // 6.0: passing direct descriptors between rings
  bool msg_ring_cqe_skip = false;
  bool recv_bundle = false;     // 6.10
  bool buf_ring_inc = false;    // 6.12: incremental buffer consumption
  bool fixed_fd_install = false;// 6.8
  bool register_ring_fd = false;
  bool napi = false;            // 6.9
  std::string kernel_release;
  int setup_errno = 0;          // io_uring_setup's error when io_uring is not usable at all

  // Setup flags for a worker ring, from what the probe accepted.
  uint32_t WorkerSetupFlags() const;
  // Every feature as name=yes|no on one line, for -v.
  std::string Describe() const;
  // The floor: what the engine cannot run without.
  bool MeetsFloor(std::string* missing) const;
};

// Probes the running kernel. Cheap (a few rings on socketpairs), done once at start-up.
Features ProbeFeatures();

}  // namespace rb::netio
