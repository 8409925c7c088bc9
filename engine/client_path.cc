// The client side: startup, authentication, and the bytes a logged-in client sends.
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/admin_console.h"
#include "engine/admin_session.h"
#include "engine/log.h"
#include "engine/login_state.h"
#include "engine/worker.h"
#include "netio/listener.h"
#include "proto/md5_auth.h"
#include "proto/messages.h"

namespace rb::engine {

namespace {

constexpr uint32_t kAuthMessageMax = 16 * 1024;  // a password or SASL message; anything longer is abuse
constexpr int64_t kFlushTimeoutNs = 5'000'000'000;

int64_t ToNanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

// Scans a pooled client's bytes: tracks requests and stops before a Terminate.
struct ClientScan {
  ClientConn* c;
  PoolStats* stats;
  bool OnType(uint8_t type) {
    if (type == 'X') return false;
    c->tracker.OnClientMessage(type);
    if (stats) {
      if (type == 'P') ++stats->client_parses;
      if (type == 'B') ++stats->binds;
    }
    return true;
  }
  bool OnHeader(uint8_t, uint32_t) { return false; }
  void OnBody(uint8_t, const uint8_t*, uint32_t) {}
  void OnEnd(uint8_t) {}
};

}  // namespace

std::string Worker::ClientPrefix(const ClientConn* c) const {
  // PgBouncer's log prefix (SocketLogPrefix). A unix peer shows its pid and the listen port.
  std::string_view db, user;
  if (c->login) {
    db = c->login->database;
    user = c->login->user;
  } else if (c->pool) {
    db = c->pool->database();
    user = c->pool->user();
  } else if (c->admin) {
    db = "pgbouncer";
    user = c->admin->user;
  }
  if (c->addr.family == AF_UNIX) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    bool pid = c->io.fd >= 0 && getsockopt(c->io.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0;
    return SocketLogPrefix('C', c->id, db, user, pid ? absl::StrCat("unix(", cred.pid, ")") : "unix", false,
                           config_->settings.listen_port);
  }
  return SocketLogPrefix('C', c->id, db, user, c->addr.ToString(), c->addr.family == AF_INET6, c->addr.port);
}

// ---------------------------------------------------------------------------------------------
// Completions.

void Worker::OnClientRecv(ClientConn* c, const io_uring_cqe& cqe) {
  if (!(cqe.flags & IORING_CQE_F_MORE)) {
    c->io.recv_armed = false;
    --c->io.pending;
  }
  if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
    uint32_t buf = buffers_->TakeRingBuffer(static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
    uint32_t len = static_cast<uint32_t>(cqe.res);
    if (c->state != ClientState::kClosing && !c->close_after_flush) {
      c->last_active_ns = now_ns_;
      counters_.bytes_in.fetch_add(len, std::memory_order_relaxed);
      switch (c->state) {
        case ClientState::kLogin:
        case ClientState::kAuth:
          ClientLoginBytes(c, buf, len);
          break;
        case ClientState::kAdmin:
          admin_->OnBytes(c, buffers_->Data(buf), len);
          break;
        default:
          ClientData(c, buf, 0, len);
          break;
      }
    }
    buffers_->Unref(buf);
  } else if (cqe.res == 0) {
    c->io.eof = true;
    if (c->state != ClientState::kClosing) {
      CloseClient(c, c->state == ClientState::kLogin || c->state == ClientState::kAuth ? "client unexpected eof"
                                                                                      : "client unexpected eof");
    }
  } else if (cqe.res == -ENOBUFS) {
    if (c->state != ClientState::kClosing && !c->io.recv_starved) {
      c->io.recv_starved = true;
      starved_clients_.emplace_back(c->slot, c->generation);
    }
  } else if (cqe.res < 0 && cqe.res != -ECANCELED) {
    if (c->state != ClientState::kClosing) CloseClient(c, absl::StrCat("client connection error: ", strerror(-cqe.res)));
  }
  if (c->state == ClientState::kClosing) {
    FreeClientIfDone(c);
    return;
  }
  if (!c->io.recv_armed && !c->io.recv_paused && !c->io.recv_starved && !c->io.eof && !c->close_after_flush) {
    ArmRecv(c, kOpClientRecv);
  }
}

void Worker::OnClientSendDone(ClientConn* c, const io_uring_cqe& cqe) {
  if (cqe.res > 0) counters_.bytes_out.fetch_add(static_cast<uint64_t>(cqe.res), std::memory_order_relaxed);
  if (!OnSendComplete(c, kOpClientSend, cqe)) {
    if (c->state != ClientState::kClosing) CloseClient(c, "client connection error");
  }
  if (c->state == ClientState::kClosing) {
    FreeClientIfDone(c);
    return;
  }
  // Backpressure release: the server stopped reading because this client was slow.
  ServerConn* s = c->server;
  if (s && s->io.recv_paused && c->io.out.bytes < kLowWatermark && s->state != ServerState::kClosing) {
    ResumeRecv(s, kOpServerRecv);
  }
}

// ---------------------------------------------------------------------------------------------
// Login.

void Worker::ClientLoginBytes(ClientConn* c, uint32_t buf, uint32_t len) {
  const uint8_t* data = buffers_->Data(buf);
  uint32_t off = 0;
  while (off < len && (c->state == ClientState::kLogin || c->state == ClientState::kAuth)) {
    ClientLogin* L = c->login;
    proto::AssembleResult r = L->assembler.Feed(data + off, len - off);
    off += r.consumed;
    if (r.status == proto::AssembleStatus::kNeedMore) return;
    if (r.status != proto::AssembleStatus::kReady) {
      counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      RejectClient(c, proto::BadPacketHeaderMessage(L->assembler.header()), "08P01");
      return;
    }
    if (c->state == ClientState::kLogin) {
      auto msg = L->assembler.message();
      HandleStartupPacket(c, msg.data(), static_cast<uint32_t>(msg.size()));
    } else {
      auto body = L->assembler.body();
      HandleAuthMessage(c, L->assembler.type(), body.data(), static_cast<uint32_t>(body.size()));
    }
  }
  // Bytes after the login exchange (a pipelining client sent its first query already).
  if (off < len && c->state != ClientState::kClosing && !c->close_after_flush) {
    if (c->state == ClientState::kAdmin) {
      admin_->OnBytes(c, data + off, len - off);
    } else {
      ClientData(c, buf, off, len - off);
    }
  }
}

void Worker::HandleStartupPacket(ClientConn* c, const uint8_t* data, uint32_t len) {
  if (c->cancel_held) {
    // A cancel connection carries one packet; anything after it ends the connection.
    CloseClient(c, "bad cancel request");
    return;
  }
  ClientLogin* L = c->login;
  L->startup.Clear();
  proto::StartupError err = proto::ParseStartupPacket(data, len, &L->startup);
  if (err != proto::StartupError::kOk) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    if (proto::StartupErrorNotifiesClient(err)) {
      RejectClient(c, proto::StartupErrorMessage(err, L->startup), std::string(proto::StartupErrorSqlState(err)).c_str());
    } else {
      CloseClient(c, "bad cancel request");
    }
    return;
  }
  switch (L->startup.kind()) {
    case proto::StartupKind::kSslRequest:
    case proto::StartupKind::kGssEncRequest: {
      // No TLS or GSS encryption yet: answer 'N' and the client continues in plain text.
      scratch_.clear();
      proto::AppendEncryptionRefused(&scratch_);
      buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
      SendClient(c);
      L->assembler.Reset();
      return;
    }
    case proto::StartupKind::kCancelRequest: {
      if (L->startup.CancelKeyIsOurs()) {
        proto::CancelKey key = proto::CancelKey::FromBytes(L->startup.cancel_key_bytes());
        // Forwarded to a peer: held open until the peer has closed the forward.
        if (HandleCancelKey(key.AsUint64(), c)) return;
      }
      // A cancel connection gets no answer: PostgreSQL closes it without a word.
      CloseClient(c, "");
      return;
    }
    case proto::StartupKind::kStartupMessage:
      break;
  }

