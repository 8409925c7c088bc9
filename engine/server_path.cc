// The server side: connecting, logging in to PostgreSQL, our own setup queries, and the bytes
// a server sends back.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/log.h"
#include "engine/login_state.h"
#include "engine/worker.h"
#include "netio/listener.h"
#include "proto/md5_auth.h"
#include "proto/messages.h"

namespace rb::engine {

namespace {


int64_t ToNanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

}  // namespace

std::string Worker::ServerPrefix(const ServerConn* s) const {
  // PgBouncer's log prefix (SocketLogPrefix); a unix server shows the database's port.
  std::string_view db = s->pool ? std::string_view(s->pool->database()) : std::string_view();
  std::string_view user = s->pool ? std::string_view(s->pool->user()) : std::string_view();
  if (s->addr.family == AF_UNIX || s->addr.family == 0) {
    int port = s->pool && s->pool->db ? s->pool->db->PortFor(s->host_index) : s->addr.port;
    return SocketLogPrefix('S', s->id, db, user, "unix", false, port);
  }
  return SocketLogPrefix('S', s->id, db, user, s->addr.ToString(), s->addr.family == AF_INET6, s->addr.port);
}

// ---------------------------------------------------------------------------------------------
// Addresses. Host names are resolved here, blocking, and cached for dns_max_ttl; numeric
// addresses and unix sockets cost nothing.

bool Worker::ServerAddress(Pool* pool, uint8_t* host_index, sockaddr_storage* addr, socklen_t* len,
                           std::string* error) {
  const DatabaseConfig* db = pool->db;
  size_t idx = 0;
  if (db->hosts.size() > 1 && db->load_balance_hosts == LoadBalanceHosts::kRoundRobin) {
    idx = host_round_robin_++ % db->hosts.size();
  }
  *host_index = static_cast<uint8_t>(idx);
  return ResolveHostPort(db->hosts.empty() ? std::string() : db->hosts[idx], db->PortFor(idx), addr, len, error);
}

// host: a name or address, a unix socket directory ("/dir", or "@name" for the abstract
// namespace), or empty for unix_socket_dir, as in PgBouncer's [databases] and [peers].
bool Worker::ResolveHostPort(const std::string& host, int port, sockaddr_storage* addr, socklen_t* len,
                             std::string* error) {
  const Settings& cfg = config_->settings;
  *addr = sockaddr_storage{};
  if (host.empty() || host[0] == '/' || host[0] == '@') {
    std::string dir = host.empty() ? cfg.unix_socket_dir : host;
    if (dir.empty()) dir = "/tmp";
    std::string path = absl::StrCat(dir, "/.s.PGSQL.", port);
    auto* sun = reinterpret_cast<sockaddr_un*>(addr);
    sun->sun_family = AF_UNIX;
    if (path.size() >= sizeof(sun->sun_path)) {
      *error = "unix socket path too long";
      return false;
    }
    memcpy(sun->sun_path, path.data(), path.size());
    if (path[0] == '@') sun->sun_path[0] = '\0';
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
    return true;
  }
  std::string key = absl::StrCat(host, ":", port);
  auto it = dns_cache_.find(key);
  if (it == dns_cache_.end() || it->second.second < now_ns_ || it->second.first.empty()) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    std::vector<sockaddr_storage> addrs;
    if (rc == 0) {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        sockaddr_storage ss{};
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        addrs.push_back(ss);
      }
      freeaddrinfo(res);
    }
    absl::Duration ttl = rc == 0 ? cfg.dns_max_ttl : cfg.dns_nxdomain_ttl;
    it = dns_cache_.insert_or_assign(key, std::make_pair(std::move(addrs), now_ns_ + ToNanos(ttl))).first;
    if (rc != 0) {
      *error = absl::StrCat("could not resolve \"", host, "\": ", gai_strerror(rc));
      return false;
    }
  }
  if (it->second.first.empty()) {
    *error = absl::StrCat("could not resolve \"", host, "\"");
    return false;
  }
  *addr = it->second.first[0];
  *len = addr->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Opening a server connection. The global budgets are taken first, so that the configured
// limits hold across all workers at every instant (DESIGN.md decision 3).

Worker::BudgetResult Worker::AcquireServerBudgets(Pool* pool, int pool_limit) {
  const PoolSettings& ps = pool->settings;
  if (!pool->shared->servers.TryAcquire(pool_limit)) return BudgetResult::kPoolFull;
  if (!pool->db_shared->servers.TryAcquire(ps.max_db_connections)) {
    pool->shared->servers.Release();
    return BudgetResult::kDatabaseFull;
  }
  if (!pool->user_shared->servers.TryAcquire(ps.max_user_connections)) {
    pool->db_shared->servers.Release();
    pool->shared->servers.Release();
    return BudgetResult::kUserFull;
  }
  return BudgetResult::kOk;
}

