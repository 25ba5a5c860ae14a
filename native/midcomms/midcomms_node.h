// Per-peer protocol state of midcomms (DLM 3.2, docs/protocol.md "midcomms 3.2"): detected version,
// sequence counters, delivered-not-yet-acked count and the DLM_FIN state machine.
// Pure state: the caller holds the connection lock and carries out the returned
// actions (deliver, queue an ACK or FIN) on the write queue.
#pragma once
#include <cstdint>
#include "dlm/decode.h"

namespace lowcomms {

enum class PeerVersion : uint8_t { kNotSet = 0, k31 = 1, k32 = 2 };

// Numbered as the kernel's enum (1..7).
enum class FinState : uint8_t {
  kClosed = 1,
  kEstablished,
  kFinWait1,
  kFinWait2,
  kCloseWait,
  kLastAck,
  kClosing,
};

const char* fin_state_name(FinState s);

// Ack thresholds of the kernel (§3.3): piggy-back on send above 32, force above 256.
constexpr uint32_t kSendAckBackThreshold = 32;
constexpr uint32_t kRecvAckBackThreshold = 256;

struct MidcommsRxStats {
  uint64_t delivered = 0;
  uint64_t dup_dropped = 0;
  uint64_t gap_dropped = 0;
  uint64_t version_mismatch = 0;
  uint64_t bad_version = 0;
  uint64_t skipped = 0;
  uint64_t nodeid_mismatch = 0;
  // Sequenced frames whose inner DLM_MSG/DLM_RCOM names another node (the kernel's
  // "invalid h_nodeid"): the sequence number is used and acked, the message dropped.
  uint64_t inner_nodeid_mismatch = 0;
  uint64_t acks_rcvd = 0;
  uint64_t bad_acks = 0;
  uint64_t acks_backwards = 0;  // an ack below one the peer sent before (it restarted?)
  uint64_t fins_rcvd = 0;
};

struct RxVerdict {
  bool deliver = false;     // hand inner/inner_len to the application
  const uint8_t* inner = nullptr;
  uint16_t inner_len = 0;
  bool ack_now = false;     // queue ACK(seq_next) now
  bool send_fin = false;    // queue our own FIN (passive close)
  bool reset = false;       // handshake finished: reset the node (after queuing any ACK)
  bool apply_ack = false;   // release send-side frames before ack_value
  uint32_t ack_value = 0;
  bool bad_ack = false;     // an ack for frames never sent: peer state mismatch
  bool ack_backwards = false;  // an ack below the peer's previous one: state mismatch
  bool dropped = false;     // a sequenced frame dropped as a duplicate or a gap
};

class MidcommsNode {
 public:
  // pinned: k31 when this node is configured to speak DLM 3.1 only (no wrapper, no
  // sequence numbers); kNotSet to detect the peer's version from its first message.
  explicit MidcommsNode(uint32_t nodeid, PeerVersion pinned = PeerVersion::kNotSet)
      : nodeid_(nodeid), pinned_(pinned), version_(pinned) {}

  // One decoded frame from this peer. `seq_send` is our next sequence number, for
  // sanity-checking acks.
  RxVerdict receive(const dlm::Decoded& d, uint32_t seq_send);

  // Sending a sequenced frame: returns its sequence number.
  uint32_t next_seq() { return seq_send_++; }
  // A new session whose first `n` frames were numbered already (WriteQueue::new_session).
  void renumbered(uint32_t n) {
    seq_send_ = n;
    if (n) on_send();
  }
  uint32_t seq_send() const { return seq_send_; }
  uint32_t seq_next() const { return seq_next_; }

  // Our FIN was acked (the ack covered the FIN frame). Returns true when the node
  // must now be reset (handshake complete); not while our ACK of the peer's FIN waits
  // for consumption (on_consumed says kResetAfter then).
  bool on_fin_acked();
  // Active close: returns true when a FIN must be sent now.
  bool start_close();
  // Sending is allowed unless we sent FIN (STOP_TX) and the handshake is not done.
  bool can_send() const { return !stop_tx_; }
  // A send on a node in CLOSED state opens it (the kernel's add_member).
  void on_send() {
    if (state_ == FinState::kClosed) state_ = FinState::kEstablished;
  }
  void reset();
  // Continue from these sequence numbers instead of 0. Real sessions reach the 2^32 wrap
  // only after 4 G messages; the fuzzer (native/fuzz/fuzz_stream.cc) starts next to it.
  void resume_at(uint32_t seq_next, uint32_t seq_send) {
    seq_next_ = seq_next;
    seq_send_ = seq_send;
    consumed_seq_ = seq_next;
    last_ack_sent_ = seq_next;
  }

  // Ack bookkeeping. A message counts as delivered only once the application consumed
  // it (its batch was released): an ACK never covers a message a crash could still lose.
  // Below: what an ACK may say now, and whether it says more than the last one did.
  uint32_t ack_seq() const { return pending_ == 0 ? seq_next_ : consumed_seq_; }
  bool ack_due() const { return ack_seq() != last_ack_sent_; }
  // Consumed and not yet acked (the kernel's thresholds count these).
  uint32_t delivered_unacked() const { return ulp_delivered_; }
  // Handed to the application, not consumed yet.
  uint32_t pending() const { return pending_; }
  // `count` messages of session `epoch` were consumed, the last leaving seq_next at
  // `seq_after`. Returns kAckNow when an ACK is due at once (the kernel's threshold, or a
  // FIN waiting for the messages before it), with kResetAfter when that ACK ends a
  // FIN handshake whose own FIN was acked already (reset the node once it is queued).
  static constexpr int kAckNow = 1, kResetAfter = 2;
  int on_consumed(uint32_t epoch, uint32_t seq_after, uint32_t count);
  // An ACK of ack_seq() was queued.
  void acked() {
    ulp_delivered_ = 0;
    last_ack_sent_ = ack_seq();
  }
  // Changes at every reset: consumption reported for an older session is ignored.
  uint32_t epoch() const { return epoch_; }

  PeerVersion version() const { return version_; }
  FinState state() const { return state_; }
  uint32_t nodeid() const { return nodeid_; }
  const MidcommsRxStats& stats() const { return stats_; }

 private:
  bool check_version(uint32_t v);
  RxVerdict on_sequenced(const dlm::Decoded& d);
  RxVerdict on_fin();

  uint32_t nodeid_;
  PeerVersion pinned_;
  PeerVersion version_;
  FinState state_ = FinState::kClosed;
  uint32_t seq_send_ = 0;
  uint32_t seq_next_ = 0;
  uint32_t ulp_delivered_ = 0;
  uint32_t pending_ = 0;        // delivered, not consumed by the application yet
  uint32_t consumed_seq_ = 0;   // seq_next_ after the last consumed delivery
  uint32_t last_ack_sent_ = 0;
  uint32_t epoch_ = 0;
  bool fin_ack_pending_ = false;  // a FIN waits for the messages before it to be consumed
  bool reset_pending_ = false;    // our FIN is acked; the reset waits for that ACK
  uint32_t last_ack_ = 0;       // the peer's last ack (acks only move forward)
  bool have_last_ack_ = false;
  bool stop_tx_ = false;
  bool stop_rx_ = false;
  MidcommsRxStats stats_;
};

}  // namespace lowcomms