  const Settings& cfg = config_->settings;
  L->user = std::string(L->startup.user());
  L->database = std::string(L->startup.DatabaseOrUser());
  L->application_name = std::string(L->startup.application_name());
  scratch_.clear();
  if (L->startup.NeedsNegotiation()) L->startup.AppendNegotiateProtocolVersion(&scratch_);
  if (!scratch_.empty()) buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());

  if (cfg.log_connections) {
    RB_LOG("%s login attempt: db=%s user=%s tls=no replication=no", ClientPrefix(c), L->database, L->user);
  }

  // Startup parameters: the tracked ones become the client's session settings; the ones named
  // in ignore_startup_parameters are dropped; anything else is refused, as PgBouncer does,
  // because a pooled server can't be given per-client settings it doesn't track.
  auto ignored = [&](absl::string_view key) {
    for (const std::string& i : cfg.ignore_startup_parameters)
      if (absl::EqualsIgnoreCase(i, key)) return true;
    return false;
  };
  for (size_t i = 0; i < L->startup.param_count(); ++i) {
    absl::string_view key = L->startup.key(i);
    absl::string_view value = L->startup.value(i);
    if (key == "user" || key == "database" || proto::StartupPacket::IsProtocolOption(key)) continue;
    int idx = vars_->IndexOf(key);
    if (idx >= 0) {
      L->tracked.emplace_back(idx, std::string(value));
      continue;
    }
    if (key == "options") {
      // Only "-c name=value" (or "--name=value") settings of tracked parameters can be honoured.
      std::vector<std::string> words = absl::StrSplit(value, ' ', absl::SkipWhitespace());
      bool ok = true;
      for (size_t w = 0; w < words.size() && ok; ++w) {
        std::string setting;
        if (words[w] == "-c" && w + 1 < words.size()) {
          setting = words[++w];
        } else if (absl::StartsWith(words[w], "-c")) {
          setting = words[w].substr(2);
        } else if (absl::StartsWith(words[w], "--")) {
          setting = words[w].substr(2);
        } else {
          if (ignored("options")) break;
          RejectClient(c, "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed", "08P01");
          return;
        }
        std::pair<std::string, std::string> kv = absl::StrSplit(setting, absl::MaxSplits('=', 1));
        std::string name = kv.first;
        absl::StrReplaceAll({{"-", "_"}}, &name);
        int vidx = vars_->IndexOf(name);
        if (vidx >= 0) {
          L->tracked.emplace_back(vidx, kv.second);
        } else if (!ignored(name) && !ignored("options")) {
          RB_WARN("%s unsupported startup parameter in options: %s=%s", ClientPrefix(c), name, kv.second);
          RejectClient(c, absl::StrCat("unsupported startup parameter in options: ", name), "08P01");
          return;
        }
      }
      (void)ok;
      continue;
    }
    if (ignored(key)) continue;
    if (key == "replication") {
      RejectClient(c, "replication connections are not supported", "08P01");
      return;
    }
    RB_WARN("%s unsupported startup parameter: %s=%s", ClientPrefix(c), std::string(key), std::string(value));
    RejectClient(c, absl::StrCat("unsupported startup parameter: ", key), "08P01");
    return;
  }
  if (!L->application_name.empty()) {
    // application_name is always tracked; record it for SHOW CLIENTS even if listed twice.
  }

  if (L->database == "pgbouncer") {
    L->admin = true;
  } else {
    // An unknown database is reported only after authentication, as PgBouncer does, so that
    // a stranger can't probe for database names (FinishClientLogin).
  }

  if (!L->admin && !shared_->total_clients.TryAcquire(cfg.max_client_conn)) {
    RejectClient(c, "no more connections allowed (max_client_conn)", "53300");
    return;
  }
  c->counted = !L->admin;
  StartClientAuth(c);
}

