// The metrics endpoint (metrics_listen) and SHOW LATENCY against a real PostgreSQL: the page is
// scraped and parsed by Prometheus' own text-format parser (Debian's python3-prometheus-client),
// its counters equal SHOW STATS after a pgbench run, its histograms are well formed, and bad
// HTTP requests are refused while the endpoint keeps serving.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kAdminUser = "rb_admin";
constexpr std::string_view kAdminPassword = "adminpass";

RingbouncerOptions MetricsOptions(const PgCluster& pg, int metrics_port) {
  RingbouncerOptions o;
  o.settings = {{"admin_users", std::string(kAdminUser)},
                {"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)}};
  o.userlist = DefaultUserlist(pg);
  o.userlist.push_back(UserlistPlain(kAdminUser, kAdminPassword));
  return o;
}

std::string ConsoleConnString(const RingbouncerProcess& rb) {
  return "host=" + rb.Host() + " port=" + std::to_string(rb.Port()) + " dbname=pgbouncer user=" +
         std::string(kAdminUser) + " password=" + std::string(kAdminPassword) + " connect_timeout=20";
}

// A raw TCP exchange: connects, sends `request`, and reads until the server closes or
// `timeout` passes with nothing more. Returns what came back ("" if the connect failed).
std::string HttpExchange(int port, const std::string& request, std::chrono::milliseconds timeout = 5s,
                         bool* closed = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    close(fd);
    return "";
  }
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before it has read everything
    off += static_cast<size_t>(n);
  }
  std::string out;
  if (closed) *closed = false;
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(1, left)) <= 0) break;
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string StatusLine(const std::string& response) { return response.substr(0, response.find("\r\n")); }

// Scrapes http://127.0.0.1:port/metrics with urllib and parses it with
// prometheus_client.parser.text_string_to_metric_families. Checks every histogram (cumulative
// buckets in le order, +Inf equal to _count) and prints one "name|k=v,k=v|value" line per
// sample, then "families=N". Exits 1 on any problem.
constexpr const char* kScrapeScript = R"PY(
import math, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families

port = int(sys.argv[1])
with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=20) as resp:
    ctype = resp.headers.get("Content-Type", "")
    text = resp.read().decode("utf-8")
if not ctype.startswith("text/plain") or "version=0.0.4" not in ctype:
    print("bad content type: %r" % ctype)
    sys.exit(1)
bad = 0
families = list(text_string_to_metric_families(text))
for f in families:
    if not f.documentation:
        print("no HELP for %s" % f.name)
        bad += 1
    if f.type == "histogram":
        series = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "count": None, "sum": None})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
            elif s.name.endswith("_sum"):
                series[key]["sum"] = s.value
        for key, h in series.items():
            les = [le for le, _ in h["buckets"]]
            counts = [c for _, c in h["buckets"]]
            if les != sorted(les) or not les or not math.isinf(les[-1]):
                print("%s%s: le not increasing to +Inf" % (f.name, key)); bad += 1
            if any(b < a for a, b in zip(counts, counts[1:])):
                print("%s%s: buckets not cumulative" % (f.name, key)); bad += 1
            if h["count"] is None or h["sum"] is None or counts[-1] != h["count"]:
                print("%s%s: +Inf %r != count %r" % (f.name, key, counts[-1], h["count"])); bad += 1
    for s in f.samples:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()))
        print("%s|%s|%r" % (s.name, labels, s.value))
print("families=%d" % len(families))
sys.exit(1 if bad else 0)
)PY";

struct Scrape {
  bool ok = false;
  std::string output;
  std::map<std::string, double> samples;  // "name|labels" -> value
  double Get(const std::string& name, const std::string& labels = "") const {
    auto it = samples.find(name + "|" + labels);
    return it == samples.end() ? std::nan("") : it->second;
  }
};

Scrape ScrapeAndParse(const TempDir& dir, int metrics_port) {
  std::string script = dir.WriteFile("scrape.py", kScrapeScript);
  CommandResult r = RunCommand({"/usr/bin/python3", script, std::to_string(metrics_port)}, 60s);
  Scrape s;
  s.output = r.out + r.err;
  s.ok = r.exit_code == 0;
  size_t pos = 0;
  while (pos < r.out.size()) {
    size_t end = r.out.find('\n', pos);
    if (end == std::string::npos) end = r.out.size();
    std::string line = r.out.substr(pos, end - pos);
    pos = end + 1;
    size_t bar = line.rfind('|');
    if (bar == std::string::npos) continue;
    s.samples[line.substr(0, bar)] = std::stod(line.substr(bar + 1));
  }
  return s;
}

