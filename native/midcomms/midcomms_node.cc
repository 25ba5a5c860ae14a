#include "midcomms/midcomms_node.h"

namespace lowcomms {

const char* fin_state_name(FinState s) {
  switch (s) {
    case FinState::kClosed: return "closed";
    case FinState::kEstablished: return "established";
    case FinState::kFinWait1: return "fin_wait1";
    case FinState::kFinWait2: return "fin_wait2";
    case FinState::kCloseWait: return "close_wait";
    case FinState::kLastAck: return "last_ack";
    case FinState::kClosing: return "closing";
  }
  return "unknown";
}

bool MidcommsNode::check_version(uint32_t v) {
  const PeerVersion pv = v == dlm::kVersion32 ? PeerVersion::k32 : PeerVersion::k31;
  if (version_ == PeerVersion::kNotSet) {
    version_ = pv;
    if (pv == PeerVersion::k32 && state_ == FinState::kClosed) state_ = FinState::kEstablished;
    return true;
  }
  if (version_ != pv) {
    stats_.version_mismatch++;
    return false;
  }
  return true;
}

RxVerdict MidcommsNode::receive(const dlm::Decoded& d, uint32_t seq_send) {
  RxVerdict v;
  switch (d.kind) {
    case dlm::FrameKind::kBadVersion:
      stats_.bad_version++;
      return v;
    case dlm::FrameKind::kSkipped:
      stats_.skipped++;
      return v;
    default:
      break;
  }
  if (d.nodeid != nodeid_) {
    stats_.nodeid_mismatch++;
    return v;
  }
  if (!check_version(d.version)) return v;

  switch (d.kind) {
    case dlm::FrameKind::kPlain31:
    case dlm::FrameKind::kStateless32:
      v.deliver = true;
      v.inner = d.inner;
      v.inner_len = d.inner_len;
      stats_.delivered++;
      return v;
    case dlm::FrameKind::kAck:
      stats_.acks_rcvd++;
      // An ack may cover at most what we sent: anything beyond means the peer's
      // state is not ours (it restarted without a FIN handshake).
      if (dlm::seq_before(seq_send, d.seq)) {
        stats_.bad_acks++;
        v.bad_ack = true;
        return v;
      }
      if (have_last_ack_ && dlm::seq_before(d.seq, last_ack_)) {
        stats_.acks_backwards++;
        v.ack_backwards = true;
        return v;
      }
      have_last_ack_ = true;
      last_ack_ = d.seq;
      v.apply_ack = true;
      v.ack_value = d.seq;
      return v;
    case dlm::FrameKind::kSequenced:
      return on_sequenced(d);
    default:
      return v;
  }
}

RxVerdict MidcommsNode::on_sequenced(const dlm::Decoded& d) {
  RxVerdict v;
  if (d.seq != seq_next_) {
    if (dlm::seq_before(d.seq, seq_next_)) {
      // Already seen (a resend after reconnect): tell the peer where we are.
      stats_.dup_dropped++;
      v.ack_now = true;
    } else {
      stats_.gap_dropped++;  // a future frame: the resend after reconnect fills the gap
    }
    v.dropped = true;
    return v;
  }
  if (stop_rx_) {
    stats_.skipped++;
    return v;
  }
  const bool fin = d.inner_cmd == dlm::kFin;
  // As the kernel's receive path: the inner header must name the connection's node too.
  // Its h_version is not checked there (only the outer one is), so it is not here. Such
  // a frame uses its sequence number (and is acked) but is not delivered.
  const bool inner_ok = fin || dlm::read_header(d.inner).nodeid == nodeid_;
  if (!fin && inner_ok && pending_++ == 0) consumed_seq_ = seq_next_;
  seq_next_++;
  if (fin) return on_fin();
  if (!inner_ok) {
    stats_.inner_nodeid_mismatch++;
    return v;
  }
  stats_.delivered++;
  v.deliver = true;
  v.inner = d.inner;
  v.inner_len = d.inner_len;
  return v;
}

RxVerdict MidcommsNode::on_fin() {
  RxVerdict v;
  stats_.fins_rcvd++;
  // A FIN is acked at once, but an ACK covering it covers the messages before it: those
  // must have been consumed first (on_consumed then says the ACK is due).
  v.ack_now = pending_ == 0;
  fin_ack_pending_ = pending_ != 0;
  switch (state_) {
    case FinState::kEstablished:
      // No lockspace users here to wait for: reply with our FIN straight away.
      state_ = FinState::kLastAck;
      stop_rx_ = true;
      stop_tx_ = true;
      v.send_fin = true;
      break;
    case FinState::kFinWait1:
      state_ = FinState::kClosing;
      stop_rx_ = true;
      break;
    case FinState::kFinWait2:
      // Our close ends with the ACK of this FIN: once what precedes it was consumed.
      if (pending_ == 0) {
        v.reset = true;
      } else {
        reset_pending_ = true;
        stop_rx_ = true;  // the peer sends nothing after its FIN (until our ACK of it)
      }
      break;
    default:
      break;
  }
  return v;
}

int MidcommsNode::on_consumed(uint32_t epoch, uint32_t seq_after, uint32_t count) {
  if (epoch != epoch_ || count == 0) return 0;
  pending_ = count < pending_ ? pending_ - count : 0;
  consumed_seq_ = seq_after;
  ulp_delivered_ += count;
  int r = ulp_delivered_ > kRecvAckBackThreshold ? kAckNow : 0;
  if (pending_ == 0 && fin_ack_pending_) {
    fin_ack_pending_ = false;
    r = kAckNow;
    if (reset_pending_) r |= kResetAfter;
  }
  return r;
}

bool MidcommsNode::on_fin_acked() {
  switch (state_) {
    case FinState::kFinWait1:
      state_ = FinState::kFinWait2;
      return false;
    case FinState::kClosing:
    case FinState::kLastAck:
      if (fin_ack_pending_) {
        reset_pending_ = true;
        return false;
      }
      return true;
    default:
      return false;
  }
}

bool MidcommsNode::start_close() {
  // We speak 3.2 unless the peer showed it speaks 3.1 (which has no FIN).
  if (version_ == PeerVersion::k31 || state_ != FinState::kEstablished) return false;
  state_ = FinState::kFinWait1;
  stop_tx_ = true;
  return true;
}

void MidcommsNode::reset() {
  version_ = pinned_;
  state_ = FinState::kClosed;
  seq_send_ = 0;
  seq_next_ = 0;
  ulp_delivered_ = 0;
  pending_ = 0;
  consumed_seq_ = 0;
  last_ack_sent_ = 0;
  fin_ack_pending_ = false;
  reset_pending_ = false;
  epoch_++;
  last_ack_ = 0;
  have_last_ack_ = false;
  stop_tx_ = false;
  stop_rx_ = false;
}

}  // namespace lowcomms
