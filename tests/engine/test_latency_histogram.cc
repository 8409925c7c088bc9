// The latency histogram (engine/latency_histogram.h): fixed log-linear bucket bounds, the
// bucket each value lands in, percentile extraction, and merging.
#include "engine/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "tests/catch.h"

namespace rb::engine {
namespace {

using H = LatencyHistogram;

// Catch2 v2 and v3 spell Approx differently; a relative tolerance is all these checks need.
bool Near(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

TEST_CASE("latency histogram: bounds are 1..9 per decade from 1 us to 100 s and strictly increase") {
  REQUIRE(H::kFiniteBuckets == 73);
  CHECK(H::kUpperBoundsUs.front() == 1);
  CHECK(H::kUpperBoundsUs[8] == 9);
  CHECK(H::kUpperBoundsUs[9] == 10);
  CHECK(H::kUpperBoundsUs[10] == 20);
  CHECK(H::kUpperBoundsUs[18] == 100);
  CHECK(H::kUpperBoundsUs.back() == 100'000'000);
  for (size_t i = 1; i < H::kUpperBoundsUs.size(); ++i) CHECK(H::kUpperBoundsUs[i] > H::kUpperBoundsUs[i - 1]);
}

TEST_CASE("latency histogram: a value lands in the first bucket whose inclusive bound is at least the value") {
  CHECK(H::BucketOf(0) == 0);
  CHECK(H::BucketOf(1) == 0);
  CHECK(H::BucketOf(2) == 1);
  CHECK(H::BucketOf(9) == 8);
  CHECK(H::BucketOf(10) == 9);
  CHECK(H::BucketOf(11) == 10);  // (10, 20]
  CHECK(H::BucketOf(20) == 10);
  CHECK(H::BucketOf(21) == 11);
  CHECK(H::BucketOf(99) == 18);  // (90, 100]
  CHECK(H::BucketOf(100) == 18);
  CHECK(H::BucketOf(101) == 19);
  CHECK(H::BucketOf(100'000'000) == H::kFiniteBuckets - 1);
  CHECK(H::BucketOf(100'000'001) == H::kFiniteBuckets);  // +Inf
  CHECK(H::BucketOf(UINT64_MAX) == H::kFiniteBuckets);
  // Every bound lands in its own bucket, and the value just above it in the next.
  for (int i = 0; i < H::kFiniteBuckets; ++i) {
    CHECK(H::BucketOf(H::kUpperBoundsUs[static_cast<size_t>(i)]) == i);
    CHECK(H::BucketOf(H::kUpperBoundsUs[static_cast<size_t>(i)] + 1) == i + 1);
  }
}

TEST_CASE("latency histogram: record counts and sums and fills buckets") {
  H h;
  CHECK(h.count() == 0);
  CHECK(h.Percentile(0.5) == 0);
  h.Record(0);
  h.Record(15);
  h.Record(15);
  h.Record(200'000'000);
  CHECK(h.count() == 4);
  CHECK(h.sum_us() == 200'000'030);
  CHECK(h.bucket(0) == 1);
  CHECK(h.bucket(10) == 2);
  CHECK(h.bucket(H::kFiniteBuckets) == 1);
  uint64_t total = 0;
  for (int i = 0; i < H::kBuckets; ++i) total += h.bucket(i);
  CHECK(total == h.count());
}

TEST_CASE("latency histogram: percentiles interpolate inside the bucket of the ranked observation") {
  H h;
  // 100 observations of 150 us: bucket (100, 200]. The p50 is the 50th of 100 in that bucket.
  for (int i = 0; i < 100; ++i) h.Record(150);
  CHECK(Near(h.Percentile(0.5), 150.0));
  CHECK(Near(h.Percentile(1.0), 200.0));
  CHECK(Near(h.Percentile(0.01), 101.0));

  // 990 fast (5 us) and 10 slow (2 ms): p50 among the fast, p99 at the last fast one, p99.9 slow.
  H g;
  for (int i = 0; i < 990; ++i) g.Record(5);
  for (int i = 0; i < 10; ++i) g.Record(2000);
  CHECK(g.Percentile(0.5) > 4.0);
  CHECK(g.Percentile(0.5) <= 5.0);
  CHECK(Near(g.Percentile(0.99), 5.0));
  CHECK(g.Percentile(0.999) > 1000.0);
  CHECK(g.Percentile(0.999) <= 2000.0);

  // Past 100 s reads as 100 s.
  H slow;
  slow.Record(500'000'000);
  CHECK(Near(slow.Percentile(0.5), 100'000'000.0));
}

TEST_CASE("latency histogram: percentiles of a random sample are within one bucket of the exact ones") {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(6.0, 1.5);  // a median near 400 us, a long tail
  H h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100'000; ++i) {
    uint64_t v = static_cast<uint64_t>(dist(rng));
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.99, 0.999}) {
    uint64_t exact = values[static_cast<size_t>(q * static_cast<double>(values.size())) - 1];
    double got = h.Percentile(q);
    int bucket = H::BucketOf(exact);
    double lower = bucket == 0 ? 0.0 : static_cast<double>(H::kUpperBoundsUs[static_cast<size_t>(bucket - 1)]);
    double upper = static_cast<double>(H::kUpperBoundsUs[static_cast<size_t>(bucket)]);
    INFO("q=" << q << " exact=" << exact << " got=" << got);
    CHECK(got >= lower);
    CHECK(got <= upper);
  }
}

TEST_CASE("latency histogram: merging adds buckets and counts and sums") {
  H a, b;
  a.Record(3);
  a.Record(3000);
  b.Record(3);
  b.Record(7'000'000);
  H m = a;
  m.Merge(b);
  CHECK(m.count() == 4);
  CHECK(m.sum_us() == 3 + 3000 + 3 + 7'000'000);
  CHECK(m.bucket(H::BucketOf(3)) == 2);
  CHECK(m.bucket(H::BucketOf(3000)) == 1);
  CHECK(m.bucket(H::BucketOf(7'000'000)) == 1);
  // Merging the parts gives the same percentiles as recording everything in one.
  H one;
  for (uint64_t v : {3, 3000, 3, 7'000'000}) one.Record(v);
  for (double q : {0.5, 0.99, 0.999}) CHECK(Near(m.Percentile(q), one.Percentile(q)));

  PoolLatency p, q;
  p.xact.Record(10);
  q.xact.Record(20);
  q.wait.Record(1);
  p.Merge(q);
  CHECK(p.xact.count() == 2);
  CHECK(p.wait.count() == 1);
  CHECK(p.query.count() == 0);
}

}  // namespace
}  // namespace rb::engine