bool Worker::LaunchServer(Pool* pool) {
  if (stopping_ || pool->db_shared->paused.load(std::memory_order_relaxed)) return false;
  if (now_ns_ < pool->next_launch_ns) return false;
  const PoolSettings& ps = pool->settings;
  int limit = ps.pool_size;
  // The reserve opens up once a client has waited longer than reserve_pool_timeout.
  if (ps.reserve_pool_size > 0 && !pool->waiting.empty() &&
      now_ns_ - pool->waiting.front()->request_time_ns >= ToNanos(config_->settings.reserve_pool_timeout)) {
    limit += ps.reserve_pool_size;
  }
  BudgetResult budget = AcquireServerBudgets(pool, limit);
  if (budget == BudgetResult::kDatabaseFull || budget == BudgetResult::kUserFull) {
    const bool same_user = budget == BudgetResult::kUserFull;
    if (EvictIdleServer(pool->shared, same_user)) {
      budget = AcquireServerBudgets(pool, limit);
    } else {
      AskToEvict(pool, same_user);
    }
  }
  if (budget != BudgetResult::kOk) return false;

  ServerConn* s = servers_.Allocate();
  s->pool = pool;
  s->state = ServerState::kConnecting;
  s->connect_time_ns = now_ns_;
  s->id = (uint64_t{static_cast<uint32_t>(id_)} << 48) | next_id_++;
  s->timer.owner = 2;
  s->vars = vars_->Empty();
  s->login = new ServerLogin(static_cast<uint32_t>(std::min<int64_t>(config_->settings.max_packet_size, 0x7fffffff)));
  ++pool->servers;
  ++pool->sv_login;
  pool->shared->per_worker_servers[id_].fetch_add(1, std::memory_order_relaxed);

  std::string error;
  if (!ServerAddress(pool, &s->host_index, &s->login->addr, &s->login->addrlen, &error)) {
    ServerLoginFailed(s, error, "08006");
    return true;
  }
  s->addr = PeerAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&s->login->addr));
  s->io.zero_copy_ok = !s->addr.IsLocal() || zero_copy_local_for_test_;
  int fd = socket(s->login->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ServerLoginFailed(s, absl::StrCat("socket: ", strerror(errno)), "08006");
    return true;
  }
  s->io.fd = fd;
  if (s->login->addr.ss_family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const Settings& cfg = config_->settings;
    if (cfg.tcp_keepalive) {
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      if (cfg.tcp_keepidle > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &cfg.tcp_keepidle, sizeof(int));
      if (cfg.tcp_keepintvl > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &cfg.tcp_keepintvl, sizeof(int));
      if (cfg.tcp_keepcnt > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cfg.tcp_keepcnt, sizeof(int));
    }
    if (cfg.tcp_user_timeout > 0) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &cfg.tcp_user_timeout, sizeof(int));
    if (cfg.tcp_socket_buffer > 0) {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg.tcp_socket_buffer, sizeof(int));
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg.tcp_socket_buffer, sizeof(int));
    }
  }
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_connect(sqe, fd, reinterpret_cast<sockaddr*>(&s->login->addr), s->login->addrlen);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpServerConnect, s->generation, s->slot}.Pack());
  ++s->io.pending;
  s->connecting = true;
  ArmServerTimer(s);
  return true;
}

void Worker::OnServerConnect(ServerConn* s, const io_uring_cqe& cqe) {
  --s->io.pending;
  s->connecting = false;
  if (s->state == ServerState::kClosing) {
    FreeServerIfDone(s);
    return;
  }
  if (cqe.res < 0) {
    std::string msg = absl::StrCat("connect failed: ", strerror(-cqe.res));
    if (s->state == ServerState::kCancelRequest) {
      CloseServer(s, msg);
    } else {
      ServerLoginFailed(s, msg, "08006");
    }
    return;
  }
  if (s->state == ServerState::kCancelRequest) {
    if (s->peer_id != 0) shared_->CountPeerCancel(s->peer_id, -1, +1);
    if (s->cancel_client_generation != 0) shared_->CountPeerCancelClient(s->peer_id, -1, +1);
    s->connected = true;
    buffers_->AppendCopy(s->io.out, s->cancel_payload, sizeof(s->cancel_payload));
    SendServer(s);
    ArmRecv(s, kOpServerRecv);  // PostgreSQL closes the connection once it has read the key
    return;
  }
  if (config_->settings.log_connections) {
    if (s->addr.family == AF_UNIX) {
      RB_LOG("%s new connection to server", ServerPrefix(s));
    } else {
      RB_LOG("%s new connection to server (from %s)", ServerPrefix(s), netio::DescribeLocalAddress(s->io.fd));
    }
  }
  // StartupMessage: the user and database, plus the parameters the pool's clients default to,
  // so that a fresh server usually needs no SET.
  const DatabaseConfig* db = s->pool->db;
  std::vector<proto::StartupParam> params;
  std::string dbname = db->dbname.empty() ? db->name : db->dbname;
  params.push_back({"user", s->pool->user()});
  params.push_back({"database", dbname});
  if (db->client_encoding) params.push_back({"client_encoding", *db->client_encoding});
  if (db->datestyle) params.push_back({"datestyle", *db->datestyle});
  if (db->timezone) params.push_back({"timezone", *db->timezone});
  if (db->application_name) params.push_back({"application_name", *db->application_name});
  scratch_.clear();
  proto::AppendStartupMessage(&scratch_, params);
  buffers_->AppendCopy(s->io.out, scratch_.data(), scratch_.size());
  SendServer(s);
  s->state = ServerState::kLogin;
  ArmRecv(s, kOpServerRecv);
}

