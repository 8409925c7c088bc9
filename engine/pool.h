// One worker's shard of a (database, user) pool.
//
// Limits are global (PoolShared::servers and friends); the lists are local. A worker that
// needs a server and cannot open one because the global budget is spent asks the worker that
// holds the most servers of this pool to hand one over (DESIGN.md decision 3); the holder
// gives up the next server it releases, oldest wait first.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "engine/config.h"
#include "engine/connection.h"
#include "engine/intrusive_list.h"
#include "engine/latency_histogram.h"
#include "engine/shared_state.h"
#include "proto/scram.h"

namespace rb::engine {

// Counters for SHOW STATS; totals since start. Times in microseconds.
struct PoolStats {
  uint64_t server_assignments = 0;
  uint64_t xacts = 0;
  uint64_t queries = 0;
  uint64_t bytes_received = 0;  // from clients
  uint64_t bytes_sent = 0;      // to clients
  uint64_t xact_time_us = 0;
  uint64_t query_time_us = 0;
  uint64_t wait_time_us = 0;
  uint64_t client_parses = 0;
  uint64_t server_parses = 0;
  uint64_t binds = 0;
};

// The settings of a pool after [databases], [users] and [pgbouncer] have been merged.
struct PoolSettings {
  PoolMode mode{};
  int pool_size = 20;
  int min_pool_size = 0;
  int reserve_pool_size = 0;
  int max_db_connections = 0;
  int max_user_connections = 0;
  absl::Duration server_lifetime;
  absl::Duration query_timeout;
  absl::Duration query_wait_timeout;
  absl::Duration idle_transaction_timeout;
  absl::Duration client_idle_timeout;
};

// A worker that asked this one for a server.
struct ServerDebt {
  int worker;
  int64_t since_ns;
};

struct Pool {
  Pool(PoolShared* shared, DatabaseShared* db, UserShared* user)
      : shared(shared), db_shared(db), user_shared(user) {}

  PoolShared* const shared;
  DatabaseShared* const db_shared;
  UserShared* const user_shared;
  const std::string& database() const { return shared->database; }
  const std::string& user() const { return shared->user; }

  PoolSettings settings;
  uint32_t config_version = 0;  // the snapshot `settings` came from
  const DatabaseConfig* db = nullptr;  // in the worker's current snapshot (or autodbs_)
  // Keys recovered from a client's SCRAM login, to log in to PostgreSQL as that user when the
  // auth_file holds only a SCRAM secret (PgBouncer's SCRAM pass-through).
  std::optional<proto::ScramPassThroughKeys> scram_keys;

  IntrusiveList<ServerConn, &ServerConn::link> idle;                  // LIFO: warm servers first
  IntrusiveList<ClientConn, &ClientConn::link> waiting;               // FIFO
  IntrusiveList<ClientConn, &ClientConn::link> welcome_waiting;

  // Counts by state, for SHOW POOLS and the limits.
  int cl_idle = 0;
  int cl_active = 0;
  int sv_active = 0;
  int sv_login = 0;      // connecting or authenticating
  int sv_setup = 0;      // running our own query (shown as sv_used/sv_tested)
  int sv_being_canceled = 0;  // released, waiting for a cancel aimed at it to land
  int sv_active_cancel = 0;   // cancel connections to the server in flight
  int servers = 0;       // every server of this shard, whatever its state

  // Cross-worker borrowing.
  bool asked_for_server = false;
  int64_t asked_at_ns = 0;
  std::deque<ServerDebt> debts;
  // Eviction asked of other workers at max_db_connections/max_user_connections.
  int64_t evict_asked_at_ns = 0;
  int evict_rotor = 0;

  int64_t next_launch_ns = 0;  // server_login_retry after a failure
  PoolStats stats;
  // Transaction, query and wait times as histograms (SHOW LATENCY, the metrics endpoint),
  // recorded next to the PoolStats totals they match.
  PoolLatency latency;
  int64_t max_wait_start_ns() const { return waiting.empty() ? 0 : waiting.front()->request_time_ns; }
};

}  // namespace rb::engine
