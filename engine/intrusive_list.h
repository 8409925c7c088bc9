// A doubly linked list threaded through the objects themselves (PgBouncer's StatList idea),
// so moving a connection between a pool's lists allocates nothing and costs four stores.
#pragma once

#include <cstddef>

namespace rb::engine {

template <typename T>
struct ListLink {
  T* prev = nullptr;
  T* next = nullptr;
};

template <typename T, ListLink<T> T::*kLink>
class IntrusiveList {
 public:
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }
  T* back() const { return tail_; }

  // Whether t is on this list (an object is on at most one list of a kind at a time).
  bool Contains(const T* t) const { return (t->*kLink).prev != nullptr || head_ == t; }

  void PushBack(T* t) {
    ListLink<T>& l = t->*kLink;
    l.prev = tail_;
    l.next = nullptr;
    if (tail_) (tail_->*kLink).next = t; else head_ = t;
    tail_ = t;
    ++size_;
  }
  void PushFront(T* t) {
    ListLink<T>& l = t->*kLink;
    l.prev = nullptr;
    l.next = head_;
    if (head_) (head_->*kLink).prev = t; else tail_ = t;
    head_ = t;
    ++size_;
  }
  void Remove(T* t) {
    if (!Contains(t)) return;
    ListLink<T>& l = t->*kLink;
    if (l.prev) (l.prev->*kLink).next = l.next; else head_ = l.next;
    if (l.next) (l.next->*kLink).prev = l.prev; else tail_ = l.prev;
    l = ListLink<T>{};
    --size_;
  }
  T* PopFront() {
    T* t = head_;
    if (t) Remove(t);
    return t;
  }
  static T* Next(const T* t) { return (t->*kLink).next; }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rb::engine
