// A worker: one thread, one io_uring, its own listeners, connections, pool shards, timers and
// statistics. Workers share nothing but what shared_state.h names; everything else that
// crosses between them is a mailbox message (DESIGN.md decisions 1 and 3).
//
// The work is split over files by subject, all methods of this class:
//   worker.cc       the event loop, completions, sockets, send queues, timers, mailboxes
//   client_path.cc  client login, authentication, forwarding from clients, client timeouts
//   server_path.cc  server connect and login, forwarding from servers, setup queries
//   pooling.cc      pools: linking, releasing, limits, waiting, cross-worker borrowing, cancels
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/buffers.h"
#include "engine/config.h"
#include "engine/connection.h"
#include "engine/pool.h"
#include "engine/shared_state.h"
#include "engine/slab.h"
#include "engine/var_cache.h"
#include "netio/buffer_ring.h"
#include "netio/features.h"
#include "netio/mailbox.h"
#include "netio/ring.h"
#include "netio/timer_wheel.h"
#include "proto/scram.h"

namespace rb::engine {

class AdminConsole;
class MetricsServer;

// kMetrics: the metrics endpoint's HTTP listener (metrics_server.h), on one worker only.
enum class ListenerKind : uint8_t { kTcp, kUnix, kMetrics };

// A listening socket handed to a worker by the supervisor.
struct ListenerSpec {
  int fd = -1;
  ListenerKind kind = ListenerKind::kTcp;
  // Accepted connections are spread over all workers (a socket only this worker accepts on:
  // the unix socket, or one passed by systemd).
  bool hand_off = false;
  std::string description;
};

// Mailbox message kinds.
enum MailKind : uint32_t {
  kMailConfig = 1,     // ptr: std::shared_ptr<const Config>* (receiver deletes)
  kMailAdoptClient,    // arg32: fd, arg64: ListenerKind
  kMailCancel,         // arg64: cancel key (CancelKey::AsUint64)
  kMailNeedServer,     // ptr: PoolShared*, arg32: asking worker, arg64: wait start
  kMailServerHandover, // ptr: ServerHandoff* (receiver deletes)
  kMailShutdown,       // arg32: ShutdownMode
  kMailAdmin,          // ptr: AdminRequest* (see admin_console.h)
  kMailAdminReply,     // ptr: AdminRequest*
  kMailWake,           // no payload: just run the loop (pause/resume changes)
  kMailEvictIdle,      // ptr: PoolShared* that needs a server, arg32: 1 = same user, 0 = same database
};

enum class ShutdownMode : uint32_t {
  kImmediate = 0,     // close everything now
  kWaitForServers,    // SIGINT: stop accepting, let transactions finish, then close
  kWaitForClients,    // SIGTERM: stop accepting, serve connected clients until they leave
};

// A server connection on its way from one worker to another.
struct ServerHandoff {
  int fd;
  PoolShared* pool;
  std::vector<std::string> vars;
  proto::BackendKey backend_key;
  int64_t connect_time_ns;
  int64_t last_used_ns;
  PeerAddress addr;
  uint64_t id;
  uint8_t host_index;
};

// Totals a worker publishes for SHOW WORKERS, STATUS= and the stats log line. Written by the
// worker only, read by anyone.
struct WorkerCounters {
  std::atomic<uint64_t> xacts{0};
  std::atomic<uint64_t> queries{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> wait_us{0};
  std::atomic<uint64_t> xact_us{0};
  std::atomic<uint64_t> query_us{0};
  // The rest of the pools' SHOW STATS totals, for the stats log line.
  std::atomic<uint64_t> server_assignments{0};
  std::atomic<uint64_t> client_parses{0};
  std::atomic<uint64_t> server_parses{0};
  std::atomic<uint64_t> binds{0};
  std::atomic<uint64_t> pool_bytes_in{0};   // total_received: from clients of pools
  std::atomic<uint64_t> pool_bytes_out{0};  // total_sent: to clients of pools
  std::atomic<int> clients{0};
  std::atomic<int> servers{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> cpu_us{0};
  std::atomic<bool> accepting{false};
};

class Worker {
 public:
  Worker(int id, SharedState* shared, std::shared_ptr<const Config> config, const netio::Features& features,
         std::vector<ListenerSpec> listeners, uint16_t peer_id);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the event loop until shutdown. Creates the ring on the calling thread.
  void Run();

  int id() const { return id_; }
  std::vector<std::string> ListenerDescriptions() const {
    std::vector<std::string> out;
    for (const auto& l : listeners_) out.push_back(l.spec.description);
    return out;
  }
  WorkerCounters& counters() { return counters_; }
  // Set once the ring exists and listeners are armed.
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // Backpressure: stop reading from a peer once this much waits to be sent to the other side,
  // start again below the low mark. Together with the buffer ring's size, this bounds the
  // memory a slow peer can pin.
  static constexpr uint32_t kHighWatermark = 64 * 1024;
  static constexpr uint32_t kLowWatermark = 16 * 1024;

 private:
  friend class AdminConsole;
  friend class MetricsServer;
  // Completion operation codes (netio::Tag::op).
  enum Op : uint8_t {
    kOpIgnore = 0,
    kOpAccept,
    kOpClientRecv,
    kOpClientSend,
    kOpServerRecv,
    kOpServerSend,
    kOpServerConnect,
    kOpDoorbell,
    kOpMetricsRecv,  // metrics endpoint connections (MetricsServer)
    kOpMetricsSend,
  };

  struct Listener {
    ListenerSpec spec;
    bool armed = false;
    int64_t retry_at_ns = 0;
  };

  // ---- worker.cc: loop and I/O ----
  void Loop();
  void Dispatch(const io_uring_cqe& cqe);
  void ArmAccept(uint32_t index);
  void OnAccept(uint32_t index, const io_uring_cqe& cqe);
  void AdoptClient(int fd, ListenerKind kind);
  int PickWorkerForHandOff();
  template <typename Conn>
  void ArmRecv(Conn* c, Op op);
  template <typename Conn>
  void StartSend(Conn* c, Op op);
  template <typename Conn>
  bool OnSendComplete(Conn* c, Op op, const io_uring_cqe& cqe);
  template <typename Conn>
  void CancelIo(Conn* c);
  void CloseFd(int fd);
  // Backpressure (DESIGN.md decision 4): stop reading from a peer while the other side's send
  // queue is over the high watermark; resume below the low one.
  template <typename Conn>
  void PauseRecv(Conn* c, Op op);
  template <typename Conn>
  void ResumeRecv(Conn* c, Op op);
  void SendClient(ClientConn* c) { StartSend(c, kOpClientSend); }
  void SendServer(ServerConn* s) { StartSend(s, kOpServerSend); }
  void RearmStarved();
  void OnTimer(netio::TimerNode* node);
  void DrainMailbox();
  void OnMail(uint32_t from, const netio::MailMessage& m);
  void Post(int worker, const netio::MailMessage& m);
  void FlushOverflow();
  void ApplyConfig(std::shared_ptr<const Config> config);
  void BeginShutdown(ShutdownMode mode);
  void Maintenance();
  void PublishCounters();
  int64_t now() const { return now_ns_; }
  uint64_t Random64();

  // ---- client_path.cc ----
  void OnClientRecv(ClientConn* c, const io_uring_cqe& cqe);
  void OnClientSendDone(ClientConn* c, const io_uring_cqe& cqe);
  void ClientLoginBytes(ClientConn* c, uint32_t buf, uint32_t len);
  void HandleStartupPacket(ClientConn* c, const uint8_t* data, uint32_t len);
  void StartClientAuth(ClientConn* c);
  void HandleAuthMessage(ClientConn* c, uint8_t type, const uint8_t* body, uint32_t len);
  void ClientAuthenticated(ClientConn* c);
  void FinishClientLogin(ClientConn* c);
  void SendWelcome(ClientConn* c);
  void ClientData(ClientConn* c, uint32_t buf, uint32_t off, uint32_t len);
  void ClientTerminated(ClientConn* c);
  void RejectClient(ClientConn* c, const std::string& message, const char* sqlstate);
  void CloseClient(ClientConn* c, const std::string& reason, bool flush = false);
  void FreeClientIfDone(ClientConn* c);
  void ReapClient(ClientConn* c);
  void ArmClientTimer(ClientConn* c);
  void OnClientTimer(ClientConn* c);
  void ReleaseClientLogin(ClientConn* c);
  std::string ClientPrefix(const ClientConn* c) const;

  // ---- server_path.cc ----
  bool LaunchServer(Pool* pool);
  // Which global budget stopped a new server connection (LaunchServer).
  enum class BudgetResult { kOk, kPoolFull, kDatabaseFull, kUserFull };
  BudgetResult AcquireServerBudgets(Pool* pool, int pool_limit);
  // PgBouncer's evict_connection/evict_user_connection: at max_db_connections (or
  // max_user_connections), the longest-idle server of another pool of the same database (or
  // user) on this worker is closed to make room. False if there was none here.
  bool EvictIdleServer(const PoolShared* needy, bool same_user);
  // None here: ask another worker (one per kAskAgainNs, in turn).
  void AskToEvict(Pool* pool, bool same_user);
  void OnServerConnect(ServerConn* s, const io_uring_cqe& cqe);
  void OnServerRecv(ServerConn* s, const io_uring_cqe& cqe);
  void OnServerSendDone(ServerConn* s, const io_uring_cqe& cqe);
  void ServerLoginBytes(ServerConn* s, uint32_t buf, uint32_t len);
  void HandleServerLoginMessage(ServerConn* s, uint8_t type, const uint8_t* body, uint32_t len);
  void ServerLoggedIn(ServerConn* s);
  // Who ended a server login: the network (refused, timed out, dropped mid-login) or
  // PostgreSQL (an ErrorResponse, or an authentication we can't do). See ServerLoginFailed.
  enum class LoginFailure { kConnection, kServer };
  void ServerLoginFailed(ServerConn* s, const std::string& message, const std::string& sqlstate,
                         LoginFailure kind = LoginFailure::kConnection);
  void ServerData(ServerConn* s, uint32_t buf, uint32_t len);
  void ServerSetupData(ServerConn* s, uint32_t buf, uint32_t len);
  void StartSetup(ServerConn* s, SetupStep step, const std::string& sql);
  void SetupDone(ServerConn* s);
  void CloseServer(ServerConn* s, const std::string& reason);
  void FreeServerIfDone(ServerConn* s);
  void ReapServer(ServerConn* s);
  // Frees connections that closed during the last round of work.
  void Reap();
  void ArmServerTimer(ServerConn* s);
  void OnServerTimer(ServerConn* s);
  void SendCancelToServer(ServerConn* s);
  ServerConn* OpenCancelConnection(const std::string& payload, const std::string& host, int port, Pool* pool,
                                   uint16_t peer_id = 0);
  // Opens a cancel connection to the peer the key names. With `requester` (the client that
  // sent the CancelRequest), that client is held open until the forward ends; returns true
  // then, false if it was not held (the caller closes it).
  bool ForwardCancelToPeer(proto::CancelKey key, ClientConn* requester = nullptr);
  // A cancel connection to a peer ends: the client held for it is closed.
  void ReleaseHeldCancelClient(ServerConn* cancel);
  std::string ServerPrefix(const ServerConn* s) const;
  bool ServerAddress(Pool* pool, uint8_t* host_index, sockaddr_storage* addr, socklen_t* len, std::string* error);
  bool ResolveHostPort(const std::string& host, int port, sockaddr_storage* addr, socklen_t* len, std::string* error);

  // ---- pooling.cc ----
  const DatabaseConfig* ResolveDatabase(const std::string& name);
  Pool* FindOrCreatePool(const std::string& db_name, const std::string& user_name, const DatabaseConfig* db);
  void RefreshPoolSettings(Pool* pool);
  void RequestServer(ClientConn* c);
  void ServeWaiters(Pool* pool);
  void LinkClientServer(ClientConn* c, ServerConn* s);
  void ReleaseServer(ServerConn* s, bool client_gone);
  void FinishRelease(ServerConn* s);
  void CancelLanded(ServerConn* cancel);
  void ContinueLink(ClientConn* c, ServerConn* s);
  void ServerIdle(ServerConn* s);
  bool GiveServerAway(ServerConn* s);
  void AskForServer(Pool* pool);
  // This worker's share of the pool's server connections.
  int Share(const Pool* pool) const;
  void OnNeedServer(PoolShared* ps, int from, int64_t since_ns);
  void OnServerHandover(ServerHandoff* h);
  // True when `requester` is held open for a forward to a peer (see ForwardCancelToPeer).
  bool HandleCancelKey(uint64_t key, ClientConn* requester = nullptr);
  void ForwardCancel(ClientConn* c);
  void WelcomeWaiters(Pool* pool);
  void FailWaiters(Pool* pool, const std::string& message, const std::string& sqlstate);
  void PoolMaintenance(Pool* pool);
  ClientConn* FindClientByCancelKey(uint64_t key);

  // Sends an ErrorResponse to the client (it stays open).
  void SendClientError(ClientConn* c, const std::string& message, const char* sqlstate, bool fatal);

  // ---- state ----
  const int id_;
  SharedState* const shared_;
  std::shared_ptr<const Config> config_;
  uint32_t config_version_ = 1;
  netio::Features features_;
  std::vector<Listener> listeners_;
  uint16_t peer_id_;

  std::unique_ptr<netio::Ring> ring_;
  std::unique_ptr<netio::BufferRing> buffer_ring_;
  std::unique_ptr<BufferPool> buffers_;
  std::unique_ptr<netio::TimerWheel> timers_;
  std::unique_ptr<VarCache> vars_;
  std::unique_ptr<AdminConsole> admin_;
  // Lives until the Worker does: its sockets' buffers must outlive the ring's last operation.
  std::unique_ptr<MetricsServer> metrics_;
  netio::TimerNode maintenance_timer_;

  Slab<ClientConn> clients_;
  Slab<ServerConn> servers_;
  // Connections whose multishot recv ended for lack of buffers, by slot and generation (one
  // may close meanwhile).
  std::vector<std::pair<uint32_t, uint32_t>> starved_clients_;
  std::vector<std::pair<uint32_t, uint32_t>> starved_servers_;
  std::vector<ClientConn*> reap_clients_;
  std::vector<ServerConn*> reap_servers_;
  absl::flat_hash_map<std::string, std::unique_ptr<Pool>> pools_;        // "db\0user"
  absl::flat_hash_map<PoolShared*, Pool*> pools_by_shared_;
  absl::flat_hash_map<std::string, std::unique_ptr<DatabaseConfig>> autodbs_;
  absl::flat_hash_map<uint64_t, ClientConn*> cancel_keys_;
  std::deque<std::pair<int, netio::MailMessage>> overflow_;
  absl::flat_hash_map<std::string, std::pair<std::vector<sockaddr_storage>, int64_t>> dns_cache_;
  uint32_t host_round_robin_ = 0;

  std::vector<uint64_t> random_pool_;
  WorkerCounters counters_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> finished_{false};
  bool accepting_ = true;
  bool stopping_ = false;
  ShutdownMode shutdown_mode_ = ShutdownMode::kImmediate;
  int64_t now_ns_ = 0;
  int64_t last_maintenance_ns_ = 0;
  std::string scratch_;  // reused for generated messages
  static constexpr int kMaxIov = 16;
  struct SendDesc {
    msghdr msg;
    iovec iov[kMaxIov];
  };
  std::vector<SendDesc> send_descs_ = std::vector<SendDesc>(64);
  // Bytes of zero-copy sends the kernel may still read, per connection, until notified.
  absl::flat_hash_map<const void*, ByteQueue> zc_held_;
  static constexpr uint32_t kZeroCopyMinBytes = 32 * 1024;
  bool zero_copy_local_for_test_ = false;
  void ReleaseZeroCopyHold(const void* conn) {
    auto it = zc_held_.find(conn);
    if (it == zc_held_.end()) return;
    buffers_->Clear(it->second);
    zc_held_.erase(it);
  }
  size_t send_descs_used_ = 0;  // descriptors referenced by SQEs not yet submitted
  uint64_t next_id_ = 1;
};

int64_t MonotonicNanos();

// Cancel keys are looked up without their TTL bits (the low two bits of the last byte), which
// a peer decrements each time it forwards a cancel.
inline uint64_t CancelMapKey(uint64_t key) { return key & ~uint64_t{proto::CancelKey::kTtlMask}; }

// The process-wide SCRAM key cache (PBKDF2 results), shared by all workers.
proto::ScramKeyCache& ScramCache();

}  // namespace rb::engine
