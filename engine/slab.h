// Fixed-address object slabs for connections. Objects live in chunks that never move, so a
// pointer stays valid for the object's life; a slot index plus a generation names an object
// in completion tags (netio::Tag), and a stale completion for a reused slot is recognised by
// its generation.
#pragma once

#include <cassert>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace rb::engine {

// T must have members `uint32_t slot` and `uint32_t generation`, and be default-constructible.
template <typename T, uint32_t kChunk = 1024>
class Slab {
 public:
  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;
  // Every slot below size_ holds a constructed object: a live one, or the placeholder Free
  // leaves behind.
  ~Slab() {
    for (uint32_t s = 0; s < size_; ++s) Get(s)->~T();
  }

  // A fresh object (default-constructed) with a new generation.
  T* Allocate() {
    uint32_t s;
    if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
      Get(s)->~T();  // the placeholder
    } else {
      if (size_ % kChunk == 0) chunks_.emplace_back(static_cast<Storage*>(::operator new(sizeof(Storage) * kChunk, std::align_val_t{alignof(T)})));
      s = size_++;
      generations_.push_back(0);
      live_.push_back(false);
    }
    T* t = new (Get(s)) T();
    t->slot = s;
    t->generation = ++generations_[s];
    live_[s] = true;
    ++live_count_;
    return t;
  }

  // A completion handler may still hold the pointer after a nested call freed the object; a
  // second Free through it must not free the slot twice (that would underflow live() and hand
  // the slot to two connections). So a freed slot keeps a default-constructed placeholder with
  // the same slot and generation: a stale pointer reads "no fd, not closing", and freeing it
  // again does nothing.
  void Free(T* t) {
    uint32_t s = t->slot;
    assert(s < size_ && live_[s] && Get(s) == t && "double free of a slab object");
    if (s >= size_ || !live_[s] || Get(s) != t) return;
    t->~T();
    live_[s] = false;
    --live_count_;
    free_.push_back(s);
  }

  // The live object at `slot` with this generation, or null (freed, or reused since).
  T* Find(uint32_t slot, uint32_t generation) {
    if (slot >= size_ || !live_[slot]) return nullptr;
    T* t = Get(slot);
    return (t->generation & 0xffffff) == (generation & 0xffffff) ? t : nullptr;
  }

  template <typename Fn>
  void ForEach(Fn&& fn) {
    for (uint32_t s = 0; s < size_; ++s)
      if (live_[s]) fn(Get(s));
  }

  uint32_t live() const { return live_count_; }
  // Slots ever made (live plus free), for the admin console's SHOW LISTS and SHOW MEM.
  uint32_t slots() const { return size_; }

 private:
  struct alignas(T) Storage {
    unsigned char bytes[sizeof(T)];
  };
  struct ChunkDeleter {
    void operator()(Storage* p) const { ::operator delete(p, std::align_val_t{alignof(T)}); }
  };
  T* Get(uint32_t s) { return reinterpret_cast<T*>(chunks_[s / kChunk].get() + s % kChunk); }

  std::vector<std::unique_ptr<Storage, ChunkDeleter>> chunks_;
  std::vector<uint32_t> generations_;
  std::vector<bool> live_;
  std::vector<uint32_t> free_;
  uint32_t size_ = 0;
  uint32_t live_count_ = 0;
};

}  // namespace rb::engine
