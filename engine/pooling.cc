// Pools: finding a server for a client, taking it back, the global limits, and lending
// servers between workers.
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/log.h"
#include "engine/login_state.h"
#include "engine/worker.h"
#include "proto/messages.h"

namespace rb::engine {

namespace {
int64_t ToNanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }
// How long a worker waits for an answer before asking for a server again.
constexpr int64_t kAskAgainNs = 100'000'000;
// A worker at or below its share still lends a server when the asking worker's client has
// waited this much longer than its own oldest waiter: no client starves, and two busy workers
// don't pass servers back and forth on every transaction.
constexpr int64_t kFairnessWindowNs = 20'000'000;
// A debt no answer came for: the asking worker found a server elsewhere or gave up.
constexpr int64_t kDebtExpiryNs = 10'000'000'000;
}  // namespace

proto::ScramKeyCache& ScramCache() {
  static proto::ScramKeyCache* cache = new proto::ScramKeyCache();
  return *cache;
}

Pool* Worker::FindOrCreatePool(const std::string& db_name, const std::string& user_name, const DatabaseConfig* db) {
  std::string key = absl::StrCat(db_name, absl::string_view("\0", 1), user_name);
  auto it = pools_.find(key);
  if (it != pools_.end()) {
    it->second->db = db;
    return it->second.get();
  }
  PoolShared* ps = shared_->Pool(db_name, user_name);
  auto pool = std::make_unique<Pool>(ps, shared_->Database(db_name), shared_->User(user_name));
  pool->db = db;
  Pool* p = pool.get();
  pools_.emplace(std::move(key), std::move(pool));
  pools_by_shared_[ps] = p;
  int no_keeper = -1;
  ps->min_pool_keeper.compare_exchange_strong(no_keeper, id_, std::memory_order_relaxed);
  RefreshPoolSettings(p);
  return p;
}

// [pgbouncer] defaults, overridden by the [databases] and [users] entries as PgBouncer
// resolves each setting (for the mode and the sizes, the user's entry wins).
void Worker::RefreshPoolSettings(Pool* pool) {
  const Config& cfg = *config_;
  const Settings& g = cfg.settings;
  const DatabaseConfig* db = cfg.FindDatabase(pool->database());
  if (db) {
    pool->db = db;
  } else if (cfg.fallback_database) {
    auto& auto_db = autodbs_[pool->database()];
    if (!auto_db) {
      auto_db = std::make_unique<DatabaseConfig>(*cfg.fallback_database);
      auto_db->name = pool->database();
      if (auto_db->dbname.empty()) auto_db->dbname = pool->database();
    }
    pool->db = auto_db.get();
  } else {
    // The database is gone from the config: keep the old entry alive for the servers still
    // open (they close as they come back, see close_needed).
    auto& keep = autodbs_[pool->database()];
    if (!keep && pool->db) keep = std::make_unique<DatabaseConfig>(*pool->db);
    pool->db = keep.get();
  }
  const UserConfig* user = cfg.FindUser(pool->user());
  PoolSettings s;
  // PgBouncer's precedence for the pool's mode and sizes: the [users] entry, then the
  // [databases] entry, then [pgbouncer] (pool_pool_mode, pool_pool_size, pool_res_pool_size).
  s.mode = g.pool_mode;
  if (pool->db && pool->db->pool_mode) s.mode = *pool->db->pool_mode;
  if (user && user->pool_mode) s.mode = *user->pool_mode;
  s.pool_size = g.default_pool_size;
  if (pool->db && pool->db->pool_size) s.pool_size = *pool->db->pool_size;
  if (user && user->pool_size) s.pool_size = *user->pool_size;
  s.min_pool_size = pool->db && pool->db->min_pool_size ? *pool->db->min_pool_size : g.min_pool_size;
  s.reserve_pool_size = g.reserve_pool_size;
  if (pool->db && pool->db->reserve_pool_size) s.reserve_pool_size = *pool->db->reserve_pool_size;
  if (user && user->reserve_pool_size) s.reserve_pool_size = *user->reserve_pool_size;
  s.max_db_connections = pool->db && pool->db->max_db_connections ? *pool->db->max_db_connections : g.max_db_connections;
  s.max_user_connections = user && user->max_user_connections ? *user->max_user_connections : g.max_user_connections;
  s.server_lifetime = pool->db && pool->db->server_lifetime ? *pool->db->server_lifetime : g.server_lifetime;
  s.query_timeout = user && user->query_timeout ? *user->query_timeout : g.query_timeout;
  s.query_wait_timeout = g.query_wait_timeout;
  if (user && user->query_wait_timeout) s.query_wait_timeout = *user->query_wait_timeout;
  if (pool->db && pool->db->query_wait_timeout) s.query_wait_timeout = *pool->db->query_wait_timeout;
  s.idle_transaction_timeout =
      user && user->idle_transaction_timeout ? *user->idle_transaction_timeout : g.idle_transaction_timeout;
  s.client_idle_timeout = user && user->client_idle_timeout ? *user->client_idle_timeout : g.client_idle_timeout;
  pool->settings = s;
  pool->config_version = config_version_;
}

