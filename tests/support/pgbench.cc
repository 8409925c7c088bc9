#include "tests/support/pgbench.h"

#include <cstdlib>
#include <sstream>

#include "tests/support/paths.h"
#include "tests/support/process.h"

namespace rb::test {
namespace {

// If `line` starts with `prefix`, parses the number right after it.
bool NumberAfter(const std::string& line, std::string_view prefix, double* out) {
  if (line.rfind(prefix, 0) != 0) return false;
  const char* start = line.c_str() + prefix.size();
  char* end = nullptr;
  double value = std::strtod(start, &end);
  if (end == start) return false;
  *out = value;
  return true;
}

}  // namespace

PgbenchResult ParsePgbenchOutput(std::string_view output) {
  PgbenchResult result;
  result.output = std::string(output);
  bool have_transactions = false, have_tps = false;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    double value;
    if (NumberAfter(line, "number of transactions actually processed: ", &value)) {
      result.transactions = static_cast<int64_t>(value);
      have_transactions = true;
    } else if (NumberAfter(line, "number of failed transactions: ", &value)) {
      result.failed = static_cast<int64_t>(value);
    } else if (NumberAfter(line, "latency average = ", &value)) {
      result.latency_avg_ms = value;
    } else if (NumberAfter(line, "tps = ", &value)) {
      // pgbench 14+ prints one tps line; older ones print "including connections establishing"
      // first and "excluding" second: the last one wins, and that is the one we want.
      result.tps = value;
      have_tps = true;
    }
  }
  result.parsed = have_transactions && have_tps;
  return result;
}

PgbenchResult RunPgbench(const std::vector<std::string>& args, const std::vector<std::string>& env,
                         std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {PgBinDir() + "/pgbench"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult ran = RunCommand(argv, timeout, env);
  PgbenchResult result = ParsePgbenchOutput(ran.out + ran.err);
  result.exit_code = ran.exit_code;
  return result;
}

}  // namespace rb::test
