#include "tools/loadgen/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rb::loadgen {
namespace {

// A JSON string literal: quotes, backslashes and control bytes escaped. Other bytes pass as
// they are (server messages are UTF-8).
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", ch);
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1e3; }

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kIdle:
      return "idle";
    case Mode::kLogins:
      return "logins";
    case Mode::kQuery:
      return "query";
  }
  return "?";
}

std::string JsonReport(const Options& o, const Totals& t, const RunFacts& facts) {
  std::string j = absl::StrCat("{\"mode\": ", Quote(ModeName(o.mode)), ", \"target\": ", Quote(o.target),
                               ", \"user\": ", Quote(o.user), ", \"clients\": ", o.clients,
                               ", \"threads\": ", o.threads, ", \"procs\": ", o.procs);
  switch (o.mode) {
    case Mode::kIdle:
      absl::StrAppendFormat(&j, ", \"requested\": %d, \"logged_in\": %d, \"held\": %d, \"login_time_s\": %.3f, \"hold_s\": %.3f",
                            o.clients, t.logins, t.held, t.login_phase_s, t.window_s);
      break;
    case Mode::kLogins:
      absl::StrAppendFormat(&j, ", \"duration_s\": %.3f, \"logins\": %d, \"logins_per_s\": %.1f", t.window_s, t.logins, t.logins_per_s);
      break;
    case Mode::kQuery:
      absl::StrAppend(&j, ", \"sql\": ", Quote(o.sql), ", \"protocol\": ", Quote(o.protocol),
                      ", \"prepared\": ", o.prepared ? "true" : "false", ", \"pipeline\": ", o.pipeline);
      absl::StrAppendFormat(&j, ", \"duration_s\": %.3f, \"transactions\": %d, \"tps\": %.1f, \"login_time_s\": %.3f",
                            t.window_s, t.transactions, t.tps, t.login_phase_s);
      break;
  }
  if (o.mode != Mode::kIdle) {
    const LatencyHistogram& h = t.latency;
    absl::StrAppendFormat(&j,
                          ", \"latency_us\": {\"count\": %d, \"mean\": %.1f, \"min\": %.1f, \"p50\": %.1f, \"p90\": %.1f, "
                          "\"p99\": %.1f, \"p99_9\": %.1f, \"max\": %.1f}",
                          h.count(), h.mean() / 1e3, Micros(h.min()), Micros(h.Percentile(0.5)), Micros(h.Percentile(0.9)),
                          Micros(h.Percentile(0.99)), Micros(h.Percentile(0.999)), Micros(h.max()));
  }
  absl::StrAppendFormat(&j, ", \"login_failures\": %d, \"errors\": %d, \"error_counts\": [", t.login_failures, t.errors);
  for (int i = 0; i < t.error_table.size(); ++i) {
    const ErrorTable::Entry& e = t.error_table.entry(i);
    absl::StrAppend(&j, i ? ", " : "", "{\"sqlstate\": ", Quote(e.sqlstate), ", \"message\": ", Quote(e.message),
                    ", \"count\": ", e.count, "}");
  }
  absl::StrAppendFormat(&j, "], \"interrupted\": %s, \"elapsed_s\": %.3f, \"cpu_user_s\": %.3f, \"cpu_system_s\": %.3f}\n",
                        facts.interrupted ? "true" : "false", facts.elapsed_s, facts.cpu_user_s, facts.cpu_system_s);
  return j;
}

std::string TextSummary(const Options& o, const Totals& t, const RunFacts& facts) {
  std::string s = absl::StrFormat("rb-loadgen %s against %s as %s:", ModeName(o.mode), o.target, o.user);
  switch (o.mode) {
    case Mode::kIdle:
      absl::StrAppendFormat(&s, " %d of %d clients logged in within %.2f s; %d still held after %.1f s\n", t.logins,
                            o.clients, t.login_phase_s, t.held, t.window_s);
      break;
    case Mode::kLogins:
      absl::StrAppendFormat(&s, " %d logins in %.2f s: %.0f logins/s with %d clients\n", t.logins, t.window_s,
                            t.logins_per_s, o.clients);
      break;
    case Mode::kQuery:
      absl::StrAppendFormat(&s, " %d transactions in %.2f s: %.0f tps with %d clients, %s%s, pipeline %d\n",
                            t.transactions, t.window_s, t.tps, o.clients, o.protocol, o.prepared ? " prepared" : "",
                            o.pipeline);
      break;
  }
  if (o.mode != Mode::kIdle && t.latency.count() > 0) {
    const LatencyHistogram& h = t.latency;
    absl::StrAppendFormat(&s, "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
                          Micros(h.Percentile(0.5)) / 1e3, Micros(h.Percentile(0.9)) / 1e3,
                          Micros(h.Percentile(0.99)) / 1e3, Micros(h.Percentile(0.999)) / 1e3, Micros(h.max()) / 1e3);
  }
  absl::StrAppendFormat(&s, "  rb-loadgen CPU: %.2f s user, %.2f s system over %.2f s%s\n", facts.cpu_user_s,
                        facts.cpu_system_s, facts.elapsed_s, facts.interrupted ? " (interrupted)" : "");
  absl::StrAppendFormat(&s, "  errors: %d\n", t.errors);
  for (int i = 0; i < t.error_table.size(); ++i) {
    const ErrorTable::Entry& e = t.error_table.entry(i);
    absl::StrAppendFormat(&s, "    %8d  %s%s%s\n", e.count, e.sqlstate, e.sqlstate[0] ? "  " : "", e.message);
  }
  return s;
}

}  // namespace rb::loadgen