// ---------------------------------------------------------------------------------------------
// Getting a server.

void Worker::RequestServer(ClientConn* c) {
  Pool* pool = c->pool;
  if (!pool->db_shared->paused.load(std::memory_order_relaxed) && !pool->idle.empty()) {
    ServerConn* s = pool->idle.PopFront();
    LinkClientServer(c, s);
    return;
  }
  pool->waiting.PushBack(c);
  ArmClientTimer(c);
  ServeWaiters(pool);
}

// Links idle servers to waiting clients, oldest wait first, then opens (or borrows) servers
// for the clients still waiting beyond the logins already under way.
void Worker::ServeWaiters(Pool* pool) {
  // Clients waiting for a first server login on this worker can go as soon as any worker's
  // login has told us the server's parameters (the server may have come by hand-over).
  if (!pool->welcome_waiting.empty() && pool->shared->has_welcome.load(std::memory_order_acquire)) {
    WelcomeWaiters(pool);
  }
  if (pool->db_shared->paused.load(std::memory_order_relaxed)) return;
  while (!pool->waiting.empty() && !pool->idle.empty()) {
    ClientConn* c = pool->waiting.PopFront();
    ServerConn* s = pool->idle.PopFront();
    LinkClientServer(c, s);
  }
  while (static_cast<int>(pool->waiting.size()) > pool->sv_login) {
    if (!LaunchServer(pool)) {
      AskForServer(pool);
      break;
    }
  }
}

void Worker::LinkClientServer(ClientConn* c, ServerConn* s) {
  Pool* pool = c->pool;
  timers_->Disarm(&s->timer);
  s->state = ServerState::kActive;
  ++pool->sv_active;
  c->server = s;
  s->client = c;
  c->state = ClientState::kActive;
  ++pool->cl_active;
  c->wait_notified = false;
  ++pool->stats.server_assignments;
  uint64_t wait_us = c->request_time_ns ? static_cast<uint64_t>(now_ns_ - c->request_time_ns) / 1000 : 0;
  pool->stats.wait_time_us += wait_us;
  pool->latency.wait.Record(wait_us);  // metrics: one observation per server assignment
  s->xact_start_ns = now_ns_;
  if (c->tracker.Busy()) s->query_start_ns = now_ns_;
  // A server idle for longer than server_check_delay may have died quietly: test it first.
  const Settings& cfg = config_->settings;
  if (!cfg.server_check_query.empty() && s->last_used_ns != 0 &&
      now_ns_ - s->last_used_ns > ToNanos(cfg.server_check_delay)) {
    StartSetup(s, SetupStep::kCheckQuery, cfg.server_check_query == "<empty>" ? "" : cfg.server_check_query);
    return;
  }
  ContinueLink(c, s);
}

