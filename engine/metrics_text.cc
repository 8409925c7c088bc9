// The metrics endpoint's page: Prometheus text exposition format 0.0.4, built from the parts
// every worker filled for a kMetrics request (the same parts SHOW POOLS, SHOW STATS and SHOW
// WORKERS are built from, so the page and the console agree).
//
// Names follow pgbouncer_exporter where it has the metric (pgbouncer_pools_*, pgbouncer_stats_*,
// pgbouncer_databases_*, pgbouncer_config_*), so existing dashboards and alerts keep working;
// what only ringbouncer has is named ringbouncer_*. Times are in seconds, as Prometheus
// wants, written exactly from the microseconds SHOW STATS counts.
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/admin_request.h"
#include "engine/config.h"
#include "engine/latency_histogram.h"
#include "engine/metrics_server.h"
#include "engine/shared_state.h"

namespace rb::engine {

namespace {

// Microseconds as decimal seconds, exactly ("0.000001", "2.5", "100").
std::string Seconds(uint64_t us) {
  std::string s = absl::StrCat(us / 1'000'000);
  uint64_t frac = us % 1'000'000;
  if (frac == 0) return s;
  std::string digits = absl::StrFormat("%06d", frac);
  while (digits.back() == '0') digits.pop_back();
  return absl::StrCat(s, ".", digits);
}

// A label value with the text format's three escapes.
std::string Escape(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

class Page {
 public:
  void Family(const char* name, const char* type, const char* help) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  void Sample(absl::string_view name, const std::string& labels, const std::string& value) {
    absl::StrAppend(&out_, name, labels, " ", value, "\n");
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string Labels(std::initializer_list<std::pair<const char*, std::string>> labels) {
  std::string s = "{";
  for (const auto& [k, v] : labels) absl::StrAppend(&s, s.size() > 1 ? "," : "", k, "=\"", Escape(v), "\"");
  return s + "}";
}

// One histogram family: cumulative buckets with `le` in seconds, +Inf, _sum and _count.
void Histogram(Page* page, const char* name, const char* help,
               const std::map<std::string, const LatencyHistogram*>& by_db) {
  page->Family(name, "histogram", help);
  std::string bucket = absl::StrCat(name, "_bucket"), sum = absl::StrCat(name, "_sum"),
              count = absl::StrCat(name, "_count");
  for (const auto& [db, h] : by_db) {
    std::string edb = Escape(db);
    uint64_t cumulative = 0;
    for (int i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) {
      cumulative += h->bucket(i);
      page->Sample(bucket,
                   absl::StrCat("{database=\"", edb, "\",le=\"",
                                Seconds(LatencyHistogram::kUpperBoundsUs[static_cast<size_t>(i)]), "\"}"),
                   absl::StrCat(cumulative));
    }
    page->Sample(bucket, absl::StrCat("{database=\"", edb, "\",le=\"+Inf\"}"), absl::StrCat(h->count()));
    page->Sample(sum, Labels({{"database", db}}), Seconds(h->sum_us()));
    page->Sample(count, Labels({{"database", db}}), absl::StrCat(h->count()));
  }
}

}  // namespace

std::string RenderPrometheusMetrics(const AdminRequest& r, const Config& cfg, SharedState* ss) {
  const Settings& g = cfg.settings;
  Page page;
  AdminWorkerPart total = SumWorkerParts(r.parts);
  MergedPools pools = MergePoolParts(r.parts);
  {
    // The console's own pool, as SHOW POOLS and SHOW STATS list it.
    AdminPoolPart admin;
    admin.database = "pgbouncer";
    admin.user = "pgbouncer";
    admin.cl_active = static_cast<int>(total.admin_clients);
    pools.try_emplace({admin.database, admin.user}, admin);
  }

  page.Family("pgbouncer_up", "gauge", "The pooler is up (this page is served by the pooler itself).");
  page.Sample("pgbouncer_up", "", "1");
  page.Family("ringbouncer_build_info", "gauge", "ringbouncer's version, as a label.");
  page.Sample("ringbouncer_build_info", Labels({{"version", RB_VERSION}}), "1");

  // ---- SHOW POOLS ----
  struct PoolGauge {
    const char* name;
    const char* help;
    int AdminPoolPart::*field;
  };
  static constexpr PoolGauge kPoolGauges[] = {
      {"pgbouncer_pools_client_active_connections", "Client connections logged in to the pool (SHOW POOLS cl_active).",
       &AdminPoolPart::cl_active},
      {"pgbouncer_pools_client_waiting_connections", "Client connections waiting for a server (cl_waiting).",
       &AdminPoolPart::cl_waiting},
      {"pgbouncer_pools_server_active_connections", "Server connections linked to a client (sv_active).",
       &AdminPoolPart::sv_active},
      {"pgbouncer_pools_server_idle_connections", "Server connections idle and ready for a client (sv_idle).",
       &AdminPoolPart::sv_idle},
      {"pgbouncer_pools_server_used_connections", "Server connections idle past server_check_delay (sv_used).",
       &AdminPoolPart::sv_used},
      {"pgbouncer_pools_server_testing_connections",
       "Server connections running server_reset_query or server_check_query (sv_tested).", &AdminPoolPart::sv_tested},
      {"pgbouncer_pools_server_login_connections", "Server connections logging in (sv_login).",
       &AdminPoolPart::sv_login},
  };
  for (const PoolGauge& pg : kPoolGauges) {
    page.Family(pg.name, "gauge", pg.help);
    for (const auto& [key, p] : pools) {
      page.Sample(pg.name, Labels({{"database", key.first}, {"user", key.second}}), absl::StrCat(p.*pg.field));
    }
  }
  page.Family("pgbouncer_pools_client_maxwait_seconds", "gauge",
              "How long the oldest waiting client has waited (maxwait and maxwait_us).");
  for (const auto& [key, p] : pools) {
    page.Sample("pgbouncer_pools_client_maxwait_seconds", Labels({{"database", key.first}, {"user", key.second}}),
                Seconds(static_cast<uint64_t>(std::max<int64_t>(0, p.max_wait_us))));
  }

  // ---- SHOW STATS totals, per database ----
  std::map<std::string, PoolStats> stats;
  std::map<std::string, PoolLatency> latency;
  for (const auto& [key, p] : pools) {
    AddPoolStats(&stats[key.first], p.stats);
    if (key.first != "pgbouncer" || key.second != "pgbouncer") latency[key.first].Merge(p.latency);
  }
  struct StatCounter {
    const char* name;
    const char* help;
    uint64_t PoolStats::*field;
    bool micros;  // a time: written in seconds
  };
  static constexpr StatCounter kStatCounters[] = {
      {"pgbouncer_stats_server_assignments_total", "Times a server was assigned to a client (total_server_assignment_count).",
       &PoolStats::server_assignments, false},
      {"pgbouncer_stats_sql_transactions_pooled_total", "Transactions pooled (total_xact_count).", &PoolStats::xacts, false},
      {"pgbouncer_stats_queries_pooled_total", "Queries pooled (total_query_count).", &PoolStats::queries, false},
      {"pgbouncer_stats_received_bytes_total", "Bytes received from clients (total_received).",
       &PoolStats::bytes_received, false},
      {"pgbouncer_stats_sent_bytes_total", "Bytes sent to clients (total_sent).", &PoolStats::bytes_sent, false},
      {"pgbouncer_stats_server_in_transaction_seconds_total",
       "Time linked to a server in a transaction, idle in transaction included (total_xact_time).",
       &PoolStats::xact_time_us, true},
      {"pgbouncer_stats_queries_duration_seconds_total", "Time spent running queries on servers (total_query_time).",
       &PoolStats::query_time_us, true},
      {"pgbouncer_stats_client_wait_seconds_total", "Time clients waited for a server (total_wait_time).",
       &PoolStats::wait_time_us, true},
      {"pgbouncer_stats_client_parses_total", "Parse messages from clients (total_client_parse_count).",
       &PoolStats::client_parses, false},
      {"pgbouncer_stats_server_parses_total", "Parse messages sent to servers (total_server_parse_count).",
       &PoolStats::server_parses, false},
      {"pgbouncer_stats_binds_total", "Bind messages (total_bind_count).", &PoolStats::binds, false},
  };
  for (const StatCounter& sc : kStatCounters) {
    page.Family(sc.name, "counter", sc.help);
    for (const auto& [db, s] : stats) {
      uint64_t v = s.*sc.field;
      page.Sample(sc.name, Labels({{"database", db}}), sc.micros ? Seconds(v) : absl::StrCat(v));
    }
  }

  // ---- Limits: SHOW DATABASES, the settings, SHOW LISTS ----
  std::set<std::string> db_names;
  for (const DatabaseConfig& d : cfg.databases) db_names.insert(d.name);
  if (cfg.fallback_database) {
    for (const auto& [key, p] : pools)
      if (key.first != "pgbouncer") db_names.insert(key.first);
  }
  struct DbRow {
    int pool_size, min_pool_size, reserve_pool, max_connections, current_connections, max_client_connections,
        current_client_connections, paused, disabled;
  };
  std::map<std::string, DbRow> db_rows;
  for (const std::string& name : db_names) {
    const DatabaseConfig* d = cfg.FindDatabase(name);
    if (!d && cfg.fallback_database) d = &*cfg.fallback_database;
    if (!d) continue;
    DatabaseShared* sh = ss->FindDatabase(name);
    db_rows[name] = DbRow{d->pool_size.value_or(g.default_pool_size),
                          d->min_pool_size.value_or(g.min_pool_size),
                          d->reserve_pool_size.value_or(g.reserve_pool_size),
                          d->max_db_connections.value_or(g.max_db_connections),
                          sh ? sh->servers.value() : 0,
                          d->max_db_client_connections.value_or(g.max_db_client_connections),
                          sh ? sh->clients.value() : 0,
                          sh && sh->db_paused.load(std::memory_order_relaxed) ? 1 : 0,
                          sh && sh->disabled.load(std::memory_order_relaxed) ? 1 : 0};
  }
  struct DbGauge {
    const char* name;
    const char* help;
    int DbRow::*field;
  };
  static constexpr DbGauge kDbGauges[] = {
      {"pgbouncer_databases_pool_size", "Server connections allowed per pool (SHOW DATABASES pool_size).",
       &DbRow::pool_size},
      {"pgbouncer_databases_min_pool_size", "Server connections kept open per pool (min_pool_size).",
       &DbRow::min_pool_size},
      {"pgbouncer_databases_reserve_pool", "Extra server connections for waiting clients (reserve_pool_size).",
       &DbRow::reserve_pool},
      {"pgbouncer_databases_max_connections", "Server connections allowed for the database; 0 is no limit.",
       &DbRow::max_connections},
      {"pgbouncer_databases_current_connections", "Server connections of the database now.",
       &DbRow::current_connections},
      {"pgbouncer_databases_max_client_connections", "Client connections allowed for the database; 0 is no limit.",
       &DbRow::max_client_connections},
      {"pgbouncer_databases_current_client_connections", "Client connections of the database now.",
       &DbRow::current_client_connections},
      {"pgbouncer_databases_paused", "1 while the database is paused.", &DbRow::paused},
      {"pgbouncer_databases_disabled", "1 while the database is disabled.", &DbRow::disabled},
  };
  for (const DbGauge& dg : kDbGauges) {
    page.Family(dg.name, "gauge", dg.help);
    for (const auto& [name, row] : db_rows) page.Sample(dg.name, Labels({{"database", name}}), absl::StrCat(row.*dg.field));
  }
  page.Family("pgbouncer_config_max_client_connections", "gauge", "The max_client_conn setting.");
  page.Sample("pgbouncer_config_max_client_connections", "", absl::StrCat(g.max_client_conn));
  page.Family("pgbouncer_config_max_user_connections", "gauge", "The max_user_connections setting; 0 is no limit.");
  page.Sample("pgbouncer_config_max_user_connections", "", absl::StrCat(g.max_user_connections));
  page.Family("pgbouncer_used_clients", "gauge", "Client connections now, logging in and admin included.");
  page.Sample("pgbouncer_used_clients", "", absl::StrCat(total.clients));
  page.Family("pgbouncer_login_clients", "gauge", "Client connections still logging in.");
  page.Sample("pgbouncer_login_clients", "", absl::StrCat(total.login_clients));
  page.Family("pgbouncer_used_servers", "gauge", "Server connections now.");
  page.Sample("pgbouncer_used_servers", "", absl::StrCat(total.servers));

  // ---- SHOW WORKERS ----
  struct WorkerMetric {
    const char* name;
    const char* type;
    const char* help;
  };
  static constexpr WorkerMetric kWorkerMetrics[] = {
      {"ringbouncer_worker_clients", "gauge", "Client connections on the worker."},
      {"ringbouncer_worker_servers", "gauge", "Server connections on the worker."},
      {"ringbouncer_worker_transactions_total", "counter", "Transactions pooled by the worker."},
      {"ringbouncer_worker_queries_total", "counter", "Queries pooled by the worker."},
      {"ringbouncer_worker_received_bytes_total", "counter", "Bytes the worker received from clients."},
      {"ringbouncer_worker_sent_bytes_total", "counter", "Bytes the worker sent to clients."},
      {"ringbouncer_worker_cpu_seconds_total", "counter", "CPU time of the worker thread, user and system."},
  };
  for (size_t m = 0; m < std::size(kWorkerMetrics); ++m) {
    page.Family(kWorkerMetrics[m].name, kWorkerMetrics[m].type, kWorkerMetrics[m].help);
    for (size_t w = 0; w < r.parts.size(); ++w) {
      const AdminWorkerPart& p = r.parts[w];
      if (!p.answered) continue;
      std::string value;
      switch (m) {
        case 0: value = absl::StrCat(p.clients); break;
        case 1: value = absl::StrCat(p.servers); break;
        case 2: value = absl::StrCat(p.xacts); break;
        case 3: value = absl::StrCat(p.queries); break;
        case 4: value = absl::StrCat(p.bytes_in); break;
        case 5: value = absl::StrCat(p.bytes_out); break;
        default: value = Seconds(p.cpu_us); break;
      }
      page.Sample(kWorkerMetrics[m].name, Labels({{"worker", absl::StrCat(w)}}), value);
    }
  }

  // ---- Latency histograms, per database ----
  std::map<std::string, const LatencyHistogram*> xact, query, wait;
  for (const auto& [db, l] : latency) {
    xact[db] = &l.xact;
    query[db] = &l.query;
    wait[db] = &l.wait;
  }
  Histogram(&page, "ringbouncer_transaction_duration_seconds",
            "Transaction times: from getting a server to the ReadyForQuery that ends the transaction.", xact);
  Histogram(&page, "ringbouncer_query_duration_seconds",
            "Query times: from a request reaching the server to its ReadyForQuery.", query);
  Histogram(&page, "ringbouncer_client_wait_seconds",
            "Time clients waited for a server, one observation per server assignment.", wait);
  return page.Take();
}

}  // namespace rb::engine
