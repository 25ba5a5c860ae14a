// A connection's write queue: a FIFO of page-sized entries that send() copies whole
// frames into and the send thread writes with as few syscalls as the socket takes.
// Frames never span entries. An entry stays after it was sent while midcomms holds a
// frame in it (a sequenced frame not yet acked, midcomms/send_queue.h), as the kernel's
// writequeue entries live while a dlm_msg holds a reference: a reconnect resends from here.
// Not thread-safe: the owning connection's mutex guards every call.
#pragma once
#include <sys/uio.h>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>
#include "dlm/wire.h"

namespace lowcomms {

struct WriteQueueEntry {
  std::unique_ptr<uint8_t[]> buf;
  uint32_t cap = 0;
  uint32_t end = 0;   // first unreserved byte
  uint32_t sent = 0;  // first unsent byte
  uint32_t refs = 0;  // frames in this entry that midcomms holds (hold_last .. release)
};

// Where one frame lives: its entry (ids are never reused) and place in it.
struct FrameRef {
  uint64_t entry_id;
  uint32_t off;
  uint16_t len;
};

class WriteQueue {
 public:
  explicit WriteQueue(uint32_t entry_bytes) : entry_bytes_(entry_bytes) {}

  // Room for len contiguous bytes at the tail; a new entry when the tail is full.
  uint8_t* reserve(uint32_t len);
  // Keep the entry of the len-byte frame just reserved after it is sent, until release()
  // (kernel: dlm_lowcomms_get_msg / put_msg).
  FrameRef hold_last(uint32_t len);
  void release(uint64_t entry_id);
  void release_all();

  // Unsent bytes, for writev/sendmsg: up to max_iov ranges and about max_bytes. The
  // ranges stay valid until the next gather() even if the queue is cleared meanwhile;
  // *gen identifies the queue they came from, for advance().
  int gather(iovec* iov, int max_iov, size_t max_bytes, uint64_t* gen);
  // n bytes of the last gather() went out; ignored if the queue was cleared since.
  void advance(size_t n, uint64_t gen);

  // The queue as it was, taken out whole (reconnect, new session) for midcomms to
  // rebuild the new one from.
  class Detached {
   public:
    // A socket has (wholly or partly) taken this frame.
    bool taken(const FrameRef& f) const;
    const uint8_t* bytes(const FrameRef& f) const { return entry(f).buf.get() + f.off; }
    // Calls fn(frame, len) for every frame never sent, from the first frame boundary at or
    // after the send cursor: a frame the old socket cut is never resumed.
    template <class Fn>
    void for_each_unsent(Fn&& fn) const;

   private:
    friend class WriteQueue;
    const WriteQueueEntry& entry(const FrameRef& f) const { return entries[size_t(f.entry_id - head_id)]; }
    std::deque<WriteQueueEntry> entries;
    uint64_t head_id = 0;
    size_t send_idx = 0;
  };
  Detached detach();
  // The old entries of a detach() on a thread other than the send thread: a send
  // gathered from them may still be reading, so they are freed at the next gather().
  void retire(Detached&& old);
  // Discard everything (node removed or reset); midcomms drops what it held in it.
  void clear();

  size_t unsent_bytes() const { return unsent_; }
  size_t held_bytes() const { return held_; }
  size_t entries() const { return entries_.size(); }
  bool has_unsent() const { return unsent_ > 0; }

 private:
  WriteQueueEntry& new_entry();
  void trim();
  void recycle(WriteQueueEntry&& e);

  static constexpr size_t kSpareEntries = 16;  // freed entry buffers kept for reuse
  WriteQueueEntry& entry(uint64_t id) { return entries_[size_t(id - head_id_)]; }

  uint32_t entry_bytes_;
  std::deque<WriteQueueEntry> entries_;
  uint64_t head_id_ = 0;   // id of entries_.front()
  size_t send_idx_ = 0;    // index of the first entry with unsent bytes (or the tail)
  std::vector<std::unique_ptr<uint8_t[]>> spare_;
  uint32_t spare_cap_ = 0;
  std::deque<WriteQueueEntry> graveyard_;  // cleared entries a send may still be reading
  uint64_t generation_ = 0;
  size_t unsent_ = 0;      // bytes reserved and not yet sent
  size_t held_ = 0;        // bytes of every entry still held (sent-unacked and unsent)
};

template <class Fn>
void WriteQueue::Detached::for_each_unsent(Fn&& fn) const {
  for (size_t idx = send_idx; idx < entries.size(); idx++) {
    const WriteQueueEntry& e = entries[idx];
    const uint8_t* b = e.buf.get();
    uint32_t off = 0;
    if (idx == send_idx)
      while (off < e.sent) off += dlm::get_le16(b + off + dlm::kOffLength);
    while (off < e.end) {
      const uint32_t len = dlm::get_le16(b + off + dlm::kOffLength);
      fn(b + off, len);
      off += len;
    }
  }
}

}  // namespace lowcomms
