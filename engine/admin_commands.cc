// The admin console's commands as each worker carries them out on its own connections:
// PAUSE and SUSPEND counting, KILL, KILL_CLIENT, RECONNECT, WAIT_CLOSE, RESUME, and the upkeep
// every control-thread tick does for paused pools and servers marked close_needed.
#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "engine/admin_console.h"
#include "engine/admin_request.h"
#include "engine/connection.h"
#include "engine/log.h"
#include "engine/worker.h"

namespace rb::engine {

bool AdminConsole::PoolMatches(const Pool* pool, const std::string& db) const {
  return db.empty() || pool->database() == db;
}

void AdminConsole::RunCommandPart(AdminRequest* r, AdminWorkerPart* part) {
  switch (r->op) {
    case AdminOp::kPauseCount:
      // PgBouncer closes a paused pool's idle servers and waits for the busy ones.
      CloseIdleServers(r->arg, /*paused_only=*/true, /*close_needed_only=*/false);
      part->count = CountBusyServers(r->arg);
      return;
    case AdminOp::kSuspendCount:
      part->count = CountBusyServers("");
      return;
    case AdminOp::kWaitCloseCount:
      CloseIdleServers(r->arg, /*paused_only=*/false, /*close_needed_only=*/true);
      part->count = CountCloseNeeded(r->arg);
      return;
    case AdminOp::kKill:
      part->count = KillPools(r->arg);
      return;
    case AdminOp::kKillClient:
      part->found = KillClient(r->arg);
      return;
    case AdminOp::kReconnect:
      Reconnect(r->arg);
      return;
    case AdminOp::kResume:
      for (auto& [key, pool] : worker_->pools_) worker_->ServeWaiters(pool.get());
      return;
    default:
      return;
  }
}

// Closes idle servers of the pools of `db` (all when empty): those of paused pools (PAUSE and
// KILL pause them; a SUSPEND keeps its servers), or those marked close_needed.
int AdminConsole::CloseIdleServers(const std::string& db, bool paused_only, bool close_needed_only) {
  PauseMode mode = worker_->shared_->pause_mode();
  std::vector<ServerConn*> doomed;
  auto pause_closes = [&](const Pool* pool) {
    return pool->db_shared->db_paused.load(std::memory_order_relaxed) || mode == PauseMode::kPause;
  };
  for (auto& [key, pool] : worker_->pools_) {
    if (!PoolMatches(pool.get(), db)) continue;
    for (ServerConn* s = pool->idle.front(); s; s = decltype(pool->idle)::Next(s)) {
      if (close_needed_only ? s->close_needed : (!paused_only || pause_closes(pool.get()))) doomed.push_back(s);
    }
  }
  if (paused_only && !close_needed_only) {
    // PgBouncer drops logins in progress too: a paused pool will not use them, and a stuck
    // connect must not hold PAUSE up until server_connect_timeout.
    worker_->servers_.ForEach([&](ServerConn* s) {
      if ((s->state == ServerState::kConnecting || s->state == ServerState::kLogin) && s->pool &&
          PoolMatches(s->pool, db) && pause_closes(s->pool)) {
        doomed.push_back(s);
      }
    });
  }
  for (ServerConn* s : doomed) worker_->CloseServer(s, s->close_needed ? "obsolete connection" : "pause mode");
  return static_cast<int>(doomed.size());
}

// Servers that still carry (or are about to carry) a transaction: linked, running a query of
// our own, or logging in.
int AdminConsole::CountBusyServers(const std::string& db) {
  int n = 0;
  for (auto& [key, pool] : worker_->pools_) {
    if (!PoolMatches(pool.get(), db)) continue;
    n += pool->sv_active + pool->sv_setup + pool->sv_login;
  }
  return n;
}

int AdminConsole::CountCloseNeeded(const std::string& db) {
  int n = 0;
  worker_->servers_.ForEach([&](ServerConn* s) {
    if (s->pool && s->close_needed && s->state != ServerState::kClosing && PoolMatches(s->pool, db)) ++n;
  });
  return n;
}

// KILL: every client and server of the pools goes, and their databases stay paused until
// RESUME, as PgBouncer's kill_pool.
int AdminConsole::KillPools(const std::string& db) {
  std::vector<Pool*> pools;
  for (auto& [key, pool] : worker_->pools_) {
    if (!PoolMatches(pool.get(), db)) continue;
    pools.push_back(pool.get());
    if (db.empty()) worker_->shared_->SetDatabasePaused(pool->database(), true);
  }
  auto in = [&](const Pool* p) { return std::find(pools.begin(), pools.end(), p) != pools.end(); };
  std::vector<ClientConn*> clients;
  worker_->clients_.ForEach([&](ClientConn* c) {
    if (c->state == ClientState::kClosing || c->state == ClientState::kAdmin) return;
    if (c->pool && in(c->pool)) clients.push_back(c);
  });
  for (ClientConn* c : clients) worker_->RejectClient(c, "database removed", "08P01");
  std::vector<ServerConn*> servers;
  worker_->servers_.ForEach([&](ServerConn* s) {
    if (s->state == ServerState::kClosing || s->state == ServerState::kCancelRequest || s->state == ServerState::kHandover) {
      return;
    }
    if (s->pool && in(s->pool)) servers.push_back(s);
  });
  for (ServerConn* s : servers) {
    if (s->state != ServerState::kClosing) worker_->CloseServer(s, "database removed");
  }
  return static_cast<int>(clients.size());
}

bool AdminConsole::KillClient(const std::string& id_text) {
  // sscanf("%llu")'s reading: the leading digits.
  size_t digits = 0;
  while (digits < id_text.size() && id_text[digits] >= '0' && id_text[digits] <= '9') ++digits;
  uint64_t id = 0;
  if (!absl::SimpleAtoi(id_text.substr(0, digits), &id)) return false;
  int workers = worker_->shared_->workers();
  if (static_cast<int>(id % static_cast<uint64_t>(workers)) != worker_->id_) return false;
  uint64_t internal = (uint64_t{static_cast<uint32_t>(worker_->id_)} << 48) | (id / static_cast<uint64_t>(workers));
  ClientConn* found = nullptr;
  worker_->clients_.ForEach([&](ClientConn* c) {
    if (c->id != internal) return;
    switch (c->state) {
      case ClientState::kIdle:
      case ClientState::kActive:
      case ClientState::kWaiting:
      case ClientState::kWaitWelcome:
      case ClientState::kAdmin:
        found = c;
        break;
      default:
        break;
    }
  });
  if (!found) return false;
  worker_->RejectClient(found, "admin forced disconnect", "08P01");
  return true;
}

// RECONNECT: every server of the pools is closed once it is released; idle ones at once.
void AdminConsole::Reconnect(const std::string& db) {
  worker_->servers_.ForEach([&](ServerConn* s) {
    if (s->pool && s->state != ServerState::kClosing && PoolMatches(s->pool, db)) s->close_needed = true;
  });
  CloseIdleServers(db, /*paused_only=*/false, /*close_needed_only=*/true);
}

// On every tick: a paused pool loses its idle servers (PgBouncer's janitor does the same), and
// a server marked close_needed that went idle without passing through a release (after a
// reset or a login) is closed.
void AdminConsole::Upkeep() {
  CloseIdleServers("", /*paused_only=*/true, /*close_needed_only=*/false);
  CloseIdleServers("", /*paused_only=*/false, /*close_needed_only=*/true);
}

}  // namespace rb::engine