void Worker::StartClientAuth(ClientConn* c) {
  ClientLogin* L = c->login;
  const Settings& cfg = config_->settings;
  const AuthUser* au = config_->auth_file.Find(L->user);
  L->user_known = au != nullptr;
  if (au) {
    L->secret = au->secret;
    L->secret_kind = au->kind;
  } else if (cfg.auth_type != AuthType::kAny) {
    RB_LOG("%s no such user: %s", ClientPrefix(c), L->user);
  }
  bool is_unix = c->listener_kind == static_cast<uint8_t>(ListenerKind::kUnix);

  // The admin console: over the unix socket the process's own OS user may log in as
  // "pgbouncer" without a password, as in PgBouncer.
  if (L->admin && is_unix && L->user == "pgbouncer" && netio::UnixPeerUid(c->io.fd) == static_cast<int64_t>(geteuid())) {
    L->method = ClientAuthMethod::kTrust;
    ClientAuthenticated(c);
    return;
  }

  AuthType type = cfg.auth_type;
  ClientAuthMethod method = ClientAuthMethod::kReject;
  if (type == AuthType::kHba) {
    if (!config_->hba) {
      RejectClient(c, "no hba file loaded", "28000");
      return;
    }
    HbaQuery q;
    q.is_unix = is_unix;
    if (!is_unix) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      if (getpeername(c->io.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
        q.address = IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
    }
    q.database = L->database;
    q.user = L->user;
    std::optional<HbaMatch> m = config_->hba->Lookup(q);
    if (!m) {
      RejectClient(c, "no authentication method is found", "28000");
      return;
    }
    switch (m->method) {
      case HbaMethod::kTrust: method = ClientAuthMethod::kTrust; break;
      case HbaMethod::kMd5: method = ClientAuthMethod::kMd5; break;
      case HbaMethod::kPassword: method = ClientAuthMethod::kPlain; break;
      case HbaMethod::kScramSha256: method = ClientAuthMethod::kScram; break;
      case HbaMethod::kPeer: {
        int64_t uid = is_unix ? netio::UnixPeerUid(c->io.fd) : -1;
        passwd* pw = uid >= 0 ? getpwuid(static_cast<uid_t>(uid)) : nullptr;
        if (pw && L->user == pw->pw_name) {
          method = ClientAuthMethod::kTrust;
        } else {
          RejectClient(c, "unix socket login rejected", "28000");
          return;
        }
        break;
      }
      case HbaMethod::kReject:
        RejectClient(c, "login rejected", "28000");
        return;
      default:
        RejectClient(c, absl::StrCat("authentication method \"", std::string(HbaMethodName(m->method)), "\" is not supported"), "28000");
        return;
    }
  } else {
    switch (type) {
      case AuthType::kAny:
      case AuthType::kTrust: method = ClientAuthMethod::kTrust; break;
      case AuthType::kPlain: method = ClientAuthMethod::kPlain; break;
      case AuthType::kMd5: method = ClientAuthMethod::kMd5; break;
      case AuthType::kScramSha256: method = ClientAuthMethod::kScram; break;
      default:
        RejectClient(c, absl::StrCat("auth_type \"", std::string(AuthTypeName(type)), "\" is not supported"), "28000");
        return;
    }
  }
  // md5 accepts a SCRAM secret by switching to SCRAM, as PostgreSQL and PgBouncer do.
  if (method == ClientAuthMethod::kMd5 && L->secret_kind == SecretKind::kScramSha256) method = ClientAuthMethod::kScram;

  if (L->admin) {
    bool is_admin = std::find(cfg.admin_users.begin(), cfg.admin_users.end(), L->user) != cfg.admin_users.end();
    bool is_stats = std::find(cfg.stats_users.begin(), cfg.stats_users.end(), L->user) != cfg.stats_users.end();
    if (!is_admin && !is_stats && !(type == AuthType::kAny)) {
      RejectClient(c, "not allowed", "08P01");
      return;
    }
  }

  const DatabaseConfig* login_db = L->admin ? nullptr : ResolveDatabase(L->database);
  if (type == AuthType::kAny && !L->admin && login_db && !login_db->user.has_value()) {
    // "any" ignores the client's user name, so the database must name the one to log in as.
    RB_ERROR("%s auth_type=any requires forced user", ClientPrefix(c));
    RejectClient(c, "bouncer config error", "08P01");
    return;
  }
  if (method == ClientAuthMethod::kTrust) {
    // PgBouncer's trust still wants the user in the auth_file; "any" does not.
    if (type == AuthType::kTrust && !L->user_known && !L->admin) {
      RejectClient(c, "\"trust\" authentication failed", "28P01");
      return;
    }
    L->method = method;
    ClientAuthenticated(c);
    return;
  }
  L->method = method;
  scratch_.clear();
  switch (method) {
    case ClientAuthMethod::kPlain:
      proto::AppendAuthenticationCleartextPassword(&scratch_);
      break;
    case ClientAuthMethod::kMd5: {
      uint64_t r = Random64();
      memcpy(L->md5_salt.data(), &r, 4);
      proto::AppendAuthenticationMd5Password(&scratch_, L->md5_salt);
      break;
    }
    case ClientAuthMethod::kScram: {
      proto::ScramSecret secret;
      bool have = false;
      if (L->secret_kind == SecretKind::kScramSha256) {
        auto parsed = proto::ParseScramSecret(L->secret);
        if (parsed.ok()) {
          secret = *parsed;
          have = true;
        }
      } else if (L->secret_kind == SecretKind::kPlain) {
        have = ScramCache().SecretForPlainPassword(L->user, L->secret, &secret);
      }
      // Unknown users, and md5 secrets (which SCRAM can't use), get a mock exchange that can
      // never succeed, so a stranger can't tell which user names exist.
      if (!have) secret = ScramCache().MockSecret(L->user);
      L->scram = std::make_unique<proto::ScramServer>(secret, proto::GenerateScramNonce());
      absl::string_view mech[] = {"SCRAM-SHA-256"};
      proto::AppendAuthenticationSasl(&scratch_, mech);
      break;
    }
    default:
      break;
  }
  buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
  SendClient(c);
  c->state = ClientState::kAuth;
  L->assembler.SetMode(proto::AssemblerMode::kTyped, kAuthMessageMax);
}

void Worker::HandleAuthMessage(ClientConn* c, uint8_t type, const uint8_t* body, uint32_t len) {
  ClientLogin* L = c->login;
  absl::Span<const uint8_t> b(body, len);
  auto fail = [&] { RejectClient(c, "password authentication failed", "28P01"); };
  if (type != 'p') {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    RejectClient(c, absl::StrFormat("expected password response, got message type %d", type), "08P01");
    return;
  }
  switch (L->method) {
    case ClientAuthMethod::kPlain: {
      absl::string_view pw;
      if (proto::ParsePasswordMessage(b, &pw) != proto::ParseError::kOk) {
        RejectClient(c, "invalid password packet", "08P01");
        return;
      }
      if (pw.empty()) {
        RejectClient(c, "empty password returned by client", "28P01");
        return;
      }
      bool ok = false;
      if (L->user_known) {
        switch (L->secret_kind) {
          case SecretKind::kPlain:
            ok = pw == L->secret;
            break;
          case SecretKind::kMd5:
            ok = proto::Md5Secret(pw, L->user) == L->secret;
            break;
          case SecretKind::kScramSha256: {
            auto parsed = proto::ParseScramSecret(L->secret);
            proto::ScramKeys keys;
            ok = parsed.ok() && ScramCache().Derive(pw, parsed->salt, parsed->iterations, &keys) &&
                 keys.stored_key == parsed->stored_key;
            break;
          }
          default:
            break;
        }
      }
      if (!ok) return fail();
      ClientAuthenticated(c);
      return;
    }
    case ClientAuthMethod::kMd5: {
      absl::string_view resp;
      if (proto::ParsePasswordMessage(b, &resp) != proto::ParseError::kOk) {
        RejectClient(c, "invalid password packet", "08P01");
        return;
      }
      if (!L->user_known || proto::Md5VerifyResponse(L->secret, L->user, L->md5_salt, resp) != proto::Md5VerifyResult::kOk) {
        return fail();
      }
      ClientAuthenticated(c);
      return;
    }
    case ClientAuthMethod::kScram: {
      std::string out;
      if (L->scram->state() == proto::ScramServer::State::kWantClientFirst) {
        proto::SaslInitialResponse init;
        if (proto::ParseSaslInitialResponse(b, &init) != proto::ParseError::kOk || !init.data.has_value()) {
          RejectClient(c, "malformed SASL message", "08P01");
          return;
        }
        if (init.mechanism != "SCRAM-SHA-256") {
          RejectClient(c, "client selected an invalid SASL authentication mechanism", "08P01");
          return;
        }
        proto::ScramResult r = L->scram->HandleClientFirst(*init.data, &out);
        if (r != proto::ScramResult::kOk) {
          RejectClient(c, "malformed SASL message", "08P01");
          return;
        }
        scratch_.clear();
        proto::AppendAuthenticationSaslContinue(&scratch_, out);
        buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
        SendClient(c);
        return;
      }
      absl::string_view data;
      if (proto::ParseSaslResponse(b, &data) != proto::ParseError::kOk) {
        RejectClient(c, "malformed SASL message", "08P01");
        return;
      }
      proto::ScramResult r = L->scram->HandleClientFinal(data, &out);
      if (r == proto::ScramResult::kWrongPassword || (r == proto::ScramResult::kOk && !L->user_known)) {
        RB_ERROR("%s password authentication failed", ClientPrefix(c));
        RejectClient(c, "SASL authentication failed", "28P01");
        return;
      }
      if (r != proto::ScramResult::kOk) {
        RejectClient(c, "malformed SASL message", "08P01");
        return;
      }
      if (L->secret_kind == SecretKind::kScramSha256) L->scram_keys = L->scram->PassThroughKeys();
      scratch_.clear();
      proto::AppendAuthenticationSaslFinal(&scratch_, out);
      buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
      ClientAuthenticated(c);
      return;
    }
    default:
      RejectClient(c, "unexpected password message", "08P01");
      return;
  }
}

void Worker::ClientAuthenticated(ClientConn* c) {
  ClientLogin* L = c->login;
  if (L->admin) {
    c->state = ClientState::kAdmin;
    admin_->Start(c, L->user);
    ReleaseClientLogin(c);
    return;
  }
  FinishClientLogin(c);
}

// The [databases] entry of `name` in the current config, or the "*" fallback made into an entry
// of that name; null if neither. Looked up when needed rather than kept across a login: a
// reload during the login frees the config snapshot (and autodbs_) such a pointer points into.
const DatabaseConfig* Worker::ResolveDatabase(const std::string& name) {
  if (const DatabaseConfig* db = config_->FindDatabase(name)) return db;
  if (!config_->fallback_database) return nullptr;
  // The "*" entry: a database of the client's name on the fallback's server.
  auto& auto_db = autodbs_[name];
  if (!auto_db) {
    auto_db = std::make_unique<DatabaseConfig>(*config_->fallback_database);
    auto_db->name = name;
    if (auto_db->dbname.empty()) auto_db->dbname = name;
  }
  return auto_db.get();
}

void Worker::FinishClientLogin(ClientConn* c) {
  ClientLogin* L = c->login;
  const DatabaseConfig* db = ResolveDatabase(L->database);
  if (!db) {
    RB_LOG("%s login failed: db=%s user=%s", ClientPrefix(c), L->database, L->user);
    RejectClient(c, absl::StrCat("no such database: ", L->database), "3D000");
    return;
  }
  if (shared_->Database(db->name)->disabled.load(std::memory_order_relaxed)) {
    RejectClient(c, absl::StrCat("database \"", db->name, "\" is disabled"), "08P01");
    return;
  }
  // A forced user in [databases] means one pool for the database, logged in as that user.
  std::string server_user = db->user.has_value() ? *db->user : L->user;
  Pool* pool = FindOrCreatePool(db->name, server_user, db);
  if (L->scram_keys && !db->user.has_value()) pool->scram_keys = L->scram_keys;
  c->pool = pool;
  const Settings& cfg = config_->settings;
  int max_db_clients = db->max_db_client_connections.value_or(cfg.max_db_client_connections);
  if (!pool->db_shared->clients.TryAcquire(max_db_clients)) {
    c->pool = nullptr;
    RejectClient(c, "client connections exceeded (max_db_client_connections)", "53300");
    return;
  }
  const UserConfig* uc = config_->FindUser(L->user);
  int max_user_clients =
      uc && uc->max_user_client_connections ? *uc->max_user_client_connections : cfg.max_user_client_connections;
  if (!pool->user_shared->clients.TryAcquire(max_user_clients)) {
    pool->db_shared->clients.Release();
    c->pool = nullptr;
    RejectClient(c, "client connections exceeded (max_user_client_connections)", "53300");
    return;
  }
  c->pool_counted = true;

  // The client's session settings: the server defaults (filled in at welcome time), then the
  // database's settings, then what the client asked for.
  const VarSet* v = vars_->Empty();
  auto set_var = [&](absl::string_view name, const std::optional<std::string>& value) {
    if (!value) return;
    const VarSet* nv = vars_->With(v, vars_->IndexOf(name), *value);
    vars_->Unref(v);
    v = nv;
  };
  set_var("client_encoding", db->client_encoding);
  set_var("DateStyle", db->datestyle);
  set_var("TimeZone", db->timezone);
  set_var("application_name", db->application_name);
  for (auto& [idx, value] : L->tracked) {
    std::string val = value;
    if (idx == vars_->IndexOf("application_name") && cfg.application_name_add_host) {
      val = absl::StrCat(value, " - ", c->addr.ToString(), ":", c->addr.port);
    }
    const VarSet* nv = vars_->With(v, idx, val);
    vars_->Unref(v);
    v = nv;
  }
  c->vars = v;

  if (pool->shared->has_welcome.load(std::memory_order_acquire)) {
    SendWelcome(c);
    return;
  }
  // PgBouncer's check_fast_fail: while the pool's last server login failed and it has no
  // server (no login has ever welcomed it, so it has none), a new client is not queued: it
  // gets the cached error at once, and a new login is tried (LaunchServer keeps to
  // server_login_retry) so that the pool can recover with no client waiting.
  int64_t failed_at = pool->shared->login_failed_at_ns.load(std::memory_order_acquire);
  if (failed_at != 0) {
    if (pool->sv_login == 0 && pool->idle.empty()) LaunchServer(pool);
    std::string msg, state;
    {
      absl::MutexLock lock(&pool->shared->mu);
      msg = pool->shared->login_error;
      state = pool->shared->login_error_sqlstate;
    }
    RejectClient(c, msg.empty() ? "server login has been failing, try again later (server_login_retry)" : msg,
                 state.empty() ? "08P01" : state.c_str());
    return;
  }
  // Nobody has logged in to this database yet: we need one server login to learn what to
  // tell the client (server_version, encodings, ...).
  c->state = ClientState::kWaitWelcome;
  c->request_time_ns = now_ns_;
  pool->welcome_waiting.PushBack(c);
  ArmClientTimer(c);
  if (pool->sv_login == 0 && pool->idle.empty()) {
    if (!LaunchServer(pool)) AskForServer(pool);
  }
}

void Worker::SendWelcome(ClientConn* c) {
  Pool* pool = c->pool;
  // Fill in the values the client did not choose from the server's defaults.
  std::vector<std::pair<std::string, std::string>> welcome;
  {
    absl::MutexLock lock(&pool->shared->mu);
    welcome = pool->shared->welcome;
  }
  const VarSet* defaults = vars_->Empty();
  for (auto& [name, value] : welcome) {
    int idx = vars_->IndexOf(name);
    if (idx < 0) continue;
    const VarSet* nv = vars_->With(defaults, idx, value);
    vars_->Unref(defaults);
    defaults = nv;
  }
  const VarSet* merged = vars_->Overlay(defaults, c->vars);
  vars_->Unref(defaults);
  vars_->Unref(c->vars);
  c->vars = merged;

  scratch_.clear();
  proto::AppendAuthenticationOk(&scratch_);
  for (auto& [name, value] : welcome) {
    int idx = vars_->IndexOf(name);
    proto::AppendParameterStatus(&scratch_, name, idx >= 0 ? absl::string_view(c->vars->values[idx]) : value);
  }
  // Cancel key: ours, routable to this worker (DESIGN.md decision 6).
  do {
    c->cancel_key = proto::CancelKey::Make(peer_id_, static_cast<uint8_t>(id_), Random64());
  } while (!cancel_keys_.emplace(CancelMapKey(c->cancel_key.AsUint64()), c).second);
  proto::AppendBackendKeyData(&scratch_, c->cancel_key.ToBackendKey());
  proto::AppendReadyForQuery(&scratch_, 'I');
  buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
  SendClient(c);
  ReleaseClientLogin(c);

  bool early = !c->held.empty();
  c->state = ClientState::kIdle;
  ++pool->cl_idle;
  c->last_active_ns = now_ns_;
  if (early) {
    // The client pipelined requests behind its login; they were scanned when they came.
    --pool->cl_idle;
    c->state = ClientState::kWaiting;
    c->request_time_ns = now_ns_;
    RequestServer(c);
    return;
  }
  ArmClientTimer(c);
}

void Worker::ReleaseClientLogin(ClientConn* c) {
  delete c->login;
  c->login = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Forwarding.

void Worker::ClientData(ClientConn* c, uint32_t buf, uint32_t off, uint32_t len) {
  Pool* pool = c->pool;
  bool was_busy = c->tracker.Busy();
  ClientScan scan{c, pool ? &pool->stats : nullptr};
  const uint8_t* data = buffers_->Data(buf) + off;
  uint32_t max_body = static_cast<uint32_t>(std::min<int64_t>(config_->settings.max_packet_size, 0x7fffffff) - 4);
  proto::ScanResult r = c->scanner.Scan(data, len, max_body, scan);
  if (r.status == proto::ScanStatus::kBadLength) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    // What came before the bad header was whole messages; the server (if any) has them, and
    // CloseClient decides from the tracker whether it can be reused.
    uint32_t good = r.consumed >= 5 ? r.consumed - 5 : 0;
    (void)good;
    RejectClient(c, "client sent a message that exceeds max_packet_size or has an invalid length", "08P01");
    return;
  }
  uint32_t fwd = r.consumed;
  if (pool) pool->stats.bytes_received += fwd;
  // The query clock runs on the server: a client without one is still waiting (its
  // request_time_ns says since when), and LinkClientServer starts the clock.
  if (!was_busy && c->tracker.Busy() && c->server && c->server->query_start_ns == 0) {
    c->server->query_start_ns = now_ns_;
  }
  if (fwd > 0) {
    switch (c->state) {
      case ClientState::kActive: {
        ServerConn* s = c->server;
        if (s->state == ServerState::kSetup) {
          // SET commands are still running on the server: keep the bytes until they are done.
          buffers_->AppendCopy(c->held, data, fwd);  // held bytes must not pin ring buffers
          if (c->held.bytes > kHighWatermark) PauseRecv(c, kOpClientRecv);
          break;
        }
        buffers_->Append(s->io.out, buf, off, fwd);
        SendServer(s);
        if (s->io.out.bytes > kHighWatermark) {
          PauseRecv(c, kOpClientRecv);
          buffers_->Evacuate(s->io.out, s->io.send_busy ? kMaxIov : 0);
        }
        if (config_->settings.query_timeout > absl::ZeroDuration() || pool->settings.query_timeout > absl::ZeroDuration()) {
          ArmClientTimer(c);
        }
        break;
      }
      case ClientState::kIdle:
        buffers_->AppendCopy(c->held, data, fwd);  // held bytes must not pin ring buffers
        --pool->cl_idle;
        c->state = ClientState::kWaiting;
        c->request_time_ns = now_ns_;
        RequestServer(c);
        break;
      case ClientState::kWaiting:
      case ClientState::kWaitWelcome:
      case ClientState::kLogin:
      case ClientState::kAuth:
        buffers_->AppendCopy(c->held, data, fwd);  // held bytes must not pin ring buffers
        if (c->held.bytes > kHighWatermark) PauseRecv(c, kOpClientRecv);
        break;
      default:
        break;
    }
  }
  if (r.status == proto::ScanStatus::kStopped) ClientTerminated(c);
}

void Worker::ClientTerminated(ClientConn* c) { CloseClient(c, "client close request"); }

void Worker::SendClientError(ClientConn* c, const std::string& message, const char* sqlstate, bool fatal) {
  scratch_.clear();
  proto::AppendPoolerError(&scratch_, message, sqlstate, fatal);
  buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
  SendClient(c);
}

// An error to this client alone, then its connection closes once the error is sent.
void Worker::RejectClient(ClientConn* c, const std::string& message, const char* sqlstate) {
  if (c->state == ClientState::kClosing || c->close_after_flush) return;
  if (config_->settings.log_pooler_errors) RB_WARN("%s pooler error: %s", ClientPrefix(c), message);
  SendClientError(c, message, sqlstate, true);
  CloseClient(c, message, true);
}

// Closes a client. With flush, bytes already queued (an error) are sent first, within a bound.
void Worker::CloseClient(ClientConn* c, const std::string& reason, bool flush) {
  if (c->state == ClientState::kClosing) return;
  if (!reason.empty() && config_->settings.log_disconnections && c->state != ClientState::kLogin) {
    RB_LOG("%s closing because: %s (age=%ds)", ClientPrefix(c), reason,
           static_cast<int>((now_ns_ - c->connect_time_ns) / 1'000'000'000));
  }
  Pool* pool = c->pool;
  switch (c->state) {
    case ClientState::kWaiting:
      if (pool) pool->waiting.Remove(c);
      break;
    case ClientState::kWaitWelcome:
      if (pool) pool->welcome_waiting.Remove(c);
      break;
    case ClientState::kIdle:
      if (pool) --pool->cl_idle;
      break;
    case ClientState::kActive:
      if (pool) --pool->cl_active;
      break;
    default:
      break;
  }
  if (ServerConn* s = c->server) {
    // A server goes back to the pool only when it is known to be clean: no transaction open,
    // nothing outstanding, and no half-sent message from this client (DESIGN.md decision 5).
    bool clean = s->state == ServerState::kActive && c->tracker.Idle() && !c->scanner.InMessage() && c->held.empty();
    c->server = nullptr;
    s->client = nullptr;
    if (clean) {
      ReleaseServer(s, /*client_gone=*/true);
    } else {
      CloseServer(s, s->state == ServerState::kSetup ? "client disconnected during setup" : "client disconnect while server was not ready");
    }
  }
  if (c->admin) admin_->OnClose(c);
  if (c->cancel_key.AsUint64() != 0) cancel_keys_.erase(CancelMapKey(c->cancel_key.AsUint64()));
  timers_->Disarm(&c->timer);
  ReleaseClientLogin(c);
  if (c->counted) {
    shared_->total_clients.Release();
    c->counted = false;
  }
  if (c->pool_counted && pool) {
    pool->db_shared->clients.Release();
    pool->user_shared->clients.Release();
    c->pool_counted = false;
  }
  shared_->endpoint(id_).clients.fetch_sub(1, std::memory_order_relaxed);
  counters_.clients.fetch_sub(1, std::memory_order_relaxed);
  buffers_->Clear(c->held);
  c->state = ClientState::kClosing;
  if (flush && !c->io.out.empty() && !c->io.eof) {
    // Stop reading, keep sending; FreeClientIfDone waits for the send queue to empty.
    c->close_after_flush = true;
    PauseRecv(c, kOpClientRecv);
    timers_->Arm(&c->timer, now_ns_ + kFlushTimeoutNs);
    return;
  }
  CancelIo(c);
  FreeClientIfDone(c);
}

void Worker::FreeClientIfDone(ClientConn* c) {
  if (c->state != ClientState::kClosing) return;
  if (c->close_after_flush) {
    if (!c->io.out.empty() && !c->io.eof) return;  // still flushing
    c->close_after_flush = false;
  }
  if (c->io.pending > 0) {
    CancelIo(c);
    return;
  }
  // Freed later, outside every handler: callers up the stack may still look at it.
  if (!c->io.reap_queued) {
    c->io.reap_queued = true;
    reap_clients_.push_back(c);
  }
}

void Worker::ReapClient(ClientConn* c) {
  if (c->io.fd >= 0) CloseFd(c->io.fd);
  c->io.fd = -1;
  buffers_->Clear(c->io.out);
  ReleaseZeroCopyHold(c);
  buffers_->Clear(c->held);
  if (c->vars) vars_->Unref(c->vars);
  c->vars = nullptr;
  timers_->Disarm(&c->timer);
  clients_.Free(c);
}

// ---------------------------------------------------------------------------------------------
// Client timeouts: one timer per client, armed for the nearest deadline of its state and
// re-checked when it fires.

namespace {
int64_t Deadline(int64_t start, absl::Duration d) { return d > absl::ZeroDuration() ? start + ToNanos(d) : 0; }
// When the client's current query reached its server.
int64_t QueryStart(const ClientConn* c) {
  return c->server && c->server->query_start_ns ? c->server->query_start_ns : c->last_active_ns;
}
int64_t Earliest(int64_t a, int64_t b) { return a == 0 ? b : (b == 0 ? a : std::min(a, b)); }
}  // namespace

void Worker::ArmClientTimer(ClientConn* c) {
  const Settings& cfg = config_->settings;
  int64_t deadline = 0;
  const PoolSettings* ps = c->pool ? &c->pool->settings : nullptr;
  switch (c->state) {
    case ClientState::kLogin:
    case ClientState::kAuth:
      deadline = Deadline(c->connect_time_ns, cfg.client_login_timeout);
      break;
    case ClientState::kWaitWelcome:
      deadline = Deadline(c->connect_time_ns, cfg.client_login_timeout);
      break;
    case ClientState::kWaiting:
      deadline = Deadline(c->request_time_ns, ps ? ps->query_wait_timeout : cfg.query_wait_timeout);
      if (!c->wait_notified && cfg.query_wait_notify > 0) {
        deadline = Earliest(deadline, c->request_time_ns + int64_t{cfg.query_wait_notify} * 1'000'000'000);
      }
      break;
    case ClientState::kIdle:
      deadline = Deadline(c->last_active_ns, ps ? ps->client_idle_timeout : cfg.client_idle_timeout);
      break;
    case ClientState::kActive:
      if (ps) {
        if (c->tracker.Busy()) {
          deadline = Deadline(QueryStart(c), ps->query_timeout);
        } else if (c->tracker.InTransaction()) {
          deadline = Deadline(c->last_active_ns, ps->idle_transaction_timeout);
        } else {
          deadline = Deadline(c->last_active_ns, ps->client_idle_timeout);
        }
        deadline = Earliest(deadline, c->tracker.Busy() ? 0 : Deadline(c->last_active_ns, ps->client_idle_timeout));
      }
      break;
    default:
      break;
  }
  if (deadline == 0) {
    timers_->Disarm(&c->timer);
  } else {
    timers_->Arm(&c->timer, deadline);
  }
}

void Worker::OnClientTimer(ClientConn* c) {
  if (c->state == ClientState::kClosing) {
    // The peer would not take its error message: give up on it. The queue is released once
    // the cancelled send has completed.
    if (c->close_after_flush) {
      c->io.eof = true;
      FreeClientIfDone(c);
    }
    return;
  }
  const Settings& cfg = config_->settings;
  const PoolSettings* ps = c->pool ? &c->pool->settings : nullptr;
  switch (c->state) {
    case ClientState::kLogin:
    case ClientState::kAuth:
      if (Deadline(c->connect_time_ns, cfg.client_login_timeout) <= now_ns_) {
        RejectClient(c, "client_login_timeout", "08P01");
        return;
      }
      break;
    case ClientState::kWaitWelcome:
      if (Deadline(c->connect_time_ns, cfg.client_login_timeout) <= now_ns_) {
        RejectClient(c, "client_login_timeout (server down)", "08P01");
        return;
      }
      break;
    case ClientState::kWaiting:
      if (!c->wait_notified && cfg.query_wait_notify > 0 &&
          c->request_time_ns + int64_t{cfg.query_wait_notify} * 1'000'000'000 <= now_ns_) {
        // PgBouncer 1.25 tells a queued client why it waits; the connection stays as it is.
        c->wait_notified = true;
        scratch_.clear();
        proto::AppendNoticeResponse(&scratch_, proto::ErrorFields{"NOTICE", "NOTICE", "00000",
                                                                  "No server connection available in postgres backend, client being queued", {}, {}});
        buffers_->AppendCopy(c->io.out, scratch_.data(), scratch_.size());
        SendClient(c);
      }
      if (ps && Deadline(c->request_time_ns, ps->query_wait_timeout) <= now_ns_ && ps->query_wait_timeout > absl::ZeroDuration()) {
        RejectClient(c, "query_wait_timeout", "08P01");
        return;
      }
      break;
    case ClientState::kIdle:
      if (ps && ps->client_idle_timeout > absl::ZeroDuration() && Deadline(c->last_active_ns, ps->client_idle_timeout) <= now_ns_) {
        RejectClient(c, "client_idle_timeout", "08P01");
        return;
      }
      break;
    case ClientState::kActive:
      if (!ps) break;
      if (c->tracker.Busy()) {
        if (ps->query_timeout > absl::ZeroDuration() && Deadline(QueryStart(c), ps->query_timeout) <= now_ns_) {
          // As PgBouncer: the client gets "query timeout" and both connections close. Closing
          // a socket does not stop a running query in PostgreSQL, so cancel it first.
          if (ServerConn* s = c->server) {
            SendCancelToServer(s);
            c->server = nullptr;
            s->client = nullptr;
            --c->pool->cl_active;
            c->state = ClientState::kIdle;
            ++c->pool->cl_idle;
            CloseServer(s, "query timeout");
          }
          RejectClient(c, "query timeout", "08P01");
          return;
        }
      } else if (c->tracker.InTransaction()) {
        if (ps->idle_transaction_timeout > absl::ZeroDuration() &&
            Deadline(c->last_active_ns, ps->idle_transaction_timeout) <= now_ns_) {
          RejectClient(c, "idle transaction timeout", "08P01");
          return;
        }
      } else if (ps->client_idle_timeout > absl::ZeroDuration() &&
                 Deadline(c->last_active_ns, ps->client_idle_timeout) <= now_ns_) {
        RejectClient(c, "client_idle_timeout", "08P01");
        return;
      }
      break;
    default:
      break;
  }
  ArmClientTimer(c);
}

}  // namespace rb::engine
