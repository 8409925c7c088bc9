// One hashed timer wheel per worker. Connections embed a TimerNode; arming, moving and
// disarming are O(1) pointer updates, and no timeout SQE is ever submitted: the worker's wait
// on the ring is bounded by the time to the next tick.
//
// Each connection has at most one armed deadline: the nearest of the timeouts that apply in
// its current state. When it fires the owner re-checks what actually expired (activity may
// have moved the real deadline later) and re-arms. That keeps per-message work at zero: a busy
// connection only updates a timestamp.
#pragma once

#include <cstdint>
#include <vector>

namespace rb::netio {

struct TimerNode {
  TimerNode* prev = nullptr;  // null: not armed
  TimerNode* next = nullptr;
  uint32_t deadline_tick = 0;
  uint8_t owner = 0;  // free for the owner: says what kind of object embeds this node
  bool armed() const { return prev != nullptr; }
};

class TimerWheel {
 public:
  // tick_ns: resolution (e.g. 100 ms); slots: a power of two.
  TimerWheel(int64_t tick_ns, int64_t now_ns, uint32_t slots = 1024)
      : tick_ns_(tick_ns), origin_ns_(now_ns), heads_(slots), mask_(slots - 1) {
    for (TimerNode& h : heads_) h.prev = h.next = &h;
  }
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms (or moves) `n` to fire at the first tick at or after deadline_ns.
  void Arm(TimerNode* n, int64_t deadline_ns) {
    if (n->armed()) Unlink(n);
    int64_t t = (deadline_ns - origin_ns_ + tick_ns_ - 1) / tick_ns_;
    if (t <= static_cast<int64_t>(current_tick_)) t = current_tick_ + 1;
    n->deadline_tick = static_cast<uint32_t>(t);
    LinkTail(&heads_[n->deadline_tick & mask_], n);
    ++armed_;
  }

  void Disarm(TimerNode* n) {
    if (n->armed()) Unlink(n);
  }

  // Fires every node whose tick has passed, in deadline order per slot. on_fire(TimerNode*)
  // may re-arm or disarm any node, including the one it is given.
  template <typename Fn>
  void Advance(int64_t now_ns, Fn&& on_fire) {
    uint32_t now_tick = static_cast<uint32_t>((now_ns - origin_ns_) / tick_ns_);
    if (armed_ == 0) {
      current_tick_ = now_tick;
      return;
    }
    // After a long stall, one pass over every slot is enough.
    uint32_t steps = now_tick - current_tick_;
    if (steps > mask_ + 1) steps = mask_ + 1;
    uint32_t tick = now_tick - steps;
    current_tick_ = now_tick;  // re-arms from callbacks land in the future
    for (uint32_t i = 0; i < steps; ++i) {
      ++tick;
      TimerNode* head = &heads_[tick & mask_];
      // Detach the slot first so re-arming into the same slot cannot loop.
      TimerNode pending;
      pending.prev = pending.next = &pending;
      if (head->next != head) {
        pending.next = head->next;
        pending.prev = head->prev;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        head->prev = head->next = head;
      }
      while (pending.next != &pending) {
        TimerNode* n = pending.next;
        Unlink(n);
        if (static_cast<int32_t>(n->deadline_tick - now_tick) > 0) {
          LinkTail(head, n);  // a later lap of the wheel
          ++armed_;
          continue;
        }
        on_fire(n);
      }
    }
  }

  // Nanoseconds until the next tick boundary, or -1 when nothing is armed.
  int64_t NanosToNextTick(int64_t now_ns) const {
    if (armed_ == 0) return -1;
    int64_t next = origin_ns_ + (static_cast<int64_t>(current_tick_) + 1) * tick_ns_;
    return next > now_ns ? next - now_ns : 0;
  }

  uint32_t armed() const { return armed_; }

 private:
  static void LinkTail(TimerNode* head, TimerNode* n) {
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
  }
  void Unlink(TimerNode* n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = nullptr;
    --armed_;
  }

  int64_t tick_ns_;
  int64_t origin_ns_;
  uint32_t current_tick_ = 0;
  uint32_t armed_ = 0;
  std::vector<TimerNode> heads_;
  uint32_t mask_;
};

}  // namespace rb::netio
