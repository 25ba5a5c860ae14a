// The send side of midcomms (DLM 3.2, docs/protocol.md): framing an application
// message for a peer (wrapped in DLM_OPTS with the next sequence number, or plain for
// the stateless RCOMs and 3.1 peers), piggy-backing a due ACK in front of it, and the
// protocol's own frames (ACK, FIN). As the kernel's midcomms.c does over lowcomms.c's
// pages, it writes into the node's write queue and keeps each sequenced frame in the
// node's send queue until acked; lowcomms owns the write queue, the sockets and the
// decision to wake the send thread. The caller holds the connection lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include "lowcomms/writequeue.h"
#include "midcomms/midcomms_node.h"
#include "midcomms/send_queue.h"

namespace lowcomms::midcomms_tx {

enum class Framed : uint8_t {
  kQueued,   // in the write queue (sequenced if the peer speaks 3.2)
  kClosing,  // refused: we sent our FIN, the node is in its closing handshake
};

struct MessageOut {
  Framed result = Framed::kQueued;
  bool ack_piggybacked = false;  // an ACK went in front of it
};

// One application message (its 16-byte DLM header is written here from the fields).
MessageOut queue_message(MidcommsNode& mc, SendQueue& sq, WriteQueue& wq, uint32_t our_nodeid, uint32_t lockspace,
                         uint8_t cmd, const uint8_t* body, size_t body_len);

// ACK of what the application consumed (`all`: of everything received, consumed or not:
// the last ACK of our own close).
void queue_ack(MidcommsNode& mc, WriteQueue& wq, uint32_t our_nodeid, bool all = false);

// Our DLM_FIN, sequenced like a message.
void queue_fin(MidcommsNode& mc, SendQueue& sq, WriteQueue& wq, uint32_t our_nodeid);

}  // namespace lowcomms::midcomms_tx
