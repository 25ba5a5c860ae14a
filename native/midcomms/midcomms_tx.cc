#include "midcomms/midcomms_tx.h"
#include <cstring>
#include "dlm/wire.h"

namespace lowcomms::midcomms_tx {

void queue_ack(MidcommsNode& mc, WriteQueue& wq, uint32_t our_nodeid, bool all) {
  dlm::write_ack(wq.reserve(uint32_t(dlm::kHeaderLen)), all ? mc.seq_next() : mc.ack_seq(), our_nodeid);
  mc.acked();
}

void queue_fin(MidcommsNode& mc, SendQueue& sq, WriteQueue& wq, uint32_t our_nodeid) {
  constexpr uint32_t len = uint32_t(dlm::kOptsLen + dlm::kHeaderLen);
  uint8_t* p = wq.reserve(len);
  const uint32_t seq = mc.next_seq();
  dlm::write_opts(p, seq, our_nodeid, uint16_t(dlm::kHeaderLen), dlm::kFin);
  dlm::write_header(p + dlm::kOptsLen, dlm::kVersion32, 0, our_nodeid, uint16_t(dlm::kHeaderLen), dlm::kFin);
  sq.track(wq, seq, len, true);
}

MessageOut queue_message(MidcommsNode& mc, SendQueue& sq, WriteQueue& wq, uint32_t our_nodeid, uint32_t lockspace,
                         uint8_t cmd, const uint8_t* body, size_t body_len) {
  MessageOut out;
  if (!mc.can_send()) {
    out.result = Framed::kClosing;
    return out;
  }
  const size_t inner_len = dlm::kHeaderLen + body_len;
  const bool v31 = mc.version() == PeerVersion::k31;
  // The stateless RCOMs travel unwrapped to a 3.2 peer, as the kernel sends them; a 3.1
  // peer gets every message unwrapped. One shorter than a dlm_rcom would be skipped
  // unwrapped by every receiver, so it goes wrapped (and sequenced) like any message.
  const bool plain = v31 || (cmd == dlm::kRcom && inner_len >= dlm::kRcomMin &&
                             dlm::rcom_is_stateless(dlm::get_le32(body)));
  const size_t frame_len = plain ? inner_len : inner_len + dlm::kOptsLen;
  mc.on_send();
  // Piggy-back a due ACK in front of the message (same entry, same send).
  if (mc.version() == PeerVersion::k32 && mc.delivered_unacked() > kSendAckBackThreshold) {
    queue_ack(mc, wq, our_nodeid);
    out.ack_piggybacked = true;
  }
  uint8_t* p = wq.reserve(uint32_t(frame_len));
  if (!plain) {
    const uint32_t seq = mc.next_seq();
    dlm::write_opts(p, seq, our_nodeid, uint16_t(inner_len), cmd);
    sq.track(wq, seq, uint32_t(frame_len), false);
    p += dlm::kOptsLen;
  }
  dlm::write_header(p, v31 ? dlm::kVersion31 : dlm::kVersion32, lockspace, our_nodeid, uint16_t(inner_len), cmd);
  if (body_len) std::memcpy(p + dlm::kHeaderLen, body, body_len);
  return out;
}

}  // namespace lowcomms::midcomms_tx
