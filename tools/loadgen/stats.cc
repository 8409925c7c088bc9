#include "tools/loadgen/stats.h"

#include <algorithm>
#include <cstring>

namespace rb::loadgen {
namespace {

void CopyTruncated(char* to, size_t size, absl::string_view from) {
  size_t n = std::min(from.size(), size - 1);
  std::memcpy(to, from.data(), n);
  to[n] = '\0';
}

}  // namespace

void ErrorTable::Add(absl::string_view sqlstate, absl::string_view message, uint64_t count) {
  auto find = [this](absl::string_view state, absl::string_view text) -> Entry* {
    text = text.substr(0, kMessageBytes - 1);
    for (int i = 0; i < size_; ++i) {
      if (entries_[i].sqlstate == state && entries_[i].message == text) return &entries_[i];
    }
    return nullptr;
  };
  Entry* e = find(sqlstate, message);
  if (e == nullptr && size_ == kEntries - 1) {
    // The last entry is kept for whatever does not fit.
    sqlstate = "";
    message = "(more kinds of errors than rb-loadgen keeps)";
    e = find(sqlstate, message);
  }
  if (e == nullptr) {
    e = &entries_[size_++];
    CopyTruncated(e->sqlstate, sizeof e->sqlstate, sqlstate);
    CopyTruncated(e->message, sizeof e->message, message);
    e->count = 0;
  }
  e->count += count;
}

void ErrorTable::Merge(const ErrorTable& other) {
  for (int i = 0; i < other.size_; ++i) Add(other.entries_[i].sqlstate, other.entries_[i].message, other.entries_[i].count);
}

void Totals::Add(const Stats& s) {
  logins += s.logins.load();
  login_failures += s.login_failures.load();
  transactions += s.transactions.load();
  errors += s.errors.load();
  held += s.held;
  if (s.window_ns > 0) {
    const double window = static_cast<double>(s.window_ns) / 1e9;
    tps += static_cast<double>(s.transactions.load()) / window;
    logins_per_s += static_cast<double>(s.logins.load()) / window;
    window_s = std::max(window_s, window);
  }
  login_phase_s = std::max(login_phase_s, static_cast<double>(s.login_phase_ns) / 1e9);
  latency.Merge(s.latency);
  error_table.Merge(s.error_table);
}

}  // namespace rb::loadgen