// After any check: bring the server's session parameters in line with the client's, then
// send what the client has been holding.
void Worker::ContinueLink(ClientConn* c, ServerConn* s) {
  if (s->vars != c->vars) {
    std::string sql;
    if (vars_->BuildSetQuery(s->vars, c->vars, &sql) > 0) {
      StartSetup(s, SetupStep::kSetVars, sql);
      return;
    }
  }
  buffers_->Splice(s->io.out, c->held);
  SendServer(s);
  ArmClientTimer(c);
  if (c->io.recv_paused && s->io.out.bytes < kHighWatermark) ResumeRecv(c, kOpClientRecv);
}

// ---------------------------------------------------------------------------------------------
// Taking a server back.

void Worker::ReleaseServer(ServerConn* s, bool client_gone) {
  Pool* pool = s->pool;
  ClientConn* c = s->client;
  if (c) {
    c->server = nullptr;
    s->client = nullptr;
    if (!client_gone) {
      --pool->cl_active;
      c->state = ClientState::kIdle;
      ++pool->cl_idle;
      c->last_active_ns = now_ns_;
      ArmClientTimer(c);
      // SIGINT / SHUTDOWN WAIT_FOR_SERVERS: once its transaction is over, the client goes, but
      // only after the answer that ended it (queued just before this release) has been sent.
      if (stopping_ && shutdown_mode_ == ShutdownMode::kWaitForServers) {
        CloseClient(c, "server shutting down", /*flush=*/true);
      }
    }
  }
  --pool->sv_active;
  s->last_used_ns = now_ns_;
  s->query_start_ns = 0;
  s->xact_start_ns = 0;
  s->reset_on_release =
      (pool->settings.mode == PoolMode::kSession && client_gone) || config_->settings.server_reset_query_always;
  if (s->cancels_in_flight > 0) {
    // A cancel aimed at the query that just ended may still reach the backend; if the server
    // served someone else meanwhile, that cancel would kill their query. Hold it until
    // PostgreSQL has closed the cancel connection (CancelLanded), as PgBouncer does.
    s->state = ServerState::kBeingCanceled;
    ++pool->sv_being_canceled;
    return;
  }
  s->state = ServerState::kIdle;
  FinishRelease(s);
}

void Worker::FinishRelease(ServerConn* s) {
  Pool* pool = s->pool;
  if (s->close_needed) {
    CloseServer(s, "obsolete connection");
    return;
  }
  if (pool->settings.server_lifetime > absl::ZeroDuration() &&
      now_ns_ - s->connect_time_ns >= ToNanos(pool->settings.server_lifetime)) {
    CloseServer(s, "server lifetime over");
    return;
  }
  const Settings& cfg = config_->settings;
  if (s->reset_on_release && !cfg.server_reset_query.empty()) {
    StartSetup(s, SetupStep::kResetQuery, cfg.server_reset_query);
    return;
  }
  ServerIdle(s);
}

// A clean server with no client: lend it to another worker that asked, give it to the oldest
// waiting client, or park it.
void Worker::ServerIdle(ServerConn* s) {
  Pool* pool = s->pool;
  s->state = ServerState::kIdle;
  if (stopping_ && shutdown_mode_ != ShutdownMode::kWaitForClients) {
    CloseServer(s, "server shutting down");
    return;
  }
  if (!pool->debts.empty()) {
    // Each worker's share of the pool is floor(S/W) plus one of the remainder (DESIGN.md
    // decision 3). Above it, a server goes to a worker that asked; at or below it, only when
    // this worker has nobody waiting or the other side has waited clearly longer.
    const ServerDebt& d = pool->debts.front();
    bool theirs = pool->waiting.empty() || pool->servers > Share(pool) ||
                  d.since_ns + kFairnessWindowNs < pool->waiting.front()->request_time_ns;
    if (theirs) {
      s->state = ServerState::kHandover;
      s->handover_to = d.worker;
      pool->debts.pop_front();
      if (s->io.recv_armed) {
        io_uring_sqe* sqe = ring_->Sqe();
        io_uring_prep_cancel64(sqe, netio::Tag{kOpServerRecv, s->generation, s->slot}.Pack(), 0);
        io_uring_sqe_set_data64(sqe, 0);
      }
      if (s->io.pending == 0) GiveServerAway(s);
      return;
    }
  }
  if (!pool->waiting.empty() && !pool->db_shared->paused.load(std::memory_order_relaxed)) {
    ClientConn* c = pool->waiting.PopFront();
    LinkClientServer(c, s);
    return;
  }
  // Warm servers first (LIFO), unless server_round_robin asks to spread load evenly (FIFO).
  if (config_->settings.server_round_robin) {
    pool->idle.PushBack(s);
  } else {
    pool->idle.PushFront(s);
  }
  ArmServerTimer(s);
}

