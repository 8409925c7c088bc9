// A log-linear latency histogram (HdrHistogram's layout, fixed-size): values below 2^(kSubBits+1)
// are counted exactly, and each power of two above is cut into 2^kSubBits equal steps, so any
// value is known to within 1/32 (3%). Recording is an index computation and an increment: no
// allocation per sample, and two histograms merge by adding their counts.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace rb::loadgen {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr int kMaxBits = 40;  // 2^40 ns is 18 minutes; longer values are clamped
  static constexpr size_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;

  void Record(uint64_t value) {
    if (value >= (uint64_t{1} << kMaxBits)) value = (uint64_t{1} << kMaxBits) - 1;
    ++buckets_[Index(value)];
    ++count_;
    sum_ += value;
    if (value > max_) max_ = value;
    if (count_ == 1 || value < min_) min_ = value;
  }

  void Merge(const LatencyHistogram& other) {
    if (other.count_ == 0) return;
    for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
    if (count_ == 0 || other.min_ < min_) min_ = other.min_;
    if (other.max_ > max_) max_ = other.max_;
    count_ += other.count_;
    sum_ += other.sum_;
  }

  uint64_t count() const { return count_; }
  uint64_t min() const { return min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }

  // The value below which a fraction q (0..1) of the samples lie: the middle of the bucket
  // holding that rank, kept within [min, max].
  uint64_t Percentile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        uint64_t mid = Lower(i) + Width(i) / 2;
        return mid < min_ ? min_ : mid > max_ ? max_ : mid;
      }
    }
    return max_;
  }

  // Bucket layout, public for tests.
  static size_t Index(uint64_t value) {
    if (value < 2 * kSub) return static_cast<size_t>(value);
    const int shift = std::bit_width(value) - kSubBits - 1;  // >= 1
    return static_cast<size_t>(uint64_t(shift) * kSub + (value >> shift));
  }
  static uint64_t Lower(size_t index) {
    if (index < 2 * kSub) return index;
    const uint64_t shift = index / kSub - 1;
    return (index - shift * kSub) << shift;
  }
  static uint64_t Width(size_t index) { return index < 2 * kSub ? 1 : uint64_t{1} << (index / kSub - 1); }

 private:
  uint64_t buckets_[kBuckets] = {};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
};

}  // namespace rb::loadgen
