// What liburing 2.3 (Debian 12) lacks or gets wrong, in one place.
//
// The kernel floor is 6.1 and the header floor is liburing 2.3, but the machines run newer
// kernels. Constants for newer features are defined here when the header lacks them; whether
// the running kernel supports them is decided by the probe in features.h, never by the header.
//
// Three traps of liburing 2.3 live here so that nobody steps in them again (each has a test):
//  1. io_uring_prep_accept_direct(..., IORING_FILE_INDEX_ALLOC) adds 1 to the index, which
//     wraps to 0 and yields a plain fd instead of an allocated direct descriptor.
//     PrepAcceptDirectAlloc passes IORING_FILE_INDEX_ALLOC - 1 so that the +1 lands right.
//  2. io_uring_buf_ring_cq_advance publishes the buffer-ring tail with a plain store, no
//     release barrier, so the kernel may see the tail before the buffer entries. Use
//     BufferRing (buffer_ring.h), which always publishes with a store-release.
//  3. IORING_SETUP_NO_SQARRAY (and NO_MMAP) are unknown to 2.3's mmap logic: the ring
//     silently breaks. kForbiddenSetupFlags lists them; Ring refuses them.
#pragma once

#include <liburing.h>

#include <cstdint>

namespace rb::netio {

// Setup flags newer than liburing 2.3's header (values from the kernel uapi).
inline constexpr uint32_t kSetupNoMmap = 1u << 14;      // IORING_SETUP_NO_MMAP (6.5)
inline constexpr uint32_t kSetupNoSqArray = 1u << 16;   // IORING_SETUP_NO_SQARRAY (6.6)
inline constexpr uint32_t kForbiddenSetupFlags = kSetupNoMmap | kSetupNoSqArray;

// IORING_RECVSEND_BUNDLE (6.10): one recv/send consumes several provided buffers.
inline constexpr uint16_t kRecvSendBundle = 1u << 4;
// IOU_PBUF_RING_INC (6.12): buffers are consumed incrementally (flags of io_uring_buf_reg,
// called `pad` in 2.3's struct).
inline constexpr uint16_t kPbufRingInc = 1u << 1;
// IORING_CQE_F_BUF_MORE (6.12): with incremental buffers, the buffer is not used up yet.
inline constexpr uint32_t kCqeFBufMore = 1u << 4;
// IORING_OP_FIXED_FD_INSTALL (6.8): turn a direct descriptor into a regular fd.
inline constexpr uint8_t kOpFixedFdInstall = 54;
// IORING_REGISTER_NAPI (6.9).
inline constexpr unsigned kRegisterNapi = 27;
// IORING_MSG_RING_FLAGS_PASS (6.3): pass sqe->file_index as the target CQE's flags.
inline constexpr uint32_t kMsgRingFlagsPass = 1u << 1;

// Trap 1: an accept whose connection lands in a slot the kernel picks from the fixed table.
inline void PrepAcceptDirectAlloc(io_uring_sqe* sqe, int listen_fd, int flags) {
  // liburing 2.3 stores file_index + 1; IORING_FILE_INDEX_ALLOC is ~0U, so pass one less.
  io_uring_prep_accept_direct(sqe, listen_fd, nullptr, nullptr, flags, IORING_FILE_INDEX_ALLOC - 1);
}

// MSG_RING fd passing has no helper in 2.3: move direct descriptor `source_slot` of the
// submitting ring into slot `target_slot` of the ring `target_ring_fd`; the target gets a CQE
// with user_data `target_user_data`.
inline void PrepMsgRingSendFd(io_uring_sqe* sqe, int target_ring_fd, unsigned source_slot,
                              unsigned target_slot, uint64_t target_user_data) {
  io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_ring_fd, nullptr, 0, target_user_data);
  sqe->addr = IORING_MSG_SEND_FD;
  sqe->addr3 = source_slot;
  // file_index is 1-based in the SQE (0 means "not a fixed slot").
  sqe->file_index = target_slot + 1;
}

}  // namespace rb::netio