// ---------------------------------------------------------------------------------------------
// Receiving.

void Worker::OnServerRecv(ServerConn* s, const io_uring_cqe& cqe) {
  if (!(cqe.flags & IORING_CQE_F_MORE)) {
    s->io.recv_armed = false;
    --s->io.pending;
  }
  if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
    uint32_t buf = buffers_->TakeRingBuffer(static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
    uint32_t len = static_cast<uint32_t>(cqe.res);
    switch (s->state) {
      case ServerState::kLogin:
        ServerLoginBytes(s, buf, len);
        break;
      case ServerState::kActive:
        ServerData(s, buf, len);
        break;
      case ServerState::kSetup:
        ServerSetupData(s, buf, len);
        break;
      case ServerState::kCancelRequest:
      case ServerState::kClosing:
        break;
      default:
        // An idle server has nothing to say. If it speaks anyway (a FATAL before it goes away,
        // a NOTIFY), its session is no longer what we think it is.
        CloseServer(s, "idle server got data");
        break;
    }
    buffers_->Unref(buf);
  } else if (cqe.res == 0 || (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED)) {
    s->io.eof = true;
    switch (s->state) {
      case ServerState::kClosing:
        break;
      case ServerState::kCancelRequest:
        CloseServer(s, "successfully sent cancel request");
        break;
      case ServerState::kLogin:
      case ServerState::kConnecting:
        ServerLoginFailed(s, "server closed the connection unexpectedly", "08006");
        break;
      case ServerState::kActive:
      case ServerState::kSetup:
        if (ClientConn* c = s->client) {
          // The contract: 08006 (connection_failure) with PgBouncer's words.
          c->server = nullptr;
          s->client = nullptr;
          --c->pool->cl_active;
          c->state = ClientState::kIdle;
          ++c->pool->cl_idle;
          RejectClient(c, "server conn crashed?", "08006");
        }
        CloseServer(s, "server conn crashed?");
        break;
      default:
        CloseServer(s, cqe.res == 0 ? "server closed connection" : "server connection error");
        break;
    }
  } else if (cqe.res == -ENOBUFS) {
    if (s->state != ServerState::kClosing && !s->io.recv_starved) {
      s->io.recv_starved = true;
      starved_servers_.emplace_back(s->slot, s->generation);
    }
  }
  if (s->state == ServerState::kClosing) {
    FreeServerIfDone(s);
    return;
  }
  if (s->state == ServerState::kHandover) {
    if (!s->io.recv_armed && s->io.pending == 0) GiveServerAway(s);
    return;
  }
  if (!s->io.recv_armed && !s->io.recv_paused && !s->io.recv_starved && !s->io.eof) ArmRecv(s, kOpServerRecv);
}

void Worker::OnServerSendDone(ServerConn* s, const io_uring_cqe& cqe) {
  if (!OnSendComplete(s, kOpServerSend, cqe)) {
    if (s->state != ServerState::kClosing) {
      if (ClientConn* c = s->client) {
        c->server = nullptr;
        s->client = nullptr;
        --c->pool->cl_active;
        c->state = ClientState::kIdle;
        ++c->pool->cl_idle;
        RejectClient(c, "server conn crashed?", "08006");
      }
      CloseServer(s, "server connection error");
    }
  }
  if (s->state == ServerState::kClosing) {
    FreeServerIfDone(s);
    return;
  }
  if (s->state == ServerState::kHandover) {
    if (s->io.pending == 0) GiveServerAway(s);
    return;
  }
  ClientConn* c = s->client;
  if (c && c->io.recv_paused && s->io.out.bytes < kLowWatermark && c->held.bytes < kLowWatermark &&
      c->state != ClientState::kClosing) {
    ResumeRecv(c, kOpClientRecv);
  }
}

// ---------------------------------------------------------------------------------------------
// Login.

void Worker::ServerLoginBytes(ServerConn* s, uint32_t buf, uint32_t len) {
  const uint8_t* data = buffers_->Data(buf);
  uint32_t off = 0;
  while (off < len && s->state == ServerState::kLogin) {
    proto::AssembleResult r = s->login->assembler.Feed(data + off, len - off);
    off += r.consumed;
    if (r.status == proto::AssembleStatus::kNeedMore) return;
    if (r.status != proto::AssembleStatus::kReady) {
      ServerLoginFailed(s, "bad pkt header", "08P01");
      return;
    }
    auto body = s->login->assembler.body();
    HandleServerLoginMessage(s, s->login->assembler.type(), body.data(), static_cast<uint32_t>(body.size()));
  }
  if (off < len && s->state != ServerState::kClosing) {
    // Nothing may follow the login's ReadyForQuery unprompted.
    CloseServer(s, "server sent data after login");
  }
}