int64_t CellInt(const QueryResult& r, std::string_view key, std::string_view key_value, std::string_view column) {
  int k = -1, c = -1;
  for (size_t i = 0; i < r.columns.size(); ++i) {
    if (r.columns[i] == key) k = static_cast<int>(i);
    if (r.columns[i] == column) c = static_cast<int>(i);
  }
  if (k < 0 || c < 0) return -1;
  for (const auto& row : r.rows)
    if (row[static_cast<size_t>(k)] == key_value) return std::stoll(row[static_cast<size_t>(c)]);
  return -1;
}

// Seconds as the page writes them (exact decimals of microseconds), back to microseconds.
int64_t Micros(double seconds) { return std::llround(seconds * 1e6); }

PgbenchResult Pgbench(const RingbouncerProcess& rb, int clients, int seconds) {
  std::vector<std::string> args = rb.PgbenchArgs();
  for (const std::string& a : {std::string("-n"), std::string("-c"), std::to_string(clients), std::string("-j"),
                               std::string("2"), std::string("-T"), std::to_string(seconds), std::string(kTestDb)}) {
    args.push_back(a);
  }
  return RunPgbench(args, rb.PasswordEnv(), 120s);
}

TEST_CASE("metrics: the scraped page parses with the Prometheus parser and its counters equal SHOW STATS",
          "[integration][metrics]") {
  PgCluster& pg = PgCluster::Shared();
  const int metrics_port = FreeTcpPort();
  RingbouncerProcess rb(pg, MetricsOptions(pg, metrics_port));
  TempDir dir("rb-metrics");

  PgbenchResult bench = Pgbench(rb, 8, 3);
  INFO("pgbench:\n" << bench.output);
  REQUIRE(bench.exit_code == 0);
  REQUIRE(bench.transactions > 0);
  CHECK(bench.failed == 0);

  // Servers are released at each transaction's end, so after pgbench the numbers stand still.
  PgConn admin = PgConn::Connect(ConsoleConnString(rb));
  REQUIRE(admin.Ok());
  Scrape before = ScrapeAndParse(dir, metrics_port);
  QueryResult stats = admin.Exec("SHOW STATS");
  QueryResult pools = admin.Exec("SHOW POOLS");
  QueryResult workers = admin.Exec("SHOW WORKERS");
  Scrape page = ScrapeAndParse(dir, metrics_port);
  INFO("scrape:\n" << page.output.substr(0, 20000) << "\nlog:\n" << rb.LogTail());
  REQUIRE(stats.ok);
  REQUIRE(pools.ok);
  REQUIRE(before.ok);
  REQUIRE(page.ok);
  CHECK(page.output.find("families=") != std::string::npos);

  const std::string db = "database=" + std::string(kTestDb);
  auto stat = [&](const char* column) { return CellInt(stats, "database", kTestDb, column); };
  const int64_t xacts = stat("total_xact_count");
  CHECK(xacts >= bench.transactions);
  CHECK(page.Get("pgbouncer_stats_sql_transactions_pooled_total", db) == xacts);
  CHECK(page.Get("pgbouncer_stats_queries_pooled_total", db) == stat("total_query_count"));
  CHECK(page.Get("pgbouncer_stats_server_assignments_total", db) == stat("total_server_assignment_count"));
  CHECK(page.Get("pgbouncer_stats_received_bytes_total", db) == stat("total_received"));
  CHECK(page.Get("pgbouncer_stats_sent_bytes_total", db) == stat("total_sent"));
  CHECK(Micros(page.Get("pgbouncer_stats_server_in_transaction_seconds_total", db)) == stat("total_xact_time"));
  CHECK(Micros(page.Get("pgbouncer_stats_queries_duration_seconds_total", db)) == stat("total_query_time"));
  CHECK(Micros(page.Get("pgbouncer_stats_client_wait_seconds_total", db)) == stat("total_wait_time"));
  CHECK(page.Get("pgbouncer_stats_binds_total", db) == stat("total_bind_count"));
  // The scrape before SHOW STATS saw the same numbers: nothing moved.
  CHECK(before.Get("pgbouncer_stats_sql_transactions_pooled_total", db) == xacts);

  // Histograms: one observation per transaction, query and server assignment, and the same sums.
  CHECK(page.Get("ringbouncer_transaction_duration_seconds_count", db) == xacts);
  CHECK(page.Get("ringbouncer_query_duration_seconds_count", db) == stat("total_query_count"));
  CHECK(page.Get("ringbouncer_client_wait_seconds_count", db) == stat("total_server_assignment_count"));
  CHECK(Micros(page.Get("ringbouncer_transaction_duration_seconds_sum", db)) == stat("total_xact_time"));
  CHECK(Micros(page.Get("ringbouncer_query_duration_seconds_sum", db)) == stat("total_query_time"));
  CHECK(page.Get("ringbouncer_transaction_duration_seconds_bucket", db + ",le=+Inf") == xacts);
  // Non-empty: transactions take more than a microsecond, so the first bucket can't hold them all.
  CHECK(page.Get("ringbouncer_transaction_duration_seconds_bucket", db + ",le=0.000001") < xacts);
  CHECK(page.Get("ringbouncer_transaction_duration_seconds_bucket", db + ",le=100") <= xacts);

  // Pools: the same gauges as SHOW POOLS.
  const std::string pool = db + ",user=rb_md5";
  CHECK(page.Get("pgbouncer_pools_server_idle_connections", pool) ==
        CellInt(pools, "database", kTestDb, "sv_idle"));
  CHECK(page.Get("pgbouncer_pools_server_active_connections", pool) ==
        CellInt(pools, "database", kTestDb, "sv_active"));
  CHECK(page.Get("pgbouncer_pools_client_waiting_connections", pool) == 0);
  CHECK(page.Get("pgbouncer_pools_client_maxwait_seconds", pool) == 0);

  // Workers: their transactions add up to the pools'; CPU time is there.
  double worker_xacts = 0;
  for (int w = 0; w < 4; ++w) {
    const std::string label = "worker=" + std::to_string(w);
    worker_xacts += page.Get("ringbouncer_worker_transactions_total", label);
    CHECK(page.Get("ringbouncer_worker_cpu_seconds_total", label) >= 0);
    CHECK(page.Get("ringbouncer_worker_clients", label) >= 0);
  }
  CHECK(worker_xacts == xacts);
  REQUIRE(workers.ok);
  CHECK(workers.rows.size() == 4);

  // Limits.
  CHECK(page.Get("pgbouncer_config_max_client_connections") == 1000);
  CHECK(page.Get("pgbouncer_databases_pool_size", db) == 20);
  CHECK(page.Get("pgbouncer_databases_current_connections", db) ==
        page.Get("pgbouncer_pools_server_idle_connections", pool) +
            page.Get("pgbouncer_pools_server_active_connections", pool) +
            page.Get("pgbouncer_pools_server_login_connections", pool) +
            page.Get("pgbouncer_pools_server_testing_connections", pool));
  CHECK(page.Get("pgbouncer_used_clients") >= 1);  // the admin connection
  CHECK(page.Get("pgbouncer_up") == 1);
}

