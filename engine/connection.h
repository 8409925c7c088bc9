// Client and server connections: their states, and which list each state keeps them on.
//
// Both live in per-worker slabs and are named in completion tags by slot and generation.
// Everything only needed while logging in lives in a separate object that is freed once the
// login is done, so an idle logged-in client costs little more than this struct.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engine/buffers.h"
#include "engine/intrusive_list.h"
#include "engine/var_cache.h"
#include "netio/timer_wheel.h"
#include "proto/cancel_key.h"
#include "proto/frame_scanner.h"
#include "proto/messages.h"
#include "proto/txn_tracker.h"

namespace rb::engine {

struct Pool;
struct ServerConn;
struct ClientLogin;
struct ServerLogin;
struct AdminSession;

// Socket-level state shared by both kinds of connection.
struct SocketIo {
  int fd = -1;
  uint8_t pending = 0;          // SQEs in flight that will still post a completion
  uint8_t zc_inflight = 0;      // zero-copy sends whose buffers the kernel still holds
  bool recv_armed : 1 = false;  // a multishot recv is in flight
  bool recv_paused : 1 = false; // backpressure: the peer's send queue is over the high watermark
  bool recv_starved : 1 = false;// the buffer ring ran dry; on the worker's re-arm list
  bool send_busy : 1 = false;   // one send at a time keeps bytes in order
  bool eof : 1 = false;         // the peer is gone (or we gave up on it): nothing more to send
  bool cancel_issued : 1 = false;  // every in-flight operation has been told to end
  bool zero_copy_ok : 1 = false;   // a remote peer: large sends may use send_zc
  bool zc_current : 1 = false;     // the send in flight is a zero-copy one
  bool reap_queued : 1 = false;    // closed and idle: freed at the next safe point of the loop
  ByteQueue out;             // bytes waiting to be sent on this socket
};

// Where a client stands. The comment says which list of its pool holds it.
enum class ClientState : uint8_t {
  kLogin,        // reading the startup packet, SSL/GSS negotiation (no list)
  kAuth,         // password or SASL exchange (no list)
  kWaitWelcome,  // authenticated; waiting for a first server login to learn its parameters (pool.welcome_waiting)
  kIdle,         // logged in, no server, nothing pending (no list; counted in pool.cl_idle)
  kWaiting,      // has sent a request and waits for a server (pool.waiting, FIFO)
  kActive,       // linked to a server (no list; counted in pool.cl_active)
  kAdmin,        // admin console session (no pool)
  kClosing,      // waiting for in-flight operations before it is freed (no list)
};

const char* ClientStateName(ClientState s);

// Compact peer address for SHOW CLIENTS, logs and hba: IPv4-mapped IPv6, or unix.
struct PeerAddress {
  uint8_t addr[16] = {};
  uint16_t port = 0;
  uint8_t family = 0;  // AF_INET, AF_INET6 or AF_UNIX
  std::string ToString() const;
  static PeerAddress FromSockaddr(const sockaddr* sa);
  // Same host: a unix socket, 127.0.0.0/8, ::1 or an IPv4-mapped loopback address.
  bool IsLocal() const;
};

struct ClientConn {
  uint32_t slot = 0;
  uint32_t generation = 0;
  SocketIo io;
  ClientState state = ClientState::kLogin;
  uint8_t listener_kind = 0;           // ListenerKind of the socket it came in on
  bool counted : 1 = false;            // holds a max_client_conn reservation
  bool pool_counted : 1 = false;       // holds max_db/max_user client reservations
  bool close_after_flush : 1 = false;
  bool wait_notified : 1 = false;      // query_wait_notify NOTICE already sent for this wait
  bool cancel_held : 1 = false;        // sent a CancelRequest now forwarded to a peer: kept open
                                       // (kLogin, no list) until the peer has closed the forward
  Pool* pool = nullptr;
  ServerConn* server = nullptr;
  ByteQueue held;               // bytes received while no server is linked
  proto::FrameScanner<0> scanner;
  proto::TxnTracker tracker;
  netio::TimerNode timer;
  const VarSet* vars = nullptr; // the session parameters this client expects
  ClientLogin* login = nullptr; // only while logging in
  AdminSession* admin = nullptr;
  ListLink<ClientConn> link;    // pool.waiting or pool.welcome_waiting
  proto::CancelKey cancel_key;
  int64_t connect_time_ns = 0;
  int64_t request_time_ns = 0;  // when the current request or wait began
  int64_t last_active_ns = 0;
  PeerAddress addr;
  uint64_t id = 0;              // SHOW CLIENTS id, unique per process
};

enum class ServerState : uint8_t {
  kConnecting,     // TCP or unix connect in flight (pool.logging_in counts it)
  kLogin,          // startup sent, authenticating (pool.logging_in counts it)
  kSetup,          // running a query of our own: connect_query, reset, SET, check (no list)
  kIdle,           // clean, in pool.idle
  kActive,         // linked to a client (no list; counted in pool.sv_active)
  kHandover,       // recv cancelled, about to move to another worker (no list)
  kBeingCanceled,  // released while a cancel for it is on its way: held until PostgreSQL has
                   // taken the cancel, which could otherwise hit the next client's query
                   // (no list; counted in pool.sv_being_canceled)
  kCancelRequest,  // a one-shot connection that carries a CancelRequest (no pool)
  kClosing,        // waiting for in-flight operations before it is freed
};

const char* ServerStateName(ServerState s);

// The query a server in kSetup is running, and what follows it.
enum class SetupStep : uint8_t { kNone, kConnectQuery, kResetQuery, kSetVars, kCheckQuery };

struct ServerConn {
  uint32_t slot = 0;
  uint32_t generation = 0;
  SocketIo io;
  ServerState state = ServerState::kConnecting;
  SetupStep setup = SetupStep::kNone;
  bool setup_failed = false;
  bool close_needed = false;    // config changed or RECONNECT: close when released
  bool dirty = false;           // unknown state: close rather than reuse
  bool reset_on_release = false;  // server_reset_query is due before the next client
  int handover_to = -1;         // kHandover: the worker that gets it
  bool connecting = false;      // a connect SQE is in flight
  bool connected = false;       // kCancelRequest: the connect succeeded
  uint8_t host_index = 0;       // which of the database's hosts it is connected to
  uint16_t peer_id = 0;         // kCancelRequest to a peer: which one
  uint8_t cancels_in_flight = 0;  // cancel connections aimed at this server still open
  uint32_t cancel_target_slot = 0;  // kCancelRequest for one of our servers: which one
  uint32_t cancel_target_generation = 0;
  uint32_t cancel_client_slot = 0;  // kCancelRequest to a peer: the client that sent it, held open
  uint32_t cancel_client_generation = 0;  // until this connection ends (0: none)
  Pool* pool = nullptr;
  ClientConn* client = nullptr;
  proto::FrameScanner<512> scanner;
  netio::TimerNode timer;
  const VarSet* vars = nullptr;  // what the server's session has now
  ServerLogin* login = nullptr;
  ListLink<ServerConn> link;     // pool.idle
  proto::BackendKey backend_key; // the real one, for cancels
  int64_t connect_time_ns = 0;
  int64_t last_used_ns = 0;      // released to the pool
  int64_t query_start_ns = 0;
  int64_t xact_start_ns = 0;
  PeerAddress addr;
  uint64_t id = 0;
  uint8_t cancel_payload[16] = {};  // kCancelRequest only
};

}  // namespace rb::engine
