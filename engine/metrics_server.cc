// The metrics endpoint's HTTP side, on the worker that owns the metrics listener.
#include "engine/metrics_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "engine/admin_console.h"
#include "engine/admin_request.h"
#include "engine/http_request.h"
#include "engine/worker.h"
#include "netio/ring.h"

namespace rb::engine {

MetricsServer::MetricsServer(Worker* worker) : worker_(worker) {}

MetricsServer::~MetricsServer() {
  // The worker's ring is gone by now, and with it every operation on these sockets.
  for (auto& c : conns_)
    if (c->in_use && c->fd >= 0) close(c->fd);
}

MetricsServer::Conn* MetricsServer::Find(uint32_t slot, uint32_t generation) {
  if (slot >= conns_.size()) return nullptr;
  Conn* c = conns_[slot].get();
  return c->in_use && c->generation == generation ? c : nullptr;
}

void MetricsServer::Adopt(int fd) {
  if (live_ >= kMaxConnections) {
    // Best effort, without waiting: a fresh socket's send buffer takes this at once.
    static constexpr char kBusy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n"
        "Connection: close\r\n\r\ntoo many connections\r\n\r\n";
    (void)!send(fd, kBusy, sizeof(kBusy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
    return;
  }
  uint32_t slot = 0;
  while (slot < conns_.size() && conns_[slot]->in_use) ++slot;
  if (slot == conns_.size()) conns_.push_back(std::make_unique<Conn>());
  Conn* c = conns_[slot].get();
  uint32_t generation = (c->generation + 1) & netio::Tag::kGenerationMask;
  *c = Conn{};
  c->generation = generation;
  c->fd = fd;
  c->in_use = true;
  c->deadline_ns = worker_->now_ns_ + kRequestTimeoutNs;
  ++live_;
  ArmRecv(slot, c);
}

void MetricsServer::ArmRecv(uint32_t slot, Conn* c) {
  io_uring_sqe* sqe = worker_->ring_->Sqe();
  io_uring_prep_recv(sqe, c->fd, c->buf, sizeof(c->buf), 0);
  io_uring_sqe_set_data64(sqe, netio::Tag{Worker::kOpMetricsRecv, c->generation, slot}.Pack());
  ++c->pending;
}

void MetricsServer::ArmSend(uint32_t slot, Conn* c) {
  io_uring_sqe* sqe = worker_->ring_->Sqe();
  io_uring_prep_send(sqe, c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, netio::Tag{Worker::kOpMetricsSend, c->generation, slot}.Pack());
  ++c->pending;
}

void MetricsServer::OnRecv(uint32_t slot, uint32_t generation, const io_uring_cqe& cqe) {
  Conn* c = Find(slot, generation);
  if (!c) return;
  --c->pending;
  if (c->closing) return FreeIfDone(c);
  if (cqe.res <= 0) return Close(slot, c);
  if (c->draining) {
    // The answer is out and our side is shut: read and drop until the client closes, so that
    // its unread bytes don't turn our close into a reset that could eat the answer.
    return ArmRecv(slot, c);
  }
  c->in.append(c->buf, static_cast<size_t>(cqe.res));
  Process(slot, c);
}

void MetricsServer::Process(uint32_t slot, Conn* c) {
  HttpRequest req;
  switch (ParseHttpRequest(c->in, kMaxRequestBytes, &req)) {
    case HttpParseStatus::kNeedMore:
      return ArmRecv(slot, c);
    case HttpParseStatus::kBad:
    case HttpParseStatus::kTooLarge:
      c->keep_alive = false;
      c->head_only = false;
      c->in.clear();
      return Respond(slot, c, 400, "Bad Request", "text/plain; charset=utf-8", "bad request\n");
    case HttpParseStatus::kOk:
      break;
  }
  c->in.erase(0, req.head_bytes);
  c->keep_alive = req.keep_alive;
  c->http10 = req.minor_version == 0;
  c->head_only = req.method == "HEAD";
  if (req.method != "GET" && req.method != "HEAD") {
    return Respond(slot, c, 405, "Method Not Allowed", "text/plain; charset=utf-8", "only GET is served here\n",
                   "Allow: GET, HEAD\r\n");
  }
  if (req.path != "/metrics") {
    return Respond(slot, c, 404, "Not Found", "text/plain; charset=utf-8", "not found: try /metrics\n");
  }
  c->gathering = true;
  auto* r = new AdminRequest();
  r->op = AdminOp::kShow;
  r->show = ShowKind::kMetrics;
  r->reply_to = AdminReplyTo::kMetrics;
  r->client_slot = slot;
  r->client_generation = c->generation;
  // With one worker the parts are all in at once, and OnGathered runs before this returns.
  worker_->admin_->Gather(r);
}

void MetricsServer::OnGathered(AdminRequest* r) {
  std::unique_ptr<AdminRequest> owned(r);
  Conn* c = Find(r->client_slot, r->client_generation);
  if (!c || !c->gathering || c->closing) return;  // the scraper left meanwhile
  c->gathering = false;
  Respond(r->client_slot, c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
          RenderPrometheusMetrics(*r, *worker_->config_, worker_->shared_));
}

void MetricsServer::Respond(uint32_t slot, Conn* c, int status, const char* reason, const std::string& content_type,
                            const std::string& body, const char* extra_headers) {
  c->out = absl::StrFormat("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n", status, reason,
                           content_type, body.size(), extra_headers,
                           !c->keep_alive ? "Connection: close\r\n" : c->http10 ? "Connection: keep-alive\r\n" : "");
  if (!c->head_only) c->out += body;
  c->out_off = 0;
  ArmSend(slot, c);
}

void MetricsServer::OnSend(uint32_t slot, uint32_t generation, const io_uring_cqe& cqe) {
  Conn* c = Find(slot, generation);
  if (!c) return;
  --c->pending;
  if (c->closing) return FreeIfDone(c);
  if (cqe.res <= 0) return Close(slot, c);
  c->out_off += static_cast<size_t>(cqe.res);
  if (c->out_off < c->out.size()) return ArmSend(slot, c);
  c->out.clear();
  c->out_off = 0;
  c->deadline_ns = worker_->now_ns_ + kRequestTimeoutNs;
  if (!c->keep_alive) {
    shutdown(c->fd, SHUT_WR);
    c->draining = true;
    c->in.clear();
    return ArmRecv(slot, c);
  }
  if (!c->in.empty()) return Process(slot, c);  // a pipelined request
  ArmRecv(slot, c);
}

void MetricsServer::Close(uint32_t slot, Conn* c) {
  (void)slot;
  c->closing = true;
  c->gathering = false;
  if (c->pending > 0 && !c->shut_down) {
    // Ends the recv or send in flight; the connection is freed when its completion comes.
    shutdown(c->fd, SHUT_RDWR);
    c->shut_down = true;
  }
  FreeIfDone(c);
}

void MetricsServer::FreeIfDone(Conn* c) {
  if (!c->closing || c->pending > 0) return;
  close(c->fd);
  c->fd = -1;
  c->in_use = false;
  std::string().swap(c->in);
  std::string().swap(c->out);
  --live_;
}

void MetricsServer::Upkeep(int64_t now_ns) {
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
    Conn* c = conns_[slot].get();
    if (c->in_use && !c->closing && !c->gathering && now_ns > c->deadline_ns) Close(slot, c);
  }
}

}  // namespace rb::engine
