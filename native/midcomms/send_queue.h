// midcomms' send queue (DLM 3.2, docs/protocol.md "midcomms 3.2"; kernel:
// midcomms_node->send_queue): every sequenced frame we queued for a peer, in sequence
// order, until the peer's cumulative ACK covers it. Each holds its write queue entry
// (WriteQueue::hold_last), so the bytes are still there to resend after a reconnect, or
// to renumber for a restarted peer. The caller holds the connection lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include "lowcomms/writequeue.h"
#include "util/frame_ring.h"

namespace lowcomms {

struct UnackedFrame {
  FrameRef where;
  uint32_t seq;
  bool fin;
  bool transmitted;  // put on some socket already (a rewind after that makes it unsent again)
};

class SendQueue {
 public:
  // The sequenced frame of len bytes just reserved in wq waits for its ACK.
  void track(WriteQueue& wq, uint32_t seq, uint32_t len, bool fin, bool transmitted = false);

  // Cumulative ack: every frame before `upto` is delivered and its entry released.
  // Returns how many frames; *fin_acked is set when our FIN was among them.
  size_t ack(WriteQueue& wq, uint32_t upto, bool* fin_acked);

  // After a reconnect: rebuild wq so that the sequenced frames already (partly) put on the
  // old socket and still unacked go first, followed by everything never sent; a frame
  // cut by the old socket is never resumed mid-way. Returns the frames resent.
  size_t resend(WriteQueue& wq, uint32_t ack_seq, uint32_t our_nodeid, bool with_ack);

  // The peer restarted (a new incarnation): the sequenced frames any socket took and
  // the old peer never acked are dropped (returned: how many application messages);
  // frames never sent stay for the new peer, renumbered from `first_seq` in order
  // (*renumbered of them), except our ACKs and FIN, which belonged to the old session.
  // Safe while the send thread is between gather() and advance(): the old entries
  // outlive that send.
  size_t new_session(WriteQueue& wq, uint32_t first_seq, uint32_t* renumbered);

  // midcomms reset: the unacked frames will not be resent; their entries are released.
  size_t forget(WriteQueue& wq);
  // The write queue was cleared and the frames went with it: returns how many.
  size_t drop_all();

  size_t size() const { return frames_.size(); }
  bool empty() const { return frames_.empty(); }

 private:
  FrameRing<UnackedFrame> frames_;
};

}  // namespace lowcomms
