// The worker's event loop and its I/O plumbing: completions, sockets, send queues, timers and
// mailboxes. Protocol decisions live in client_path.cc, server_path.cc and pooling.cc.
#include "engine/worker.h"

#include <netinet/in.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/admin_console.h"
#include "engine/log.h"
#include "engine/metrics_server.h"
#include "engine/login_state.h"
#include "netio/listener.h"
#include "netio/uring_compat.h"

namespace rb::engine {

namespace {

// Buffers: 16 KiB each, a power-of-two count per worker. Every received byte lands in one of
// them, so this is also the bound on memory held by slow peers (DESIGN.md decision 4).
constexpr uint32_t kBufferSize = 16 * 1024;
constexpr uint32_t kBufferCount = 128;
constexpr uint16_t kBufferGroup = 0;
// Re-arm starved receives once this many buffers are back.
constexpr uint32_t kStarvedRearmThreshold = kBufferCount / 8;
constexpr int64_t kTickNs = 100'000'000;        // timer wheel resolution
constexpr int64_t kMaintenanceNs = 250'000'000;  // pool upkeep, as PgBouncer's janitor
constexpr uint8_t kTimerClient = 1;
constexpr uint8_t kTimerServer = 2;
constexpr uint8_t kTimerMaintenance = 3;

}  // namespace

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

Worker::Worker(int id, SharedState* shared, std::shared_ptr<const Config> config, const netio::Features& features,
               std::vector<ListenerSpec> listeners, uint16_t peer_id)
    : id_(id), shared_(shared), config_(std::move(config)), features_(features), peer_id_(peer_id) {
  for (auto& l : listeners) listeners_.push_back(Listener{std::move(l)});
}

Worker::~Worker() {
  for (auto& l : listeners_)
    if (l.spec.fd >= 0) close(l.spec.fd);
}

void Worker::Run() {
  netio::RingOptions ro;
  ro.setup_flags = features_.WorkerSetupFlags();
  ro.register_ring_fd = features_.register_ring_fd;
  auto ring = netio::Ring::Create(ro);
  if (!ring.ok()) {
    RB_ERROR("worker %d: %s", id_, std::string(ring.status().message()));
    failed_.store(true, std::memory_order_release);
    return;
  }
  ring_ = std::move(*ring);
  auto br = netio::BufferRing::Create(ring_->raw(), kBufferGroup, kBufferCount, kBufferSize, false);
  if (!br.ok()) {
    RB_ERROR("worker %d: %s", id_, std::string(br.status().message()));
    failed_.store(true, std::memory_order_release);
    return;
  }
  buffer_ring_ = std::move(*br);
  buffers_ = std::make_unique<BufferPool>(buffer_ring_.get());
  now_ns_ = MonotonicNanos();
  timers_ = std::make_unique<netio::TimerWheel>(kTickNs, now_ns_);
  // Tests exercise the zero-copy path on loopback, where it is otherwise never used.
  const char* zc = getenv("RB_ZERO_COPY_LOCAL_FOR_TEST");
  zero_copy_local_for_test_ = zc != nullptr && zc[0] == '1';
  std::vector<std::string> names = VarCache::DefaultNames();
  for (const std::string& extra : config_->settings.track_extra_parameters) {
    bool dup = false;
    for (const auto& n : names) dup |= absl::EqualsIgnoreCase(n, extra);
    if (!dup && !extra.empty()) names.push_back(extra);
  }
  vars_ = std::make_unique<VarCache>(std::move(names));
  admin_ = std::make_unique<AdminConsole>(this);
  metrics_ = std::make_unique<MetricsServer>(this);
  maintenance_timer_.owner = kTimerMaintenance;
  timers_->Arm(&maintenance_timer_, now_ns_ + kMaintenanceNs);

  for (uint32_t i = 0; i < listeners_.size(); ++i) ArmAccept(i);
  shared_->endpoint(id_).ring_fd.store(ring_->fd(), std::memory_order_release);
  counters_.accepting.store(true, std::memory_order_relaxed);
  ready_.store(true, std::memory_order_release);
  Loop();
  // The buffer ring must be unregistered by the ring's own thread (a SINGLE_ISSUER ring refuses
  // others with -EEXIST), and before the ring goes away.
  admin_.reset();
  buffers_.reset();
  buffer_ring_.reset();
  shared_->endpoint(id_).ring_fd.store(-1, std::memory_order_release);
  ring_.reset();
  finished_.store(true, std::memory_order_release);
}

void Worker::Loop() {
  while (true) {
    now_ns_ = MonotonicNanos();
    timers_->Advance(now_ns_, [this](netio::TimerNode* n) { OnTimer(n); });
    DrainMailbox();
    FlushOverflow();
    Reap();
    buffers_->Publish();
    RearmStarved();
    if (stopping_ && clients_.live() == 0 && servers_.live() == 0) break;

    int64_t wait = timers_->NanosToNextTick(now_ns_);
    if (wait < 0 || wait > 1'000'000'000) wait = 1'000'000'000;
    int ret = ring_->SubmitAndWait(wait);
    send_descs_used_ = 0;
    if (ret < 0) {
      // The ring itself failed: nothing sensible is left to do on this worker.
      RB_ERROR("worker %d: io_uring_enter: %s", id_, strerror(-ret));
      break;
    }
    now_ns_ = MonotonicNanos();
    // Completions can queue more completions (a send finishing starts the next one), so drain
    // until the ring is empty, publishing returned buffers between rounds.
    while (ring_->DrainCompletions([this](const io_uring_cqe& cqe) { Dispatch(cqe); }) > 0) {
      Reap();
      buffers_->Publish();
    }
  }
  // Tear down whatever is left (immediate shutdown).
  ring_->Submit();
  counters_.accepting.store(false, std::memory_order_relaxed);
}

void Worker::Dispatch(const io_uring_cqe& cqe) {
  netio::Tag tag = netio::Tag::Unpack(cqe.user_data);
  switch (tag.op) {
    case kOpAccept:
      OnAccept(tag.slot, cqe);
      return;
    case kOpDoorbell:
      // Drained now, not only at the top of the next loop: a completion later in this batch
      // (a login that arrived after RELOAD answered) must already see the new config.
      DrainMailbox();
      return;
    case kOpIgnore:
      return;
    case kOpMetricsRecv:
      metrics_->OnRecv(tag.slot, tag.generation, cqe);
      return;
    case kOpMetricsSend:
      metrics_->OnSend(tag.slot, tag.generation, cqe);
      return;
    case kOpClientRecv:
    case kOpClientSend: {
      ClientConn* c = clients_.Find(tag.slot, tag.generation);
      if (!c) {
        // A completion for a connection already freed. Its buffer must still go back.
        if (cqe.flags & IORING_CQE_F_BUFFER) buffers_->Unref(buffers_->TakeRingBuffer(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
        return;
      }
      if (tag.op == kOpClientRecv) {
        OnClientRecv(c, cqe);
      } else {
        OnClientSendDone(c, cqe);
      }
      return;
    }
    case kOpServerRecv:
    case kOpServerSend:
    case kOpServerConnect: {
      ServerConn* s = servers_.Find(tag.slot, tag.generation);
      if (!s) {
        if (cqe.flags & IORING_CQE_F_BUFFER) buffers_->Unref(buffers_->TakeRingBuffer(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
        return;
      }
      if (tag.op == kOpServerRecv) {
        OnServerRecv(s, cqe);
      } else if (tag.op == kOpServerSend) {
        OnServerSendDone(s, cqe);
      } else {
        OnServerConnect(s, cqe);
      }
      return;
    }
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Accepting.

void Worker::ArmAccept(uint32_t index) {
  Listener& l = listeners_[index];
  if (l.armed || !accepting_ || l.spec.fd < 0) return;
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_multishot_accept(sqe, l.spec.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpAccept, 0, index}.Pack());
  l.armed = true;
}

void Worker::OnAccept(uint32_t index, const io_uring_cqe& cqe) {
  if (index >= listeners_.size()) return;
  Listener& l = listeners_[index];
  if (!(cqe.flags & IORING_CQE_F_MORE)) l.armed = false;
  if (cqe.res < 0) {
    if (cqe.res == -ECANCELED) return;
    if (cqe.res == -EMFILE || cqe.res == -ENFILE || cqe.res == -ENOBUFS || cqe.res == -ENOMEM) {
      // Out of file descriptors: PgBouncer pauses accepting; we retry from maintenance.
      RB_WARN("accept() failed: %s", strerror(-cqe.res));
      l.retry_at_ns = now_ns_ + 1'000'000'000;
      return;
    }
    if (!l.armed) ArmAccept(index);
    return;
  }
  if (!l.armed && accepting_) ArmAccept(index);
  int fd = cqe.res;
  if (!accepting_) {
    close(fd);
    return;
  }
  if (l.spec.kind == ListenerKind::kMetrics) {
    metrics_->Adopt(fd);
    return;
  }
  if (l.spec.hand_off) {
    int target = PickWorkerForHandOff();
    if (target != id_) {
      Post(target, netio::MailMessage{kMailAdoptClient, static_cast<uint32_t>(fd), static_cast<uint64_t>(l.spec.kind), nullptr});
      return;
    }
  }
  AdoptClient(fd, l.spec.kind);
}

int Worker::PickWorkerForHandOff() {
  int best = id_;
  int best_load = shared_->endpoint(id_).clients.load(std::memory_order_relaxed);
  for (int w = 0; w < shared_->workers(); ++w) {
    WorkerEndpoint& e = shared_->endpoint(w);
    if (e.ring_fd.load(std::memory_order_relaxed) < 0) continue;
    int load = e.clients.load(std::memory_order_relaxed);
    if (load < best_load) {
      best = w;
      best_load = load;
    }
  }
  return best;
}

void Worker::AdoptClient(int fd, ListenerKind kind) {
  if (!accepting_) {
    close(fd);
    return;
  }
  ClientConn* c = clients_.Allocate();
  c->io.fd = fd;
  c->listener_kind = static_cast<uint8_t>(kind);
  c->state = ClientState::kLogin;
  c->connect_time_ns = now_ns_;
  c->request_time_ns = now_ns_;
  c->last_active_ns = now_ns_;
  c->id = (uint64_t{static_cast<uint32_t>(id_)} << 48) | next_id_++;
  c->timer.owner = kTimerClient;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) c->addr = PeerAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
  if (kind == ListenerKind::kUnix) c->addr.family = AF_UNIX;
  c->io.zero_copy_ok = !c->addr.IsLocal() || zero_copy_local_for_test_;
  c->login = new ClientLogin();
  shared_->endpoint(id_).clients.fetch_add(1, std::memory_order_relaxed);
  counters_.clients.fetch_add(1, std::memory_order_relaxed);
  ArmClientTimer(c);
  ArmRecv(c, kOpClientRecv);
}

// ---------------------------------------------------------------------------------------------
// Receiving and sending. One multishot recv per socket, buffers from the worker's ring.

template <typename Conn>
void Worker::ArmRecv(Conn* c, Op op) {
  if (c->io.recv_armed || c->io.fd < 0 || c->io.eof) return;
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_recv_multishot(sqe, c->io.fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, netio::Tag{op, c->generation, c->slot}.Pack());
  c->io.recv_armed = true;
  c->io.recv_paused = false;
  ++c->io.pending;
}

template <typename Conn>
void Worker::StartSend(Conn* c, Op op) {
  if (c->io.send_busy || c->io.out.empty() || c->io.fd < 0) return;
  const Slice& first = buffers_->slice(c->io.out.head);
  io_uring_sqe* sqe;
  // Zero-copy pays only for large sends to a remote peer (on loopback the kernel copies
  // anyway, and every zero-copy send costs a second completion). One at a time per socket,
  // so that its notification releases exactly the bytes it covered.
  bool zero_copy = features_.send_zc && c->io.zero_copy_ok && c->io.zc_inflight == 0 &&
                   c->io.out.bytes >= kZeroCopyMinBytes;
  if (zero_copy) {
    if (send_descs_used_ == send_descs_.size()) {
      ring_->Submit();
      send_descs_used_ = 0;
    }
    SendDesc& d = send_descs_[send_descs_used_++];
    int n = buffers_->Gather(c->io.out, d.iov, kMaxIov);
    d.msg = msghdr{};
    d.msg.msg_iov = d.iov;
    d.msg.msg_iovlen = static_cast<size_t>(n);
    sqe = ring_->Sqe();
    io_uring_prep_sendmsg_zc(sqe, c->io.fd, &d.msg, MSG_NOSIGNAL);
    ++c->io.zc_inflight;
    c->io.zc_current = true;
  } else if (first.next == kNoSlice) {
    sqe = ring_->Sqe();
    io_uring_prep_send(sqe, c->io.fd, buffers_->Data(first.buf) + first.off, first.len, MSG_NOSIGNAL);
  } else {
    // The kernel copies msghdr and iovecs when it consumes the SQE (IORING_FEAT_SUBMIT_STABLE),
    // so they only have to outlive the next submit: a small per-worker array is enough. When
    // it is used up, submit first (before taking an SQE, which must not go out unfilled).
    if (send_descs_used_ == send_descs_.size()) {
      ring_->Submit();
      send_descs_used_ = 0;
    }
    SendDesc& d = send_descs_[send_descs_used_++];
    int n = buffers_->Gather(c->io.out, d.iov, kMaxIov);
    d.msg = msghdr{};
    d.msg.msg_iov = d.iov;
    d.msg.msg_iovlen = static_cast<size_t>(n);
    sqe = ring_->Sqe();
    io_uring_prep_sendmsg(sqe, c->io.fd, &d.msg, MSG_NOSIGNAL);
  }
  io_uring_sqe_set_data64(sqe, netio::Tag{op, c->generation, c->slot}.Pack());
  c->io.send_busy = true;
  ++c->io.pending;
}

// Accounts a finished send. Returns false when the socket failed and the caller must close.
template <typename Conn>
bool Worker::OnSendComplete(Conn* c, Op op, const io_uring_cqe& cqe) {
  if (cqe.flags & IORING_CQE_F_NOTIF) {
    // The kernel is done with the buffers of a zero-copy send.
    --c->io.pending;
    --c->io.zc_inflight;
    ReleaseZeroCopyHold(c);
    return true;
  }
  c->io.send_busy = false;
  bool was_zero_copy = c->io.zc_current;
  c->io.zc_current = false;
  if (was_zero_copy && (cqe.flags & IORING_CQE_F_MORE)) {
    // A zero-copy send: a notification follows and the operation stays pending until then.
    // The bytes sent are held, not released, until it comes.
    if (cqe.res > 0) buffers_->MoveFront(c->io.out, zc_held_[c], static_cast<uint32_t>(cqe.res));
    if (cqe.res < 0) {
      c->io.eof = true;
      return false;
    }
    if (!c->io.out.empty()) StartSend(c, op);
    return true;
  }
  if (was_zero_copy) {
    // A zero-copy send that ended without a notification to wait for.
    --c->io.zc_inflight;
  }
  --c->io.pending;
  if (cqe.res < 0) {
    // The queue stays as it is (its buffers are released when the connection is freed); the
    // peer can't take more bytes, so stop trying.
    c->io.eof = true;
    return false;
  }
  buffers_->Consume(c->io.out, static_cast<uint32_t>(cqe.res));
  if (!c->io.out.empty()) StartSend(c, op);
  return true;
}

// Ends every operation in flight on a connection that is going away. shutdown() does it for a
// socket in O(1): the multishot recv completes with EOF and a blocked send fails. (io_uring's
// cancel by fd would scan every pending request of the ring, which makes closing N
// connections cost O(N^2).) A connect still in flight is cancelled by its user_data, which
// io_uring finds by hash.
template <typename Conn>
void Worker::CancelIo(Conn* c) {
  if (c->io.fd < 0 || c->io.cancel_issued || c->io.pending == 0) return;
  c->io.cancel_issued = true;
  shutdown(c->io.fd, SHUT_RDWR);
  if constexpr (std::is_same_v<Conn, ServerConn>) {
    if (c->state == ServerState::kClosing && c->connecting) {
      io_uring_sqe* sqe = ring_->Sqe();
      io_uring_prep_cancel64(sqe, netio::Tag{kOpServerConnect, c->generation, c->slot}.Pack(), 0);
      io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
    }
  }
}

template <typename Conn>
void Worker::PauseRecv(Conn* c, Op op) {
  if (c->io.recv_paused) return;
  c->io.recv_paused = true;
  if (!c->io.recv_armed) return;
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_cancel64(sqe, netio::Tag{op, c->generation, c->slot}.Pack(), 0);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
}

template <typename Conn>
void Worker::ResumeRecv(Conn* c, Op op) {
  // Clearing the flag is enough while the cancelled recv has not posted its last completion:
  // the completion handler re-arms once it sees the flag clear.
  c->io.recv_paused = false;
  if (!c->io.recv_armed && !c->io.recv_starved && !c->io.eof) ArmRecv(c, op);
}

// A reaped connection's socket is closed through the ring, in the same io_uring_enter as the
// rest of the batch rather than with a syscall of its own. Its fd number can't be reused
// before the close has run, so the number is safe to forget at once.
void Worker::CloseFd(int fd) {
  io_uring_sqe* sqe = ring_->Sqe();
  io_uring_prep_close(sqe, fd);
  io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
  if (features_.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void Worker::Reap() {
  // A connection queued here has no operation in flight and is closed: nothing can bring it
  // back, so freeing it now is safe.
  for (size_t i = 0; i < reap_clients_.size(); ++i) ReapClient(reap_clients_[i]);
  reap_clients_.clear();
  for (size_t i = 0; i < reap_servers_.size(); ++i) ReapServer(reap_servers_[i]);
  reap_servers_.clear();
}

void Worker::RearmStarved() {
  if (starved_clients_.empty() && starved_servers_.empty()) return;
  if (buffers_->RingAvailable() < kStarvedRearmThreshold) return;
  auto clients = std::move(starved_clients_);
  starved_clients_.clear();
  for (auto [slot, generation] : clients) {
    ClientConn* c = clients_.Find(slot, generation);
    if (!c || !c->io.recv_starved) continue;
    c->io.recv_starved = false;
    if (c->state != ClientState::kClosing && !c->io.recv_paused) ArmRecv(c, kOpClientRecv);
  }
  auto servers = std::move(starved_servers_);
  starved_servers_.clear();
  for (auto [slot, generation] : servers) {
    ServerConn* s = servers_.Find(slot, generation);
    if (!s || !s->io.recv_starved) continue;
    s->io.recv_starved = false;
    if (s->state != ServerState::kClosing && !s->io.recv_paused) ArmRecv(s, kOpServerRecv);
  }
}

// ---------------------------------------------------------------------------------------------
// Timers.

void Worker::OnTimer(netio::TimerNode* node) {
  switch (node->owner) {
    case kTimerClient:
      OnClientTimer(reinterpret_cast<ClientConn*>(reinterpret_cast<char*>(node) - offsetof(ClientConn, timer)));
      return;
    case kTimerServer:
      OnServerTimer(reinterpret_cast<ServerConn*>(reinterpret_cast<char*>(node) - offsetof(ServerConn, timer)));
      return;
    case kTimerMaintenance:
      Maintenance();
      timers_->Arm(&maintenance_timer_, now_ns_ + kMaintenanceNs);
      return;
    default:
      return;
  }
}

void Worker::Maintenance() {
  for (uint32_t i = 0; i < listeners_.size(); ++i) {
    if (!listeners_[i].armed && listeners_[i].retry_at_ns <= now_ns_) ArmAccept(i);
  }
  for (auto& [key, pool] : pools_) PoolMaintenance(pool.get());
  metrics_->Upkeep(now_ns_);
  if (stopping_ && (shutdown_mode_ != ShutdownMode::kWaitForClients || clients_.live() == 0)) {
    // Servers parked in the pool are not needed any more.
    for (auto& [key, pool] : pools_) {
      while (ServerConn* s = pool->idle.front()) CloseServer(s, "server shutting down");
    }
  }
  PublishCounters();
  if (stopping_ && shutdown_mode_ == ShutdownMode::kWaitForServers) {
    // SIGINT: clients with no server can go now; linked ones when their transaction ends.
    std::vector<ClientConn*> idle;
    clients_.ForEach([&](ClientConn* c) {
      if (c->state != ClientState::kActive && c->state != ClientState::kClosing) idle.push_back(c);
    });
    // What is still queued for them (an admin client's SHUTDOWN reply, the end of an answer
    // that released its server just before the signal) is sent first.
    for (ClientConn* c : idle) CloseClient(c, "server shutting down", /*flush=*/true);
  }
}

void Worker::PublishCounters() {
  counters_.servers.store(static_cast<int>(servers_.live()), std::memory_order_relaxed);
  PoolStats total;
  for (auto& [key, pool] : pools_) {
    const PoolStats& p = pool->stats;
    total.xacts += p.xacts;
    total.queries += p.queries;
    total.xact_time_us += p.xact_time_us;
    total.query_time_us += p.query_time_us;
    total.wait_time_us += p.wait_time_us;
    total.server_assignments += p.server_assignments;
    total.client_parses += p.client_parses;
    total.server_parses += p.server_parses;
    total.binds += p.binds;
    total.bytes_received += p.bytes_received;
    total.bytes_sent += p.bytes_sent;
  }
  counters_.xacts.store(total.xacts, std::memory_order_relaxed);
  counters_.queries.store(total.queries, std::memory_order_relaxed);
  counters_.xact_us.store(total.xact_time_us, std::memory_order_relaxed);
  counters_.query_us.store(total.query_time_us, std::memory_order_relaxed);
  counters_.wait_us.store(total.wait_time_us, std::memory_order_relaxed);
  counters_.server_assignments.store(total.server_assignments, std::memory_order_relaxed);
  counters_.client_parses.store(total.client_parses, std::memory_order_relaxed);
  counters_.server_parses.store(total.server_parses, std::memory_order_relaxed);
  counters_.binds.store(total.binds, std::memory_order_relaxed);
  counters_.pool_bytes_in.store(total.bytes_received, std::memory_order_relaxed);
  counters_.pool_bytes_out.store(total.bytes_sent, std::memory_order_relaxed);
  rusage ru{};
  if (getrusage(RUSAGE_THREAD, &ru) == 0) {
    uint64_t us = static_cast<uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000 +
                  static_cast<uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    counters_.cpu_us.store(us, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------------------------------------
// Mailboxes.

void Worker::DrainMailbox() {
  shared_->endpoint(id_).mailbox->Drain([this](uint32_t from, const netio::MailMessage& m) { OnMail(from, m); });
}

void Worker::Post(int worker, const netio::MailMessage& m) {
  if (!overflow_.empty() || !shared_->endpoint(worker).mailbox->Push(static_cast<uint32_t>(id_), m)) {
    // The queue is full: keep order by queueing locally, and retry every loop.
    overflow_.emplace_back(worker, m);
    return;
  }
  if (shared_->endpoint(worker).mailbox->ClaimDoorbell()) {
    io_uring_sqe* sqe = ring_->Sqe();
    int fd = shared_->endpoint(worker).ring_fd.load(std::memory_order_acquire);
    io_uring_prep_msg_ring(sqe, fd, 0, netio::Tag{kOpDoorbell, 0, 0}.Pack(), 0);
    if (features_.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
  }
}

void Worker::FlushOverflow() {
  while (!overflow_.empty()) {
    auto [worker, m] = overflow_.front();
    if (!shared_->endpoint(worker).mailbox->Push(static_cast<uint32_t>(id_), m)) return;
    overflow_.pop_front();
    if (shared_->endpoint(worker).mailbox->ClaimDoorbell()) {
      io_uring_sqe* sqe = ring_->Sqe();
      io_uring_prep_msg_ring(sqe, shared_->endpoint(worker).ring_fd.load(std::memory_order_acquire), 0,
                             netio::Tag{kOpDoorbell, 0, 0}.Pack(), 0);
      if (features_.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
      io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
    }
  }
}

void Worker::OnMail(uint32_t from, const netio::MailMessage& m) {
  (void)from;
  switch (m.kind) {
    case kMailConfig: {
      auto* p = static_cast<std::shared_ptr<const Config>*>(m.ptr);
      ApplyConfig(std::move(*p));
      delete p;
      return;
    }
    case kMailAdoptClient:
      AdoptClient(static_cast<int>(m.arg32), static_cast<ListenerKind>(m.arg64));
      return;
    case kMailCancel:
      HandleCancelKey(m.arg64);
      return;
    case kMailEvictIdle:
      (void)EvictIdleServer(static_cast<const PoolShared*>(m.ptr), m.arg32 != 0);
      return;
    case kMailNeedServer:
      OnNeedServer(static_cast<PoolShared*>(m.ptr), static_cast<int>(m.arg32), static_cast<int64_t>(m.arg64));
      return;
    case kMailServerHandover:
      OnServerHandover(static_cast<ServerHandoff*>(m.ptr));
      return;
    case kMailShutdown:
      BeginShutdown(static_cast<ShutdownMode>(m.arg32));
      return;
    case kMailAdmin:
    case kMailAdminReply:
      admin_->OnMail(m);
      return;
    case kMailWake:
      for (auto& [key, pool] : pools_) ServeWaiters(pool.get());
      return;
    default:
      return;
  }
}

void Worker::ApplyConfig(std::shared_ptr<const Config> config) {
  config_ = std::move(config);
  ++config_version_;
  autodbs_.clear();
  for (auto& [key, pool] : pools_) RefreshPoolSettings(pool.get());
  // A timeout changed by a reload applies to the clients already here, as PgBouncer's janitor
  // checks every client against the current settings each second: a client's timer was armed
  // for the old value (or not at all, for 0), so arm it again. Reloads are rare.
  clients_.ForEach([&](ClientConn* c) {
    if (c->state != ClientState::kClosing && c->state != ClientState::kAdmin) ArmClientTimer(c);
  });
}

void Worker::BeginShutdown(ShutdownMode mode) {
  stopping_ = true;
  shutdown_mode_ = mode;
  accepting_ = false;
  counters_.accepting.store(false, std::memory_order_relaxed);
  for (auto& l : listeners_) {
    if (l.spec.fd >= 0) {
      // Closing the listener ends its multishot accept; with SO_REUSEPORT the kernel stops
      // routing new connections to this socket at once, so a sibling process takes them.
      io_uring_sqe* sqe = ring_->Sqe();
      io_uring_prep_cancel_fd(sqe, l.spec.fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, netio::Tag{kOpIgnore, 0, 0}.Pack());
      ring_->Submit();
      close(l.spec.fd);
      l.spec.fd = -1;
    }
  }
  if (mode == ShutdownMode::kImmediate) {
    std::vector<ClientConn*> cs;
    clients_.ForEach([&](ClientConn* c) { cs.push_back(c); });
    for (ClientConn* c : cs)
      if (c->state != ClientState::kClosing) CloseClient(c, "server shutting down");
    std::vector<ServerConn*> ss;
    servers_.ForEach([&](ServerConn* s) { ss.push_back(s); });
    for (ServerConn* s : ss)
      if (s->state != ServerState::kClosing) CloseServer(s, "server shutting down");
  } else {
    Maintenance();
  }
}

uint64_t Worker::Random64() {
  if (random_pool_.empty()) {
    random_pool_.resize(512);
    size_t want = random_pool_.size() * sizeof(uint64_t);
    uint8_t* p = reinterpret_cast<uint8_t*>(random_pool_.data());
    size_t got = 0;
    while (got < want) {
      ssize_t n = getrandom(p + got, want - got, 0);
      if (n <= 0) {
        if (errno == EINTR) continue;
        RB_ERROR("getrandom failed: %s", strerror(errno));
        abort();  // environment failure after start-up: fatal and loud (DESIGN.md decision 12)
      }
      got += static_cast<size_t>(n);
    }
  }
  uint64_t v = random_pool_.back();
  random_pool_.pop_back();
  return v;
}

// Explicit instantiations for the connection kinds.
template void Worker::ArmRecv<ClientConn>(ClientConn*, Op);
template void Worker::ArmRecv<ServerConn>(ServerConn*, Op);
template void Worker::StartSend<ClientConn>(ClientConn*, Op);
template void Worker::StartSend<ServerConn>(ServerConn*, Op);
template bool Worker::OnSendComplete<ClientConn>(ClientConn*, Op, const io_uring_cqe&);
template bool Worker::OnSendComplete<ServerConn>(ServerConn*, Op, const io_uring_cqe&);
template void Worker::CancelIo<ClientConn>(ClientConn*);
template void Worker::CancelIo<ServerConn>(ServerConn*);
template void Worker::PauseRecv<ClientConn>(ClientConn*, Op);
template void Worker::PauseRecv<ServerConn>(ServerConn*, Op);
template void Worker::ResumeRecv<ClientConn>(ClientConn*, Op);
template void Worker::ResumeRecv<ServerConn>(ServerConn*, Op);

}  // namespace rb::engine
