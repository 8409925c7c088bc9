// What an admin console command asks of the workers and of the control thread.
//
// The console runs on whichever worker accepted the admin client (the origin). A SHOW or a
// state change is one AdminRequest: the origin allocates it, posts it to every worker (kMailAdmin)
// and fills its own part directly; each worker writes only its own slot of `parts`, on its own
// thread, and posts the request back (kMailAdminReply). When the last part is in, the origin
// renders the answer, if the client is still there. The mailbox hand-off orders each worker's
// writes before the origin's reads, so no lock is needed; `outstanding` is the only shared
// counter. Process-wide commands (RELOAD, SET, SHUTDOWN) go to the control thread's inbox
// instead, which answers the same way through the origin's mailbox. The metrics endpoint
// gathers its numbers with the same requests (AdminConsole::Gather, reply_to kMetrics).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/config.h"
#include "engine/latency_histogram.h"
#include "engine/pool.h"
#include "engine/worker.h"

namespace rb::engine {

enum class AdminOp : uint8_t {
  kShow,            // gather what `show` needs
  kPauseCount,      // close idle servers of paused pools; count the servers still busy
  kSuspendCount,    // count the servers still busy (SUSPEND keeps the idle ones)
  kWaitCloseCount,  // close idle servers marked close_needed; count the marked ones left
  kKill,            // KILL [db]: drop the pools' clients and servers
  kKillClient,      // KILL_CLIENT id
  kReconnect,       // RECONNECT [db]: mark servers close_needed, close the idle ones
  kResume,          // serve the clients that waited through a pause
  // Control plane (the control thread's inbox).
  kReload,
  kSet,
  kShutdown,
};

enum class ShowKind : uint8_t {
  kPools,
  kClients,
  kServers,
  kSockets,
  kActiveSockets,
  kStats,
  kStatsTotals,
  kStatsAverages,
  kTotals,
  kDatabases,
  kUsers,
  kLists,
  kMem,
  kWorkers,
  kDnsHosts,
  kLatency,  // SHOW LATENCY: the pools' histograms
  kMetrics,  // the metrics endpoint: pools with stats and histograms, and every worker's totals
};

// Who gets the merged parts on the origin worker.
enum class AdminReplyTo : uint8_t {
  kConsole,  // an admin console client (client_slot, client_generation name it)
  kMetrics,  // a metrics endpoint connection (MetricsServer's slot and generation)
};

// One worker's shard of one pool.
struct AdminPoolPart {
  std::string database;
  std::string user;
  int cl_active = 0;  // PgBouncer's active list: logged-in clients with or without a server
  int cl_waiting = 0;
  int sv_active = 0;
  int sv_active_cancel = 0;
  int sv_being_canceled = 0;
  int sv_idle = 0;
  int sv_used = 0;
  int sv_tested = 0;
  int sv_login = 0;
  int64_t max_wait_us = 0;
  PoolMode mode = PoolMode::kSession;
  std::optional<std::string> load_balance_hosts;  // set only for a multi-host database
  PoolStats stats;  // totals now
  PoolStats older;  // totals at the stats period before last (for the averages)
  PoolLatency latency;  // kLatency and kMetrics only
};

// One row of SHOW CLIENTS/SERVERS/SOCKETS, already formatted, with what orders it.
struct AdminSocketRow {
  std::string database;
  std::string user;
  int list = 0;  // PgBouncer's list order within a pool
  std::vector<std::optional<std::string>> values;
};

struct AdminDnsRow {
  std::string host;
  int64_t ttl_s = 0;
  std::string addrs;
};

// Everything one worker reports. Only what the request asks for is filled in.
struct AdminWorkerPart {
  bool answered = false;
  std::vector<AdminPoolPart> pools;
  std::vector<AdminSocketRow> sockets;
  std::vector<AdminDnsRow> dns;
  uint32_t clients = 0;
  uint32_t client_slots = 0;  // slab slots ever made; free = slots - clients
  uint32_t login_clients = 0;
  uint32_t admin_clients = 0;
  uint32_t servers = 0;
  uint32_t server_slots = 0;
  uint32_t buffers = 0;  // the receive buffer ring
  uint32_t buffers_free = 0;
  uint32_t buffer_size = 0;
  uint64_t xacts = 0;
  uint64_t queries = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t cpu_us = 0;
  int count = 0;       // the *Count ops: servers still to go; kKill: clients dropped
  bool found = false;  // kKillClient
};

struct AdminRequest {
  AdminOp op = AdminOp::kShow;
  ShowKind show = ShowKind::kPools;
  std::string arg;    // database name, client id, SET key
  std::string value;  // SET value
  ShutdownMode shutdown_mode = ShutdownMode::kImmediate;

  // Where the answer goes.
  AdminReplyTo reply_to = AdminReplyTo::kConsole;
  int origin = 0;
  uint32_t client_slot = 0;
  uint32_t client_generation = 0;

  std::atomic<int> outstanding{0};
  std::vector<AdminWorkerPart> parts;  // one per worker
  absl::Status status;                 // control plane: the result
};

// The pools of every part merged over the workers' shards, by (database, user), in PgBouncer's
// order (without the console's own pool).
using MergedPools = std::map<std::pair<std::string, std::string>, AdminPoolPart>;
MergedPools MergePoolParts(const std::vector<AdminWorkerPart>& parts);
// The process-wide counts (clients, servers, slots, buffers) summed over the parts.
AdminWorkerPart SumWorkerParts(const std::vector<AdminWorkerPart>& parts);
void AddPoolStats(PoolStats* total, const PoolStats& s);

// kMailAdmin with a null ptr is the control thread's tick; arg32 holds these flags and arg64
// the control thread's monotonic clock in nanoseconds.
inline constexpr uint32_t kAdminTickRotateStats = 1;  // a stats_period has passed

// The control inbox's message kinds (netio::MailMessage::kind).
inline constexpr uint32_t kControlAdmin = 1;  // ptr: AdminRequest* (kReload, kSet, kShutdown)

}  // namespace rb::engine
