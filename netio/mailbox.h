// Cross-worker messages. Workers share nothing; the only traffic between them is small
// messages in single-producer single-consumer queues, one queue per (sender, receiver) pair,
// plus a doorbell: an IORING_OP_MSG_RING completion posted into the receiver's ring, so a
// worker asleep in io_uring_enter wakes up without an eventfd or a futex.
//
// Doorbells are coalesced: a sender rings only if no doorbell is pending, and the receiver
// clears the flag before it drains. With sequentially consistent operations on the flag, a
// message pushed after the receiver's drain always finds the flag clear and rings again.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace rb::netio {

// A message is a kind plus three words; anything larger travels as an owned pointer.
struct MailMessage {
  uint32_t kind = 0;
  uint32_t arg32 = 0;
  uint64_t arg64 = 0;
  void* ptr = nullptr;
};

class SpscQueue {
 public:
  explicit SpscQueue(uint32_t capacity_pow2);
  // Producer side. Returns false when full (the caller keeps the message and retries later).
  bool Push(const MailMessage& m) {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ >= capacity_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ >= capacity_) return false;
    }
    slots_[tail & mask_] = m;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }
  // Consumer side.
  bool Pop(MailMessage* m) {
    uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return false;
    }
    *m = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

 private:
  std::unique_ptr<MailMessage[]> slots_;
  uint64_t capacity_;
  uint64_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};
  uint64_t tail_cache_ = 0;  // consumer's view of tail
  alignas(64) std::atomic<uint64_t> tail_{0};
  uint64_t head_cache_ = 0;  // producer's view of head
};

// The inbound side of one receiver: one queue per possible sender.
class Mailbox {
 public:
  Mailbox(uint32_t senders, uint32_t capacity_pow2);

  // Called by sender `from`. Returns false if that queue is full.
  bool Push(uint32_t from, const MailMessage& m) { return queues_[from]->Push(m); }

  // After a successful Push: true if the caller must ring the doorbell (send a MSG_RING to the
  // receiver's ring), false if a doorbell is already on its way.
  bool ClaimDoorbell() { return !doorbell_pending_.exchange(true, std::memory_order_seq_cst); }

  // Receiver: drains every queue, calling fn(uint32_t from, const MailMessage&).
  template <typename Fn>
  unsigned Drain(Fn&& fn) {
    // An exchange, not a store: when a sender's ClaimDoorbell came first (and so did not ring),
    // this RMW reads its value and synchronizes with it, so the pops below see that sender's
    // push. A plain store followed by the acquire load of the tail is a store-load pattern that
    // the C++ model does not order (it happens to hold on x86, not on POWER).
    doorbell_pending_.exchange(false, std::memory_order_seq_cst);
    unsigned n = 0;
    MailMessage m;
    for (uint32_t from = 0; from < queues_.size(); ++from) {
      while (queues_[from]->Pop(&m)) {
        fn(from, m);
        ++n;
      }
    }
    return n;
  }

 private:
  std::vector<std::unique_ptr<SpscQueue>> queues_;
  alignas(64) std::atomic<bool> doorbell_pending_{false};
};

}  // namespace rb::netio
