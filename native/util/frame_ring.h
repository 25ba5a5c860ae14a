// A FIFO over one power-of-two array that only grows (midcomms' send queue uses it).
#pragma once
#include <cstddef>
#include <memory>

namespace lowcomms {

// Push and pop never allocate once the array is big enough. The unacked frames are pushed
// by the thread that calls send() and popped by the receive thread (acks); a std::deque
// there mallocs a block every 21 frames on one thread and frees it on the other.
template <class T>
class FrameRing {
 public:
  FrameRing() = default;
  FrameRing(FrameRing&& o) noexcept { take(o); }
  FrameRing& operator=(FrameRing&& o) noexcept {
    take(o);
    return *this;
  }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return buf_[(head_ + i) & mask_]; }
  const T& operator[](size_t i) const { return buf_[(head_ + i) & mask_]; }
  T& front() { return buf_[head_]; }
  void push_back(const T& v) {
    if (size_ == cap()) grow();
    buf_[(head_ + size_) & mask_] = v;
    size_++;
  }
  void pop_front() {
    head_ = (head_ + 1) & mask_;
    size_--;
  }
  void clear() { head_ = size_ = 0; }
  // Give a big array back once it is empty (after a burst), keep a small one.
  void shrink_if_empty() {
    if (size_ == 0 && cap() > kKeep) {
      buf_.reset();
      mask_ = size_t(-1);
      head_ = 0;
    }
  }

 private:
  static constexpr size_t kKeep = 4096;
  size_t cap() const { return mask_ + 1; }  // 0 while there is no array
  void take(FrameRing& o) {
    buf_ = std::move(o.buf_);
    mask_ = o.mask_;
    head_ = o.head_;
    size_ = o.size_;
    o.mask_ = size_t(-1);
    o.head_ = o.size_ = 0;
  }
  void grow() {
    const size_t n = cap() ? cap() * 2 : 64;
    auto bigger = std::make_unique_for_overwrite<T[]>(n);
    for (size_t i = 0; i < size_; i++) bigger[i] = std::move((*this)[i]);
    buf_ = std::move(bigger);
    mask_ = n - 1;
    head_ = 0;
  }
  std::unique_ptr<T[]> buf_;
  size_t mask_ = size_t(-1);  // capacity - 1: capacity 0 without an array
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace lowcomms
