// TimerWheel in simulated time: every call takes now_ns, so nothing here sleeps.
#include "netio/timer_wheel.h"

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "tests/catch.h"

namespace rb::netio {
namespace {

constexpr int64_t kTick = 1'000'000;           // 1 ms
constexpr int64_t kOrigin = 5'000'000'000'000;  // an arbitrary monotonic clock reading

int64_t AtTick(double ticks) { return kOrigin + static_cast<int64_t>(ticks * kTick); }

// Collects fired nodes in order.
struct Fired {
  std::vector<TimerNode*> nodes;
  auto Callback() {
    return [this](TimerNode* n) { nodes.push_back(n); };
  }
  size_t Take() {
    size_t n = nodes.size();
    nodes.clear();
    return n;
  }
};

TEST_CASE("timer wheel: arm, move and disarm keep armed() exact", "[netio][timer]") {
  TimerWheel w(kTick, kOrigin, 64);
  TimerNode a, b;
  Fired fired;
  CHECK(w.armed() == 0);
  CHECK_FALSE(a.armed());
  w.Arm(&a, AtTick(5));
  CHECK(a.armed());
  CHECK(w.armed() == 1);
  w.Arm(&a, AtTick(10));  // move
  CHECK(w.armed() == 1);
  w.Arm(&b, AtTick(7));
  CHECK(w.armed() == 2);
  w.Disarm(&b);
  CHECK_FALSE(b.armed());
  CHECK(w.armed() == 1);
  w.Disarm(&b);  // disarming twice is a no-op
  CHECK(w.armed() == 1);

  w.Advance(AtTick(9), fired.Callback());
  CHECK(fired.Take() == 0);  // the old deadline (5) was moved away; b was disarmed
  CHECK(w.armed() == 1);
  w.Advance(AtTick(10), fired.Callback());
  REQUIRE(fired.nodes.size() == 1);
  CHECK(fired.nodes[0] == &a);
  CHECK_FALSE(a.armed());
  CHECK(w.armed() == 0);
  fired.Take();
  w.Advance(AtTick(200), fired.Callback());
  CHECK(fired.Take() == 0);
}

TEST_CASE("timer wheel: moving a timer earlier fires it at the new deadline", "[netio][timer]") {
  TimerWheel w(kTick, kOrigin, 64);
  TimerNode a;
  Fired fired;
  w.Arm(&a, AtTick(50));
  w.Arm(&a, AtTick(3));
  w.Advance(AtTick(2), fired.Callback());
  CHECK(fired.Take() == 0);
  w.Advance(AtTick(3), fired.Callback());
  CHECK(fired.Take() == 1);
  w.Advance(AtTick(60), fired.Callback());
  CHECK(fired.Take() == 0);
  CHECK(w.armed() == 0);
}

TEST_CASE("timer wheel: a timer fires at or after its deadline, never before", "[netio][timer]") {
  TimerWheel w(kTick, kOrigin, 64);
  Fired fired;
  SECTION("deadline between ticks: fires at the next tick boundary") {
    TimerNode a;
    const int64_t deadline = AtTick(5.5);
    w.Arm(&a, deadline);
    w.Advance(AtTick(5), fired.Callback());
    CHECK(fired.Take() == 0);
    w.Advance(deadline - 1, fired.Callback());
    CHECK(fired.Take() == 0);
    w.Advance(deadline, fired.Callback());
    CHECK(fired.Take() == 0);  // still inside tick 5
    w.Advance(AtTick(6) - 1, fired.Callback());
    CHECK(fired.Take() == 0);
    w.Advance(AtTick(6), fired.Callback());
    CHECK(fired.Take() == 1);
  }
  SECTION("deadline on a tick boundary: fires exactly then") {
    TimerNode a;
    w.Arm(&a, AtTick(7));
    w.Advance(AtTick(7) - 1, fired.Callback());
    CHECK(fired.Take() == 0);
    w.Advance(AtTick(7), fired.Callback());
    CHECK(fired.Take() == 1);
  }
  SECTION("a deadline already passed fires on the next tick, not in the current one") {
    w.Advance(AtTick(20.5), fired.Callback());
    TimerNode a;
    w.Arm(&a, AtTick(3));
    CHECK(w.armed() == 1);
    w.Advance(AtTick(20.9), fired.Callback());
    CHECK(fired.Take() == 0);
    w.Advance(AtTick(21), fired.Callback());
    CHECK(fired.Take() == 1);
  }
  SECTION("time passing without Advance: a due timer fires on the late Advance") {
    TimerNode a;
    w.Arm(&a, AtTick(4));
    w.Advance(AtTick(30), fired.Callback());
    CHECK(fired.Take() == 1);
  }
  SECTION("several ticks in one Advance fire in deadline order") {
    TimerNode n[5];
    for (int i = 4; i >= 0; --i) w.Arm(&n[i], AtTick(1 + 2 * i));
    w.Advance(AtTick(20), fired.Callback());
    REQUIRE(fired.nodes.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(fired.nodes[i] == &n[i]);
  }
  CHECK(w.armed() == 0);
}

TEST_CASE("timer wheel: deadlines beyond one lap wait for their lap", "[netio][timer]") {
  constexpr uint32_t kSlots = 8;
  TimerWheel w(kTick, kOrigin, kSlots);
  TimerNode far, near;
  Fired fired;
  const int far_tick = 3 * kSlots + 2;  // same slot as tick 2, three laps later
  w.Arm(&far, AtTick(far_tick));
  w.Arm(&near, AtTick(2));
  for (int t = 1; t < far_tick; ++t) {
    w.Advance(AtTick(t), fired.Callback());
    if (t == 2) {
      REQUIRE(fired.nodes.size() == 1);
      CHECK(fired.nodes[0] == &near);
      fired.Take();
    }
    INFO("tick " << t);
    CHECK(fired.Take() == 0);
    CHECK(far.armed());
    CHECK(w.armed() == (t < 2 ? 2u : 1u));
  }
  w.Advance(AtTick(far_tick), fired.Callback());
  REQUIRE(fired.nodes.size() == 1);
  CHECK(fired.nodes[0] == &far);
  CHECK(w.armed() == 0);
}

TEST_CASE("timer wheel: re-arming from inside the callback", "[netio][timer]") {
  constexpr uint32_t kSlots = 8;
  TimerWheel w(kTick, kOrigin, kSlots);
  TimerNode n;
  int fires = 0;
  int64_t now = kOrigin;

  SECTION("a periodic timer fires once per period") {
    auto rearm = [&](TimerNode* x) {
      ++fires;
      w.Arm(x, now + kTick);
      CHECK(w.armed() == 1);
    };
    w.Arm(&n, AtTick(1));
    for (int t = 1; t <= 100; ++t) {
      now = AtTick(t);
      w.Advance(now, rearm);
      CHECK(fires == t);
    }
  }
  SECTION("re-arming into the same slot (one lap later) does not loop") {
    auto rearm = [&](TimerNode* x) {
      ++fires;
      w.Arm(x, now + kSlots * kTick);
    };
    w.Arm(&n, AtTick(3));
    for (int t = 1; t <= 3 + 4 * static_cast<int>(kSlots); ++t) {
      now = AtTick(t);
      w.Advance(now, rearm);
    }
    CHECK(fires == 5);  // ticks 3, 11, 19, 27, 35
    CHECK(w.armed() == 1);
  }
  SECTION("re-arming with a deadline already passed fires on the next tick, once per Advance") {
    auto rearm = [&](TimerNode* x) {
      ++fires;
      w.Arm(x, kOrigin);  // long past
    };
    w.Arm(&n, AtTick(2));
    now = AtTick(2);
    w.Advance(now, rearm);
    CHECK(fires == 1);
    w.Advance(now + kTick / 2, rearm);
    CHECK(fires == 1);
    now = AtTick(3);
    w.Advance(now, rearm);
    CHECK(fires == 2);
    // A long stall still fires it once: the re-arm lands after the new current tick.
    now = AtTick(1000);
    w.Advance(now, rearm);
    CHECK(fires == 3);
    CHECK(w.armed() == 1);
  }
  SECTION("disarming inside the callback") {
    w.Arm(&n, AtTick(1));
    w.Advance(AtTick(1), [&](TimerNode* x) {
      ++fires;
      w.Disarm(x);  // already unlinked: a no-op
    });
    CHECK(fires == 1);
    CHECK(w.armed() == 0);
  }
}

TEST_CASE("timer wheel: a callback disarming or moving another due timer", "[netio][timer]") {
  TimerWheel w(kTick, kOrigin, 16);
  TimerNode a, b, c;
  std::vector<TimerNode*> fired;
  SECTION("same slot") {
    w.Arm(&a, AtTick(4));
    w.Arm(&b, AtTick(4));
    w.Arm(&c, AtTick(4));
    w.Advance(AtTick(4), [&](TimerNode* x) {
      fired.push_back(x);
      if (x == &a) w.Disarm(&b);
    });
    CHECK(fired == std::vector<TimerNode*>{&a, &c});
    CHECK_FALSE(b.armed());
    CHECK(w.armed() == 0);
  }
  SECTION("later slot in the same Advance") {
    w.Arm(&a, AtTick(2));
    w.Arm(&b, AtTick(5));
    w.Arm(&c, AtTick(6));
    w.Advance(AtTick(10), [&](TimerNode* x) {
      fired.push_back(x);
      if (x == &a) {
        w.Disarm(&b);
        w.Arm(&c, AtTick(40));  // moved past now
      }
    });
    CHECK(fired == std::vector<TimerNode*>{&a});
    CHECK(w.armed() == 1);
    w.Advance(AtTick(40), [&](TimerNode* x) { fired.push_back(x); });
    CHECK(fired == std::vector<TimerNode*>{&a, &c});
    CHECK(w.armed() == 0);
  }
}

TEST_CASE("timer wheel: a long stall fires every due timer exactly once", "[netio][timer]") {
  constexpr uint32_t kSlots = 16;
  TimerWheel w(kTick, kOrigin, kSlots);
  std::vector<TimerNode> nodes(200);
  for (size_t i = 0; i < nodes.size(); ++i) w.Arm(&nodes[i], AtTick(1 + static_cast<double>(i) * 0.37));  // ~5 laps
  TimerNode later;
  const int64_t stall_end = AtTick(1'000'000);
  w.Arm(&later, stall_end + 3 * kTick);
  CHECK(w.armed() == nodes.size() + 1);
  std::map<TimerNode*, int> count;
  w.Advance(stall_end, [&](TimerNode* n) { ++count[n]; });
  CHECK(count.size() == nodes.size());
  for (auto& n : nodes) CHECK(count[&n] == 1);
  CHECK(count.count(&later) == 0);
  CHECK(w.armed() == 1);
  count.clear();
  w.Advance(stall_end + 3 * kTick, [&](TimerNode* n) { ++count[n]; });
  CHECK(count.size() == 1);
  CHECK(count[&later] == 1);
  CHECK(w.armed() == 0);
}

TEST_CASE("timer wheel: NanosToNextTick", "[netio][timer]") {
  TimerWheel w(kTick, kOrigin, 64);
  TimerNode a;
  CHECK(w.NanosToNextTick(AtTick(0.25)) == -1);  // nothing armed: no wake-up needed
  w.Arm(&a, AtTick(100));
  CHECK(w.NanosToNextTick(AtTick(0.25)) == kTick - kTick / 4);
  CHECK(w.NanosToNextTick(kOrigin) == kTick);
  w.Advance(AtTick(5.2), [](TimerNode*) {});
  CHECK(w.NanosToNextTick(AtTick(5.2)) == AtTick(6) - AtTick(5.2));
  CHECK(w.NanosToNextTick(AtTick(6)) == 0);   // the boundary is now
  CHECK(w.NanosToNextTick(AtTick(7.5)) == 0); // overdue: wake at once
  w.Disarm(&a);
  CHECK(w.NanosToNextTick(AtTick(5.2)) == -1);
}

// The reference: each armed node's firing tick in a multimap. A node armed for deadline d while
// the wheel is at tick `cur` fires at the first Advance whose tick reaches
// max(ceil(d / tick), cur + 1).
class ReferenceWheel {
 public:
  void Arm(int id, int64_t deadline_ns, int64_t current_tick) {
    Disarm(id);
    int64_t rel = deadline_ns - kOrigin;
    int64_t t = rel <= 0 ? 0 : (rel + kTick - 1) / kTick;
    if (t <= current_tick) t = current_tick + 1;
    where_[id] = by_tick_.emplace(t, id);
    deadline_[id] = deadline_ns;
  }
  void Disarm(int id) {
    auto it = where_.find(id);
    if (it == where_.end()) return;
    by_tick_.erase(it->second);
    where_.erase(it);
  }
  // Removes and returns every id due at `now_tick`.
  std::multiset<int> TakeDue(int64_t now_tick) {
    std::multiset<int> due;
    while (!by_tick_.empty() && by_tick_.begin()->first <= now_tick) {
      int id = by_tick_.begin()->second;
      due.insert(id);
      where_.erase(id);
      by_tick_.erase(by_tick_.begin());
    }
    return due;
  }
  size_t size() const { return by_tick_.size(); }
  bool armed(int id) const { return where_.count(id) != 0; }
  int64_t deadline(int id) const { return deadline_.at(id); }

 private:
  std::multimap<int64_t, int> by_tick_;
  std::map<int, std::multimap<int64_t, int>::iterator> where_;
  std::map<int, int64_t> deadline_;
};

TEST_CASE("timer wheel: 10,000 random operations agree with a reference model", "[netio][timer]") {
  constexpr uint32_t kSlots = 64;
  constexpr int kNodes = 300;
  std::mt19937_64 rng(20240607);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };

  TimerWheel w(kTick, kOrigin, kSlots);
  ReferenceWheel model;
  std::vector<TimerNode> nodes(kNodes);
  auto id_of = [&](TimerNode* n) { return static_cast<int>(n - nodes.data()); };
  int64_t now = kOrigin;
  int64_t current_tick = 0;  // the tick of the last Advance
  size_t total_fired = 0;

  auto random_deadline = [&] {
    switch (uniform(0, 9)) {
      case 0:
        return now - uniform(0, 5 * kTick);  // already passed
      case 1:
        return now + uniform(kSlots * kTick, 5 * kSlots * kTick);  // laps ahead
      default:
        return now + uniform(0, 2 * kSlots * kTick);
    }
  };

  for (int op = 0; op < 10'000; ++op) {
    INFO("operation " << op);
    int64_t kind = uniform(0, 99);
    if (kind < 45) {
      int id = static_cast<int>(uniform(0, kNodes - 1));
      int64_t d = random_deadline();
      w.Arm(&nodes[id], d);
      model.Arm(id, d, current_tick);
    } else if (kind < 60) {
      int id = static_cast<int>(uniform(0, kNodes - 1));
      w.Disarm(&nodes[id]);
      model.Disarm(id);
    } else {
      // Mostly small steps, sometimes a stall of several laps.
      int64_t step = kind < 97 ? uniform(0, 3 * kTick) : uniform(kSlots * kTick, 10 * kSlots * kTick);
      now += step;
      int64_t now_tick = (now - kOrigin) / kTick;
      std::multiset<int> due = model.TakeDue(now_tick);
      std::multiset<int> fired;
      current_tick = now_tick;  // re-arms from the callback see the new tick, as in the wheel
      w.Advance(now, [&](TimerNode* n) {
        int id = id_of(n);
        fired.insert(id);
        CHECK(now >= model.deadline(id));  // never before the deadline
        CHECK_FALSE(n->armed());
        switch (uniform(0, 3)) {
          case 0: {  // re-arm itself
            int64_t d = random_deadline();
            w.Arm(n, d);
            model.Arm(id, d, current_tick);
            break;
          }
          case 1: {  // arm some other node that is not armed (already fired, or idle)
            int other = static_cast<int>(uniform(0, kNodes - 1));
            if (!nodes[other].armed()) {
              int64_t d = random_deadline();
              w.Arm(&nodes[other], d);
              model.Arm(other, d, current_tick);
            }
            break;
          }
          default:
            break;
        }
      });
      REQUIRE(fired == due);  // every due node once, nothing early, nothing late
      total_fired += fired.size();
    }
    REQUIRE(w.armed() == model.size());
    for (int id = op % 7; id < kNodes; id += 7) REQUIRE(nodes[id].armed() == model.armed(id));
  }
  // The run exercised firing, not just arming.
  CHECK(total_fired > 1000);
}

}  // namespace
}  // namespace rb::netio
