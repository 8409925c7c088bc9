// The metrics endpoint's pieces that need no sockets: the HTTP request parser
// (engine/http_request.h), metrics_listen's host:port, and the Prometheus page rendered from
// gathered worker parts (engine/metrics_text.cc).
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "engine/admin_request.h"
#include "engine/config.h"
#include "engine/http_request.h"
#include "engine/metrics_server.h"
#include "engine/shared_state.h"
#include "tests/catch.h"

namespace rb::engine {
namespace {

constexpr size_t kMax = 8192;

HttpParseStatus Parse(const std::string& text, HttpRequest* r = nullptr) {
  HttpRequest local;
  return ParseHttpRequest(text, kMax, r ? r : &local);
}

TEST_CASE("http request: GET /metrics with Host parses with or without a query string") {
  HttpRequest r;
  std::string text = "GET /metrics?x=1 HTTP/1.1\r\nHost: localhost:9127\r\nAccept: */*\r\n\r\n";
  REQUIRE(Parse(text, &r) == HttpParseStatus::kOk);
  CHECK(r.method == "GET");
  CHECK(r.path == "/metrics");
  CHECK(r.minor_version == 1);
  CHECK(r.keep_alive);
  CHECK(r.head_bytes == text.size());
  // What follows the head (a pipelined request) is not consumed.
  REQUIRE(Parse(text + "GET /x HTTP/1.1\r\n", &r) == HttpParseStatus::kOk);
  CHECK(r.head_bytes == text.size());
}

TEST_CASE("http request: every split of a request needs more until the blank line") {
  std::string text = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t cut = 0; cut < text.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK(Parse(text.substr(0, cut)) == HttpParseStatus::kNeedMore);
  }
  CHECK(Parse(text) == HttpParseStatus::kOk);
}

TEST_CASE("http request: keep-alive follows the version and the Connection header") {
  HttpRequest r;
  REQUIRE(Parse("GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", &r) == HttpParseStatus::kOk);
  CHECK(!r.keep_alive);
  REQUIRE(Parse("GET /metrics HTTP/1.0\r\n\r\n", &r) == HttpParseStatus::kOk);
  CHECK(r.minor_version == 0);
  CHECK(!r.keep_alive);
  REQUIRE(Parse("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r) == HttpParseStatus::kOk);
  CHECK(r.keep_alive);
  // Bare LF line ends and leading blank lines are tolerated.
  REQUIRE(Parse("\r\nGET /metrics HTTP/1.1\nHost: a\n\n", &r) == HttpParseStatus::kOk);
  CHECK(r.path == "/metrics");
}

TEST_CASE("http request: malformed requests are bad") {
  for (const char* bad : {
           "garbage\r\n\r\n",
           "GET /metrics\r\n\r\n",
           "GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n",
           "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
           "GET metrics HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET /metrics HTTP/1.1\r\n\r\n",                          // HTTP/1.1 without Host
           "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",    // two Hosts
           "GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n",              // blank before the colon
           "GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",    // obsolete folding
           "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
           "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
           "GET /metrics HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
           "GET /me\rtrics HTTP/1.1\r\nHost: a\r\n\r\n",
       }) {
    INFO(bad);
    CHECK(Parse(bad) == HttpParseStatus::kBad);
  }
  static constexpr char kNul[] = "GET /metrics HTTP/1.1\r\nHost: a\0b\r\n\r\n";
  CHECK(Parse(std::string(kNul, sizeof(kNul) - 1)) == HttpParseStatus::kBad);
  // Content-Length: 0 is no body.
  CHECK(Parse("GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") == HttpParseStatus::kOk);
  // Other methods parse; the server answers them with 405.
  HttpRequest r;
  REQUIRE(Parse("DELETE /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r) == HttpParseStatus::kOk);
  CHECK(r.method == "DELETE");
}

TEST_CASE("http request: a head past the limit is too large whether it ended or not") {
  std::string big = "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Pad: " + std::string(kMax, 'a');
  CHECK(Parse(big) == HttpParseStatus::kTooLarge);
  CHECK(Parse(big + "\r\n\r\n") == HttpParseStatus::kTooLarge);
  CHECK(Parse(std::string(kMax, '\n').insert(0, "x")) != HttpParseStatus::kOk);
}

TEST_CASE("metrics_listen: host:port forms") {
  std::string host;
  int port = 0;
  REQUIRE(ParseHostPort("127.0.0.1:9127", &host, &port).ok());
  CHECK(host == "127.0.0.1");
  CHECK(port == 9127);
  REQUIRE(ParseHostPort("*:1", &host, &port).ok());
  CHECK(host == "*");
  REQUIRE(ParseHostPort("[::1]:9127", &host, &port).ok());
  CHECK(host == "::1");
  REQUIRE(ParseHostPort("localhost:65535", &host, &port).ok());
  for (const char* bad : {"", "9127", ":9127", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "::1:9127", "[::1:9127", "[]:9127", "host:port", "a b:1"}) {
    INFO(bad);
    CHECK(!ParseHostPort(bad, &host, &port).ok());
  }
}

TEST_CASE("metrics_listen: an invalid value fails the config load and an empty one is off") {
  LoadResult bad = LoadConfigText("[pgbouncer]\nmetrics_listen = 9127\n", "test.ini");
  CHECK(!bad.ok());
  LoadResult good = LoadConfigText("[pgbouncer]\nmetrics_listen = 127.0.0.1:9127\n", "test.ini");
  REQUIRE(good.ok());
  CHECK(good.config->settings.metrics_listen == "127.0.0.1:9127");
  LoadResult off = LoadConfigText("[pgbouncer]\n", "test.ini");
  REQUIRE(off.ok());
  CHECK(off.config->settings.metrics_listen.empty());
}

TEST_CASE("metrics page: parts of two workers merge into exporter-named families and histograms") {
  LoadResult loaded = LoadConfigText(
      "[databases]\napp = host=127.0.0.1 dbname=app pool_size=7\n[pgbouncer]\nmax_client_conn = 55\n", "test.ini");
  REQUIRE(loaded.ok());
  SharedState shared(2, 64);
  AdminRequest r;
  r.parts.resize(2);
  for (int w = 0; w < 2; ++w) {
    AdminWorkerPart& part = r.parts[static_cast<size_t>(w)];
    part.answered = true;
    part.clients = 3;
    part.cpu_us = 1'500'000;
    AdminPoolPart p;
    p.database = "app";
    p.user = "u\"1";  // label values are escaped
    p.cl_active = 2;
    p.stats.xacts = 10;
    p.stats.xact_time_us = 1'000'001;
    for (int i = 0; i < 10; ++i) p.latency.xact.Record(100'000);
    part.pools.push_back(p);
  }
  std::string page = RenderPrometheusMetrics(r, *loaded.config, &shared);
  auto has = [&](const std::string& line) {
    INFO(line);
    CHECK(absl::StrContains(page, "\n" + line + "\n"));
  };
  has("pgbouncer_pools_client_active_connections{database=\"app\",user=\"u\\\"1\"} 4");
  has("pgbouncer_stats_sql_transactions_pooled_total{database=\"app\"} 20");
  has("pgbouncer_stats_server_in_transaction_seconds_total{database=\"app\"} 2.000002");
  has("pgbouncer_databases_pool_size{database=\"app\"} 7");
  has("pgbouncer_config_max_client_connections 55");
  has("pgbouncer_used_clients 6");
  has("ringbouncer_worker_cpu_seconds_total{worker=\"1\"} 1.5");
  has("# TYPE ringbouncer_transaction_duration_seconds histogram");
  has("ringbouncer_transaction_duration_seconds_bucket{database=\"app\",le=\"0.09\"} 0");
  has("ringbouncer_transaction_duration_seconds_bucket{database=\"app\",le=\"0.1\"} 20");
  has("ringbouncer_transaction_duration_seconds_bucket{database=\"app\",le=\"100\"} 20");
  has("ringbouncer_transaction_duration_seconds_bucket{database=\"app\",le=\"+Inf\"} 20");
  has("ringbouncer_transaction_duration_seconds_sum{database=\"app\"} 2");
  has("ringbouncer_transaction_duration_seconds_count{database=\"app\"} 20");
  has("ringbouncer_query_duration_seconds_count{database=\"app\"} 0");
  // Every non-comment line is "name{labels} value" or "name value"; every family has HELP and TYPE.
  int types = 0, helps = 0;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# TYPE ")) ++types;
    if (absl::StartsWith(line, "# HELP ")) ++helps;
  }
  CHECK(types == helps);
  CHECK(types > 30);
}

}  // namespace
}  // namespace rb::engine