// Moves a server whose recv has been cancelled to the worker that asked for it. The fd and
// the global budget go with it; the session state travels in the message.
bool Worker::GiveServerAway(ServerConn* s) {
  Pool* pool = s->pool;
  auto* h = new ServerHandoff();
  h->fd = s->io.fd;
  h->pool = pool->shared;
  h->vars = s->vars->values;
  h->backend_key = s->backend_key;
  h->connect_time_ns = s->connect_time_ns;
  h->last_used_ns = s->last_used_ns;
  h->addr = s->addr;
  h->id = s->id;
  h->host_index = s->host_index;
  int to = s->handover_to;
  --pool->servers;
  pool->shared->per_worker_servers[id_].fetch_sub(1, std::memory_order_relaxed);
  pool->shared->per_worker_servers[to].fetch_add(1, std::memory_order_relaxed);
  s->io.fd = -1;  // now owned by the message
  timers_->Disarm(&s->timer);
  // Gone from this worker, with its budget; freed at the next safe point like a closed one.
  s->pool = nullptr;
  s->state = ServerState::kClosing;
  FreeServerIfDone(s);
  Post(to, netio::MailMessage{kMailServerHandover, 0, 0, h});
  return true;
}

int Worker::Share(const Pool* pool) const {
  int w = shared_->workers();
  int size = pool->settings.pool_size;
  return size / w + (id_ < size % w ? 1 : 0);
}

void Worker::AskForServer(Pool* pool) {
  if (pool->waiting.empty() && pool->welcome_waiting.empty()) return;
  if (pool->asked_for_server && now_ns_ - pool->asked_at_ns < kAskAgainNs) return;
  // A worker holding its share serves its own queue; it only asks once its oldest client has
  // waited long enough that the fairness rule will make a lender give way.
  if (pool->servers >= Share(pool) && pool->servers > 0 && !pool->waiting.empty() &&
      now_ns_ - pool->waiting.front()->request_time_ns < kFairnessWindowNs) {
    return;
  }
  int best = -1;
  int most = 0;
  for (int w = 0; w < shared_->workers(); ++w) {
    if (w == id_) continue;
    int n = pool->shared->per_worker_servers[w].load(std::memory_order_relaxed);
    if (n > most) {
      most = n;
      best = w;
    }
  }
  if (best < 0) return;
  pool->asked_for_server = true;
  pool->asked_at_ns = now_ns_;
  int64_t since = pool->waiting.empty() ? now_ns_ : pool->waiting.front()->request_time_ns;
  Post(best, netio::MailMessage{kMailNeedServer, static_cast<uint32_t>(id_), static_cast<uint64_t>(since), pool->shared});
}

bool Worker::EvictIdleServer(const PoolShared* needy, bool same_user) {
  ServerConn* victim = nullptr;
  for (auto& [key, p] : pools_) {
    if (p->shared == needy || p->idle.empty()) continue;
    if (same_user ? p->shared->user != needy->user : p->shared->database != needy->database) continue;
    ServerConn* oldest = p->idle.back();  // the idle list is LIFO: its back waited longest
    if (victim == nullptr || oldest->last_used_ns < victim->last_used_ns) victim = oldest;
  }
  if (victim == nullptr) return false;
  CloseServer(victim, "evicted");
  return true;
}