void Worker::HandleServerLoginMessage(ServerConn* s, uint8_t type, const uint8_t* body, uint32_t len) {
  absl::Span<const uint8_t> b(body, len);
  Pool* pool = s->pool;
  ServerLogin* L = s->login;
  switch (type) {
    case 'R': {
      proto::AuthRequest req;
      if (proto::ParseAuthentication(b, &req) != proto::ParseError::kOk) {
        ServerLoginFailed(s, "invalid server auth packet", "08P01");
        return;
      }
      // The secret: [databases] password= for a forced user, else the auth_file's.
      std::string secret;
      SecretKind kind = SecretKind::kNone;
      if (pool->db->password && pool->db->user) {
        secret = *pool->db->password;
        kind = ClassifySecret(secret);
      } else if (const AuthUser* au = config_->auth_file.Find(pool->user())) {
        secret = au->secret;
        kind = au->kind;
      } else if (pool->db->password) {
        secret = *pool->db->password;
        kind = ClassifySecret(secret);
      }
      scratch_.clear();
      switch (req.code) {
        case proto::AuthCode::kOk:
          L->auth_ok = true;
          return;
        case proto::AuthCode::kCleartextPassword:
          if (kind != SecretKind::kPlain) {
            ServerLoginFailed(s, "cannot do cleartext password login with a hashed secret", "28000", LoginFailure::kServer);
            return;
          }
          proto::AppendPasswordMessage(&scratch_, secret);
          break;
        case proto::AuthCode::kMd5Password:
          if (kind != SecretKind::kPlain && kind != SecretKind::kMd5) {
            ServerLoginFailed(s, "cannot do md5 login with this secret", "28000", LoginFailure::kServer);
            return;
          }
          proto::AppendPasswordMessage(&scratch_, proto::Md5ClientResponse(secret, pool->user(), req.md5_salt));
          break;
        case proto::AuthCode::kSasl: {
          bool scram = false;
          for (auto m : req.mechanisms) scram |= m == "SCRAM-SHA-256";
          if (!scram) {
            ServerLoginFailed(s, "server does not offer SCRAM-SHA-256", "28000", LoginFailure::kServer);
            return;
          }
          if (kind == SecretKind::kPlain) {
            L->scram = std::make_unique<proto::ScramClient>(
                proto::ScramClient::WithPassword(secret, proto::GenerateScramNonce(), &ScramCache()));
          } else if (kind == SecretKind::kScramSha256 && pool->scram_keys) {
            L->scram = std::make_unique<proto::ScramClient>(
                proto::ScramClient::WithKeys(*pool->scram_keys, proto::GenerateScramNonce()));
          } else {
            ServerLoginFailed(s, "cannot do SCRAM authentication: no password, and no client has logged in with SCRAM yet",
                              "28000", LoginFailure::kServer);
            return;
          }
          std::string first;
          if (L->scram->ClientFirst(&first) != proto::ScramResult::kOk) {
            ServerLoginFailed(s, "SCRAM client error", "28000", LoginFailure::kServer);
            return;
          }
          proto::AppendSaslInitialResponse(&scratch_, "SCRAM-SHA-256", first);
          break;
        }
        case proto::AuthCode::kSaslContinue: {
          std::string final_msg;
          if (!L->scram || L->scram->HandleServerFirst(req.data, &final_msg) != proto::ScramResult::kOk) {
            ServerLoginFailed(s, "SCRAM authentication with the server failed", "28000", LoginFailure::kServer);
            return;
          }
          proto::AppendSaslResponse(&scratch_, final_msg);
          break;
        }
        case proto::AuthCode::kSaslFinal:
          if (!L->scram || L->scram->HandleServerFinal(req.data) != proto::ScramResult::kOk) {
            ServerLoginFailed(s, "SCRAM server signature does not verify", "28000", LoginFailure::kServer);
          }
          return;
        default:
          ServerLoginFailed(s, absl::StrCat("unsupported authentication method requested by server: ",
                                            static_cast<int>(req.code)),
                            "28000", LoginFailure::kServer);
          return;
      }
      buffers_->AppendCopy(s->io.out, scratch_.data(), scratch_.size());
      SendServer(s);
      return;
    }
    case 'S': {
      absl::string_view name, value;
      if (proto::ParseParameterStatus(b, &name, &value) != proto::ParseError::kOk) {
        ServerLoginFailed(s, "invalid server parameter", "08P01");
        return;
      }
      L->params.emplace_back(std::string(name), std::string(value));
      int idx = vars_->IndexOf(name);
      if (idx >= 0) {
        const VarSet* nv = vars_->With(s->vars, idx, value);
        vars_->Unref(s->vars);
        s->vars = nv;
      }
      return;
    }
    case 'K': {
      if (proto::ParseBackendKeyData(b, &s->backend_key) != proto::ParseError::kOk) {
        ServerLoginFailed(s, "invalid server key data", "08P01");
      }
      return;
    }
    case 'E': {
      proto::ErrorFields f;
      if (proto::ParseErrorFields(b, &f) != proto::ParseError::kOk) {
        ServerLoginFailed(s, "server login failed", "08P01");
        return;
      }
      RB_WARN("server login failed: %s %s", std::string(f.severity), std::string(f.message));
      ServerLoginFailed(s, std::string(f.message), std::string(f.sqlstate.empty() ? "08P01" : f.sqlstate),
                        LoginFailure::kServer);
      return;
    }
    case 'Z':
      if (!L->auth_ok) {
        ServerLoginFailed(s, "server sent ReadyForQuery before authentication", "08P01");
        return;
      }
      ServerLoggedIn(s);
      return;
    case 'N':  // notices during login carry nothing we need
    case 'v':  // NegotiateProtocolVersion: we asked for 3.0 and nothing else
      return;
    default:
      ServerLoginFailed(s, "unknown pkt", "08P01");
      return;
  }
}