TEST_CASE("metrics: SHOW LATENCY gives sane percentiles after traffic and SHOW HELP lists it",
          "[integration][metrics]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, MetricsOptions(pg, FreeTcpPort()));
  PgbenchResult bench = Pgbench(rb, 4, 2);
  INFO("pgbench:\n" << bench.output);
  REQUIRE(bench.exit_code == 0);

  PgConn admin = PgConn::Connect(ConsoleConnString(rb));
  REQUIRE(admin.Ok());
  QueryResult lat = admin.Exec("SHOW LATENCY");
  QueryResult stats = admin.Exec("SHOW STATS");
  INFO("log:\n" << rb.LogTail());
  REQUIRE(lat.ok);
  REQUIRE(stats.ok);
  std::string cols;
  for (const auto& c : lat.columns) cols += (cols.empty() ? "" : "|") + c;
  CHECK(cols ==
        "database|xact_count|xact_p50_us|xact_p99_us|xact_p99_9_us|query_count|query_p50_us|query_p99_us|"
        "query_p99_9_us|wait_count|wait_p50_us|wait_p99_us|wait_p99_9_us");
  CHECK(CellInt(lat, "database", kTestDb, "xact_count") == CellInt(stats, "database", kTestDb, "total_xact_count"));
  CHECK(CellInt(lat, "database", kTestDb, "query_count") == CellInt(stats, "database", kTestDb, "total_query_count"));
  CHECK(CellInt(lat, "database", kTestDb, "wait_count") ==
        CellInt(stats, "database", kTestDb, "total_server_assignment_count"));
  for (const char* kind : {"xact", "query", "wait"}) {
    INFO(kind);
    int64_t p50 = CellInt(lat, "database", kTestDb, std::string(kind) + "_p50_us");
    int64_t p99 = CellInt(lat, "database", kTestDb, std::string(kind) + "_p99_us");
    int64_t p999 = CellInt(lat, "database", kTestDb, std::string(kind) + "_p99_9_us");
    CHECK(p50 >= 0);
    CHECK(p50 <= p99);
    CHECK(p99 <= p999);
    CHECK(p999 <= 100'000'000);
  }
  // A pgbench transaction (seven statements over the network) takes more than a microsecond
  // and, on an idle test machine, less than ten seconds.
  int64_t xact_p50 = CellInt(lat, "database", kTestDb, "xact_p50_us");
  CHECK(xact_p50 > 1);
  CHECK(xact_p50 < 10'000'000);
  CHECK(CellInt(lat, "database", kTestDb, "query_p50_us") <= xact_p50);

  // SHOW HELP's notice names it.
  CommandResult help = RunCommand({PgBinDir() + "/psql", "-X", "-d", ConsoleConnString(rb), "-c", "SHOW HELP"}, 60s);
  CHECK(help.exit_code == 0);
  CHECK(help.err.find("SHOW WORKERS|LATENCY") != std::string::npos);
}

