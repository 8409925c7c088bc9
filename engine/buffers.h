// Buffers and the byte queues built from them.
//
// Received bytes live in the worker's provided-buffer ring and are forwarded as slices that
// point into those buffers: no user-space copy. A buffer carries a reference count (one per
// slice pointing into it) and goes back to the kernel when the last slice has been sent.
// Bytes the pooler makes itself (errors, login replies, SET commands, admin output) go into
// scratch buffers with the same refcounting, so a connection's send queue can mix both in
// order.
//
// Slices live in one per-worker arena and are chained by index. Nothing here allocates per
// message once the arenas have grown to the worker's working set.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "netio/buffer_ring.h"

namespace rb::engine {

inline constexpr uint32_t kNoSlice = 0xffffffffu;

struct Slice {
  uint32_t buf;
  uint32_t off;
  uint32_t len;
  uint32_t next;
};

// A FIFO of slices: what is still to be sent on one socket (or held for a server).
struct ByteQueue {
  uint32_t head = kNoSlice;
  uint32_t tail = kNoSlice;
  uint32_t bytes = 0;
  bool empty() const { return head == kNoSlice; }
};

class BufferPool {
 public:
  static constexpr uint32_t kScratchSize = 4096;

  explicit BufferPool(netio::BufferRing* ring) : ring_(ring), ring_count_(ring->count()), refs_(ring->count(), 0) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  uint8_t* Data(uint32_t buf) {
    if (buf < ring_count_) return ring_->Data(static_cast<uint16_t>(buf));
    uint32_t s = buf - ring_count_;
    return scratch_chunks_[s / kScratchPerChunk].get() + size_t{s % kScratchPerChunk} * kScratchSize;
  }
  uint32_t Capacity(uint32_t buf) const { return buf < ring_count_ ? ring_->buffer_size() : kScratchSize; }

  // A ring buffer a recv completion handed us; the caller holds the one reference.
  uint32_t TakeRingBuffer(uint16_t bid) {
    ring_->OnConsumed();
    refs_[bid] = 1;
    return bid;
  }

  void Ref(uint32_t buf) { ++refs_[buf]; }
  void Unref(uint32_t buf) {
    if (--refs_[buf] != 0) return;
    if (buf < ring_count_) {
      ring_->Recycle(static_cast<uint16_t>(buf));
    } else {
      scratch_free_.push_back(buf);
    }
  }

  // Makes recycled ring buffers visible to the kernel. Once per loop iteration.
  void Publish() { ring_->Publish(); }
  uint32_t RingAvailable() const { return ring_->available(); }
  uint32_t ring_buffer_size() const { return ring_->buffer_size(); }

  // Appends `len` bytes at buf+off to q, taking a reference on buf.
  void Append(ByteQueue& q, uint32_t buf, uint32_t off, uint32_t len) {
    if (len == 0) return;
    Ref(buf);
    // Adjacent bytes of the same buffer extend the tail slice (a chunk cut in two and
    // re-joined, or consecutive generated messages).
    if (q.tail != kNoSlice) {
      Slice& t = slices_[q.tail];
      if (t.buf == buf && t.off + t.len == off) {
        t.len += len;
        q.bytes += len;
        Unref(buf);
        return;
      }
    }
    uint32_t s = NewSlice(buf, off, len);
    Link(q, s);
  }

  // Copies bytes the pooler generated to the end of q.
  void AppendCopy(ByteQueue& q, const void* data, size_t len) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (len > 0) {
      // Fill the tail scratch buffer if we are its only user and it has room.
      if (q.tail != kNoSlice) {
        Slice& t = slices_[q.tail];
        if (t.buf >= ring_count_ && refs_[t.buf] == 1 && t.off + t.len < kScratchSize) {
          uint32_t room = kScratchSize - (t.off + t.len);
          uint32_t n = len < room ? static_cast<uint32_t>(len) : room;
          std::memcpy(Data(t.buf) + t.off + t.len, p, n);
          t.len += n;
          q.bytes += n;
          p += n;
          len -= n;
          continue;
        }
      }
      uint32_t buf = AllocScratch();
      uint32_t n = len < kScratchSize ? static_cast<uint32_t>(len) : kScratchSize;
      std::memcpy(Data(buf), p, n);
      Link(q, NewSlice(buf, 0, n));  // the scratch buffer's initial reference moves to the slice
      p += n;
      len -= n;
    }
  }