void Worker::ServerLoggedIn(ServerConn* s) {
  Pool* pool = s->pool;
  --pool->sv_login;
  if (!pool->shared->has_welcome.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&pool->shared->mu);
    if (!pool->shared->has_welcome.load(std::memory_order_relaxed)) {
      pool->shared->welcome = s->login->params;
      pool->shared->has_welcome.store(true, std::memory_order_release);
    }
  }
  pool->shared->login_failed_at_ns.store(0, std::memory_order_relaxed);
  delete s->login;
  s->login = nullptr;
  s->last_used_ns = now_ns_;
  WelcomeWaiters(pool);
  const DatabaseConfig* db = pool->db;
  if (db->connect_query && !db->connect_query->empty()) {
    StartSetup(s, SetupStep::kConnectQuery, *db->connect_query);
    return;
  }
  ServerIdle(s);
}

void Worker::ServerLoginFailed(ServerConn* s, const std::string& message, const std::string& sqlstate,
                               LoginFailure kind) {
  Pool* pool = s->pool;
  // Until a login succeeds, new clients get the cached error at once (PgBouncer's
  // check_fast_fail). When PostgreSQL itself refused the login, every client waiting for its
  // first welcome gets the server's own error too (kill_pool_logins); when the network did
  // (refused, timed out, dropped), they keep waiting for the next attempt, server_login_retry
  // later, or their client_login_timeout, as under PgBouncer. "The database system is starting
  // up" (57P03) is passing, so nobody is failed for it.
  if (pool && sqlstate != "57P03") {
    {
      absl::MutexLock lock(&pool->shared->mu);
      pool->shared->login_error = absl::StrCat("server login has been failing, cached error: ",
                                               message.substr(0, 99), " (server_login_retry)");
      pool->shared->login_error_sqlstate = "08P01";
    }
    pool->shared->login_failed_at_ns.store(now_ns_, std::memory_order_release);
    if (kind == LoginFailure::kServer) FailWaiters(pool, message, sqlstate);
  }
  if (pool) pool->next_launch_ns = now_ns_ + ToNanos(config_->settings.server_login_retry);
  CloseServer(s, message);
}

// ---------------------------------------------------------------------------------------------
// Forwarding server -> client. The whole received buffer goes to the client as it is; the
// scanner only watches for ReadyForQuery (which may release the server) and ParameterStatus
// (which keeps the session-parameter cache true).

namespace {

struct ServerScan {
  Worker* worker;
  ServerConn* s;
  ClientConn* c;
  VarCache* vars;
  PoolStats* stats;
  PoolLatency* latency;  // metrics: every counted query and transaction is also recorded here
  int64_t now;
  bool saw_ready = false;
  uint8_t last_status = 'I';
  bool bad = false;

  int64_t ready_offset = -1;  // where the last ReadyForQuery starts in this chunk (-1: earlier chunk)

  bool OnTypeAt(uint8_t type, uint32_t offset) {
    if (type == 'Z') ready_offset = offset;
    return true;
  }
  bool OnHeader(uint8_t type, uint32_t len) {
    return type == 'Z' || (type == 'S' && len <= 512);
  }
  void OnBody(uint8_t type, const uint8_t* body, uint32_t len) {
    if (type == 'Z') {
      uint8_t status = len == 1 ? body[0] : 'I';
      c->tracker.OnReadyForQuery(status);
      saw_ready = true;
      last_status = status;
      ++stats->queries;
      uint64_t query_us = 0;
      if (s->query_start_ns) {
        query_us = static_cast<uint64_t>(now - s->query_start_ns) / 1000;
        stats->query_time_us += query_us;
        s->query_start_ns = c->tracker.Busy() ? now : 0;
      }
      latency->query.Record(query_us);
      if (status == 'I' && !c->tracker.Busy()) {
        ++stats->xacts;
        uint64_t xact_us = s->xact_start_ns ? static_cast<uint64_t>(now - s->xact_start_ns) / 1000 : 0;
        stats->xact_time_us += xact_us;
        latency->xact.Record(xact_us);
        s->xact_start_ns = 0;
      }
      return;
    }
    // ParameterStatus: a SET changed the session; both sides now have the new value.
    absl::string_view name, value;
    if (proto::ParseParameterStatus(absl::Span<const uint8_t>(body, len), &name, &value) != proto::ParseError::kOk) {
      bad = true;
      return;
    }
    int idx = vars->IndexOf(name);
    if (idx < 0) return;
    const VarSet* ns = vars->With(s->vars, idx, value);
    vars->Unref(s->vars);
    s->vars = ns;
    const VarSet* nc = vars->With(c->vars, idx, value);
    vars->Unref(c->vars);
    c->vars = nc;
  }
  void OnEnd(uint8_t) {}
};

}  // namespace

