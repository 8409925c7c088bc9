#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "netio/ring.h"
#include "netio/uring_compat.h"
#include "tests/catch.h"
#include "tests/netio/netio_test_util.h"

namespace rb::netio {
namespace {

using testing::CollectCompletions;
using testing::Completion;
using testing::Fd;
using testing::MonotonicNs;

bool SameTag(const Tag& a, const Tag& b) { return a.op == b.op && a.generation == b.generation && a.slot == b.slot; }

TEST_CASE("Tag packs op, generation and slot and unpacks them unchanged", "[netio][tag]") {
  for (Tag t : {Tag{0, 0, 0}, Tag{1, 2, 3}, Tag{0xff, 0xffffff, 0xffffffff}, Tag{0x80, 0x800000, 0x80000000},
                Tag{7, 0x123456, 0xdeadbeef}, Tag{0xff, 0, 0}, Tag{0, 0xffffff, 0}, Tag{0, 0, 0xffffffff}}) {
    INFO("op " << int{t.op} << " gen " << t.generation << " slot " << t.slot);
    CHECK(SameTag(Tag::Unpack(t.Pack()), t));
  }
  // The layout is [op:8][generation:24][slot:32].
  CHECK(Tag{0xab, 0x123456, 0x9abcdef0}.Pack() == 0xab1234569abcdef0ull);
}

TEST_CASE("Tag generation wraps at 24 bits without touching op or slot", "[netio][tag]") {
  Tag t{0x42, Tag::kGenerationMask, 0xfffffffe};
  Tag wrapped = Tag::Unpack(Tag{t.op, t.generation + 1, t.slot}.Pack());
  CHECK(wrapped.op == 0x42);
  CHECK(wrapped.generation == 0);
  CHECK(wrapped.slot == 0xfffffffe);
  // Only the low 24 bits of a generation survive; a reused slot at generation g and g + 2^24
  // is the same tag (the owner compares masked generations).
  CHECK(Tag{1, 5, 9}.Pack() == Tag{1, 5 + (1u << 24), 9}.Pack());
  CHECK(Tag{1, 0xffffffff, 9}.Pack() == Tag{1, 0xffffff, 9}.Pack());
  // Consecutive generations around the wrap are distinct.
  CHECK(Tag{1, 0xffffff, 9}.Pack() != Tag{1, 0x1000000, 9}.Pack());
}

TEST_CASE("SubmitAndWait returns after the timeout when there is nothing to do", "[netio][ring]") {
  auto ring = testing::MakeWorkerRing();
  REQUIRE(ring);
  const int64_t t0 = MonotonicNs();
  CHECK(ring->SubmitAndWait(50'000'000) == 0);
  const int64_t elapsed = MonotonicNs() - t0;
  CHECK(elapsed >= 45'000'000);     // a kernel timeout never fires early
  CHECK(elapsed < 2'000'000'000);   // generous: a loaded 2-core box
  CHECK(ring->DrainCompletions([](const io_uring_cqe&) {}) == 0);
}

TEST_CASE("SubmitAndWait returns early when a completion arrives", "[netio][ring]") {
  auto ring = testing::MakeWorkerRing();
  REQUIRE(ring);
  int sp[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  Fd a(sp[0]), b(sp[1]);
  char buf[16];
  io_uring_sqe* sqe = ring->Sqe();
  io_uring_prep_recv(sqe, a.get(), buf, sizeof(buf), 0);
  sqe->user_data = Tag{3, 1, 17}.Pack();

  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    (void)!write(b.get(), "ping", 4);
  });
  const int64_t t0 = MonotonicNs();
  CHECK(ring->SubmitAndWait(20'000'000'000) == 0);
  const int64_t elapsed = MonotonicNs() - t0;
  writer.join();
  CHECK(elapsed < 10'000'000'000);  // far less than the 20 s timeout
  std::vector<Completion> c = CollectCompletions(*ring, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].res == 4);
  Tag t = Tag::Unpack(c[0].user_data);
  CHECK(SameTag(t, Tag{3, 1, 17}));
  CHECK(std::string(buf, 4) == "ping");
}

TEST_CASE("SubmitAndWait with a negative timeout waits for a completion instead of spinning", "[netio][ring]") {
  // TimerWheel::NanosToNextTick returns -1 when nothing is armed; a worker passes it straight on.
  auto ring = testing::MakeWorkerRing();
  REQUIRE(ring);
  int sp[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  Fd a(sp[0]), b(sp[1]);
  char buf[4];
  io_uring_sqe* sqe = ring->Sqe();
  io_uring_prep_recv(sqe, a.get(), buf, sizeof(buf), 0);
  sqe->user_data = 5;
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    (void)!write(b.get(), "x", 1);
  });
  const int64_t t0 = MonotonicNs();
  CHECK(ring->SubmitAndWait(-1) == 0);
  const int64_t elapsed = MonotonicNs() - t0;
  writer.join();
  CHECK(elapsed >= 90'000'000);  // slept until the write, did not return at once
  std::vector<Completion> c = CollectCompletions(*ring, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].res == 1);
}

TEST_CASE("DrainCompletions visits each completion exactly once", "[netio][ring]") {
  auto ring = testing::MakeWorkerRing(/*sq_entries=*/128, /*cq_entries=*/256);
  REQUIRE(ring);
  constexpr int kOps = 100;
  for (int i = 0; i < kOps; ++i) {
    io_uring_sqe* sqe = ring->Sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = Tag{1, 0, static_cast<uint32_t>(i)}.Pack();
  }
  std::map<uint64_t, int> visits;
  unsigned total = 0;
  for (int64_t deadline = MonotonicNs() + 5'000'000'000; total < kOps && MonotonicNs() < deadline;) {
    ring->SubmitAndWait(100'000'000);
    total += ring->DrainCompletions([&](const io_uring_cqe& c) {
      CHECK(c.res == 0);
      ++visits[c.user_data];
    });
  }
  CHECK(total == kOps);
  REQUIRE(visits.size() == kOps);
  for (const auto& [ud, n] : visits) {
    CHECK(Tag::Unpack(ud).slot < kOps);
    CHECK(n == 1);
  }
  // Everything was marked seen.
  CHECK(ring->DrainCompletions([](const io_uring_cqe&) { FAIL("visited twice"); }) == 0);
  CHECK(io_uring_cq_ready(ring->raw()) == 0);
}

TEST_CASE("Sqe never returns null, even with more SQEs requested than sq_entries", "[netio][ring]") {
  constexpr uint32_t kSqEntries = 8;
  auto ring = testing::MakeWorkerRing(kSqEntries, /*cq_entries=*/256);
  REQUIRE(ring);
  constexpr int kOps = 50;  // more than six full submission queues
  for (int i = 0; i < kOps; ++i) {
    io_uring_sqe* sqe = ring->Sqe();
    REQUIRE(sqe != nullptr);
    io_uring_prep_nop(sqe);
    sqe->user_data = static_cast<uint64_t>(i);
    // Never more queued than the SQ holds: a full queue was flushed to the kernel.
    CHECK(io_uring_sq_ready(ring->raw()) <= kSqEntries);
  }
  std::vector<Completion> c = CollectCompletions(*ring, kOps);
  REQUIRE(c.size() == kOps);
  std::vector<int> seen(kOps, 0);
  for (const Completion& x : c) {
    REQUIRE(x.user_data < static_cast<uint64_t>(kOps));
    ++seen[x.user_data];
  }
  for (int i = 0; i < kOps; ++i) CHECK(seen[i] == 1);
}

TEST_CASE("PrepMsgRingSendFd moves a direct descriptor into a slot of another ring", "[netio][ring]") {
  // The hand-off of DESIGN.md decision 2: one worker accepts, another serves the connection.
  auto from = testing::MakeWorkerRing();
  auto to = testing::MakeWorkerRing();
  REQUIRE(from);
  REQUIRE(to);
  REQUIRE(io_uring_register_files_sparse(from->raw(), 4) == 0);
  REQUIRE(io_uring_register_files_sparse(to->raw(), 4) == 0);
  int sp[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  Fd mine(sp[0]), peer(sp[1]);
  int fd = mine.get();
  REQUIRE(io_uring_register_files_update(from->raw(), 1, &fd, 1) == 1);
  mine.Reset();  // only the direct descriptor keeps the socket now

  const uint64_t handoff = Tag{9, 3, 42}.Pack();
  PrepMsgRingSendFd(from->Sqe(), to->fd(), /*source_slot=*/1, /*target_slot=*/2, handoff);
  std::vector<Completion> sent = CollectCompletions(*from, 1);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].res == 0);
  std::vector<Completion> got = CollectCompletions(*to, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].user_data == handoff);
  CHECK(got[0].res >= 0);

  // The receiving ring can use slot 2.
  io_uring_sqe* sqe = to->Sqe();
  io_uring_prep_send(sqe, 2, "moved", 5, MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  std::vector<Completion> c = CollectCompletions(*to, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].res == 5);
  char buf[8] = {};
  CHECK(recv(peer.get(), buf, sizeof(buf), 0) == 5);
  CHECK(std::string(buf, 5) == "moved");
}

TEST_CASE("a SINGLE_ISSUER ring refuses submissions from a thread other than its creator", "[netio][ring]") {
  if (!testing::ProbedFeatures().single_issuer) return;
  std::unique_ptr<Ring> ring;
  std::thread creator([&] { ring = testing::MakeWorkerRing(); });
  creator.join();
  REQUIRE(ring);
  REQUIRE((ring->setup_flags() & IORING_SETUP_SINGLE_ISSUER));
  io_uring_prep_nop(ring->Sqe());
  CHECK(ring->Submit() == -EEXIST);
}

}  // namespace
}  // namespace rb::netio
