// rb-loadgen's output: one JSON object on stdout for scripts (perf/run), a few lines on stderr
// for people.
#pragma once

#include <string>

#include "tools/loadgen/options.h"
#include "tools/loadgen/stats.h"

namespace rb::loadgen {

struct RunFacts {
  double elapsed_s = 0;  // wall time of the whole run
  double cpu_user_s = 0;  // rb-loadgen's own CPU, all processes
  double cpu_system_s = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM
};

std::string JsonReport(const Options& o, const Totals& t, const RunFacts& facts);
std::string TextSummary(const Options& o, const Totals& t, const RunFacts& facts);

}  // namespace rb::loadgen
