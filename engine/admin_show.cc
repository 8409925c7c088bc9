// SHOW commands: what each worker reports about itself, and how the origin merges the parts
// into PgBouncer 1.25's result sets (column names, order and types as src/admin.c and
// src/stats.c send them: 's' text, 'i' int4, 'q' int8, 'N' numeric, 'T' a time as text).
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <functional>
#include <string_view>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/admin_console.h"
#include "engine/admin_request.h"
#include "engine/admin_session.h"
#include "engine/connection.h"
#include "engine/log.h"
#include "engine/login_state.h"
#include "engine/worker.h"
#include "proto/messages.h"

namespace rb::engine {

namespace {

using proto::Column;
using proto::ColumnType;
using Row = std::vector<std::optional<std::string>>;

constexpr ColumnType kS = ColumnType::kText;
constexpr ColumnType kI = ColumnType::kInt4;
constexpr ColumnType kQ = ColumnType::kInt8;
constexpr ColumnType kN = ColumnType::kNumeric;
constexpr ColumnType kT = ColumnType::kText;  // PgBouncer's 'T': a time, sent as text

// A result set: RowDescription, the rows, CommandComplete "SHOW" (ReadyForQuery is added by
// Reply).
class ResultSet {
 public:
  explicit ResultSet(std::initializer_list<Column> columns) { proto::AppendRowDescription(&out_, columns); }
  void Add(const Row& row) {
    proto::DataRowWriter w(&out_);
    for (const auto& v : row) {
      if (v) {
        w.AddText(*v);
      } else {
        w.AddNull();
      }
    }
    w.Finish();
  }
  std::string Done() {
    proto::AppendCommandComplete(&out_, "SHOW");
    return std::move(out_);
  }

 private:
  std::string out_;
};

std::optional<std::string> Str(std::string s) { return s; }
std::optional<std::string> Str(const char* s) { return std::string(s); }
std::optional<std::string> Str(std::string_view s) { return std::string(s); }
std::optional<std::string> Int(int64_t v) { return absl::StrCat(v); }
std::optional<std::string> Uint(uint64_t v) { return absl::StrCat(v); }

// A monotonic time as PgBouncer shows times: local wall-clock time to the second, with zone.
std::string FormatMonotonic(int64_t mono_ns, int64_t now_mono_ns) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  int64_t wall_us = int64_t{tv.tv_sec} * 1'000'000 + tv.tv_usec - (now_mono_ns - mono_ns) / 1000;
  time_t s = static_cast<time_t>(wall_us / 1'000'000);
  tm t{};
  localtime_r(&s, &t);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &t);
  return buf;
}

// PgBouncer's "%p".
// PgBouncer's "%p" of the connection, which its log prefix also prints. Ours is the
// connection's process-unique id in the same hex form, so that a ptr or link from SHOW CLIENTS
// or SHOW SERVERS finds the connection's log lines (see SocketLogPrefix), and an id is never
// reused the way a freed slot's address is.
template <typename Conn>
std::string Pointer(const Conn* p) {
  return p ? ConnLogId(p->id) : std::string();
}

// SHOW CLIENTS ids: unique in the process and small. A connection's internal id is its first
// worker in the top 16 bits and a per-worker counter below; interleave them instead.
uint64_t DisplayId(uint64_t id, int workers) {
  return (id & ((uint64_t{1} << 48) - 1)) * static_cast<uint64_t>(workers) + (id >> 48);
}

// PgBouncer's calc_average: counts per second over the window, times per event.
PoolStats Average(const PoolStats& cur, const PoolStats& old, int64_t dur_us) {
  PoolStats a;
  if (dur_us <= 0) return a;
  auto rate = [&](uint64_t c, uint64_t o) { return static_cast<uint64_t>(1'000'000.0 * static_cast<double>(c - o) / static_cast<double>(dur_us)); };
  a.server_assignments = rate(cur.server_assignments, old.server_assignments);
  a.xacts = rate(cur.xacts, old.xacts);
  a.queries = rate(cur.queries, old.queries);
  a.bytes_received = rate(cur.bytes_received, old.bytes_received);
  a.bytes_sent = rate(cur.bytes_sent, old.bytes_sent);
  a.client_parses = rate(cur.client_parses, old.client_parses);
  a.server_parses = rate(cur.server_parses, old.server_parses);
  a.binds = rate(cur.binds, old.binds);
  uint64_t q = cur.queries - old.queries, x = cur.xacts - old.xacts, s = cur.server_assignments - old.server_assignments;
  if (q > 0) a.query_time_us = (cur.query_time_us - old.query_time_us) / q;
  if (x > 0) a.xact_time_us = (cur.xact_time_us - old.xact_time_us) / x;
  if (s > 0) a.wait_time_us = (cur.wait_time_us - old.wait_time_us) / s;
  return a;
}

std::string PadInt(int v) { return absl::StrFormat("%9d", v); }

std::optional<std::string> LoadBalanceOf(const DatabaseConfig* db) {
  if (!db || db->hosts.size() < 2) return std::nullopt;
  return std::string(LoadBalanceHostsName(db->load_balance_hosts));
}

}  // namespace

void AddPoolStats(PoolStats* total, const PoolStats& s) {
  total->server_assignments += s.server_assignments;
  total->xacts += s.xacts;
  total->queries += s.queries;
  total->bytes_received += s.bytes_received;
  total->bytes_sent += s.bytes_sent;
  total->xact_time_us += s.xact_time_us;
  total->query_time_us += s.query_time_us;
  total->wait_time_us += s.wait_time_us;
  total->client_parses += s.client_parses;
  total->server_parses += s.server_parses;
  total->binds += s.binds;
}

