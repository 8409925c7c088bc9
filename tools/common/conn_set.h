// Stream connections on one thread's io_uring, for the tools (rb-loadgen, rb-fake-backend).
//
// Each connection receives with one multishot recv on the thread's provided-buffer ring, so an
// idle connection holds no buffer, and sends what its protocol queued in `out` with one send
// per batch: whatever the protocol appends while handling a received chunk leaves in one send.
// While a send is in flight, new output collects in `out` and leaves when the send completes.
//
// Lifetime: Close() cancels what is in flight; the descriptor is closed and the slot reused only
// once every operation has completed, so a completion never finds a recycled connection. The
// generation in each completion's tag (netio::Tag) catches any that still arrives late.
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "netio/buffer_ring.h"
#include "netio/features.h"
#include "netio/ring.h"

namespace rb::tools {

// Completion ops (netio::Tag::op). ConnSet owns these; a tool numbers its own from kOpFirstTool.
enum ConnOp : uint8_t { kOpRecv = 1, kOpSend, kOpConnect, kOpCancel, kOpFirstTool = 16 };

// The I/O state of one connection. A tool's connection type derives from it.
struct Conn {
  int fd = -1;
  uint32_t slot = 0;
  uint32_t generation = 0;
  bool recv_armed = false;   // a multishot recv is in flight
  bool send_busy = false;    // `sending` is in flight
  bool connecting = false;   // a connect is in flight
  bool closing = false;      // Close() was called; freed once nothing is in flight
  bool close_after_send = false;
  bool paused = false;       // recv cancelled: too much output is waiting for the peer
  std::string out;           // queued by the protocol; Flush() sends it
  std::string sending;       // in flight
  uint32_t sent = 0;         // bytes of `sending` the kernel took so far

  size_t Unsent() const { return out.size() + sending.size() - sent; }
};

// A thread's ring and its provided buffers.
struct ThreadRing {
  std::unique_ptr<netio::Ring> ring;
  std::unique_ptr<netio::BufferRing> buffers;
};
inline constexpr uint16_t kBufferGroup = 0;
// Creates both on the calling thread (the ring is SINGLE_ISSUER when the kernel allows it).
absl::StatusOr<ThreadRing> CreateThreadRing(const netio::Features& features, uint32_t buffer_count,
                                            uint32_t buffer_size);

// Raises the soft open-files limit to the hard one (every connection is a descriptor) and
// returns the new soft limit.
uint64_t RaiseOpenFilesLimit();

// Handler contract (static dispatch; C is the tool's connection type):
//   void OnData(C* c, const uint8_t* data, uint32_t len);  // received bytes, in order
//   void OnPeerClosed(C* c, int res);   // recv saw EOF (0) or an error, or a send failed (-errno);
//                                       // the handler decides (usually Close)
//   void OnConnected(C* c, int res);    // only for Connect(); res is 0 or -errno
//   void OnFreed(C* c);                 // the descriptor is closed; the slot is about to be reused
template <typename C>
class ConnSet {
 public:
  // Backpressure: stop reading a peer that has this much output waiting, resume below the low
  // mark. A client that pipelines without reading can't make us buffer without bound.
  static constexpr size_t kHighWatermark = 1 << 20;
  static constexpr size_t kLowWatermark = 256 << 10;

  ConnSet(netio::Ring* ring, netio::BufferRing* buffers) : ring_(ring), buffers_(buffers) {}
  ConnSet(const ConnSet&) = delete;
  ConnSet& operator=(const ConnSet&) = delete;

  // Takes ownership of `fd`. Nothing is armed yet: call ArmRecv or Connect.
  C* Open(int fd) {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(conns_.size());
      conns_.push_back(std::make_unique<C>());
      conns_.back()->slot = slot;
    }
    C* c = conns_[slot].get();
    c->fd = fd;
    ++live_;
    return c;
  }

