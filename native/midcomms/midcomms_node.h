// Per-peer protocol state of midcomms (DLM 3.2, kernel-dlm.md §3): detected version,
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
  uint32_t seq_send() const { return seq_send_; }
  uint32_t seq_next() const { return seq_next_; }

  // Our FIN was acked (the ack covered the FIN frame). Returns true when the node
  // must now be reset (handshake complete).
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

  // Ack bookkeeping: an ACK of seq_next is due when more than `threshold` delivered.
  uint32_t delivered_unacked() const { return ulp_delivered_; }
  void acked() { ulp_delivered_ = 0; }

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
  bool stop_tx_ = false;
  bool stop_rx_ = false;
  MidcommsRxStats stats_;
};

}  // namespace lowcomms