TEST_CASE("metrics: bad HTTP requests get 400 or 404 or 405 and the endpoint keeps serving",
          "[integration][metrics]") {
  PgCluster& pg = PgCluster::Shared();
  const int port = FreeTcpPort();
  RingbouncerProcess rb(pg, MetricsOptions(pg, port));
  INFO("log:\n" << rb.LogTail());

  struct Case {
    std::string request;
    const char* status;
    bool closes;
  };
  const std::vector<Case> cases = {
      {"garbage\r\n\r\n", "HTTP/1.1 400 Bad Request", true},
      {"GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request", true},  // no Host
      {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request", true},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", "HTTP/1.1 400 Bad Request", true},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n",
       "HTTP/1.1 400 Bad Request", true},
      {std::string(1 << 20, 'x'), "HTTP/1.1 400 Bad Request", true},
      {"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 404 Not Found", true},
      {"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 405 Method Not Allowed", true},
      {"GET /metrics HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK", true},
  };
  for (const Case& c : cases) {
    INFO("request: " << c.request.substr(0, 60));
    bool closed = false;
    std::string response = HttpExchange(port, c.request, 10s, &closed);
    CHECK(StatusLine(response) == c.status);
    CHECK(closed == c.closes);
  }

  // Keep-alive: two requests on one connection, two answers, and the connection stays open.
  {
    bool closed = true;
    std::string response = HttpExchange(
        port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 2s, &closed);
    CHECK(StatusLine(response) == "HTTP/1.1 200 OK");
    size_t second = response.find("HTTP/1.1 200 OK", 10);
    CHECK(second != std::string::npos);
    CHECK(response.find("# TYPE pgbouncer_up gauge") != std::string::npos);
    CHECK(!closed);
  }

  // A scraper that sends half a request and stalls holds only its own connection.
  int stalled = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(stalled, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0);
  REQUIRE(send(stalled, "GET /metr", 9, MSG_NOSIGNAL) == 9);

  // More connections than it serves at once: the extra ones are turned away, not queued.
  std::vector<int> idle;
  for (int i = 0; i < 40; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0) {
      idle.push_back(fd);
    } else {
      close(fd);
    }
  }
  std::this_thread::sleep_for(300ms);
  for (int fd : idle) close(fd);
  close(stalled);

  // Still serving, and the pooler with it.
  bool ok = Eventually([&] {
    return StatusLine(HttpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) ==
           "HTTP/1.1 200 OK";
  }, 10s, 100ms);
  CHECK(ok);
  CHECK(Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
  CHECK(rb.Running());
}

TEST_CASE("metrics: scrapes during pgbench see counters only grow", "[integration][metrics]") {
  PgCluster& pg = PgCluster::Shared();
  const int port = FreeTcpPort();
  RingbouncerProcess rb(pg, MetricsOptions(pg, port));
  TempDir dir("rb-metrics");
  PgbenchResult bench;
  std::thread load([&] { bench = Pgbench(rb, 8, 4); });
  double last = 0;
  int scrapes = 0;
  auto until = Clock::now() + 3s;
  const std::string db = "database=" + std::string(kTestDb);
  while (Clock::now() < until) {
    Scrape s = ScrapeAndParse(dir, port);
    INFO(s.output.substr(0, 4000));
    REQUIRE(s.ok);
    double x = s.Get("pgbouncer_stats_sql_transactions_pooled_total", db);
    if (!std::isnan(x)) {
      CHECK(x >= last);
      last = x;
    }
    ++scrapes;
  }
  load.join();
  INFO("pgbench:\n" << bench.output);
  CHECK(bench.exit_code == 0);
  CHECK(bench.failed == 0);
  CHECK(scrapes >= 2);
  CHECK(last > 0);
}

}  // namespace
}  // namespace rb::test