MergedPools MergePoolParts(const std::vector<AdminWorkerPart>& parts) {
  MergedPools pools;
  for (const AdminWorkerPart& p : parts) {
    for (const AdminPoolPart& pp : p.pools) {
      auto [it, fresh] = pools.try_emplace({pp.database, pp.user}, pp);
      if (fresh) continue;
      AdminPoolPart& m = it->second;
      m.cl_active += pp.cl_active;
      m.cl_waiting += pp.cl_waiting;
      m.sv_active += pp.sv_active;
      m.sv_active_cancel += pp.sv_active_cancel;
      m.sv_being_canceled += pp.sv_being_canceled;
      m.sv_idle += pp.sv_idle;
      m.sv_used += pp.sv_used;
      m.sv_tested += pp.sv_tested;
      m.sv_login += pp.sv_login;
      m.max_wait_us = std::max(m.max_wait_us, pp.max_wait_us);
      AddPoolStats(&m.stats, pp.stats);
      AddPoolStats(&m.older, pp.older);
      m.latency.Merge(pp.latency);
    }
  }
  return pools;
}

AdminWorkerPart SumWorkerParts(const std::vector<AdminWorkerPart>& parts) {
  AdminWorkerPart total;
  for (const AdminWorkerPart& p : parts) {
    total.clients += p.clients;
    total.client_slots += p.client_slots;
    total.login_clients += p.login_clients;
    total.admin_clients += p.admin_clients;
    total.servers += p.servers;
    total.server_slots += p.server_slots;
    total.buffers += p.buffers;
    total.buffers_free += p.buffers_free;
    total.buffer_size = std::max(total.buffer_size, p.buffer_size);
    total.xacts += p.xacts;
    total.queries += p.queries;
    total.bytes_in += p.bytes_in;
    total.bytes_out += p.bytes_out;
    total.cpu_us += p.cpu_us;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Each worker's part.

void AdminConsole::FillShowPart(AdminRequest* r, AdminWorkerPart* part) {
  FillTotals(part);
  switch (r->show) {
    case ShowKind::kPools:
    case ShowKind::kDatabases:
    case ShowKind::kUsers:
    case ShowKind::kLists:
    case ShowKind::kMem:
      FillPools(part, /*with_stats=*/false);
      break;
    case ShowKind::kStats:
    case ShowKind::kStatsTotals:
    case ShowKind::kStatsAverages:
    case ShowKind::kTotals:
      FillPools(part, /*with_stats=*/true);
      break;
    case ShowKind::kClients:
    case ShowKind::kServers:
    case ShowKind::kSockets:
    case ShowKind::kActiveSockets:
      FillSockets(r->show, part);
      break;
    case ShowKind::kDnsHosts:
      for (const auto& [key, entry] : worker_->dns_cache_) {
        AdminDnsRow row;
        size_t colon = key.rfind(':');
        row.host = colon == std::string::npos ? key : key.substr(0, colon);
        row.ttl_s = std::max<int64_t>(0, (entry.second - worker_->now_ns_) / 1'000'000'000);
        std::vector<std::string> addrs;
        for (const sockaddr_storage& ss : entry.first) {
          PeerAddress a = PeerAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&ss));
          addrs.push_back(absl::StrCat(a.ToString(), ":", a.port));
        }
        row.addrs = absl::StrJoin(addrs, ",");
        part->dns.push_back(std::move(row));
      }
      break;
    case ShowKind::kLatency:
    case ShowKind::kMetrics:
      FillPools(part, /*with_stats=*/true, /*with_latency=*/true);
      break;
    case ShowKind::kWorkers:
      break;
  }
}

void AdminConsole::FillTotals(AdminWorkerPart* part) {
  Worker& w = *worker_;
  part->clients = w.clients_.live();
  part->client_slots = w.clients_.slots();
  part->servers = w.servers_.live();
  part->server_slots = w.servers_.slots();
  w.clients_.ForEach([&](ClientConn* c) {
    if (c->state == ClientState::kLogin || c->state == ClientState::kAuth) ++part->login_clients;
    if (c->state == ClientState::kAdmin) ++part->admin_clients;
  });
  part->buffers = w.buffer_ring_->count();
  part->buffers_free = w.buffers_->RingAvailable();
  part->buffer_size = w.buffers_->ring_buffer_size();
  uint64_t xacts = 0, queries = 0;
  for (auto& [key, pool] : w.pools_) {
    xacts += pool->stats.xacts;
    queries += pool->stats.queries;
  }
  part->xacts = xacts;
  part->queries = queries;
  part->bytes_in = w.counters_.bytes_in.load(std::memory_order_relaxed);
  part->bytes_out = w.counters_.bytes_out.load(std::memory_order_relaxed);
  rusage ru{};
  if (getrusage(RUSAGE_THREAD, &ru) == 0) {
    part->cpu_us = static_cast<uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000 +
                   static_cast<uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  }
}

void AdminConsole::FillPools(AdminWorkerPart* part, bool with_stats, bool with_latency) {
  int64_t now = MonotonicNanos();
  for (auto& [key, pool] : worker_->pools_) {
    AdminPoolPart p;
    p.database = pool->database();
    p.user = pool->user();
    p.cl_active = pool->cl_active + pool->cl_idle;
    p.cl_waiting = static_cast<int>(pool->waiting.size() + pool->welcome_waiting.size());
    p.sv_active = pool->sv_active;
    p.sv_active_cancel = pool->sv_active_cancel;
    p.sv_being_canceled = pool->sv_being_canceled;
    p.sv_idle = static_cast<int>(pool->idle.size());
    p.sv_tested = pool->sv_setup;
    p.sv_login = pool->sv_login;
    ClientConn* first = pool->waiting.front();
    if (!first) first = pool->welcome_waiting.front();
    if (first && first->request_time_ns) p.max_wait_us = std::max<int64_t>(0, (now - first->request_time_ns) / 1000);
    p.mode = pool->settings.mode;
    p.load_balance_hosts = LoadBalanceOf(pool->db);
    if (with_stats) {
      p.stats = pool->stats;
      auto it = snapshots_.find(pool->shared);
      if (it != snapshots_.end()) p.older = it->second.older;
    }
    if (with_latency) p.latency = pool->latency;
    part->pools.push_back(std::move(p));
  }
}

void AdminConsole::RotateStats(int64_t now_ns) {
  old_stamp_ns_ = new_stamp_ns_;
  new_stamp_ns_ = now_ns;
  for (auto& [key, pool] : worker_->pools_) {
    StatsSnapshot& s = snapshots_[pool->shared];
    s.older = s.newer;
    s.newer = pool->stats;
  }
}

Row AdminConsole::ClientRow(ClientConn* c, const char* state, bool debug) {
  Worker& w = *worker_;
  const Settings& cfg = w.config_->settings;
  std::string user, db;
  if (c->admin) {
    user = c->admin->user;
    db = "pgbouncer";
  } else if (c->login) {
    user = c->login->user;
    db = c->login->database;
  } else if (c->pool) {
    user = c->pool->user();
    db = c->pool->database();
  }
  bool is_unix = c->addr.family == AF_UNIX;
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  PeerAddress local_addr;
  if (!is_unix && getsockname(c->io.fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    local_addr = PeerAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local));
  } else {
    local_addr.family = AF_UNIX;
    local_addr.port = static_cast<uint16_t>(cfg.listen_port);
  }
  int remote_pid = 0;
  if (is_unix) {
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) remote_pid = cred.pid;
  }
  int64_t wait_us = 0;
  if (c->state == ClientState::kWaiting || c->state == ClientState::kWaitWelcome) {
    wait_us = std::max<int64_t>(0, (w.now_ns_ - c->request_time_ns) / 1000);
  }
  std::string app;
  int idx = w.vars_->IndexOf("application_name");
  if (c->vars && idx >= 0 && static_cast<size_t>(idx) < c->vars->values.size()) app = c->vars->values[idx];
  Row row = {
      Str("C"),
      Str(user.empty() ? "(nouser)" : user),
      Str(db.empty() ? "(nodb)" : db),
      Str("none"),
      Str(state),
      Str(c->addr.ToString()),
      Int(is_unix ? cfg.listen_port : c->addr.port),
      Str(local_addr.ToString()),
      Int(local_addr.port),
      Str(FormatMonotonic(c->connect_time_ns, w.now_ns_)),
      Str(FormatMonotonic(c->request_time_ns ? c->request_time_ns : c->connect_time_ns, w.now_ns_)),
      Int(wait_us / 1'000'000),
      Int(wait_us % 1'000'000),
      Int(0),
      Str(Pointer(c)),
      Str(Pointer(c->server)),
      Int(remote_pid),
      Str(""),
      Str(app),
      Int(0),
      Uint(DisplayId(c->id, w.shared_->workers())),
  };
  if (debug) {
    for (int i = 0; i < 5; ++i) row.push_back(Int(0));
    row.push_back(Int(c->held.bytes));
    row.push_back(Int(c->io.out.bytes));
  }
  return row;
}

