// The per-nodeid connection (the kernel's struct connection): the node's addresses,
// its write queue and midcomms state under one mutex, the outgoing socket owned by
// the send thread, and counters that stats() reads without locking.
#pragma once
#include <sys/socket.h>
#include <atomic>
#include <deque>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>
#include "lowcomms/addr.h"
#include "lowcomms/auth.h"
#include "lowcomms/writequeue.h"
#include "midcomms/midcomms_node.h"
#include "midcomms/send_queue.h"
#include "util/unique_fd.h"

namespace lowcomms {

// One kernel socket carrying a node's traffic. TCP: the outgoing socket (sent on and
// read) or an accepted one (read only, the kernel's othercon). Shared by the two
// threads; the fd closes when the last owner lets go.
struct Socket {
  UniqueFd fd;
  uint64_t id = 0;
  uint32_t nodeid = 0;
  uint32_t reset_epoch = 0;  // the node's Connection::reset_epoch when this socket was made
  bool outgoing = false;
  std::atomic<bool> dead{false};
  std::atomic<bool> abort{false};  // close with RST (fault injection), no FIN first
  // Why the receive thread dropped it: 0 the peer closed it (EOF), else an errno;
  // -1 not known (dropped for another reason).
  std::atomic<int> close_err{-1};
  // Receive-thread state: the start of a message split across reads (the kernel's
  // rx_leftover_buf): under 4096 bytes, since a whole message is at most 4096.
  std::vector<uint8_t> leftover;
  std::atomic<bool> handed_to_rx{false};  // given to the receive thread already
  auth::Session auth;  // peer authentication of this connection (auth.h)
  // With auth, once the handshake is done (session_crypto.h): the peer's records are
  // opened here (receive thread), a DLM message cut by a record boundary waits in
  // `plain`; the outgoing socket seals ours (send thread) into tx_out, sent from tx_off
  // (a record a short write cut is finished on this socket, or dropped with it).
  std::unique_ptr<record::Cipher> opener;
  std::vector<uint8_t> plain;
  std::unique_ptr<record::Cipher> sealer;
  std::unique_ptr<uint8_t[]> tx_out;
  size_t tx_len = 0, tx_off = 0;
};

struct ConnCounters {
  std::atomic<uint64_t> tx_msgs{0}, tx_bytes{0}, tx_syscalls{0};
  std::atomic<uint64_t> tx_direct{0};  // of tx_syscalls: made on the caller's thread (tx_direct.cc)
  std::atomic<uint64_t> rx_msgs{0}, rx_bytes{0};
  std::atomic<uint64_t> connects{0}, disconnects{0}, connect_errors{0};
  std::atomic<uint64_t> resent{0}, bad_frames{0}, backpressure{0}, acks_sent{0};
  std::atomic<uint64_t> dropped_unacked{0};
  std::atomic<uint64_t> restarts{0};        // new incarnations of the peer seen
  std::atomic<uint64_t> desync_reports{0};  // 'desync' events emitted
  std::atomic<uint64_t> bad_records{0};     // records that failed authentication (auth)
};

// With auth: one sealed record held apart from the queue (send thread; SCTP: one message).
struct SealedMsg {
  std::unique_ptr<uint8_t[]> buf;
  size_t cap = 0, len = 0;
};

// A transport's own state of one connection (Transport::make_link()).
struct LinkState {
  virtual ~LinkState() = default;
};

struct Connection {
  Connection(uint32_t id, std::vector<SockAddr> a, uint32_t m, uint32_t entry_bytes,
             PeerVersion pinned, bool hs)
      : nodeid(id), addrs(std::move(a)), mark(m), handshake(hs), wq(entry_bytes), mc(id, pinned) {}

  const uint32_t nodeid;
  std::vector<SockAddr> addrs;   // guarded by the engine's table lock
  const uint32_t mark;
  // A lowcomms peer: every connection runs the handshake (auth.h) before DLM frames.
  // False for a kernel DLM node (and with protocol 3.1), which must see only DLM bytes.
  const bool handshake;
  // The peer's incarnation as last learned from a handshake; 0 before the first one.
  // Written by the receive thread only.
  std::atomic<uint64_t> peer_incarnation{0};
  // Bumped by resetNode(): the incarnation we show this node changes with it, so that the
  // peer starts its side of the session over too (auth.h).
  std::atomic<uint32_t> local_epoch{0};
  // Bumped by resetNode() under `mu`: frames read from a socket or association made before
  // are of the old session, and rx_process() refuses them under the same lock (they could
  // otherwise slip in between the reset and the drop of the old sockets).
  std::atomic<uint32_t> reset_epoch{0};

  std::mutex mu;        // guards wq, mc and sendq
  WriteQueue wq;
  MidcommsNode mc;
  SendQueue sendq;      // midcomms: our sequenced frames in wq until the peer acks them
  bool backpressured = false;  // (mu) send() refused; a drain event is due

  std::atomic<bool> tx_pending{false};  // queued on the send thread's ready list
  std::atomic<bool> removed{false};
  std::atomic<bool> sock_failed{false}; // the receive thread saw the outgoing socket die

  // Send-thread state, under tx_mu: the send thread holds it while it services the
  // connection, and the caller's thread holds it for a direct write (Lowcomms::tx_direct),
  // so that one thread at a time takes bytes from the queue and writes them.
  std::mutex tx_mu;
  enum class TxState : uint8_t { kIdle, kConnecting, kAuthenticating, kConnected };
  // Written by the send thread only; atomic because stats() reads it on the JS thread.
  std::atomic<TxState> tx_state{TxState::kIdle};
  std::shared_ptr<Socket> sock;
  // Atomic: a direct write reads it, and the send thread's timer reads the deadlines
  // of every connection without taking each tx_mu.
  std::atomic<bool> writable{false};
  std::atomic<int64_t> retry_at_ns{0};
  std::atomic<int64_t> flush_at_ns{0};  // delayed-flush policy deadline, 0 when none
  uint32_t retries = 0;
  size_t addr_idx = 0;

  std::atomic<uint8_t> tamper{0};  // Lowcomms::Tamper, for the next sealed message (tests)
  SealedMsg tamper_held;           // reorder: a record held back to go after the next one
  // What the transport keeps per connection (transport.h; SCTP: the association).
  std::unique_ptr<LinkState> link;

  // Receive-thread state: frames dropped as duplicates or gaps, or acks going
  // backwards, with no delivery in between (a peer whose midcomms state is not ours).
  struct Desync {
    int64_t since_ns = 0;      // first such drop since the last delivery, 0 if none
    uint64_t drops = 0;
    uint64_t acks_backwards = 0;
    int64_t reported_ns = 0;   // last 'desync' event (rate limit)
  } desync;

  ConnCounters ctr;
};

using ConnPtr = std::shared_ptr<Connection>;

}  // namespace lowcomms
