// FrameScanner throughput over a realistic server stream, the way the forwarding path sees it:
// 16 KiB receive buffers (the provided-buffer size) cut wherever they fall, messages straddling
// the cuts. Plus the startup parser, which runs once per login.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/frame_scanner.h"
#include "proto/messages.h"
#include "proto/startup.h"
#include "proto/txn_tracker.h"

namespace rb::proto {
namespace {

constexpr uint32_t kChunk = 16 * 1024;
constexpr uint32_t kMaxBody = 1u << 30;

// About 1 MiB of what a server sends for `SELECT id, name, created FROM t`: a RowDescription,
// many DataRows of typical widths, CommandComplete, ReadyForQuery, with a ParameterStatus and a
// NoticeResponse now and then, repeated.
const std::string& ServerStream() {
  static const std::string stream = [] {
    std::string s;
    const Column columns[] = {{"id", ColumnType::kInt8},
                              {"name", ColumnType::kText},
                              {"created", ColumnType::kTimestamptz}};
    uint64_t id = 0;
    while (s.size() < (1u << 20)) {
      AppendRowDescription(&s, columns);
      for (int row = 0; row < 200; ++row, ++id) {
        DataRowWriter w(&s);
        w.AddUint(id * 7919);
        w.AddText(absl::StrCat("customer-", id, (id % 3 == 0) ? "-with-a-longer-name" : ""));
        w.AddText("2024-05-17 12:34:56.789012+00");
        w.Finish();
      }
      AppendCommandComplete(&s, "SELECT 200");
      if (id % 1000 == 0) AppendParameterStatus(&s, "application_name", "bench");
      AppendReadyForQuery(&s, kTxnIdle);
    }
    return s;
  }();
  return stream;
}

// Client side: no collection at all, just message boundaries and the Terminate check.
struct ForwardVisitor {
  uint64_t messages = 0;
  bool OnType(uint8_t type) { return type != msg::kTerminate; }
  bool OnHeader(uint8_t, uint32_t) { return false; }
  void OnBody(uint8_t, const uint8_t*, uint32_t) {}
  void OnEnd(uint8_t) { ++messages; }
};

// Server side: collect ReadyForQuery (pooling decision) and ParameterStatus (client parameter
// tracking), feed the transaction tracker.
struct ServerVisitor {
  TxnTracker* tracker;
  uint64_t params = 0;
  bool OnType(uint8_t) { return true; }
  bool OnHeader(uint8_t type, uint32_t) {
    return type == msg::kReadyForQuery || type == msg::kParameterStatus;
  }
  void OnBody(uint8_t type, const uint8_t* body, uint32_t len) {
    if (type == msg::kReadyForQuery && len == 1) {
      tracker->OnReadyForQuery(body[0]);
    } else {
      params += len;
    }
  }
  void OnEnd(uint8_t) {}
};

void BM_FrameScannerClientSide(benchmark::State& state) {
  const std::string& s = ServerStream();
  const auto* data = reinterpret_cast<const uint8_t*>(s.data());
  FrameScanner<0> scanner;
  ForwardVisitor v;
  for (auto _ : state) {
    for (size_t off = 0; off < s.size(); off += kChunk) {
      uint32_t n = static_cast<uint32_t>(std::min<size_t>(kChunk, s.size() - off));
      ScanResult r = scanner.Scan(data + off, n, kMaxBody, v);
      benchmark::DoNotOptimize(r);
    }
  }
  benchmark::DoNotOptimize(v.messages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_FrameScannerClientSide);

void BM_FrameScannerServerSide(benchmark::State& state) {
  const std::string& s = ServerStream();
  const auto* data = reinterpret_cast<const uint8_t*>(s.data());
  FrameScanner<256> scanner;
  TxnTracker tracker;
  ServerVisitor v{&tracker};
  for (auto _ : state) {
    for (size_t off = 0; off < s.size(); off += kChunk) {
      uint32_t n = static_cast<uint32_t>(std::min<size_t>(kChunk, s.size() - off));
      ScanResult r = scanner.Scan(data + off, n, kMaxBody, v);
      benchmark::DoNotOptimize(r);
    }
  }
  benchmark::DoNotOptimize(v.params);
  benchmark::DoNotOptimize(tracker.status());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_FrameScannerServerSide);

void BM_StartupParser(benchmark::State& state) {
  // What psql 15 sends, plus the parameters JDBC adds.
  std::string packet;
  const StartupParam params[] = {{"user", "app_user"},
                                 {"database", "appdb"},
                                 {"application_name", "psql"},
                                 {"client_encoding", "UTF8"},
                                 {"DateStyle", "ISO"},
                                 {"TimeZone", "UTC"},
                                 {"extra_float_digits", "3"}};
  AppendStartupMessage(&packet, params);
  const auto* data = reinterpret_cast<const uint8_t*>(packet.data());
  StartupPacket parsed;
  for (auto _ : state) {
    StartupError e = ParseStartupPacket(data, static_cast<uint32_t>(packet.size()), &parsed);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(parsed.user());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * packet.size()));
}
BENCHMARK(BM_StartupParser);

}  // namespace
}  // namespace rb::proto
