#include "lowcomms/writequeue.h"

#include <algorithm>
#include <cstring>
#include "dlm/wire.h"

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

void WriteQueue::track_last(uint32_t seq, uint32_t len, bool fin, bool transmitted) {
  WriteQueueEntry& t = entries_.back();
  unacked_.push_back(UnackedFrame{seq, head_id_ + entries_.size() - 1, t.end - len,
                                  uint16_t(len), fin, transmitted});
  t.unacked++;
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
  while (send_idx_ > 0 && entries_.front().unacked == 0) {
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
    if (t.end != 0 && t.sent == t.end && t.unacked == 0) {
      held_ -= t.end;
      t.sent = t.end = 0;
    }
  }
}

size_t WriteQueue::ack(uint32_t upto, bool* fin_acked) {
  size_t count = 0;
  while (!unacked_.empty() && dlm::seq_before(unacked_.front().seq, upto)) {
    const UnackedFrame& f = unacked_.front();
    entry(f.entry_id).unacked--;
    if (f.fin) *fin_acked = true;
    unacked_.pop_front();
    count++;
  }
  unacked_.shrink_if_empty();
  trim();
  return count;
}

bool WriteQueue::Detached::taken(const UnackedFrame& f) const {
  const size_t idx = size_t(f.entry_id - head_id);
  return idx < send_idx || (idx == send_idx && f.off < entries[idx].sent);
}

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

WriteQueue::Detached WriteQueue::detach() {
  generation_++;  // a send gathered from the old queue advances nothing
  Detached d{std::move(entries_), std::move(unacked_), head_id_, send_idx_};
  entries_.clear();
  unacked_.clear();
  head_id_ += d.entries.size();
  send_idx_ = 0;
  unsent_ = 0;
  held_ = 0;
  return d;
}

size_t WriteQueue::rewind(uint32_t ack_seq, uint32_t nodeid, bool with_ack) {
  graveyard_.clear();
  const Detached old = detach();

  // Tell the peer at once what we hold, so that it frees its own resend queue.
  if (with_ack) dlm::write_ack(reserve(uint32_t(dlm::kHeaderLen)), ack_seq, nodeid);

  auto copy_frame = [this](const uint8_t* src, uint32_t len) {
    std::memcpy(reserve(len), src, len);
  };

  // 1. Sequenced frames the old socket took (wholly or partly) and the peer never acked.
  size_t k = 0, resent = 0;
  for (; k < old.unacked.size() && old.taken(old.unacked[k]); k++) {
    const UnackedFrame& f = old.unacked[k];
    copy_frame(old.entries[size_t(f.entry_id - old.head_id)].buf.get() + f.off, f.len);
    track_last(f.seq, f.len, f.fin, true);
    resent++;
  }

  // 2. Everything never sent (if the old socket cut a sequenced frame, step 1 resent it whole).
  old.for_each_unsent([&](const uint8_t* p, uint32_t len) {
    if (p[dlm::kOffCmd] == dlm::kOpts) {
      const uint32_t seq = dlm::get_le32(p + dlm::kOffLockspaceOrSeq);
      if (k < old.unacked.size() && old.unacked[k].seq == seq) {
        copy_frame(p, len);
        track_last(seq, len, old.unacked[k].fin, old.unacked[k].transmitted);
        k++;
      }
      // else: acked already, nothing to send.
    } else if (!(with_ack && p[dlm::kOffCmd] == dlm::kAck)) {
      // An ACK queued earlier says no more than the one in front: resent, the peer
      // would see acks go backwards.
      copy_frame(p, len);
    }
  });
  return resent;
}

size_t WriteQueue::new_session(uint32_t first_seq, uint32_t* renumbered) {
  Detached old = detach();

  // Every frame a socket ever took may have reached the old peer: dropped, never renumbered.
  size_t dropped = 0;
  std::vector<bool> gone(old.unacked.size());
  for (size_t k = 0; k < old.unacked.size(); k++) {
    const UnackedFrame& f = old.unacked[k];
    gone[k] = f.transmitted || old.taken(f);
    if (gone[k] && !f.fin) dropped++;
  }

  uint32_t n = 0;
  size_t k = 0;
  old.for_each_unsent([&](const uint8_t* p, uint32_t len) {
    const uint8_t cmd = p[dlm::kOffCmd];
    if (cmd == dlm::kOpts) {
      const uint32_t seq = dlm::get_le32(p + dlm::kOffLockspaceOrSeq);
      size_t j = k;
      while (j < old.unacked.size() && old.unacked[j].seq != seq) j++;
      // Not tracked: acked already, so it reached the old peer.
      const bool sent_before = j == old.unacked.size() || gone[j];
      if (j < old.unacked.size()) k = j + 1;
      if (!sent_before && p[dlm::kOptsLen + dlm::kOffCmd] != dlm::kFin) {
        uint8_t* q = reserve(len);
        std::memcpy(q, p, len);
        dlm::put_le32(q + dlm::kOffLockspaceOrSeq, first_seq + n);
        track_last(first_seq + n, len, false);
        n++;
      }
    } else if (cmd != dlm::kAck) {
      std::memcpy(reserve(len), p, len);  // unsequenced: stateless RCOM, 3.1
    }
  });
  for (auto& e : old.entries) graveyard_.push_back(std::move(e));
  *renumbered = n;
  return dropped;
}

size_t WriteQueue::forget_unacked() {
  const size_t n = unacked_.size();
  for (auto& e : entries_) e.unacked = 0;
  unacked_.clear();
  trim();
  return n;
}

size_t WriteQueue::clear() {
  const size_t dropped = unacked_.size();
  head_id_ += entries_.size();
  for (auto& e : entries_) graveyard_.push_back(std::move(e));
  entries_.clear();
  unacked_.clear();
  generation_++;
  send_idx_ = 0;
  unsent_ = 0;
  held_ = 0;
  return dropped;
}

}  // namespace lowcomms