void Worker::ServerData(ServerConn* s, uint32_t buf, uint32_t len) {
  ClientConn* c = s->client;
  Pool* pool = s->pool;
  if (!c) {
    CloseServer(s, "server got data without a client");
    return;
  }
  ServerScan scan{this, s, c, vars_.get(), &pool->stats, &pool->latency, now_ns_};
  uint32_t max_body = 0x7fffffffu - 4;
  proto::ScanResult r = s->scanner.Scan(buffers_->Data(buf), len, max_body, scan);
  if (r.status == proto::ScanStatus::kBadLength || scan.bad) {
    c->server = nullptr;
    s->client = nullptr;
    --pool->cl_active;
    c->state = ClientState::kIdle;
    ++pool->cl_idle;
    RejectClient(c, "bad pkt header", "08P01");
    CloseServer(s, "bad pkt header");
    return;
  }
  // Statement mode refuses a transaction block. The ReadyForQuery that opens it must not
  // reach the client: libpq reports BEGIN's success only when it sees it, so withholding it
  // makes the client's BEGIN fail with our FATAL, as under PgBouncer.
  uint32_t forward = len;
  if (scan.saw_ready && pool->settings.mode == PoolMode::kStatement && scan.last_status != 'I' && scan.ready_offset >= 0) {
    forward = static_cast<uint32_t>(scan.ready_offset);
  }
  buffers_->Append(c->io.out, buf, 0, forward);
  pool->stats.bytes_sent += forward;
  SendClient(c);
  if (c->io.out.bytes > kHighWatermark) {
    // A slow client: stop reading from its server, and take what waits for it out of the
    // ring, so that a client that never reads can't starve the rest of the worker.
    PauseRecv(s, kOpServerRecv);
    buffers_->Evacuate(c->io.out, c->io.send_busy ? kMaxIov : 0);
  }
  if (!scan.saw_ready) return;

  c->last_active_ns = now_ns_;
  if (pool->settings.mode == PoolMode::kStatement && scan.last_status != 'I') {
    // A transaction block would hold the server past the statement: refuse it, and drop the
    // server, whose transaction we can't finish for the client.
    c->server = nullptr;
    s->client = nullptr;
    --pool->cl_active;
    c->state = ClientState::kIdle;
    ++pool->cl_idle;
    RejectClient(c, "transaction blocks not allowed in statement pooling mode", "08P01");
    CloseServer(s, "transaction blocks not allowed in statement pooling mode");
    return;
  }
  if (c->tracker.Idle() && !c->scanner.InMessage() && c->held.empty() && !s->scanner.InMessage()) {
    if (pool->settings.mode != PoolMode::kSession) {
      ReleaseServer(s, /*client_gone=*/false);
      return;
    }
  }
  ArmClientTimer(c);
}

// ---------------------------------------------------------------------------------------------
// Our own queries: connect_query, server_reset_query, SET for session parameters, and
// server_check_query. Their results never reach a client.

void Worker::StartSetup(ServerConn* s, SetupStep step, const std::string& sql) {
  s->setup = step;
  s->setup_failed = false;
  if (s->state != ServerState::kSetup) {
    if (s->state == ServerState::kActive) --s->pool->sv_active;
    ++s->pool->sv_setup;
  }
  s->state = ServerState::kSetup;
  scratch_.clear();
  proto::AppendQuery(&scratch_, sql);
  buffers_->AppendCopy(s->io.out, scratch_.data(), scratch_.size());
  SendServer(s);
}

namespace {

struct SetupScan {
  ServerConn* s;
  VarCache* vars;
  bool done = false;
  bool failed = false;
  std::string error;
  bool OnType(uint8_t) { return !done; }
  bool OnHeader(uint8_t type, uint32_t len) { return type == 'Z' || ((type == 'S' || type == 'E') && len <= 512); }
  void OnBody(uint8_t type, const uint8_t* body, uint32_t len) {
    absl::Span<const uint8_t> b(body, len);
    if (type == 'Z') {
      done = true;
    } else if (type == 'E') {
      failed = true;
      proto::ErrorFields f;
      if (proto::ParseErrorFields(b, &f) == proto::ParseError::kOk) error = std::string(f.message);
    } else if (type == 'S') {
      absl::string_view name, value;
      if (proto::ParseParameterStatus(b, &name, &value) != proto::ParseError::kOk) return;
      int idx = vars->IndexOf(name);
      if (idx < 0) return;
      const VarSet* ns = vars->With(s->vars, idx, value);
      vars->Unref(s->vars);
      s->vars = ns;
    }
  }
  void OnEnd(uint8_t) {}
};

}  // namespace

void Worker::ServerSetupData(ServerConn* s, uint32_t buf, uint32_t len) {
  SetupScan scan{s, vars_.get(), false, false, {}};
  proto::ScanResult r = s->scanner.Scan(buffers_->Data(buf), len, 0x7fffffffu - 4, scan);
  if (r.status == proto::ScanStatus::kBadLength) {
    CloseServer(s, "bad pkt header");
    return;
  }
  if (scan.failed) {
    s->setup_failed = true;
    RB_WARN("%s setup query failed: %s", ServerPrefix(s), scan.error);
  }
  if (scan.done) {
    if (r.consumed < len) {
      CloseServer(s, "server sent data after setup query");
      return;
    }
    SetupDone(s);
  }
}