Row AdminConsole::ServerRow(ServerConn* s, const char* state, bool debug) {
  Worker& w = *worker_;
  bool is_unix = s->addr.family == AF_UNIX || s->addr.family == 0;
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  PeerAddress local_addr;
  local_addr.family = AF_UNIX;
  if (!is_unix && s->io.fd >= 0 && getsockname(s->io.fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    local_addr = PeerAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local));
  }
  std::string app;
  int idx = w.vars_->IndexOf("application_name");
  if (s->vars && idx >= 0 && static_cast<size_t>(idx) < s->vars->values.size()) app = s->vars->values[idx];
  int port = s->addr.port;
  if (is_unix && s->pool && s->pool->db) port = s->pool->db->PortFor(0);
  Row row = {
      Str("S"),
      Str(s->pool ? s->pool->user() : "(nouser)"),
      Str(s->pool ? s->pool->database() : "(nodb)"),
      Str("none"),
      Str(state),
      Str(is_unix ? std::string("unix") : s->addr.ToString()),
      Int(port),
      Str(local_addr.ToString()),
      Int(local_addr.port),
      Str(FormatMonotonic(s->connect_time_ns, w.now_ns_)),
      Str(FormatMonotonic(s->last_used_ns ? s->last_used_ns : s->connect_time_ns, w.now_ns_)),
      Int(0),
      Int(0),
      Int(s->close_needed ? 1 : 0),
      Str(Pointer(s)),
      Str(Pointer(s->client)),
      Int(static_cast<int32_t>(s->backend_key.pid)),
      Str(""),
      Str(app),
      Int(0),
      Uint(DisplayId(s->id, w.shared_->workers())),
  };
  if (debug) {
    for (int i = 0; i < 5; ++i) row.push_back(Int(0));
    row.push_back(Int(0));
    row.push_back(Int(s->io.out.bytes));
  }
  return row;
}

