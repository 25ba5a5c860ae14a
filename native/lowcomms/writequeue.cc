#include "lowcomms/writequeue.h"

#include <algorithm>

namespace lowcomms {

WriteQueueEntry& WriteQueue::new_entry() {
  WriteQueueEntry e;
  // An entry must hold the largest frame whatever the configured size.
  e.cap = std::max<uint32_t>(entry_bytes_, uint32_t(dlm::kMaxSocketBufsize));
  if (!spare_.empty() && spare_cap_ == e.cap) {
    e.buf = std::move(spare_.back());  // recycled: no malloc, no page faults
    spare_.pop_back();
  } else {
    e.buf = std::make_unique_for_overwrite<uint8_t[]>(e.cap);  // every byte is written before it is sent
  }
  entries_.push_back(std::move(e));
  return entries_.back();
}

void WriteQueue::recycle(WriteQueueEntry&& e) {
  if (spare_.size() < kSpareEntries) {
    spare_cap_ = e.cap;
    spare_.push_back(std::move(e.buf));
  }
}

uint8_t* WriteQueue::reserve(uint32_t len) {
  WriteQueueEntry* t = entries_.empty() ? nullptr : &entries_.back();
  if (!t || t->cap - t->end < len) t = &new_entry();
  uint8_t* p = t->buf.get() + t->end;
  t->end += len;
  unsent_ += len;
  held_ += len;
  return p;
}

FrameRef WriteQueue::hold_last(uint32_t len) {
  WriteQueueEntry& t = entries_.back();
  t.refs++;
  return FrameRef{head_id_ + entries_.size() - 1, t.end - len, uint16_t(len)};
}

void WriteQueue::release(uint64_t entry_id) {
  if (--entry(entry_id).refs == 0) trim();
}

void WriteQueue::release_all() {
  for (auto& e : entries_) e.refs = 0;
  trim();
}

int WriteQueue::gather(iovec* iov, int max_iov, size_t max_bytes, uint64_t* gen) {
  graveyard_.clear();  // the send thread is between sends: nothing reads these now
  *gen = generation_;
  while (send_idx_ + 1 < entries_.size() && entries_[send_idx_].sent == entries_[send_idx_].end)
    send_idx_++;
  int n = 0;
  size_t bytes = 0;
  for (size_t i = send_idx_; i < entries_.size() && n < max_iov && bytes < max_bytes; i++) {
    WriteQueueEntry& e = entries_[i];
    if (e.end == e.sent) continue;
    iov[n].iov_base = e.buf.get() + e.sent;
    iov[n].iov_len = e.end - e.sent;
    bytes += iov[n].iov_len;
    n++;
  }
  return n;
}

void WriteQueue::advance(size_t n, uint64_t gen) {
  if (gen != generation_) return;
  unsent_ -= n;
  size_t i = send_idx_;
  while (n > 0) {
    WriteQueueEntry& e = entries_[i];
    const size_t take = std::min<size_t>(n, e.end - e.sent);
    e.sent += uint32_t(take);
    n -= take;
    if (e.sent == e.end && i + 1 < entries_.size()) i++;
  }
  send_idx_ = i;
  trim();
}

void WriteQueue::trim() {
  // Entries before send_idx_ are fully sent; keep them only while they hold unacked frames.
  while (send_idx_ > 0 && entries_.front().refs == 0) {
    held_ -= entries_.front().end;
    recycle(std::move(entries_.front()));
    entries_.pop_front();
    head_id_++;
    send_idx_--;
  }
  // The tail is the entry send() appends to, so it is never popped: once all of it is
  // sent and acked its bytes are no longer held, and it starts over from its beginning.
  // (A gathered range of it is unsent until advance(): nothing can still point there.)
  if (send_idx_ + 1 == entries_.size()) {
    WriteQueueEntry& t = entries_.back();
    if (t.end != 0 && t.sent == t.end && t.refs == 0) {
      held_ -= t.end;
      t.sent = t.end = 0;
    }
  }
}

bool WriteQueue::Detached::taken(const FrameRef& f) const {
  const size_t idx = size_t(f.entry_id - head_id);
  return idx < send_idx || (idx == send_idx && f.off < entries[idx].sent);
}

WriteQueue::Detached WriteQueue::detach() {
  generation_++;  // a send gathered from the old queue advances nothing
  Detached d;
  d.entries = std::move(entries_);
  d.head_id = head_id_;
  d.send_idx = send_idx_;
  entries_.clear();
  head_id_ += d.entries.size();
  send_idx_ = 0;
  unsent_ = 0;
  held_ = 0;
  return d;
}

void WriteQueue::retire(Detached&& old) {
  for (auto& e : old.entries) graveyard_.push_back(std::move(e));
  old.entries.clear();
}

void WriteQueue::clear() {
  Detached old = detach();
  retire(std::move(old));
}

}  // namespace lowcomms
