// A connection's write queue: a FIFO of page-sized entries that send() copies whole
// frames into and the send thread writes with as few syscalls as the socket takes.
// Frames never span entries. For protocol 3.2 the queue also remembers where every
// sequenced frame lives, and keeps an entry after sending until every sequenced frame
// in it is acked: a reconnect then resends the unacked frames, in order, from here.
// Not thread-safe: the owning connection's mutex guards every call.
#pragma once
#include <sys/uio.h>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace lowcomms {

struct WriteQueueEntry {
  std::unique_ptr<uint8_t[]> buf;
  uint32_t cap = 0;
  uint32_t end = 0;       // first unreserved byte
  uint32_t sent = 0;      // first unsent byte
  uint32_t unacked = 0;   // sequenced frames in this entry not yet acked
};

struct UnackedFrame {
  uint32_t seq;
  uint64_t entry_id;
  uint32_t off;
  uint16_t len;
  bool fin;
  bool transmitted;  // put on some socket already (a rewind after that makes it unsent again)
};

// A FIFO over one power-of-two array that only grows: push and pop never allocate once
// it is big enough. The unacked frames are pushed by the thread that calls send() and
// popped by the receive thread (acks); a std::deque there mallocs a block every 21
// frames on one thread and frees it on the other.
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

class WriteQueue {
 public:
  explicit WriteQueue(uint32_t entry_bytes) : entry_bytes_(entry_bytes) {}

  // Room for len contiguous bytes at the tail; a new entry when the tail is full.
  uint8_t* reserve(uint32_t len);
  // Remember the frame just reserved as sequenced (unacked until ack()).
  void track_last(uint32_t seq, uint32_t len, bool fin, bool transmitted = false);

  // Unsent bytes, for writev/sendmsg: up to max_iov ranges and about max_bytes. The
  // ranges stay valid until the next gather() even if the queue is cleared meanwhile;
  // *gen identifies the queue they came from, for advance().
  int gather(iovec* iov, int max_iov, size_t max_bytes, uint64_t* gen);
  // n bytes of the last gather() went out; ignored if the queue was cleared since.
  void advance(size_t n, uint64_t gen);

  // Cumulative ack: every frame before `upto` is delivered. Returns how many frames
  // were released; *fin_acked is set when our FIN was among them.
  size_t ack(uint32_t upto, bool* fin_acked);

  // After a reconnect: rebuild so that the sequenced frames already (partly) put on the
  // old socket and still unacked go first, followed by everything never sent; a frame
  // cut by the old socket is never resumed mid-way. Returns the frames resent.
  size_t rewind(uint32_t prefix_ack_seq, uint32_t nodeid, bool with_ack);
  // The peer restarted (a new incarnation): the sequenced frames any socket took and
  // the old peer never acked are dropped (returned: how many application messages);
  // frames never sent stay for the new peer, renumbered from `first_seq` in order
  // (*renumbered of them), except our ACKs and FIN, which belonged to the old session.
  // Safe while the send thread is between gather() and advance(): the old entries
  // outlive that send.
  size_t new_session(uint32_t first_seq, uint32_t* renumbered);
  // Drop the unacked frames' bookkeeping (midcomms reset): they will not be resent.
  size_t forget_unacked();
  // Discard everything (node removed or reset); returns the sequenced frames dropped.
  size_t clear();

  size_t unsent_bytes() const { return unsent_; }
  size_t held_bytes() const { return held_; }
  size_t unacked_frames() const { return unacked_.size(); }
  size_t entries() const { return entries_.size(); }
  bool has_unsent() const { return unsent_ > 0; }

 private:
  // The queue as it was, taken out whole by rewind() and new_session() to be rebuilt.
  struct Detached {
    std::deque<WriteQueueEntry> entries;
    FrameRing<UnackedFrame> unacked;
    uint64_t head_id;
    size_t send_idx;
    // A socket has (wholly or partly) taken this frame.
    bool taken(const UnackedFrame& f) const;
    // Calls fn(frame, len) for every frame never sent, from the first frame boundary at or
    // after the send cursor: a frame the old socket cut is never resumed.
    template <class Fn>
    void for_each_unsent(Fn&& fn) const;
  };
  Detached detach();
  WriteQueueEntry& new_entry();
  void trim();
  void recycle(WriteQueueEntry&& e);

  static constexpr size_t kSpareEntries = 16;  // freed entry buffers kept for reuse
  WriteQueueEntry& entry(uint64_t id) { return entries_[size_t(id - head_id_)]; }

  uint32_t entry_bytes_;
  std::deque<WriteQueueEntry> entries_;
  uint64_t head_id_ = 0;   // id of entries_.front()
  size_t send_idx_ = 0;    // index of the first entry with unsent bytes (or the tail)
  FrameRing<UnackedFrame> unacked_;
  std::vector<std::unique_ptr<uint8_t[]>> spare_;
  uint32_t spare_cap_ = 0;
  std::deque<WriteQueueEntry> graveyard_;  // cleared entries a send may still be reading
  uint64_t generation_ = 0;
  size_t unsent_ = 0;      // bytes reserved and not yet sent
  size_t held_ = 0;        // bytes of every entry still held (sent-unacked and unsent)
};

}  // namespace lowcomms