  // Moves the first n bytes of `from` to the end of `to` (a zero-copy send: sent, but the
  // kernel still reads the buffers until its notification).
  void MoveFront(ByteQueue& from, ByteQueue& to, uint32_t n) {
    while (n > 0) {
      Slice& s = slices_[from.head];
      if (n < s.len) {
        Append(to, s.buf, s.off, n);
        s.off += n;
        s.len -= n;
        from.bytes -= n;
        return;
      }
      n -= s.len;
      uint32_t idx = from.head;
      from.head = s.next;
      if (from.head == kNoSlice) from.tail = kNoSlice;
      from.bytes -= s.len;
      s.next = kNoSlice;
      Link(to, idx);
    }
  }

  // Drops the first n bytes of q (they were sent).
  void Consume(ByteQueue& q, uint32_t n) {
    q.bytes -= n;
    while (n > 0) {
      Slice& s = slices_[q.head];
      if (n < s.len) {
        s.off += n;
        s.len -= n;
        return;
      }
      n -= s.len;
      PopHead(q);
    }
  }

  void Clear(ByteQueue& q) {
    while (!q.empty()) PopHead(q);
    q.bytes = 0;
  }

  // Moves everything in src to the end of dst.
  void Splice(ByteQueue& dst, ByteQueue& src) {
    if (src.empty()) return;
    if (dst.empty()) {
      dst = src;
    } else {
      slices_[dst.tail].next = src.head;
      dst.tail = src.tail;
      dst.bytes += src.bytes;
    }
    src = ByteQueue{};
  }

  // Fills up to max iovecs from the front of q; returns how many.
  int Gather(const ByteQueue& q, iovec* iov, int max) {
    int n = 0;
    for (uint32_t s = q.head; s != kNoSlice && n < max; s = slices_[s].next) {
      iov[n].iov_base = Data(slices_[s].buf) + slices_[s].off;
      iov[n].iov_len = slices_[s].len;
      ++n;
    }
    return n;
  }

  // Copies q's bytes into out (login and admin paths need contiguous messages).
  void CopyOut(const ByteQueue& q, std::string* out) {
    for (uint32_t s = q.head; s != kNoSlice; s = slices_[s].next)
      out->append(reinterpret_cast<const char*>(Data(slices_[s].buf) + slices_[s].off), slices_[s].len);
  }

  const Slice& slice(uint32_t s) const { return slices_[s]; }
  uint32_t scratch_in_use() const { return scratch_total_ - static_cast<uint32_t>(scratch_free_.size()); }

 private:
  static constexpr uint32_t kScratchPerChunk = 64;

  uint32_t AllocScratch() {
    if (scratch_free_.empty()) {
      scratch_chunks_.emplace_back(new uint8_t[size_t{kScratchSize} * kScratchPerChunk]);
      for (uint32_t i = kScratchPerChunk; i-- > 0;) scratch_free_.push_back(ring_count_ + scratch_total_ + i);
      scratch_total_ += kScratchPerChunk;
      refs_.resize(ring_count_ + scratch_total_, 0);
    }
    uint32_t b = scratch_free_.back();
    scratch_free_.pop_back();
    refs_[b] = 1;
    return b;
  }

  uint32_t NewSlice(uint32_t buf, uint32_t off, uint32_t len) {
    uint32_t s;
    if (slice_free_ != kNoSlice) {
      s = slice_free_;
      slice_free_ = slices_[s].next;
    } else {
      s = static_cast<uint32_t>(slices_.size());
      slices_.push_back({});
    }
    slices_[s] = Slice{buf, off, len, kNoSlice};
    return s;
  }

  void Link(ByteQueue& q, uint32_t s) {
    if (q.tail == kNoSlice) {
      q.head = q.tail = s;
    } else {
      slices_[q.tail].next = s;
      q.tail = s;
    }
    q.bytes += slices_[s].len;
  }

  void PopHead(ByteQueue& q) {
    uint32_t s = q.head;
    q.head = slices_[s].next;
    if (q.head == kNoSlice) q.tail = kNoSlice;
    Unref(slices_[s].buf);
    slices_[s].next = slice_free_;
    slice_free_ = s;
  }

  netio::BufferRing* ring_;
  uint32_t ring_count_;
  std::vector<uint16_t> refs_;
  std::vector<std::unique_ptr<uint8_t[]>> scratch_chunks_;
  std::vector<uint32_t> scratch_free_;
  uint32_t scratch_total_ = 0;
  std::vector<Slice> slices_;
  uint32_t slice_free_ = kNoSlice;
};

}  // namespace rb::engine