void Worker::SetupDone(ServerConn* s) {
  Pool* pool = s->pool;
  SetupStep step = s->setup;
  s->setup = SetupStep::kNone;
  --pool->sv_setup;
  ClientConn* c = s->client;
  if (s->setup_failed) {
    if (c) {
      // Put the client back at the head of the queue; another server may do better.
      c->server = nullptr;
      s->client = nullptr;
      --pool->cl_active;
      c->state = ClientState::kWaiting;
      pool->waiting.PushFront(c);
    }
    s->state = ServerState::kIdle;  // counted as idle for the close below
    CloseServer(s, "setup query failed");
    if (c) ServeWaiters(pool);
    return;
  }
  switch (step) {
    case SetupStep::kConnectQuery:
    case SetupStep::kResetQuery:
      s->state = ServerState::kIdle;
      ServerIdle(s);
      return;
    case SetupStep::kCheckQuery:
    case SetupStep::kSetVars:
      if (!c) {
        ServerIdle(s);
        return;
      }
      s->state = ServerState::kActive;
      ++pool->sv_active;
      ContinueLink(c, s);
      return;
    case SetupStep::kNone:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Closing.

void Worker::CloseServer(ServerConn* s, const std::string& reason) {
  if (s->state == ServerState::kClosing) return;
  Pool* pool = s->pool;
  if (config_->settings.log_disconnections && !reason.empty()) {
    RB_LOG("%s closing because: %s (age=%ds)", ServerPrefix(s), reason,
           static_cast<int>((now_ns_ - s->connect_time_ns) / 1'000'000'000));
  }
  if (ClientConn* c = s->client) {
    // Whoever closes a linked server first unlinks the client; this is the safety net.
    c->server = nullptr;
    s->client = nullptr;
    if (c->state == ClientState::kActive) {
      --pool->cl_active;
      RejectClient(c, reason, "08006");
    }
  }
  if (pool && s->state != ServerState::kCancelRequest) {
    switch (s->state) {
      case ServerState::kConnecting:
      case ServerState::kLogin:
        --pool->sv_login;
        break;
      case ServerState::kIdle:
        pool->idle.Remove(s);
        break;
      case ServerState::kActive:
        --pool->sv_active;
        break;
      case ServerState::kSetup:
        --pool->sv_setup;
        break;
      case ServerState::kBeingCanceled:
        --pool->sv_being_canceled;
        break;
      default:
        break;
    }
    --pool->servers;
    pool->shared->per_worker_servers[id_].fetch_sub(1, std::memory_order_relaxed);
    pool->shared->servers.Release();
    pool->db_shared->servers.Release();
    pool->user_shared->servers.Release();
  }
  if (s->state == ServerState::kCancelRequest) {
    if (s->peer_id != 0) shared_->CountPeerCancel(s->peer_id, s->connected ? 0 : -1, s->connected ? -1 : 0);
    if (pool && s->io.fd >= 0) --pool->sv_active_cancel;
    CancelLanded(s);
    ReleaseHeldCancelClient(s);
  }
  timers_->Disarm(&s->timer);
  delete s->login;
  s->login = nullptr;
  s->state = ServerState::kClosing;
  CancelIo(s);
  FreeServerIfDone(s);
  // A slot opened up in the budget: someone may be waiting for it.
  if (pool && !stopping_) ServeWaiters(pool);
}

void Worker::FreeServerIfDone(ServerConn* s) {
  if (s->state != ServerState::kClosing || s->io.pending > 0) return;
  // Freed later, outside every handler: callers up the stack may still look at it.
  if (!s->io.reap_queued) {
    s->io.reap_queued = true;
    reap_servers_.push_back(s);
  }
}

void Worker::ReapServer(ServerConn* s) {
  if (s->io.fd >= 0) CloseFd(s->io.fd);
  s->io.fd = -1;
  buffers_->Clear(s->io.out);
  ReleaseZeroCopyHold(s);
  if (s->vars) vars_->Unref(s->vars);
  s->vars = nullptr;
  servers_.Free(s);
}

// ---------------------------------------------------------------------------------------------
// Server timers.

void Worker::ArmServerTimer(ServerConn* s) {
  const Settings& cfg = config_->settings;
  int64_t deadline = 0;
  switch (s->state) {
    case ServerState::kConnecting:
    case ServerState::kLogin:
      deadline = s->connect_time_ns + ToNanos(cfg.server_connect_timeout);
      break;
    case ServerState::kIdle: {
      int64_t idle = cfg.server_idle_timeout > absl::ZeroDuration() ? s->last_used_ns + ToNanos(cfg.server_idle_timeout) : 0;
      absl::Duration lifetime = s->pool ? s->pool->settings.server_lifetime : cfg.server_lifetime;
      int64_t life = lifetime > absl::ZeroDuration() ? s->connect_time_ns + ToNanos(lifetime) : 0;
      deadline = idle == 0 ? life : (life == 0 ? idle : std::min(idle, life));
      break;
    }
    case ServerState::kCancelRequest:
      deadline = s->connect_time_ns + ToNanos(cfg.cancel_wait_timeout);
      break;
    default:
      break;
  }
  if (deadline == 0) {
    timers_->Disarm(&s->timer);
  } else {
    timers_->Arm(&s->timer, deadline);
  }
}

void Worker::OnServerTimer(ServerConn* s) {
  const Settings& cfg = config_->settings;
  switch (s->state) {
    case ServerState::kConnecting:
    case ServerState::kLogin:
      if (now_ns_ >= s->connect_time_ns + ToNanos(cfg.server_connect_timeout)) {
        ServerLoginFailed(s, "connect timeout", "08006");
        return;
      }
      break;
    case ServerState::kIdle: {
      absl::Duration lifetime = s->pool ? s->pool->settings.server_lifetime : cfg.server_lifetime;
      if (lifetime > absl::ZeroDuration() && now_ns_ >= s->connect_time_ns + ToNanos(lifetime)) {
        CloseServer(s, "server lifetime over");
        return;
      }
      if (cfg.server_idle_timeout > absl::ZeroDuration() && now_ns_ >= s->last_used_ns + ToNanos(cfg.server_idle_timeout)) {
        // min_pool_size keeps a floor of warm servers.
        Pool* pool = s->pool;
        if (pool && pool->shared->servers.value() <= pool->settings.min_pool_size) {
          // Look again one server_idle_timeout later, not at every tick of the wheel.
          int64_t next = now_ns_ + ToNanos(cfg.server_idle_timeout);
          if (lifetime > absl::ZeroDuration()) next = std::min(next, s->connect_time_ns + ToNanos(lifetime));
          timers_->Arm(&s->timer, next);
          return;
        }
        CloseServer(s, "server idle timeout");
        return;
      }
      break;
    }
    case ServerState::kCancelRequest:
      CloseServer(s, "cancel_wait_timeout");
      return;
    default:
      return;
  }
  ArmServerTimer(s);
}

// A cancel for a query on server `s`: a one-shot connection to the same host that carries a
// CancelRequest with the server's real key (DESIGN.md decision 6).
void Worker::SendCancelToServer(ServerConn* s) {
  Pool* pool = s->pool;
  const DatabaseConfig* db = pool->db;
  size_t idx = s->host_index < db->hosts.size() ? s->host_index : 0;
  std::string payload;
  proto::AppendCancelRequest(&payload, s->backend_key);
  ServerConn* cancel =
      OpenCancelConnection(payload, db->hosts.empty() ? std::string() : db->hosts[idx], db->PortFor(idx), pool);
  if (cancel) {
    // Until PostgreSQL closes the cancel connection, the signal may still be on its way to the
    // backend: the server must not serve anyone else before then (see kBeingCanceled).
    ++s->cancels_in_flight;
    cancel->cancel_target_slot = s->slot;
    cancel->cancel_target_generation = s->generation;
  }
}

// A cancel connection aimed at one of our servers is done: the signal has been delivered (or
// never will be). A server held for it goes on with its release.
void Worker::CancelLanded(ServerConn* cancel) {
  if (cancel->cancel_target_generation == 0) return;
  ServerConn* s = servers_.Find(cancel->cancel_target_slot, cancel->cancel_target_generation);
  cancel->cancel_target_generation = 0;
  if (!s || s->cancels_in_flight == 0) return;
  if (--s->cancels_in_flight > 0 || s->state != ServerState::kBeingCanceled) return;
  --s->pool->sv_being_canceled;
  s->state = ServerState::kIdle;
  FinishRelease(s);
}

void Worker::ReleaseHeldCancelClient(ServerConn* cancel) {
  if (cancel->cancel_client_generation == 0) return;
  shared_->CountPeerCancelClient(cancel->peer_id, cancel->connected ? 0 : -1, cancel->connected ? -1 : 0);
  ClientConn* c = clients_.Find(cancel->cancel_client_slot, cancel->cancel_client_generation);
  cancel->cancel_client_generation = 0;
  if (c && c->cancel_held && c->state != ClientState::kClosing) CloseClient(c, "");
}

// Sends a 16-byte CancelRequest to host:port and closes once the other side does (PostgreSQL
// and PgBouncer close a cancel connection without a word).
ServerConn* Worker::OpenCancelConnection(const std::string& payload, const std::string& host, int port, Pool* pool,
                                         uint16_t peer_id) {
  ServerConn* s = servers_.Allocate();
  s->state = ServerState::kCancelRequest;
  s->pool = pool;
  s->peer_id = peer_id;
  if (peer_id != 0) shared_->CountPeerCancel(peer_id, +1, 0);
  s->connect_time_ns = now_ns_;
  s->id = (uint64_t{static_cast<uint32_t>(id_)} << 48) | next_id_++;
  s->timer.owner = 2;
  s->vars = vars_->Empty();
  s->login = new ServerLogin(1024);
  memcpy(s->cancel_payload, payload.data(), std::min(payload.size(), sizeof(s->cancel_payload)));
  std::string error;
  if (!ResolveHostPort(host, port, &s->login->addr, &s->login->addrlen, &error)) {
    CloseServer(s, error);
    return nullptr;
  }
  s->addr = PeerAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&s->login->addr));
  int fd = socket(s->login->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    CloseServer(s, absl::StrCat("socket: ", strerror(errno)));
    return nullptr;
  }
  s->io.fd = fd;
  if (pool) ++pool->sv_active_cancel;
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_connect(sqe, fd, reinterpret_cast<sockaddr*>(&s->login->addr), s->login->addrlen);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpServerConnect, s->generation, s->slot}.Pack());
  ++s->io.pending;
  s->connecting = true;
  ArmServerTimer(s);
  return s;
}

}  // namespace rb::engine
