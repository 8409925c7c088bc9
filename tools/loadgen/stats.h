// What each worker thread measures. Every worker writes only its own Stats; they live in one
// shared mapping (MAP_SHARED, made before --procs forks), so the parent process reads the
// progress counters while the workers run and merges everything once they are done.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "tools/loadgen/histogram.h"

namespace rb::loadgen {

// Errors by (SQLSTATE, message), in fixed storage so that it can sit in shared memory. Local
// failures (connect errors, timeouts, a closed connection) have an empty SQLSTATE. Past
// kEntries - 1 distinct kinds, the rest are counted together in a last entry.
class ErrorTable {
 public:
  static constexpr int kEntries = 32;
  static constexpr size_t kMessageBytes = 200;

  struct Entry {
    char sqlstate[6];
    char message[kMessageBytes];
    uint64_t count;
  };

  void Add(absl::string_view sqlstate, absl::string_view message, uint64_t count = 1);
  void Merge(const ErrorTable& other);
  int size() const { return size_; }
  const Entry& entry(int i) const { return entries_[i]; }

 private:
  Entry entries_[kEntries];
  int size_ = 0;
};

// A counter with a single writer and readers elsewhere (the monitor): a relaxed load and store,
// cheaper than an atomic read-modify-write.
inline void Bump(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

struct Stats {
  // Read by the monitor while the run goes on.
  std::atomic<uint64_t> logins{0};          // successful logins (every mode)
  std::atomic<uint64_t> login_failures{0};
  std::atomic<uint64_t> transactions{0};    // query: requests answered without error
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> finished{false};
  // Read once the worker finished.
  int64_t window_ns = 0;       // the measured time: query and logins: the run; idle: the hold
  int64_t login_phase_ns = 0;  // idle and query: until every first login succeeded or failed
  uint64_t held = 0;           // idle: clients still logged in when the hold ended
  LatencyHistogram latency;    // query: per request; logins: per login
  ErrorTable error_table;

  void RecordError(absl::string_view sqlstate, absl::string_view message) {
    Bump(errors);
    error_table.Add(sqlstate, message);
  }
};

// Everything the workers measured, merged.
struct Totals {
  uint64_t logins = 0, login_failures = 0, transactions = 0, errors = 0, held = 0;
  double tps = 0, logins_per_s = 0;  // each worker's count over its own window, summed
  double window_s = 0;               // the longest window
  double login_phase_s = 0;          // the longest login phase
  LatencyHistogram latency;
  ErrorTable error_table;

  void Add(const Stats& s);
};

}  // namespace rb::loadgen
