#include "midcomms/send_queue.h"
#include <cstring>
#include <vector>
#include "dlm/wire.h"

namespace lowcomms {

void SendQueue::track(WriteQueue& wq, uint32_t seq, uint32_t len, bool fin, bool transmitted) {
  frames_.push_back(UnackedFrame{wq.hold_last(len), seq, fin, transmitted});
}

size_t SendQueue::ack(WriteQueue& wq, uint32_t upto, bool* fin_acked) {
  size_t count = 0;
  while (!frames_.empty() && dlm::seq_before(frames_.front().seq, upto)) {
    const UnackedFrame& f = frames_.front();
    if (f.fin) *fin_acked = true;
    wq.release(f.where.entry_id);
    frames_.pop_front();
    count++;
  }
  frames_.shrink_if_empty();
  return count;
}

size_t SendQueue::resend(WriteQueue& wq, uint32_t ack_seq, uint32_t our_nodeid, bool with_ack) {
  const WriteQueue::Detached old = wq.detach();
  const FrameRing<UnackedFrame> unacked = std::move(frames_);
  frames_.clear();

  // Tell the peer at once what we hold, so that it frees its own send queue.
  if (with_ack) dlm::write_ack(wq.reserve(uint32_t(dlm::kHeaderLen)), ack_seq, our_nodeid);

  auto copy_frame = [&wq](const uint8_t* src, uint32_t len) { std::memcpy(wq.reserve(len), src, len); };

  // 1. Sequenced frames the old socket took (wholly or partly) and the peer never acked.
  size_t k = 0, resent = 0;
  for (; k < unacked.size() && old.taken(unacked[k].where); k++) {
    const UnackedFrame& f = unacked[k];
    copy_frame(old.bytes(f.where), f.where.len);
    track(wq, f.seq, f.where.len, f.fin, true);
    resent++;
  }

  // 2. Everything never sent (if the old socket cut a sequenced frame, step 1 resent it whole).
  old.for_each_unsent([&](const uint8_t* p, uint32_t len) {
    if (p[dlm::kOffCmd] == dlm::kOpts) {
      const uint32_t seq = dlm::get_le32(p + dlm::kOffLockspaceOrSeq);
      if (k < unacked.size() && unacked[k].seq == seq) {
        copy_frame(p, len);
        track(wq, seq, len, unacked[k].fin, unacked[k].transmitted);
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

size_t SendQueue::new_session(WriteQueue& wq, uint32_t first_seq, uint32_t* renumbered) {
  WriteQueue::Detached old = wq.detach();
  const FrameRing<UnackedFrame> unacked = std::move(frames_);
  frames_.clear();

  // Every frame a socket ever took may have reached the old peer: dropped, never renumbered.
  size_t dropped = 0;
  std::vector<bool> gone(unacked.size());
  for (size_t k = 0; k < unacked.size(); k++) {
    const UnackedFrame& f = unacked[k];
    gone[k] = f.transmitted || old.taken(f.where);
    if (gone[k] && !f.fin) dropped++;
  }

  uint32_t n = 0;
  size_t k = 0;
  old.for_each_unsent([&](const uint8_t* p, uint32_t len) {
    const uint8_t cmd = p[dlm::kOffCmd];
    if (cmd == dlm::kOpts) {
      const uint32_t seq = dlm::get_le32(p + dlm::kOffLockspaceOrSeq);
      size_t j = k;
      while (j < unacked.size() && unacked[j].seq != seq) j++;
      // Not tracked: acked already, so it reached the old peer.
      const bool sent_before = j == unacked.size() || gone[j];
      if (j < unacked.size()) k = j + 1;
      if (!sent_before && p[dlm::kOptsLen + dlm::kOffCmd] != dlm::kFin) {
        uint8_t* q = wq.reserve(len);
        std::memcpy(q, p, len);
        dlm::put_le32(q + dlm::kOffLockspaceOrSeq, first_seq + n);
        track(wq, first_seq + n, len, false);
        n++;
      }
    } else if (cmd != dlm::kAck) {
      std::memcpy(wq.reserve(len), p, len);  // unsequenced: stateless RCOM, 3.1
    }
  });
  wq.retire(std::move(old));
  *renumbered = n;
  return dropped;
}

size_t SendQueue::forget(WriteQueue& wq) {
  const size_t n = frames_.size();
  frames_.clear();
  wq.release_all();
  return n;
}

size_t SendQueue::drop_all() {
  const size_t n = frames_.size();
  frames_.clear();
  return n;
}

}  // namespace lowcomms