void Worker::AskToEvict(Pool* pool, bool same_user) {
  const int workers = shared_->workers();
  if (workers < 2 || stopping_) return;
  if (pool->evict_asked_at_ns != 0 && now_ns_ - pool->evict_asked_at_ns < kAskAgainNs) return;
  pool->evict_asked_at_ns = now_ns_;
  // One worker per ask, in turn: asking all at once could close several servers for one need.
  pool->evict_rotor = (pool->evict_rotor + 1) % workers;
  if (pool->evict_rotor == id_) pool->evict_rotor = (pool->evict_rotor + 1) % workers;
  Post(pool->evict_rotor, netio::MailMessage{kMailEvictIdle, same_user ? 1u : 0u, 0, pool->shared});
}

void Worker::OnNeedServer(PoolShared* ps, int from, int64_t since_ns) {
  auto it = pools_by_shared_.find(ps);
  if (it == pools_by_shared_.end()) return;
  Pool* pool = it->second;
  for (ServerDebt& d : pool->debts) {
    if (d.worker == from) {
      d.since_ns = std::min(d.since_ns, since_ns);
      return;
    }
  }
  pool->debts.push_back(ServerDebt{from, since_ns});
  // An idle server can go at once.
  if (!pool->idle.empty()) {
    ServerConn* s = pool->idle.PopFront();
    timers_->Disarm(&s->timer);
    ServerIdle(s);
  }
}

void Worker::OnServerHandover(ServerHandoff* h) {
  std::unique_ptr<ServerHandoff> owned(h);
  auto it = pools_by_shared_.find(h->pool);
  ServerConn* s = servers_.Allocate();
  s->io.fd = h->fd;
  s->connect_time_ns = h->connect_time_ns;
  s->last_used_ns = h->last_used_ns;
  s->backend_key = h->backend_key;
  s->addr = h->addr;
  s->id = h->id;
  s->host_index = h->host_index;
  s->io.zero_copy_ok = !s->addr.IsLocal() || zero_copy_local_for_test_;
  s->timer.owner = 2;
  s->vars = vars_->Empty();
  for (size_t i = 0; i < h->vars.size() && i < vars_->names().size(); ++i) {
    const VarSet* nv = vars_->With(s->vars, static_cast<int>(i), h->vars[i]);
    vars_->Unref(s->vars);
    s->vars = nv;
  }
  if (it == pools_by_shared_.end()) {
    // We asked, so we had this pool; it can only be gone if the worker is shutting down.
    // The budget came with the server, so give it back by closing it properly.
    s->pool = nullptr;
    h->pool->servers.Release();
    shared_->Database(h->pool->database)->servers.Release();
    shared_->User(h->pool->user)->servers.Release();
    h->pool->per_worker_servers[id_].fetch_sub(1, std::memory_order_relaxed);
    s->state = ServerState::kClosing;
    FreeServerIfDone(s);
    return;
  }
  Pool* pool = it->second;
  s->pool = pool;
  ++pool->servers;
  pool->asked_for_server = false;
  s->state = ServerState::kIdle;
  ArmRecv(s, kOpServerRecv);
  if (!pool->welcome_waiting.empty()) WelcomeWaiters(pool);
  ServerIdle(s);
  if (!pool->waiting.empty()) AskForServer(pool);
}

// ---------------------------------------------------------------------------------------------
// Welcome: the first server login of a pool tells us what to send every client.

void Worker::WelcomeWaiters(Pool* pool) {
  while (ClientConn* c = pool->welcome_waiting.PopFront()) {
    SendWelcome(c);
  }
}

void Worker::FailWaiters(Pool* pool, const std::string& message, const std::string& sqlstate) {
  while (ClientConn* c = pool->welcome_waiting.PopFront()) {
    c->state = ClientState::kIdle;  // off the list; RejectClient closes it
    ++pool->cl_idle;
    RejectClient(c, message, sqlstate.c_str());
  }
}

