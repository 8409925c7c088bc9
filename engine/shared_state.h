// The little that workers share: limits that are global to the process, the per-pool facts
// every worker needs (the server's welcome parameters, login failures), and how to reach each
// other. Everything here is touched when a connection opens or closes, or at login, never per
// query (DESIGN.md decision 3).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "netio/mailbox.h"

namespace rb::engine {

inline constexpr int kMaxWorkers = 256;  // the worker id is one byte of the cancel key

// A counter with a ceiling that several workers increment concurrently. TryAcquire never lets
// the value pass the limit, so a configured maximum is never exceeded, not even briefly.
class Budget {
 public:
  // limit <= 0 means unlimited.
  bool TryAcquire(int limit) {
    int cur = value_.load(std::memory_order_relaxed);
    do {
      if (limit > 0 && cur >= limit) return false;
    } while (!value_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
    return true;
  }
  void Release() { value_.fetch_sub(1, std::memory_order_acq_rel); }
  int value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> value_{0};
};

// Per (database, user) pool, shared by the workers' shards of it.
struct PoolShared {
  PoolShared(std::string db, std::string user, int workers)
      : database(std::move(db)), user(std::move(user)), per_worker_servers(workers) {}

  const std::string database;
  const std::string user;
  Budget servers;  // open or opening server connections, all workers
  std::vector<std::atomic<int>> per_worker_servers;

  // What a fresh server reported at login (ParameterStatus), sent to every client that logs
  // in: server_version, server_encoding, integer_datetimes and the like.
  std::atomic<bool> has_welcome{false};
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> welcome ABSL_GUARDED_BY(mu);

  // The last server login failure, for server_login_retry: clients that arrive meanwhile get
  // the error at once instead of waiting.
  std::atomic<int64_t> login_failed_at_ns{0};
  std::string login_error ABSL_GUARDED_BY(mu);
  std::string login_error_sqlstate ABSL_GUARDED_BY(mu);

  // The worker that keeps min_pool_size topped up: the first one to have this pool (a worker
  // has a pool only once one of its clients used it), so that one worker does it, and does.
  std::atomic<int> min_pool_keeper{-1};
};

struct DatabaseShared {
  Budget servers;  // max_db_connections
  Budget clients;  // max_db_client_connections
  // What the data path reads: no server is handed out or opened while set. It is the admin
  // console's PAUSE/KILL of this database, or a process-wide PAUSE/SUSPEND/SIGUSR1; only
  // SharedState changes it (SetPauseMode, SetDatabasePaused), so the two stay consistent.
  std::atomic<bool> paused{false};
  // PAUSE db / KILL db: what SHOW DATABASES reports as `paused`.
  std::atomic<bool> db_paused{false};
  std::atomic<bool> disabled{false};  // DISABLE db: new clients are refused
};

struct UserShared {
  Budget servers;  // max_user_connections
  Budget clients;  // max_user_client_connections
};

// PgBouncer's pause modes: PAUSE (or SIGUSR1) and SUSPEND.
enum class PauseMode : int { kNone = 0, kPause = 1, kSuspend = 2 };

// The control thread's inbox: what workers ask of the process as a whole (RELOAD, SET,
// SHUTDOWN from the admin console). A mutex-protected queue plus an eventfd the control
// thread polls; this is the control plane, so a lock and a syscall per message are fine.
class ControlInbox {
 public:
  ControlInbox();
  ~ControlInbox();
  ControlInbox(const ControlInbox&) = delete;
  ControlInbox& operator=(const ControlInbox&) = delete;

  void Push(const netio::MailMessage& m);
  // Everything queued so far, oldest first; clears the eventfd.
  std::vector<netio::MailMessage> Take();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  absl::Mutex mu_;
  std::vector<netio::MailMessage> queue_ ABSL_GUARDED_BY(mu_);
};

// How to reach a worker from another thread.
struct WorkerEndpoint {
  std::atomic<int> ring_fd{-1};
  std::unique_ptr<netio::Mailbox> mailbox;
  std::atomic<int> clients{0};  // logged-in and logging-in clients, for least-loaded hand-off
};

class SharedState {
 public:
  // `senders` is the number of mailbox senders: every worker plus the control thread.
  SharedState(int workers, uint32_t mailbox_capacity);

  int workers() const { return static_cast<int>(endpoints_.size()); }
  WorkerEndpoint& endpoint(int w) { return *endpoints_[w]; }
  // The control thread's sender id in every mailbox.
  int control_sender() const { return workers(); }

  // Stable pointers, created on first use. The mutex is taken only when a worker meets a pool
  // for the first time.
  PoolShared* Pool(const std::string& db, const std::string& user);
  DatabaseShared* Database(const std::string& db);
  UserShared* User(const std::string& user);

  // Existing entries only (nullptr if no worker has met the name yet): for the admin console,
  // which must not create entries for every name it is asked about.
  DatabaseShared* FindDatabase(const std::string& db);
  UserShared* FindUser(const std::string& user);
  std::vector<std::string> DatabaseNames();

  // Pausing. Each DatabaseShared::paused is kept equal to (its db_paused, or a process-wide
  // pause), including for databases met while paused.
  // Cancel requests being forwarded to each peer, for SHOW PEER_POOLS. Touched once per
  // forwarded cancel, which is rare.
  struct PeerCancelCounts {
    int login = 0;       // connecting to the peer
    int active = 0;      // connected, sending the request
    int cl_waiting = 0;  // clients whose request waits for a connection to the peer
    int cl_active = 0;   // clients whose request has gone to the peer, waiting for it to close
  };
  void CountPeerCancel(int peer_id, int login_delta, int active_delta) {
    absl::MutexLock lock(&peer_mu_);
    PeerCancelCounts& c = peer_cancels_[peer_id];
    c.login += login_delta;
    c.active += active_delta;
  }
  void CountPeerCancelClient(int peer_id, int waiting_delta, int active_delta) {
    absl::MutexLock lock(&peer_mu_);
    PeerCancelCounts& c = peer_cancels_[peer_id];
    c.cl_waiting += waiting_delta;
    c.cl_active += active_delta;
  }
  PeerCancelCounts PeerCancels(int peer_id) {
    absl::MutexLock lock(&peer_mu_);
    auto it = peer_cancels_.find(peer_id);
    return it == peer_cancels_.end() ? PeerCancelCounts{} : it->second;
  }

  PauseMode pause_mode() const { return static_cast<PauseMode>(pause_mode_.load(std::memory_order_acquire)); }
  void SetPauseMode(PauseMode mode);
  void SetDatabasePaused(const std::string& db, bool paused);

  Budget total_clients;  // max_client_conn

  ControlInbox& control() { return control_; }
  // Set once a shutdown has begun (RESUME is refused then, as in PgBouncer).
  std::atomic<bool> shutting_down{false};
  // Admin console commands waiting for servers to go (PAUSE, SUSPEND, WAIT_CLOSE): while any
  // is pending the control thread ticks the workers more often, so the answer comes promptly.
  std::atomic<int> admin_waits{0};

 private:
  std::vector<std::unique_ptr<WorkerEndpoint>> endpoints_;
  ControlInbox control_;
  std::atomic<int> pause_mode_{0};
  absl::Mutex peer_mu_;
  absl::flat_hash_map<int, PeerCancelCounts> peer_cancels_ ABSL_GUARDED_BY(peer_mu_);
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<PoolShared>> pools_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<DatabaseShared>> databases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<UserShared>> users_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rb::engine
