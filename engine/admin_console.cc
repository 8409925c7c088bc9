// The admin console's sessions: reading queries, access rules, dispatch, replies, and the mail
// that carries requests between workers and to the control thread.
#include "engine/admin_console.h"

#include <unistd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/admin_parse.h"
#include "engine/admin_request.h"
#include "engine/admin_session.h"
#include "engine/connection.h"
#include "engine/log.h"
#include "engine/metrics_server.h"
#include "engine/worker.h"
#include "netio/listener.h"
#include "proto/message_assembler.h"
#include "proto/messages.h"

namespace rb::engine {

namespace {

// The longest admin message we assemble. PgBouncer drops a console client whose query does not
// fit its packet buffer; we answer any query up to this size with the usual errors instead, so
// the console stays usable.
// Bytes a client may send while its previous query is still being answered.
constexpr size_t kMaxBacklog = 1 << 20;

// What PgBouncer fakes for clients that SET or SHOW these on connect.
struct FakeParam {
  const char* name;
  const char* value;
};
constexpr FakeParam kFakeParams[] = {
    {"client_encoding", "UTF-8"},
    {"default_transaction_isolation", "read committed"},
    {"standard_conforming_strings", "on"},
    {"datestyle", "ISO"},
    {"timezone", "GMT"},
    {"extra_float_digits", "2"},
};

const FakeParam* FindFakeParam(absl::string_view name) {
  for (const FakeParam& p : kFakeParams)
    if (absl::EqualsIgnoreCase(name, p.name)) return &p;
  return nullptr;
}

}  // namespace

AdminConsole::AdminConsole(Worker* worker) : worker_(worker) {
  new_stamp_ns_ = MonotonicNanos();
  old_stamp_ns_ = new_stamp_ns_ - 1'000'000'000;  // as PgBouncer: the first average spans start-up
}

AdminConsole::~AdminConsole() = default;

void AdminConsole::Start(ClientConn* c, const std::string& user) {
  auto* a = new AdminSession();
  c->admin = a;
  a->user = user;
  const Settings& cfg = worker_->config_->settings;
  bool is_unix = c->listener_kind == static_cast<uint8_t>(ListenerKind::kUnix);
  // The process's own OS user over the unix socket is "pgbouncer", with every right.
  bool own_user = is_unix && user == "pgbouncer" && netio::UnixPeerUid(c->io.fd) == static_cast<int64_t>(geteuid());
  a->admin = own_user || std::find(cfg.admin_users.begin(), cfg.admin_users.end(), user) != cfg.admin_users.end();
  if (own_user && cfg.log_connections) RB_LOG("%s pgbouncer access from unix socket", worker_->ClientPrefix(c));

  std::string out;
  proto::AppendAuthenticationOk(&out);
  // What PgBouncer tells a console client: it is not PostgreSQL, but a client library needs
  // these to talk at all.
  proto::AppendParameterStatus(&out, "server_version", "1.25.0/bouncer");
  proto::AppendParameterStatus(&out, "client_encoding", "UTF8");
  proto::AppendParameterStatus(&out, "server_encoding", "UTF8");
  proto::AppendParameterStatus(&out, "DateStyle", "ISO");
  proto::AppendParameterStatus(&out, "TimeZone", "GMT");
  proto::AppendParameterStatus(&out, "standard_conforming_strings", "on");
  proto::AppendParameterStatus(&out, "is_superuser", "on");
  proto::AppendBackendKeyData(&out, proto::BackendKey{0, 0});
  proto::AppendReadyForQuery(&out, 'I');
  Reply(c, out, /*ready=*/false);
}

void AdminConsole::OnBytes(ClientConn* c, const uint8_t* data, uint32_t len) {
  AdminSession* a = c->admin;
  if (!a) return;
  uint32_t off = 0;
  while (off < len && c->state == ClientState::kAdmin && !a->busy) {
    proto::AssembleResult r = a->assembler.Feed(data + off, len - off);
    off += r.consumed;
    if (r.status == proto::AssembleStatus::kNeedMore) return;
    if (r.status != proto::AssembleStatus::kReady) {
      worker_->RejectClient(c, proto::BadPacketHeaderMessage(a->assembler.header()), "08P01");
      return;
    }
    uint8_t type = a->assembler.type();
    auto body = a->assembler.body();
    switch (type) {
      case 'Q': {
        absl::string_view sql;
        if (proto::ParseQuery(body, &sql) != proto::ParseError::kOk) {
          worker_->RejectClient(c, "incomplete query", "08P01");
          return;
        }
        HandleQuery(c, std::string(sql));
        break;
      }
      case 'X':
        worker_->CloseClient(c, "client close request");
        return;
      case 'P':
      case 'B':
      case 'E':
        // As PgBouncer: the same as any other type, with a more helpful message for the
        // extended protocol.
        ReplyError(c, "extended query protocol not supported by admin console");
        worker_->RejectClient(c, "bad packet", "08P01");
        return;
      default:
        ReplyError(c, absl::StrFormat("unsupported packet type for admin console: %d", type));
        worker_->RejectClient(c, "bad packet", "08P01");
        return;
    }
  }
  // The query may have closed this client (KILL_CLIENT of itself), freeing `a`: state first.
  if (off < len && c->state == ClientState::kAdmin && a->busy) {
    if (a->backlog.size() + (len - off) > kMaxBacklog) {
      worker_->RejectClient(c, "bad packet", "08P01");
      return;
    }
    a->backlog.append(reinterpret_cast<const char*>(data) + off, len - off);
  }
}

void AdminConsole::Continue(ClientConn* c) {
  AdminSession* a = c->admin;
  a->busy = false;
  if (a->backlog.empty()) return;
  std::string bytes = std::move(a->backlog);
  a->backlog.clear();
  OnBytes(c, reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<uint32_t>(bytes.size()));
}

void AdminConsole::OnClose(ClientConn* c) {
  AdminSession* a = c->admin;
  if (!a) return;
  if (a->waiting) {
    auto it = std::find(waiting_.begin(), waiting_.end(), std::make_pair(c->slot, c->generation));
    if (it != waiting_.end()) waiting_.erase(it);
    worker_->shared_->admin_waits.fetch_sub(1, std::memory_order_relaxed);
  }
  if (a->suspended && worker_->shared_->pause_mode() == PauseMode::kSuspend) {
    // PgBouncer does not stay suspended without an admin to resume it.
    RB_LOG("admin disappeared when suspended, doing RESUME");
    worker_->shared_->SetPauseMode(PauseMode::kNone);
    WakeWorkers();
  }
  delete a;
  c->admin = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Replies.

void AdminConsole::Reply(ClientConn* c, const std::string& bytes, bool ready) {
  std::string out = bytes;
  if (ready) proto::AppendReadyForQuery(&out, 'I');
  worker_->buffers_->AppendCopy(c->io.out, out.data(), out.size());
  worker_->SendClient(c);
}

// PgBouncer's admin_error: logged, then ERROR and ReadyForQuery; the session goes on.
void AdminConsole::ReplyError(ClientConn* c, const std::string& message, const char* sqlstate) {
  std::string text = TruncateAdminMessage(message);
  RB_ERROR("%s", text);
  std::string out;
  proto::AppendPoolerError(&out, text, sqlstate, /*fatal=*/false);
  Reply(c, out);
}

void AdminConsole::ReplyTag(ClientConn* c, const std::string& tag) {
  std::string out;
  proto::AppendCommandComplete(&out, tag);
  Reply(c, out);
}

bool AdminConsole::RequireAdmin(ClientConn* c) {
  if (c->admin->admin) return true;
  ReplyError(c, "admin access needed");
  return false;
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

void AdminConsole::HandleQuery(ClientConn* c, const std::string& sql) {
  AdminSession* a = c->admin;
  RB_DEBUG("got admin query: %s", sql);
  AdminCommand cmd = ParseAdminCommand(sql);
  auto syntax_error = [&] { ReplyError(c, absl::StrCat("invalid command '", sql, "', use SHOW HELP;")); };
  switch (cmd.kind) {
    case AdminCommand::Kind::kSyntaxError:
      syntax_error();
      return;
    case AdminCommand::Kind::kBadArguments:
      ReplyError(c, "bad arguments");
      return;
    case AdminCommand::Kind::kSet: {
      if (FindFakeParam(cmd.key)) {
        std::string out;
        proto::ErrorFields f;
        f.severity = proto::severity::kNotice;
        f.sqlstate = "00000";
        f.message = "SET ignored";
        proto::AppendNoticeResponse(&out, f);
        proto::AppendCommandComplete(&out, "SET");
        Reply(c, out);
        return;
      }
      if (!RequireAdmin(c)) return;
      auto* r = new AdminRequest();
      r->op = AdminOp::kSet;
      r->arg = cmd.key;
      r->value = cmd.value;
      SendToControl(c, r);
      return;
    }
    case AdminCommand::Kind::kCommand:
      break;
  }

  std::string verb = absl::AsciiStrToLower(cmd.cmd);
  const std::string& arg = cmd.arg;
  SharedState* ss = worker_->shared_;

  if (verb == "show" || verb == "select") {
    if (!HandleShow(c, arg)) syntax_error();
    return;
  }
  if (verb == "reload") {
    if (!arg.empty()) return syntax_error();
    if (!RequireAdmin(c)) return;
    RB_LOG("RELOAD command issued");
    auto* r = new AdminRequest();
    r->op = AdminOp::kReload;
    SendToControl(c, r);
    return;
  }
  if (verb == "shutdown") {
    ShutdownMode mode = ShutdownMode::kImmediate;
    if (!arg.empty()) {
      if (absl::EqualsIgnoreCase(arg, "WAIT_FOR_CLIENTS")) {
        mode = ShutdownMode::kWaitForClients;
      } else if (absl::EqualsIgnoreCase(arg, "WAIT_FOR_SERVERS")) {
        mode = ShutdownMode::kWaitForServers;
      } else {
        return syntax_error();
      }
    }
    if (!RequireAdmin(c)) return;
    auto* r = new AdminRequest();
    r->op = AdminOp::kShutdown;
    r->shutdown_mode = mode;
    if (mode == ShutdownMode::kImmediate) {
      // No answer: the connection stays open until the process is gone, as in PgBouncer.
      RB_LOG("SHUTDOWN command issued");
      a->busy = true;
    } else {
      RB_LOG(mode == ShutdownMode::kWaitForServers ? "SHUTDOWN WAIT_FOR_SERVERS command issued"
                                                   : "SHUTDOWN WAIT_FOR_CLIENTS command issued");
      // The answer goes first: once the shutdown reaches this worker it may drop idle clients.
      ReplyTag(c, "SHUTDOWN");
    }
    r->origin = worker_->id_;
    r->client_slot = c->slot;
    r->client_generation = c->generation;
    ss->control().Push(netio::MailMessage{kControlAdmin, 0, 0, r});
    return;
  }
  if (verb == "resume") {
    if (!RequireAdmin(c)) return;
    if (arg.empty()) {
      RB_LOG("RESUME command issued");
      if (ss->shutting_down.load(std::memory_order_relaxed)) return ReplyError(c, "pooler is shutting down");
      if (ss->pause_mode() == PauseMode::kNone) return ReplyError(c, "pooler is not paused/suspended");
      ss->SetPauseMode(PauseMode::kNone);
      a->suspended = false;
    } else {
      RB_LOG("RESUME '%s' command issued", arg);
      if (!DatabaseKnown(arg, /*register_auto=*/false)) return ReplyError(c, absl::StrCat("no such database: ", arg));
      DatabaseShared* d = ss->FindDatabase(arg);
      if (!d || !d->db_paused.load(std::memory_order_relaxed)) {
        return ReplyError(c, absl::StrCat("database ", arg, " is not paused"));
      }
      ss->SetDatabasePaused(arg, false);
    }
    auto* r = new AdminRequest();
    r->op = AdminOp::kResume;
    a->busy = true;
    Broadcast(c, r);
    return;
  }
  if (verb == "pause") {
    if (!RequireAdmin(c)) return;
    if (ss->pause_mode() != PauseMode::kNone) return ReplyError(c, "already suspended/paused");
    if (arg.empty()) {
      RB_LOG("PAUSE command issued");
      ss->SetPauseMode(PauseMode::kPause);
    } else {
      RB_LOG("PAUSE '%s' command issued", arg);
      if (!DatabaseKnown(arg, /*register_auto=*/true)) return ReplyError(c, absl::StrCat("no such database: ", arg));
      if (arg == "pgbouncer") return ReplyError(c, absl::StrCat("cannot pause admin db: ", arg));
      ss->SetDatabasePaused(arg, true);
    }
    WaitFor(c, AdminOp::kPauseCount, arg);
    return;
  }
  if (verb == "suspend") {
    if (!arg.empty()) return syntax_error();
    if (!RequireAdmin(c)) return;
    if (ss->pause_mode() != PauseMode::kNone) return ReplyError(c, "already suspended/paused");
    for (const std::string& name : ss->DatabaseNames()) {
      DatabaseShared* d = ss->FindDatabase(name);
      if (d && d->db_paused.load(std::memory_order_relaxed)) return ReplyError(c, "cannot suspend with paused databases");
    }
    RB_LOG("SUSPEND command issued");
    ss->SetPauseMode(PauseMode::kSuspend);
    a->suspended = true;
    WaitFor(c, AdminOp::kSuspendCount, "");
    return;
  }
  if (verb == "wait_close") {
    if (!RequireAdmin(c)) return;
    if (arg.empty()) {
      RB_LOG("WAIT_CLOSE command issued");
    } else {
      RB_LOG("WAIT_CLOSE '%s' command issued", arg);
      if (!DatabaseKnown(arg, /*register_auto=*/true)) return ReplyError(c, absl::StrCat("no such database: ", arg));
      if (arg == "pgbouncer") return ReplyError(c, absl::StrCat("cannot wait in admin db: ", arg));
    }
    WaitFor(c, AdminOp::kWaitCloseCount, arg);
    return;
  }
  if (verb == "reconnect") {
    if (!RequireAdmin(c)) return;
    if (arg.empty()) {
      RB_LOG("RECONNECT command issued");
    } else {
      RB_LOG("RECONNECT '%s' command issued", arg);
      if (!DatabaseKnown(arg, /*register_auto=*/true)) return ReplyError(c, absl::StrCat("no such database: ", arg));
      if (arg == "pgbouncer") return ReplyError(c, absl::StrCat("cannot reconnect admin db: ", arg));
    }
    auto* r = new AdminRequest();
    r->op = AdminOp::kReconnect;
    r->arg = arg;
    a->busy = true;
    Broadcast(c, r);
    return;
  }
  if (verb == "kill") {
    if (!RequireAdmin(c)) return;
    if (ss->pause_mode() != PauseMode::kNone) return ReplyError(c, "already suspended/paused");
    if (arg.empty()) {
      RB_LOG("KILL command issued");
    } else {
      RB_LOG("KILL '%s' command issued", arg);
      if (!DatabaseKnown(arg, /*register_auto=*/true)) return ReplyError(c, absl::StrCat("no such database: ", arg));
      if (arg == "pgbouncer") return ReplyError(c, absl::StrCat("cannot kill admin db: ", arg));
      // PgBouncer pauses a killed database: new clients wait until RESUME.
      ss->SetDatabasePaused(arg, true);
    }
    auto* r = new AdminRequest();
    r->op = AdminOp::kKill;
    r->arg = arg;
    a->busy = true;
    Broadcast(c, r);
    return;
  }
  if (verb == "kill_client") {
    if (!RequireAdmin(c)) return;
    if (arg.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(arg[0]))) {
      return ReplyError(c, "invalid client pointer supplied");
    }
    auto* r = new AdminRequest();
    r->op = AdminOp::kKillClient;
    r->arg = arg;
    a->busy = true;
    Broadcast(c, r);
    return;
  }
  if (verb == "disable" || verb == "enable") {
    bool disable = verb == "disable";
    if (!RequireAdmin(c)) return;
    if (arg.empty()) return ReplyError(c, "a database is required");
    RB_LOG("%s '%s' command issued", disable ? "DISABLE" : "ENABLE", arg);
    if (!DatabaseKnown(arg, /*register_auto=*/disable)) return ReplyError(c, absl::StrCat("no such database: ", arg));
    if (arg == "pgbouncer") {
      return ReplyError(c, absl::StrCat(disable ? "cannot disable admin db: " : "cannot enable admin db: ", arg));
    }
    ss->Database(arg)->disabled.store(disable, std::memory_order_relaxed);
    ReplyTag(c, disable ? "DISABLE" : "ENABLE");
    return;
  }
  syntax_error();
}

// PgBouncer's find_database (a configured database, one met through the "*" entry, or the
// console's own), and find_or_register_database, which also accepts any name "*" would serve.
bool AdminConsole::DatabaseKnown(const std::string& db, bool register_auto) const {
  const Config& cfg = *worker_->config_;
  if (db == "pgbouncer" || cfg.FindDatabase(db)) return true;
  if (cfg.fallback_database && worker_->shared_->FindDatabase(db)) return true;
  return register_auto && cfg.fallback_database.has_value();
}

void AdminConsole::WaitFor(ClientConn* c, AdminOp op, const std::string& db) {
  AdminSession* a = c->admin;
  a->busy = true;
  a->waiting = true;
  a->wait_op = op;
  a->wait_db = db;
  waiting_.emplace_back(c->slot, c->generation);
  worker_->shared_->admin_waits.fetch_add(1, std::memory_order_relaxed);
  // Count at once: with nothing busy the answer comes without waiting for a tick.
  a->count_in_flight = true;
  auto* r = new AdminRequest();
  r->op = op;
  r->arg = db;
  Broadcast(c, r);
}

void AdminConsole::WakeWorkers() {
  for (int w = 0; w < worker_->shared_->workers(); ++w) {
    if (w == worker_->id_) {
      for (auto& [key, pool] : worker_->pools_) worker_->ServeWaiters(pool.get());
    } else if (worker_->shared_->endpoint(w).ring_fd.load(std::memory_order_acquire) >= 0) {
      worker_->Post(w, netio::MailMessage{kMailWake, 0, 0, nullptr});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Requests.

void AdminConsole::Broadcast(ClientConn* c, AdminRequest* r) {
  r->reply_to = AdminReplyTo::kConsole;
  r->client_slot = c->slot;
  r->client_generation = c->generation;
  Gather(r);
}

void AdminConsole::Gather(AdminRequest* r) {
  SharedState* ss = worker_->shared_;
  r->origin = worker_->id_;
  r->parts.resize(static_cast<size_t>(ss->workers()));
  std::vector<int> others;
  for (int w = 0; w < ss->workers(); ++w) {
    // A worker whose loop has ended (shutdown) would never answer.
    if (w != worker_->id_ && ss->endpoint(w).ring_fd.load(std::memory_order_acquire) >= 0) others.push_back(w);
  }
  r->outstanding.store(static_cast<int>(others.size()) + 1, std::memory_order_relaxed);
  for (int w : others) worker_->Post(w, netio::MailMessage{kMailAdmin, 0, 0, r});
  RunPart(r);
  if (r->outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) Finish(r);
}

void AdminConsole::StartRequest(ClientConn* c, AdminRequest* r) {
  c->admin->busy = true;
  Broadcast(c, r);
}

void AdminConsole::SendToControl(ClientConn* c, AdminRequest* r) {
  c->admin->busy = true;
  r->origin = worker_->id_;
  r->client_slot = c->slot;
  r->client_generation = c->generation;
  r->outstanding.store(1, std::memory_order_relaxed);
  worker_->shared_->control().Push(netio::MailMessage{kControlAdmin, 0, 0, r});
}

void AdminConsole::RunPart(AdminRequest* r) {
  AdminWorkerPart* part = &r->parts[static_cast<size_t>(worker_->id_)];
  if (r->op == AdminOp::kShow) {
    FillShowPart(r, part);
  } else {
    RunCommandPart(r, part);
  }
  part->answered = true;
}

void AdminConsole::OnMail(const netio::MailMessage& m) {
  if (m.kind == kMailAdmin) {
    if (m.ptr == nullptr) {
      OnTick(m.arg32, static_cast<int64_t>(m.arg64));
      return;
    }
    auto* r = static_cast<AdminRequest*>(m.ptr);
    RunPart(r);
    worker_->Post(r->origin, netio::MailMessage{kMailAdminReply, static_cast<uint32_t>(worker_->id_), 0, r});
    return;
  }
  if (m.kind == kMailAdminReply) {
    auto* r = static_cast<AdminRequest*>(m.ptr);
    if (r->outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) Finish(r);
  }
}

void AdminConsole::Finish(AdminRequest* r) {
  if (r->reply_to == AdminReplyTo::kMetrics) {
    worker_->metrics_->OnGathered(r);
    return;
  }
  std::unique_ptr<AdminRequest> owned(r);
  ClientConn* c = worker_->clients_.Find(r->client_slot, r->client_generation);
  if (c && (c->state != ClientState::kAdmin || !c->admin)) c = nullptr;
  switch (r->op) {
    case AdminOp::kPauseCount:
    case AdminOp::kSuspendCount:
    case AdminOp::kWaitCloseCount: {
      if (!c || !c->admin->waiting) return;
      c->admin->count_in_flight = false;
      int left = 0;
      for (const AdminWorkerPart& p : r->parts) left += p.count;
      if (left > 0) return;  // the next tick counts again
      AdminSession* a = c->admin;
      a->waiting = false;
      auto it = std::find(waiting_.begin(), waiting_.end(), std::make_pair(c->slot, c->generation));
      if (it != waiting_.end()) waiting_.erase(it);
      worker_->shared_->admin_waits.fetch_sub(1, std::memory_order_relaxed);
      const char* tag = r->op == AdminOp::kPauseCount ? "PAUSE" : r->op == AdminOp::kSuspendCount ? "SUSPEND" : "WAIT_CLOSE";
      ReplyTag(c, tag);
      Continue(c);
      return;
    }
    default:
      break;
  }
  if (!c) return;
  switch (r->op) {
    case AdminOp::kShow:
      Reply(c, RenderShow(r));
      break;
    case AdminOp::kKill:
      ReplyTag(c, "KILL");
      break;
    case AdminOp::kKillClient: {
      bool found = false;
      for (const AdminWorkerPart& p : r->parts) found |= p.found;
      if (found) {
        ReplyTag(c, "KILL_CLIENT");
      } else {
        ReplyError(c, "client not found");
      }
      break;
    }
    case AdminOp::kReconnect:
      ReplyTag(c, "RECONNECT");
      break;
    case AdminOp::kResume:
      ReplyTag(c, "RESUME");
      break;
    case AdminOp::kReload:
      if (r->status.ok()) {
        ReplyTag(c, "RELOAD");
      } else {
        // Not through ReplyError: the control thread has logged why already.
        std::string out;
        proto::AppendPoolerError(&out, "RELOAD failed, see logs for additional details", "F0000", false);
        Reply(c, out);
      }
      break;
    case AdminOp::kSet:
      if (r->status.ok()) {
        ReplyTag(c, absl::StrCat("SET ", r->arg, "=", r->value));
      } else {
        ReplyError(c, "SET failed");
      }
      break;
    default:
      return;  // kShutdown: no answer
  }
  // The client may have been closed by the request itself (KILL_CLIENT of itself, KILL).
  if (c->state == ClientState::kAdmin && c->admin) Continue(c);
}

void AdminConsole::OnTick(uint32_t flags, int64_t now_ns) {
  if (flags & kAdminTickRotateStats) RotateStats(now_ns);
  Upkeep();
  // A count can finish at once (one worker) and take its client off the list: walk a copy.
  std::vector<std::pair<uint32_t, uint32_t>> waiting = waiting_;
  for (auto [slot, gen] : waiting) {
    ClientConn* c = worker_->clients_.Find(slot, gen);
    if (!c || c->state != ClientState::kAdmin || !c->admin || !c->admin->waiting) continue;
    AdminSession* a = c->admin;
    if (a->count_in_flight) continue;
    a->count_in_flight = true;
    auto* r = new AdminRequest();
    r->op = a->wait_op;
    r->arg = a->wait_db;
    Broadcast(c, r);
  }
}

}  // namespace rb::engine
