// Latency histograms: transaction, query and client-wait times per pool shard, from which the
// metrics endpoint and SHOW LATENCY read p50, p99 and p99.9.
//
// The buckets are fixed and log-linear: 1, 2, ... 9 times each power of ten, from 1 µs to
// 100 s, plus an overflow bucket. Nine steps per decade keep a percentile read from them within
// one step of the truth (at most 2x at the bottom of a decade, 11% at the top), and fixed
// bounds make merging over workers and pools a plain sum.
//
// A histogram belongs to one pool shard of one worker, and only that worker's thread touches
// it: recording is a bucket lookup and three increments, with no lock, no atomic and no
// allocation. Other threads see a copy, taken on the owning thread when the admin console or
// the metrics endpoint gathers every worker's part through the mailboxes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

namespace rb::engine {

namespace latency_internal {

inline constexpr int kDecades = 8;  // 1 µs .. 100 s
inline constexpr int kFiniteBuckets = kDecades * 9 + 1;

constexpr std::array<uint64_t, kFiniteBuckets> MakeUpperBounds() {
  std::array<uint64_t, kFiniteBuckets> b{};
  uint64_t power = 1;
  size_t i = 0;
  for (int d = 0; d < kDecades; ++d, power *= 10) {
    for (uint64_t m = 1; m <= 9; ++m) b[i++] = m * power;
  }
  b[i] = power;  // 10^8 µs = 100 s
  return b;
}

}  // namespace latency_internal

class LatencyHistogram {
 public:
  static constexpr int kFiniteBuckets = latency_internal::kFiniteBuckets;
  // The finite buckets and the +Inf one.
  static constexpr int kBuckets = kFiniteBuckets + 1;
  // Finite upper bounds (inclusive, as Prometheus' `le`), in microseconds.
  static constexpr std::array<uint64_t, kFiniteBuckets> kUpperBoundsUs = latency_internal::MakeUpperBounds();

  // The bucket that counts `us`: the first whose upper bound is >= us; kFiniteBuckets (+Inf)
  // past 100 s. A binary search over 73 constants: seven compares.
  static int BucketOf(uint64_t us) {
    return static_cast<int>(std::lower_bound(kUpperBoundsUs.begin(), kUpperBoundsUs.end(), us) -
                            kUpperBoundsUs.begin());
  }

  void Record(uint64_t us) {
    ++counts_[static_cast<size_t>(BucketOf(us))];
    ++count_;
    sum_us_ += us;
  }

  void Merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_us_ += other.sum_us_;
  }

  uint64_t count() const { return count_; }
  uint64_t sum_us() const { return sum_us_; }
  // Observations in bucket i alone (not cumulative); i == kFiniteBuckets is the +Inf bucket.
  uint64_t bucket(int i) const { return counts_[static_cast<size_t>(i)]; }

  // The q-quantile (0 < q <= 1) in microseconds: the bucket that holds the ceil(q * count)-th
  // observation, interpolated linearly between its bounds (as Prometheus' histogram_quantile
  // does). Observations past 100 s read as 100 s. 0 when empty.
  double Percentile(double q) const {
    if (count_ == 0) return 0;
    double rank = q * static_cast<double>(count_);
    uint64_t target = static_cast<uint64_t>(rank);
    if (static_cast<double>(target) < rank) ++target;  // ceil
    target = std::clamp<uint64_t>(target, 1, count_);
    uint64_t below = 0;
    for (int i = 0; i < kBuckets; ++i) {
      uint64_t n = counts_[static_cast<size_t>(i)];
      if (below + n >= target) {
        if (i == kFiniteBuckets) return static_cast<double>(kUpperBoundsUs[kFiniteBuckets - 1]);
        double lower = i == 0 ? 0.0 : static_cast<double>(kUpperBoundsUs[static_cast<size_t>(i - 1)]);
        double upper = static_cast<double>(kUpperBoundsUs[static_cast<size_t>(i)]);
        return lower + (upper - lower) * static_cast<double>(target - below) / static_cast<double>(n);
      }
      below += n;
    }
    return static_cast<double>(kUpperBoundsUs[kFiniteBuckets - 1]);  // not reached
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_us_ = 0;
};

// A pool shard's three histograms. Counts match SHOW STATS: one transaction observation per
// total_xact_count, one query per total_query_count, one wait per
// total_server_assignment_count, and their sums are total_xact_time, total_query_time and
// total_wait_time.
struct PoolLatency {
  LatencyHistogram xact;
  LatencyHistogram query;
  LatencyHistogram wait;

  void Merge(const PoolLatency& other) {
    xact.Merge(other.xact);
    query.Merge(other.query);
    wait.Merge(other.wait);
  }
};

}  // namespace rb::engine