void AdminConsole::FillSockets(ShowKind kind, AdminWorkerPart* part) {
  bool clients = kind != ShowKind::kServers;
  bool servers = kind != ShowKind::kClients;
  bool debug = kind == ShowKind::kSockets || kind == ShowKind::kActiveSockets;
  bool active_only = kind == ShowKind::kActiveSockets;
  // PgBouncer's list order within a pool; cl_login comes after every pool.
  constexpr int kLoginList = 100;
  auto add = [&](const std::string& db, const std::string& user, int list, Row row) {
    part->sockets.push_back(AdminSocketRow{db, user, list, std::move(row)});
  };
  if (clients) {
    worker_->clients_.ForEach([&](ClientConn* c) {
      if (active_only && c->io.out.empty() && c->held.empty()) return;
      const char* state = nullptr;
      int list = 0;
      switch (c->state) {
        case ClientState::kIdle:
          state = debug ? "cl_active" : "idle";  // on PgBouncer's active list, with no server
          break;
        case ClientState::kActive:
          state = debug ? "cl_active" : "active";
          break;
        case ClientState::kAdmin:
          state = debug ? "cl_active" : "idle";
          break;
        case ClientState::kWaiting:
        case ClientState::kWaitWelcome:
          state = debug ? "cl_waiting" : "waiting";
          list = 1;
          break;
        case ClientState::kLogin:
        case ClientState::kAuth:
          if (!debug) return;
          state = "cl_login";
          list = kLoginList;
          break;
        default:
          return;
      }
      Row row = ClientRow(c, state, debug);
      std::string db = *row[2], user = *row[1];
      add(db, user, list, std::move(row));
    });
  }
  if (servers) {
    worker_->servers_.ForEach([&](ServerConn* s) {
      if (!s->pool) return;
      if (active_only && s->io.out.empty()) return;
      const char* state = nullptr;
      int list = 0;
      switch (s->state) {
        case ServerState::kActive:
          state = debug ? "sv_active" : "active";
          list = 2;
          break;
        case ServerState::kSetup:
          // Its own SETs run while it is linked to a client: PgBouncer counts that as active.
          if (s->client) {
            state = debug ? "sv_active" : "active";
            list = 2;
          } else {
            state = debug ? "sv_tested" : "tested";
            list = 5;
          }
          break;
        case ServerState::kIdle:
          state = debug ? "sv_idle" : "idle";
          list = 3;
          break;
        case ServerState::kConnecting:
        case ServerState::kLogin:
          state = debug ? "sv_login" : "new";
          list = 6;
          break;
        default:
          return;
      }
      add(s->pool->database(), s->pool->user(), list, ServerRow(s, state, debug));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

std::string AdminConsole::RenderShow(AdminRequest* r) {
  const Config& cfg = *worker_->config_;
  const Settings& g = cfg.settings;
  SharedState* ss = worker_->shared_;
  int64_t now = MonotonicNanos();

  // Totals over the workers that answered.
  AdminWorkerPart total = SumWorkerParts(r->parts);

  // Pools merged over the workers' shards, in PgBouncer's order (database, then user), with
  // the console's own pool.
  MergedPools pools = MergePoolParts(r->parts);
  {
    AdminPoolPart admin;
    admin.database = "pgbouncer";
    admin.user = "pgbouncer";
    admin.cl_active = static_cast<int>(total.admin_clients);
    admin.mode = PoolMode::kStatement;
    pools.try_emplace({admin.database, admin.user}, admin);
  }

  // Databases: configured, met through "*", and the console's own.
  std::set<std::string> db_names;
  for (const DatabaseConfig& d : cfg.databases) db_names.insert(d.name);
  if (cfg.fallback_database) {
    for (const auto& [key, p] : pools) db_names.insert(key.first);
  }
  db_names.insert("pgbouncer");

  switch (r->show) {
    case ShowKind::kPools: {
      ResultSet rs({{"database", kS}, {"user", kS}, {"cl_active", kI}, {"cl_waiting", kI}, {"cl_active_cancel_req", kI},
                    {"cl_waiting_cancel_req", kI}, {"sv_active", kI}, {"sv_active_cancel", kI}, {"sv_being_canceled", kI},
                    {"sv_idle", kI}, {"sv_used", kI}, {"sv_tested", kI}, {"sv_login", kI}, {"maxwait", kI},
                    {"maxwait_us", kI}, {"pool_mode", kS}, {"load_balance_hosts", kS}});
      for (const auto& [key, p] : pools) {
        rs.Add({Str(p.database), Str(p.user), Int(p.cl_active), Int(p.cl_waiting), Int(0), Int(0), Int(p.sv_active),
                Int(p.sv_active_cancel), Int(p.sv_being_canceled), Int(p.sv_idle), Int(p.sv_used), Int(p.sv_tested), Int(p.sv_login),
                Int(p.max_wait_us / 1'000'000), Int(p.max_wait_us % 1'000'000), Str(PoolModeName(p.mode)),
                p.load_balance_hosts});
      }
      return rs.Done();
    }

    case ShowKind::kStats:
    case ShowKind::kStatsTotals:
    case ShowKind::kStatsAverages:
    case ShowKind::kTotals: {
      std::map<std::string, std::pair<PoolStats, PoolStats>> by_db;
      for (const auto& [key, p] : pools) {
        auto& [cur, old] = by_db[key.first];
        AddPoolStats(&cur, p.stats);
        AddPoolStats(&old, p.older);
      }
      int64_t dur_us = (now - old_stamp_ns_) / 1000;
      auto totals = [](const PoolStats& s) {
        return Row{Uint(s.server_assignments), Uint(s.xacts), Uint(s.queries), Uint(s.bytes_received),
                   Uint(s.bytes_sent), Uint(s.xact_time_us), Uint(s.query_time_us), Uint(s.wait_time_us),
                   Uint(s.client_parses), Uint(s.server_parses), Uint(s.binds)};
      };
      if (r->show == ShowKind::kTotals) {
        PoolStats cur, old;
        for (const auto& [db, s] : by_db) {
          AddPoolStats(&cur, s.first);
          AddPoolStats(&old, s.second);
        }
        PoolStats avg = Average(cur, old, dur_us);
        static constexpr const char* kNames[] = {"server_assignment_count", "xact_count", "query_count",
                                                 "client_bytes", "server_bytes", "xact_time", "query_time",
                                                 "wait_time", "ps_client_parse_count", "ps_server_parse_count",
                                                 "ps_bind_count"};
        ResultSet rs({{"name", kS}, {"value", kN}});
        Row t = totals(cur), a = totals(avg);
        for (size_t i = 0; i < t.size(); ++i) rs.Add({Str(absl::StrCat("total_", kNames[i])), t[i]});
        for (size_t i = 0; i < a.size(); ++i) rs.Add({Str(absl::StrCat("avg_", kNames[i])), a[i]});
        return rs.Done();
      }
      std::vector<Column> cols = {{"database", kS}};
      if (r->show == ShowKind::kStats) {
        for (const char* n : {"total_server_assignment_count", "total_xact_count", "total_query_count", "total_received",
                              "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
                              "total_client_parse_count", "total_server_parse_count", "total_bind_count",
                              "avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
                              "avg_xact_time", "avg_query_time", "avg_wait_time", "avg_client_parse_count",
                              "avg_server_parse_count", "avg_bind_count"}) {
          cols.push_back({n, kN});
        }
      } else {
        bool averages = r->show == ShowKind::kStatsAverages;
        for (const char* n : {"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
                              "xact_time", "query_time", "wait_time"}) {
          cols.push_back({n, kN});
        }
        static constexpr const char* kTotalNames[] = {"client_parse_count", "server_parse_count", "bind_count"};
        static constexpr const char* kAverageNames[] = {"avg_client_parse_count", "avg_server_parse_count",
                                                        "avg_bind_count"};
        for (const char* n : averages ? kAverageNames : kTotalNames) cols.push_back({n, kN});
      }
      std::string out;
      proto::AppendRowDescription(&out, cols);
      for (const auto& [db, s] : by_db) {
        Row row = {Str(db)};
        PoolStats avg = Average(s.first, s.second, dur_us);
        if (r->show != ShowKind::kStatsAverages) {
          Row t = totals(s.first);
          row.insert(row.end(), t.begin(), t.end());
        }
        if (r->show != ShowKind::kStatsTotals) {
          Row a = totals(avg);
          row.insert(row.end(), a.begin(), a.end());
        }
        proto::AppendDataRow(&out, std::vector<std::optional<absl::string_view>>(row.begin(), row.end()));
      }
      proto::AppendCommandComplete(&out, "SHOW");
      return out;
    }

    case ShowKind::kDatabases: {
      ResultSet rs({{"name", kS}, {"host", kS}, {"port", kI}, {"database", kS}, {"force_user", kS}, {"pool_size", kI},
                    {"min_pool_size", kI}, {"reserve_pool_size", kI}, {"server_lifetime", kI}, {"pool_mode", kS},
                    {"load_balance_hosts", kS}, {"max_connections", kI}, {"current_connections", kI},
                    {"max_client_connections", kI}, {"current_client_connections", kI}, {"paused", kI},
                    {"disabled", kI}});
      for (const std::string& name : db_names) {
        if (name == "pgbouncer" && !cfg.FindDatabase(name)) {
          rs.Add({Str("pgbouncer"), std::nullopt, Int(g.listen_port), Str("pgbouncer"), Str("pgbouncer"), Int(2),
                  Int(g.min_pool_size), Int(g.reserve_pool_size), Int(absl::ToInt64Seconds(g.server_lifetime)),
                  Str("statement"), std::nullopt, Int(g.max_db_connections), Int(0), Int(g.max_db_client_connections),
                  Int(total.admin_clients), Int(0), Int(0)});
          continue;
        }
        const DatabaseConfig* d = cfg.FindDatabase(name);
        std::optional<DatabaseConfig> autodb;
        if (!d) {
          autodb = *cfg.fallback_database;
          autodb->name = name;
          if (autodb->dbname.empty()) autodb->dbname = name;
          d = &*autodb;
        }
        DatabaseShared* sh = ss->FindDatabase(name);
        std::optional<std::string> host;
        if (!d->hosts.empty()) host = absl::StrJoin(d->hosts, ",");
        rs.Add({Str(name), host, Int(d->PortFor(0)), Str(d->dbname.empty() ? name : d->dbname),
                d->user ? Str(*d->user) : std::nullopt, Int(d->pool_size.value_or(g.default_pool_size)),
                Int(d->min_pool_size.value_or(g.min_pool_size)), Int(d->reserve_pool_size.value_or(g.reserve_pool_size)),
                Int(absl::ToInt64Seconds(d->server_lifetime.value_or(g.server_lifetime))),
                d->pool_mode ? Str(PoolModeName(*d->pool_mode)) : std::nullopt, LoadBalanceOf(d),
                Int(d->max_db_connections.value_or(g.max_db_connections)), Int(sh ? sh->servers.value() : 0),
                Int(d->max_db_client_connections.value_or(g.max_db_client_connections)),
                Int(sh ? sh->clients.value() : 0), Int(sh && sh->db_paused.load(std::memory_order_relaxed) ? 1 : 0),
                Int(sh && sh->disabled.load(std::memory_order_relaxed) ? 1 : 0)});
      }
      return rs.Done();
    }

    case ShowKind::kUsers: {
      // [users] entries, the auth_file's, the pools', and the console's own, by name.
      std::set<std::string> names;
      for (const UserConfig& u : cfg.users) names.insert(u.name);
      for (const AuthUser& u : cfg.auth_file.users) names.insert(u.name);
      for (const auto& [key, p] : pools) names.insert(key.second);
      ResultSet rs({{"name", kS}, {"pool_size", kS}, {"reserve_pool_size", kS}, {"pool_mode", kS},
                    {"max_user_connections", kI}, {"current_connections", kI}, {"max_user_client_connections", kI},
                    {"current_client_connections", kI}});
      for (const std::string& name : names) {
        const UserConfig* u = cfg.FindUser(name);
        UserShared* sh = ss->FindUser(name);
        rs.Add({Str(name), Str(u && u->pool_size ? PadInt(*u->pool_size) : ""),
                Str(u && u->reserve_pool_size ? PadInt(*u->reserve_pool_size) : ""),
                u && u->pool_mode ? Str(PoolModeName(*u->pool_mode)) : std::nullopt,
                Int(u && u->max_user_connections ? *u->max_user_connections : g.max_user_connections),
                Int(sh ? sh->servers.value() : 0),
                Int(u && u->max_user_client_connections ? *u->max_user_client_connections : g.max_user_client_connections),
                Int(sh ? sh->clients.value() : 0)});
      }
      return rs.Done();
    }

    case ShowKind::kLists: {
      std::set<std::string> users;
      for (const UserConfig& u : cfg.users) users.insert(u.name);
      for (const AuthUser& u : cfg.auth_file.users) users.insert(u.name);
      for (const auto& [key, p] : pools) users.insert(key.second);
      std::set<std::string> dns;
      for (const AdminWorkerPart& p : r->parts)
        for (const AdminDnsRow& d : p.dns) dns.insert(d.host);
      ResultSet rs({{"list", kS}, {"items", kI}});
      rs.Add({Str("databases"), Int(static_cast<int64_t>(db_names.size()))});
      rs.Add({Str("users"), Int(static_cast<int64_t>(users.size()))});
      rs.Add({Str("peers"), Int(static_cast<int64_t>(cfg.peers.size()))});
      rs.Add({Str("pools"), Int(static_cast<int64_t>(pools.size()))});
      rs.Add({Str("peer_pools"), Int(0)});
      rs.Add({Str("free_clients"), Int(total.client_slots - total.clients)});
      rs.Add({Str("used_clients"), Int(total.clients)});
      rs.Add({Str("login_clients"), Int(total.login_clients)});
      rs.Add({Str("free_servers"), Int(total.server_slots - total.servers)});
      rs.Add({Str("used_servers"), Int(total.servers)});
      rs.Add({Str("dns_names"), Int(static_cast<int64_t>(dns.size()))});
      rs.Add({Str("dns_zones"), Int(0)});
      rs.Add({Str("dns_queries"), Int(0)});
      rs.Add({Str("dns_pending"), Int(0)});
      return rs.Done();
    }

    case ShowKind::kMem: {
      ResultSet rs({{"name", kS}, {"size", kI}, {"used", kI}, {"free", kI}, {"memtotal", kI}});
      auto add = [&](const char* name, size_t size, uint64_t used, uint64_t free) {
        rs.Add({Str(name), Int(static_cast<int64_t>(size)), Uint(used), Uint(free),
                Uint(static_cast<uint64_t>(size) * (used + free))});
      };
      add("pool_cache", sizeof(Pool), pools.size() - 1, 0);
      add("server_cache", sizeof(ServerConn), total.servers, total.server_slots - total.servers);
      add("client_cache", sizeof(ClientConn), total.clients, total.client_slots - total.clients);
      add("iobuf_cache", total.buffer_size, total.buffers - total.buffers_free, total.buffers_free);
      return rs.Done();
    }

    case ShowKind::kWorkers: {
      ResultSet rs({{"id", kI}, {"clients", kI}, {"servers", kI}, {"xact_count", kN}, {"query_count", kN},
                    {"bytes_received", kN}, {"bytes_sent", kN}, {"cpu_time_us", kN}});
      for (size_t w = 0; w < r->parts.size(); ++w) {
        const AdminWorkerPart& p = r->parts[w];
        if (!p.answered) continue;
        rs.Add({Int(static_cast<int64_t>(w)), Int(p.clients), Int(p.servers), Uint(p.xacts), Uint(p.queries),
                Uint(p.bytes_in), Uint(p.bytes_out), Uint(p.cpu_us)});
      }
      return rs.Done();
    }

    case ShowKind::kLatency:
      return RenderLatency(*r);

    case ShowKind::kMetrics:
      return {};  // rendered by the MetricsServer

    case ShowKind::kDnsHosts: {
      std::map<std::string, AdminDnsRow> hosts;
      for (const AdminWorkerPart& p : r->parts)
        for (const AdminDnsRow& d : p.dns) hosts.try_emplace(d.host, d);
      ResultSet rs({{"hostname", kS}, {"ttl", kQ}, {"addrs", kS}});
      for (const auto& [host, d] : hosts) rs.Add({Str(host), Int(d.ttl_s), Str(d.addrs)});
      return rs.Done();
    }

    case ShowKind::kClients:
    case ShowKind::kServers:
    case ShowKind::kSockets:
    case ShowKind::kActiveSockets: {
      std::vector<const AdminSocketRow*> rows;
      for (const AdminWorkerPart& p : r->parts)
        for (const AdminSocketRow& s : p.sockets) rows.push_back(&s);
      std::stable_sort(rows.begin(), rows.end(), [](const AdminSocketRow* a, const AdminSocketRow* b) {
        return std::make_tuple(a->list >= 100 ? a->list : 0, std::cref(a->database), std::cref(a->user), a->list) <
               std::make_tuple(b->list >= 100 ? b->list : 0, std::cref(b->database), std::cref(b->user), b->list);
      });
      std::vector<Column> cols = {{"type", kS},         {"user", kS},         {"database", kS},    {"replication", kS},
                                  {"state", kS},        {"addr", kS},         {"port", kI},        {"local_addr", kS},
                                  {"local_port", kI},   {"connect_time", kT}, {"request_time", kT}, {"wait", kI},
                                  {"wait_us", kI},      {"close_needed", kI}, {"ptr", kS},          {"link", kS},
                                  {"remote_pid", kI},   {"tls", kS},          {"application_name", kS},
                                  {"prepared_statements", kI}, {"id", kI}};
      if (r->show == ShowKind::kSockets || r->show == ShowKind::kActiveSockets) {
        for (const char* n : {"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"}) {
          cols.push_back({n, kI});
        }
      }
      std::string out;
      proto::AppendRowDescription(&out, cols);
      for (const AdminSocketRow* s : rows) {
        proto::AppendDataRow(&out, std::vector<std::optional<absl::string_view>>(s->values.begin(), s->values.end()));
      }
      proto::AppendCommandComplete(&out, "SHOW");
      return out;
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// SHOW commands answered from the origin's own state.

std::string AdminConsole::ShowConfig() {
  ResultSet rs({{"key", kS}, {"value", kS}, {"default", kS}, {"changeable", kS}});
  for (const ShowConfigRow& row : ShowConfigRows(worker_->config_->settings)) {
    rs.Add({row.key, row.value, row.default_value, Str(row.changeable ? "yes" : "no")});
  }
  return rs.Done();
}

std::string AdminConsole::ShowPeers() {
  ResultSet rs({{"peer_id", kI}, {"host", kS}, {"port", kI}, {"pool_size", kI}});
  std::vector<PeerConfig> peers = worker_->config_->peers;
  std::sort(peers.begin(), peers.end(), [](const PeerConfig& a, const PeerConfig& b) { return a.peer_id < b.peer_id; });
  for (const PeerConfig& p : peers) {
    rs.Add({Int(p.peer_id), Str(p.host), Int(p.port), Int(p.pool_size.value_or(worker_->config_->settings.default_pool_size))});
  }
  return rs.Done();
}

// One row per configured peer. Forwarded cancels are the only traffic to a peer: each holds the
// client that sent it (cl_*_cancel_req) and a connection to the peer (sv_login while it
// connects, sv_active_cancel until the peer closes it), as PgBouncer's peer pools do.
std::string AdminConsole::ShowPeerPools() {
  ResultSet rs({{"peer_id", kI}, {"cl_active_cancel_req", kI}, {"cl_waiting_cancel_req", kI}, {"sv_active_cancel", kI},
                {"sv_login", kI}});
  std::vector<PeerConfig> peers = worker_->config_->peers;
  std::sort(peers.begin(), peers.end(), [](const PeerConfig& a, const PeerConfig& b) { return a.peer_id < b.peer_id; });
  for (const PeerConfig& p : peers) {
    SharedState::PeerCancelCounts n = worker_->shared_->PeerCancels(p.peer_id);
    rs.Add({Int(p.peer_id), Int(n.cl_active), Int(n.cl_waiting), Int(n.active), Int(n.login)});
  }
  return rs.Done();
}

std::string AdminConsole::ShowState() {
  PauseMode m = worker_->shared_->pause_mode();
  ResultSet rs({{"key", kS}, {"value", kS}});
  rs.Add({Str("active"), Str(m == PauseMode::kNone ? "yes" : "no")});
  rs.Add({Str("paused"), Str(m == PauseMode::kPause ? "yes" : "no")});
  rs.Add({Str("suspended"), Str(m == PauseMode::kSuspend ? "yes" : "no")});
  return rs.Done();
}

std::string AdminConsole::ShowVersion() {
  ResultSet rs({{"version", kS}});
  rs.Add({Str("PgBouncer 1.25.0 (ringbouncer " RB_VERSION ")")});
  return rs.Done();
}

// Online restart (-R) hands sockets over with SHOW FDS; ringbouncer has none, so the list is
// empty, with PgBouncer's columns.
std::string AdminConsole::ShowFds() {
  ResultSet rs({{"fd", kI}, {"task", kS}, {"user", kS}, {"database", kS}, {"addr", kS}, {"port", kI}, {"cancel", kQ},
                {"link", kI}, {"client_encoding", kS}, {"std_strings", kS}, {"datestyle", kS}, {"timezone", kS},
                {"password", kS}, {"scram_client_key", ColumnType::kBytea}, {"scram_server_key", ColumnType::kBytea}});
  return rs.Done();
}

std::string AdminConsole::ShowDnsZones() {
  ResultSet rs({{"zonename", kS}, {"serial", kQ}, {"count", kI}});
  return rs.Done();
}

std::string AdminConsole::ShowHelp() {
  std::string out;
  proto::ErrorFields f;
  f.severity = proto::severity::kNotice;
  f.sqlstate = "00000";
  f.message = "Console usage";
  f.detail =
      "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
      "\tSHOW PEERS|PEER_POOLS\n"
      "\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
      "\tSHOW DNS_HOSTS|DNS_ZONES\n"
      "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
      "\tSHOW WORKERS|LATENCY\n"
      "\tSET key = arg\n"
      "\tRELOAD\n"
      "\tPAUSE [<db>]\n"
      "\tRESUME [<db>]\n"
      "\tDISABLE <db>\n"
      "\tENABLE <db>\n"
      "\tRECONNECT [<db>]\n"
      "\tKILL [<db>]\n"
      "\tKILL_CLIENT <client_id>\n"
      "\tSUSPEND\n"
      "\tSHUTDOWN\n"
      "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
      "\tWAIT_CLOSE [<db>]";
  proto::AppendNoticeResponse(&out, f);
  proto::AppendCommandComplete(&out, "SHOW");
  return out;
}

// SHOW LATENCY, ringbouncer's own: per database, the number of transactions, queries and
// server assignments seen, and p50, p99 and p99.9 of their times in microseconds, read from
// the latency histograms merged over users and workers (so within one histogram bucket of the
// exact value: see latency_histogram.h).
std::string AdminConsole::RenderLatency(const AdminRequest& r) {
  std::map<std::string, PoolLatency> by_db;
  for (const auto& [key, p] : MergePoolParts(r.parts)) by_db[key.first].Merge(p.latency);
  std::vector<std::string> names;  // Column holds views: the names must outlive `cols`
  for (const char* kind : {"xact", "query", "wait"}) {
    names.push_back(absl::StrCat(kind, "_count"));
    for (const char* q : {"p50", "p99", "p99_9"}) names.push_back(absl::StrCat(kind, "_", q, "_us"));
  }
  std::vector<Column> cols = {{"database", kS}};
  for (const std::string& n : names) cols.push_back({n, kQ});
  std::string out;
  proto::AppendRowDescription(&out, cols);
  for (const auto& [db, l] : by_db) {
    Row row = {Str(db)};
    for (const LatencyHistogram* h : {&l.xact, &l.query, &l.wait}) {
      row.push_back(Uint(h->count()));
      for (double q : {0.5, 0.99, 0.999}) row.push_back(Uint(static_cast<uint64_t>(h->Percentile(q) + 0.5)));
    }
    proto::AppendDataRow(&out, std::vector<std::optional<absl::string_view>>(row.begin(), row.end()));
  }
  proto::AppendCommandComplete(&out, "SHOW");
  return out;
}

bool AdminConsole::HandleShow(ClientConn* c, const std::string& what) {
  // SHOW of a setting some drivers ask about on connect: PgBouncer fakes an answer.
  static constexpr std::pair<const char*, const char*> kFake[] = {
      {"client_encoding", "UTF-8"}, {"default_transaction_isolation", "read committed"},
      {"standard_conforming_strings", "on"}, {"datestyle", "ISO"}, {"timezone", "GMT"}, {"extra_float_digits", "2"}};
  for (const auto& [name, value] : kFake) {
    if (absl::EqualsIgnoreCase(what, name)) {
      ResultSet rs({{name, kS}});
      rs.Add({Str(value)});
      Reply(c, rs.Done());
      return true;
    }
  }
  std::string w = absl::AsciiStrToLower(what);
  static constexpr std::pair<const char*, ShowKind> kGathered[] = {
      {"pools", ShowKind::kPools},
      {"clients", ShowKind::kClients},
      {"servers", ShowKind::kServers},
      {"sockets", ShowKind::kSockets},
      {"active_sockets", ShowKind::kActiveSockets},
      {"stats", ShowKind::kStats},
      {"stats_totals", ShowKind::kStatsTotals},
      {"stats_averages", ShowKind::kStatsAverages},
      {"totals", ShowKind::kTotals},
      {"databases", ShowKind::kDatabases},
      {"users", ShowKind::kUsers},
      {"lists", ShowKind::kLists},
      {"mem", ShowKind::kMem},
      {"workers", ShowKind::kWorkers},
      {"dns_hosts", ShowKind::kDnsHosts},
      {"latency", ShowKind::kLatency},
  };
  for (const auto& [name, kind] : kGathered) {
    if (w != name) continue;
    auto* r = new AdminRequest();
    r->op = AdminOp::kShow;
    r->show = kind;
    StartRequest(c, r);
    return true;
  }
  if (w == "config") return Reply(c, ShowConfig()), true;
  if (w == "peers") return Reply(c, ShowPeers()), true;
  if (w == "peer_pools") return Reply(c, ShowPeerPools()), true;
  if (w == "state") return Reply(c, ShowState()), true;
  if (w == "version") return Reply(c, ShowVersion()), true;
  if (w == "help") return Reply(c, ShowHelp()), true;
  if (w == "dns_zones") return Reply(c, ShowDnsZones()), true;
  if (w == "fds") {
    if (RequireAdmin(c)) Reply(c, ShowFds());
    return true;
  }
  return false;
}

}  // namespace rb::engine
