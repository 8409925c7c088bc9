// Running pgbench (against PostgreSQL or ringbouncer) and reading its summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rb::test {

struct PgbenchResult {
  int exit_code = -1;  // as Subprocess::Wait; -1000 on timeout
  bool parsed = false;  // the summary was found (transactions and tps lines)
  double tps = 0;       // "tps = N (without initial connection time)"
  int64_t transactions = 0;  // "number of transactions actually processed: N"
  int64_t failed = 0;        // "number of failed transactions: N (x%)" (pgbench 15+; else 0)
  double latency_avg_ms = 0;  // "latency average = N ms"
  std::string output;         // stdout then stderr, for failure messages
};

// Parses pgbench's summary; exit_code is left as -1.
PgbenchResult ParsePgbenchOutput(std::string_view output);

// Runs PgBinDir()/pgbench with `args` (e.g. {"-h", "127.0.0.1", "-p", "6432", "-U", "rb_md5",
// "-T", "2", "-c", "4", "rbtest"}) and `env` ("PGPASSWORD=md5pass") added to the environment.
PgbenchResult RunPgbench(const std::vector<std::string>& args,
                         const std::vector<std::string>& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(300));

}  // namespace rb::test
