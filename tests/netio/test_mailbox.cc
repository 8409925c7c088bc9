#include "netio/mailbox.h"

#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "netio/ring.h"
#include "tests/catch.h"
#include "tests/netio/netio_test_util.h"

namespace rb::netio {
namespace {

MailMessage Msg(uint64_t seq, uint32_t from = 0) {
  MailMessage m;
  m.kind = static_cast<uint32_t>(seq % 13);
  m.arg32 = from;
  m.arg64 = seq;
  m.ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(seq * 8));
  return m;
}

TEST_CASE("SpscQueue pops in push order and refuses a push when full", "[netio][mailbox]") {
  SpscQueue q(8);
  MailMessage m;
  CHECK_FALSE(q.Pop(&m));
  for (uint64_t i = 0; i < 8; ++i) CHECK(q.Push(Msg(i)));
  CHECK_FALSE(q.Push(Msg(99)));  // full: the caller keeps the message
  for (uint64_t i = 0; i < 8; ++i) {
    REQUIRE(q.Pop(&m));
    CHECK(m.arg64 == i);
    CHECK(m.kind == i % 13);
    CHECK(m.ptr == reinterpret_cast<void*>(static_cast<uintptr_t>(i * 8)));
  }
  CHECK_FALSE(q.Pop(&m));
  // One free slot after one pop.
  for (uint64_t i = 0; i < 8; ++i) CHECK(q.Push(Msg(i)));
  REQUIRE(q.Pop(&m));
  CHECK(q.Push(Msg(100)));
  CHECK_FALSE(q.Push(Msg(101)));
}

TEST_CASE("SpscQueue keeps order across many wrap-arounds", "[netio][mailbox]") {
  SpscQueue q(4);
  uint64_t pushed = 0, popped = 0;
  std::mt19937 rng(7);
  MailMessage m;
  for (int round = 0; round < 10'000; ++round) {
    int burst = static_cast<int>(rng() % 6);
    for (int i = 0; i < burst; ++i) {
      if (q.Push(Msg(pushed))) ++pushed;
    }
    burst = static_cast<int>(rng() % 6);
    for (int i = 0; i < burst && q.Pop(&m); ++i) {
      REQUIRE(m.arg64 == popped);
      ++popped;
    }
    REQUIRE(pushed - popped <= 4);
  }
  while (q.Pop(&m)) REQUIRE(m.arg64 == popped++);
  CHECK(popped == pushed);
  CHECK(pushed > 1000);
}

TEST_CASE("Mailbox drains every sender's queue in order and tells which sender", "[netio][mailbox]") {
  Mailbox box(3, 16);
  for (uint32_t from = 0; from < 3; ++from) {
    for (uint64_t i = 0; i < 5; ++i) CHECK(box.Push(from, Msg(i, from)));
  }
  std::vector<uint64_t> next(3, 0);
  unsigned n = box.Drain([&](uint32_t from, const MailMessage& m) {
    REQUIRE(from < 3);
    CHECK(m.arg32 == from);
    CHECK(m.arg64 == next[from]++);
  });
  CHECK(n == 15);
  CHECK(box.Drain([](uint32_t, const MailMessage&) { FAIL("empty mailbox delivered"); }) == 0);
  // Queues are per sender: one full queue does not block another sender.
  for (uint64_t i = 0; i < 16; ++i) CHECK(box.Push(1, Msg(i, 1)));
  CHECK_FALSE(box.Push(1, Msg(16, 1)));
  CHECK(box.Push(2, Msg(0, 2)));
}

TEST_CASE("Mailbox doorbell is claimed once until the receiver drains", "[netio][mailbox]") {
  Mailbox box(2, 8);
  CHECK(box.Push(0, Msg(1)));
  CHECK(box.ClaimDoorbell());        // first push after a drain rings
  CHECK(box.Push(1, Msg(2)));
  CHECK_FALSE(box.ClaimDoorbell());  // a doorbell is already on its way
  CHECK_FALSE(box.ClaimDoorbell());
  CHECK(box.Drain([](uint32_t, const MailMessage&) {}) == 2);
  CHECK(box.Push(0, Msg(3)));
  CHECK(box.ClaimDoorbell());  // after the drain, the next push rings again
}

TEST_CASE("SpscQueue across two threads: 1,000,000 messages arrive once, in order", "[netio][mailbox][threads]") {
  constexpr uint64_t kMessages = 1'000'000;
  SpscQueue q(1024);
  std::thread producer([&] {
    for (uint64_t i = 0; i < kMessages; ++i) {
      while (!q.Push(Msg(i))) std::this_thread::yield();
    }
  });
  uint64_t expected = 0;
  bool in_order = true;
  MailMessage m;
  while (expected < kMessages) {
    if (!q.Pop(&m)) {
      std::this_thread::yield();
      continue;
    }
    // Every field was published with the slot, not only the sequence number.
    if (m.arg64 != expected || m.kind != expected % 13 ||
        m.ptr != reinterpret_cast<void*>(static_cast<uintptr_t>(expected * 8))) {
      in_order = false;
      break;
    }
    ++expected;
  }
  producer.join();
  CHECK(in_order);
  CHECK(expected == kMessages);
  CHECK_FALSE(q.Pop(&m));
}

// The MSG_RING doorbell protocol between two worker-like rings, each created on its own thread.
// The receiver sleeps in SubmitAndWait with a long timeout and drains only when woken.
//
// A lost wakeup is a message that sits in the queue while the receiver sleeps. It would hide
// behind the next message's doorbell, so the senders pause now and then until the receiver has
// everything they sent: a pause that times out is a lost wakeup (and a wait of the receiver that
// times out with messages in the queue is one too). The pauses also make the receiver go to
// sleep often, so that doorbells really wake it.
struct DoorbellResult {
  uint64_t received = 0;
  uint64_t out_of_order = 0;
  uint64_t lost_wakeups = 0;  // seen by the receiver: a timed-out wait, then messages
  uint64_t stuck_pauses = 0;  // seen by a sender: its messages not drained within seconds
  uint64_t doorbell_cqes = 0;
  uint64_t bad_cqes = 0;
  uint64_t wakeups = 0;
  uint64_t pauses = 0;
};

DoorbellResult RunDoorbell(uint32_t senders, uint64_t per_sender, uint32_t capacity, uint64_t seed,
                           std::vector<uint64_t>* rung, std::vector<uint64_t>* send_errors) {
  constexpr uint64_t kDoorbellTag = 0xd00b;
  constexpr int64_t kLongWait = 5'000'000'000;
  constexpr int64_t kPauseLimit = 2'000'000'000;
  Mailbox box(senders, capacity);
  std::promise<int> ring_fd_promise;
  std::shared_future<int> ring_fd = ring_fd_promise.get_future().share();
  std::atomic<uint32_t> senders_done{0};
  std::atomic<bool> abort{false};
  std::vector<std::atomic<uint64_t>> acked(senders);  // messages the receiver has, per sender
  std::atomic<uint64_t> stuck_pauses{0}, pauses{0};
  DoorbellResult result;
  const uint64_t total = senders * per_sender;
  rung->assign(senders, 0);
  send_errors->assign(senders, 0);

  std::thread receiver([&] {
    auto ring = testing::MakeWorkerRing();
    ring_fd_promise.set_value(ring ? ring->fd() : -1);
    if (!ring) return;
    std::mt19937_64 rng(seed ^ 0x5eed);
    std::vector<uint64_t> next(senders, 0);
    auto drain = [&] {
      return box.Drain([&](uint32_t from, const MailMessage& m) {
        if (m.arg64 != next[from] || m.arg32 != from) ++result.out_of_order;
        next[from] = m.arg64 + 1;
        acked[from].store(next[from], std::memory_order_release);
        ++result.received;
        if (rng() % 256 == 0) std::this_thread::yield();  // widen the window inside a drain
      });
    };
    auto reap = [&] {
      return ring->DrainCompletions([&](const io_uring_cqe& c) {
        if (c.user_data == kDoorbellTag && c.res == 0) {
          ++result.doorbell_cqes;
        } else {
          ++result.bad_cqes;
        }
      });
    };
    while (result.received < total) {
      const int64_t t0 = testing::MonotonicNs();
      ring->SubmitAndWait(kLongWait);
      ++result.wakeups;
      unsigned woke_by = reap();
      unsigned got = drain();
      const bool timed_out = woke_by == 0 && testing::MonotonicNs() - t0 >= kLongWait / 2;
      if (timed_out && got > 0) ++result.lost_wakeups;
      if (timed_out && got == 0) {  // nothing at all for seconds: give up rather than hang
        abort.store(true);
        break;
      }
    }
    // Collect the doorbells still in flight once every sender is done, then release the ring.
    while (senders_done.load() < senders) std::this_thread::yield();
    for (int64_t deadline = testing::MonotonicNs() + 5'000'000'000; testing::MonotonicNs() < deadline;) {
      uint64_t rung_total = 0;
      for (uint64_t r : *rung) rung_total += r;
      if (result.doorbell_cqes + result.bad_cqes >= rung_total) break;
      ring->SubmitAndWait(50'000'000);
      reap();
    }
    drain();
  });

  std::vector<std::thread> threads;
  for (uint32_t s = 0; s < senders; ++s) {
    threads.emplace_back([&, s] {
      auto ring = testing::MakeWorkerRing();
      int target = ring_fd.get();
      if (!ring || target < 0) {
        ++senders_done;
        return;
      }
      std::mt19937_64 rng(seed + s);
      auto reap = [&] {
        ring->DrainCompletions([&](const io_uring_cqe& c) {
          if (c.res < 0) ++(*send_errors)[s];
        });
      };
      for (uint64_t i = 0; i < per_sender && !abort.load(); ++i) {
        while (!box.Push(s, Msg(i, s)) && !abort.load()) std::this_thread::yield();  // full: the receiver drains
        if (box.ClaimDoorbell()) {
          io_uring_sqe* sqe = ring->Sqe();
          io_uring_prep_msg_ring(sqe, target, 0, kDoorbellTag, 0);
          sqe->user_data = 1;
          ring->Submit();
          ++(*rung)[s];
          reap();  // MSG_RING completes at submit
        }
        const uint64_t r = rng() % 1000;
        if (r < 20) {
          // Pause until the receiver has everything this sender pushed.
          ++pauses;
          const int64_t deadline = testing::MonotonicNs() + kPauseLimit;
          while (acked[s].load(std::memory_order_acquire) <= i) {
            if (testing::MonotonicNs() > deadline) {
              ++stuck_pauses;
              break;
            }
            std::this_thread::yield();
          }
        } else if (r < 23) {
          std::this_thread::sleep_for(std::chrono::microseconds(20 * (r - 19)));
        } else if (r < 50) {
          std::this_thread::yield();
        }
      }
      testing::CollectCompletions(*ring, 1, 1'000'000);
      reap();
      ++senders_done;
    });
  }
  for (auto& t : threads) t.join();
  receiver.join();
  result.stuck_pauses = stuck_pauses.load();
  result.pauses = pauses.load();
  return result;
}

TEST_CASE("Mailbox doorbell over MSG_RING: 100,000 messages, no lost wakeups", "[netio][mailbox][threads]") {
  std::vector<uint64_t> rung, errors;
  DoorbellResult r = RunDoorbell(/*senders=*/1, /*per_sender=*/100'000, /*capacity=*/256, /*seed=*/1, &rung, &errors);
  INFO("doorbells " << rung[0] << ", receiver wakeups " << r.wakeups << ", sender pauses " << r.pauses);
  CHECK(r.received == 100'000);
  CHECK(r.out_of_order == 0);
  CHECK(r.lost_wakeups == 0);
  CHECK(r.stuck_pauses == 0);
  CHECK(r.bad_cqes == 0);
  CHECK(errors[0] == 0);
  CHECK(r.pauses > 0);
  CHECK(rung[0] >= r.pauses);       // after each pause the receiver sleeps and must be rung
  CHECK(r.doorbell_cqes == rung[0]);  // every doorbell rang in the receiver's ring
}

TEST_CASE("Mailbox doorbell over MSG_RING: two senders share one doorbell", "[netio][mailbox][threads]") {
  std::vector<uint64_t> rung, errors;
  DoorbellResult r = RunDoorbell(/*senders=*/2, /*per_sender=*/25'000, /*capacity=*/64, /*seed=*/99, &rung, &errors);
  INFO("doorbells " << rung[0] + rung[1] << ", receiver wakeups " << r.wakeups << ", sender pauses " << r.pauses);
  CHECK(r.received == 50'000);
  CHECK(r.out_of_order == 0);
  CHECK(r.lost_wakeups == 0);
  CHECK(r.stuck_pauses == 0);
  CHECK(r.bad_cqes == 0);
  CHECK(errors[0] + errors[1] == 0);
  CHECK(r.doorbell_cqes == rung[0] + rung[1]);
}

}  // namespace
}  // namespace rb::netio