  C* Find(netio::Tag tag) {
    if (tag.slot >= conns_.size()) return nullptr;
    C* c = conns_[tag.slot].get();
    const uint32_t mask = netio::Tag::kGenerationMask;
    return c->fd >= 0 && (c->generation & mask) == (tag.generation & mask) ? c : nullptr;
  }
  C* Find(uint32_t slot, uint32_t generation) { return Find(netio::Tag{0, generation, slot}); }

  void Connect(C* c, const sockaddr* addr, socklen_t len) {
    io_uring_sqe* sqe = ring_->Sqe();
    io_uring_prep_connect(sqe, c->fd, addr, len);
    io_uring_sqe_set_data64(sqe, TagOf(c, kOpConnect));
    c->connecting = true;
  }

  void ArmRecv(C* c) {
    if (c->recv_armed || c->closing || c->paused) return;
    io_uring_sqe* sqe = ring_->Sqe();
    io_uring_prep_recv_multishot(sqe, c->fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffers_->group();
    io_uring_sqe_set_data64(sqe, TagOf(c, kOpRecv));
    c->recv_armed = true;
  }

  // Sends what `out` holds, unless a send is already in flight (its completion sends the rest).
  void Flush(C* c) {
    if (c->send_busy || c->out.empty() || c->closing) return;
    c->sending.clear();
    std::swap(c->out, c->sending);  // `out` keeps the old buffer's capacity
    c->sent = 0;
    SubmitSend(c);
    if (c->Unsent() > kHighWatermark && c->recv_armed && !c->paused) {
      c->paused = true;
      io_uring_sqe* sqe = ring_->Sqe();
      io_uring_prep_cancel64(sqe, TagOf(c, kOpRecv), 0);
      io_uring_sqe_set_data64(sqe, TagOf(c, kOpCancel));
    }
  }

  // Sends what is queued, then closes (a Terminate, a FATAL error).
  void CloseAfterSend(C* c) {
    c->close_after_send = true;
    Flush(c);
    if (!c->send_busy) Close(c);
  }

  // Ends whatever is in flight; the descriptor is closed once all of it has completed.
  //
  // shutdown() ends a pending recv (EOF) and a blocked send (EPIPE), and sends our FIN. It is
  // used rather than io_uring's cancel by fd, which scans every pending request of the ring:
  // closing n connections that way costs O(n^2), seconds for tens of thousands. A connect in
  // flight is cancelled by its user_data, which the kernel finds in a hash.
  void Close(C* c) {
    if (c->closing || c->fd < 0) return;
    c->closing = true;
    if (!c->recv_armed && !c->send_busy && !c->connecting) {
      closed_idle_.emplace_back(c->slot, c->generation);
      return;
    }
    shutdown(c->fd, SHUT_RDWR);
    if (c->connecting) {
      io_uring_sqe* sqe = ring_->Sqe();
      io_uring_prep_cancel64(sqe, TagOf(c, kOpConnect), 0);
      io_uring_sqe_set_data64(sqe, TagOf(c, kOpCancel));
    }
  }

  // Handles a completion of one of ConnSet's ops. Returns false for any other op.
  template <typename H>
  bool Dispatch(const io_uring_cqe& cqe, H& h) {
    netio::Tag tag = netio::Tag::Unpack(cqe.user_data);
    if (tag.op < kOpRecv || tag.op > kOpCancel) return false;
    if (tag.op == kOpCancel) return true;
    C* c = Find(tag);
    if (tag.op == kOpRecv) {
      OnRecv(c, cqe, h);
    } else if (c != nullptr && tag.op == kOpSend) {
      OnSend(c, cqe.res, h);
    } else if (c != nullptr && tag.op == kOpConnect) {
      c->connecting = false;
      if (!c->closing) h.OnConnected(c, cqe.res < 0 ? cqe.res : 0);
    }
    if (c != nullptr) MaybeFree(c, h);
    return true;
  }

  // Once per drain of the completion queue: hands the used buffers back to the kernel, frees
  // the connections closed with nothing in flight, and re-arms receives that ran out of buffers.
  template <typename H>
  void AfterDrain(H& h) {
    buffers_->Publish();
    // Close() on a connection with nothing in flight frees it here, outside any handler, so a
    // handler never sees its connection disappear under it.
    for (size_t i = 0; i < closed_idle_.size(); ++i) {
      auto [slot, generation] = closed_idle_[i];
      if (C* c = Find(slot, generation)) MaybeFree(c, h);
    }
    closed_idle_.clear();
    for (auto [slot, generation] : starved_) {
      if (C* c = Find(slot, generation)) ArmRecv(c);
    }
    starved_.clear();
  }

  size_t live() const { return live_; }

  template <typename Fn>
  void ForEach(Fn&& fn) {
    for (auto& c : conns_) {
      if (c->fd >= 0) fn(c.get());
    }
  }

  // A completion tag for `c`; a tool uses it for its own ops on the connection.
  static uint64_t TagOf(const C* c, uint8_t op) { return netio::Tag{op, c->generation, c->slot}.Pack(); }

 private:
  void SubmitSend(C* c) {
    io_uring_sqe* sqe = ring_->Sqe();
    io_uring_prep_send(sqe, c->fd, c->sending.data() + c->sent, c->sending.size() - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TagOf(c, kOpSend));
    c->send_busy = true;
  }

  template <typename H>
  void OnRecv(C* c, const io_uring_cqe& cqe, H& h) {
    const bool has_buffer = cqe.flags & IORING_CQE_F_BUFFER;
    const uint16_t bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (has_buffer) buffers_->OnConsumed();
    if (c != nullptr) {
      if (cqe.res > 0 && !c->closing) {
        h.OnData(c, buffers_->Data(bid), static_cast<uint32_t>(cqe.res));
      } else if (cqe.res == -ENOBUFS) {
        // The buffer ring ran dry: the multishot recv ended. Re-armed once buffers are back.
        starved_.emplace_back(c->slot, c->generation);
      } else if (cqe.res <= 0 && cqe.res != -ECANCELED && !c->closing) {
        h.OnPeerClosed(c, cqe.res);
      }
      if (!(cqe.flags & IORING_CQE_F_MORE)) {
        c->recv_armed = false;
        // A backpressure cancel that lands after the output drained: read again.
        if (cqe.res == -ECANCELED) ArmRecv(c);
      }
    }
    if (has_buffer) buffers_->Recycle(bid);
  }

  template <typename H>
  void OnSend(C* c, int res, H& h) {
    c->send_busy = false;
    if (res < 0) {
      if (!c->closing) h.OnPeerClosed(c, res);
      return;
    }
    c->sent += static_cast<uint32_t>(res);
    if (c->sent < c->sending.size()) {
      if (!c->closing) SubmitSend(c);  // a short send: the rest goes now
      return;
    }
    if (c->paused && c->Unsent() < kLowWatermark) {
      c->paused = false;
      ArmRecv(c);
    }
    Flush(c);
    if (c->close_after_send && !c->send_busy) Close(c);
  }

  template <typename H>
  void MaybeFree(C* c, H& h) {
    if (!c->closing || c->fd < 0 || c->recv_armed || c->send_busy || c->connecting) return;
    close(c->fd);
    c->fd = -1;
    h.OnFreed(c);
    const uint32_t slot = c->slot, generation = c->generation + 1;
    *c = C();
    c->slot = slot;
    c->generation = generation;
    free_.push_back(slot);
    --live_;
  }

  netio::Ring* ring_;
  netio::BufferRing* buffers_;
  std::vector<std::unique_ptr<C>> conns_;
  std::vector<uint32_t> free_;
  std::vector<std::pair<uint32_t, uint32_t>> starved_;
  std::vector<std::pair<uint32_t, uint32_t>> closed_idle_;
  size_t live_ = 0;
};

}  // namespace rb::tools