void Worker::PoolMaintenance(Pool* pool) {
  if (pool->config_version != config_version_) RefreshPoolSettings(pool);
  if (!pool->waiting.empty() || !pool->welcome_waiting.empty()) {
    ServeWaiters(pool);
    if (!pool->welcome_waiting.empty() && pool->sv_login == 0 && pool->idle.empty()) {
      if (!LaunchServer(pool)) AskForServer(pool);
    }
  }
  // min_pool_size is global; one worker per pool keeps it topped up, so workers don't race
  // past it. It is the first worker that had the pool: one picked by hash may never have it.
  if (pool->settings.min_pool_size > 0 && !stopping_ &&
      pool->shared->min_pool_keeper.load(std::memory_order_relaxed) == id_ &&
      pool->shared->servers.value() < pool->settings.min_pool_size && pool->sv_login == 0) {
    LaunchServer(pool);
  }
  // Debts from workers that no longer need a server age out.
  while (!pool->debts.empty() && now_ns_ - pool->debts.front().since_ns > kDebtExpiryNs) pool->debts.pop_front();
}

// ---------------------------------------------------------------------------------------------
// Cancels (DESIGN.md decision 6): our key names the worker; the owner sends the real key.

ClientConn* Worker::FindClientByCancelKey(uint64_t key) {
  auto it = cancel_keys_.find(CancelMapKey(key));
  return it == cancel_keys_.end() ? nullptr : it->second;
}

namespace {
proto::CancelKey KeyFromUint64(uint64_t raw) {
  uint8_t bytes[proto::CancelKey::kSize];
  for (size_t i = 0; i < proto::CancelKey::kSize; ++i) bytes[i] = static_cast<uint8_t>(raw >> (56 - 8 * i));
  return proto::CancelKey::FromBytes(absl::Span<const uint8_t>(bytes, proto::CancelKey::kSize));
}
}  // namespace

bool Worker::HandleCancelKey(uint64_t raw, ClientConn* requester) {
  proto::CancelKey key = KeyFromUint64(raw);
  // With peering, the key names the instance that issued it; a cancel that landed here for
  // another instance goes on to that peer (PgBouncer's [peers], at most 3 hops).
  int own_peer = config_->settings.peer_id;
  if (own_peer > 0 && key.peer_id() != own_peer) {
    return ForwardCancelToPeer(key, requester);
  }
  int owner = key.worker_id();
  if (owner != id_ && owner < shared_->workers()) {
    Post(owner, netio::MailMessage{kMailCancel, 0, raw, nullptr});
    return false;
  }
  ClientConn* c = FindClientByCancelKey(raw);
  if (!c) {
    RB_LOG("failed cancel request");
    return false;
  }
  if (!c->server || c->state != ClientState::kActive) {
    RB_LOG("%s cancel request for idle client", ClientPrefix(c));
    return false;
  }
  if (c->server->state == ServerState::kSetup && c->server->setup == SetupStep::kSetVars) {
    RB_LOG("%s ignoring cancel request for server that is setting vars", ClientPrefix(c));
    return false;
  }
  SendCancelToServer(c->server);
  return false;
}

bool Worker::ForwardCancelToPeer(proto::CancelKey key, ClientConn* requester) {
  if (!key.DecrementTtl()) {
    RB_LOG("failed to forward cancel request because its TTL was exhausted");
    return false;
  }
  const PeerConfig* peer = config_->FindPeer(key.peer_id());
  if (!peer) {
    RB_LOG("could not find peer to forward request to");
    return false;
  }
  RB_DEBUG("forwarding cancellation request to peer %d", peer->peer_id);
  std::string payload;
  proto::AppendCancelRequest(&payload, key.ToBackendKey());
  ServerConn* s = OpenCancelConnection(payload, peer->host, peer->port, nullptr, static_cast<uint16_t>(peer->peer_id));
  if (!s || !requester) return false;
  // As PgBouncer's peer pools: the client's connection stays open until the peer has closed
  // the forwarded one (so its EOF means the request has gone on), and SHOW PEER_POOLS counts
  // it meanwhile, waiting (cl_waiting_cancel_req) while we connect, then active.
  s->cancel_client_slot = requester->slot;
  s->cancel_client_generation = requester->generation;
  requester->cancel_held = true;
  shared_->CountPeerCancelClient(peer->peer_id, s->connected ? 0 : 1, s->connected ? 1 : 0);
  return true;
}

}  // namespace rb::engine
