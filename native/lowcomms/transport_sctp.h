// SCTP: one one-to-many (SOCK_SEQPACKET) socket per instance, bound to every local
// address (bind + SCTP_SOCKOPT_BINDX_ADD); each peer node is one association set up
// to all of its addresses (SCTP_SOCKOPT_CONNECTX3) and recognised again by its id on
// receive. Each SCTP message carries whole DLM messages: one write-queue entry. Path
// failover is the kernel's; we tune it and report association and path changes.
// With a lowcomms peer the handshake runs per association, here, in messages of its own
// PPID; with auth every DLM message is then one record.
#pragma once
#include <sys/socket.h>
#include <sys/uio.h>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "lowcomms/transport.h"
#include "util/unique_fd.h"

// <linux/sctp.h>, which wants to come after the libc headers.
struct sctp_paddr_change;
struct sctp_sndinfo;

namespace lowcomms {

// SCTP's state of one connection (Connection::link).
struct SctpLink final : LinkState {
  // Receive thread writes, the send thread reads: the latest association and whether it
  // is up, and the one that passed the handshake (0 if none).
  std::atomic<int32_t> assoc_id{0};
  std::atomic<bool> assoc_up{false};
  std::atomic<int32_t> authed_assoc{0};
  // Why the association went, for the disconnect event: 0 an orderly shutdown by the
  // peer, else an errno; -1 not known. The send thread takes it.
  std::atomic<int> down_err{-1};
  // Receive thread: a message delivered in parts (no MSG_EOR yet).
  std::vector<uint8_t> partial;
  int32_t tx_assoc = 0;  // send thread: the association the queue was rewound for
  // With auth: our session key for the association that passed its handshake, put
  // here by the receive thread (keys_mu) and taken by the send thread when it rewinds for
  // it; keys_gen counts handshakes, so that a re-keyed association is rewound again.
  std::mutex keys_mu;
  int32_t keys_assoc = 0;
  uint8_t keys_tx[record::kKeyLen] = {};
  std::atomic<uint32_t> keys_gen{0};
  // Send thread: the sealer of tx_assoc, the keys_gen it came from, and messages sealed
  // (counter spent) but not yet taken by the socket, which go first and unchanged.
  std::unique_ptr<record::Cipher> sealer;
  uint32_t sealer_gen = 0;
  std::deque<SealedMsg> sealed;
  std::vector<SealedMsg> spare;
};

class SctpTransport final : public Transport {
 public:
  explicit SctpTransport(Lowcomms& engine) : e_(engine) {}

  std::unique_ptr<LinkState> make_link() const override { return std::make_unique<SctpLink>(); }

  void check_local(const std::vector<SockAddr>&) const override {}
  void listen() override;
  void close() override { fd_.reset(); }
  bool link_up(const Connection& c) const override { return link(c).assoc_up.load(); }

  bool tx_event(uint64_t key, std::vector<ConnPtr>& work) override;
  bool connect(const ConnPtr& c, int* err) override;
  void connect_begun(const ConnPtr& c, int64_t now) override;
  void connect_progress(const ConnPtr& c, int64_t now) override;
  int down_reason(Connection& c) override { return link(c).down_err.exchange(-1); }
  void on_connected(Connection& c) override;
  void on_lost(const ConnPtr& c, bool was_connected) override;
  bool link_current(const ConnPtr& c) override;
  void flush(const ConnPtr& c) override;

  void on_listen_readable() override { read(); }
  void kill_node(uint32_t nodeid) override;
  void drop_node(uint32_t nodeid) override;
  void auth_reply(const auth::Reply& r, const uint8_t* proof) override;
  bool handshake_deadlines(int64_t now) override;
  int retry_ms() const override;
  void retry() override;

 private:
  // PPID of the handshake's messages (DLM data carries the sender's nodeid).
  static constexpr uint32_t kAuthPpid = 0x4c434131;  // "LCA1"
  // Attaches one SCTP_SNDINFO cmsg (association, flags, ppid) to a message.
  static void attach_sndinfo(msghdr& mh, char* cbuf, size_t cbuf_len, const sctp_sndinfo& si);
  static SctpLink& link(Connection& c) { return static_cast<SctpLink&>(*c.link); }
  static const SctpLink& link(const Connection& c) { return static_cast<const SctpLink&>(*c.link); }
  // The association DLM data goes on. To a lowcomms peer only a proven one: a new
  // association (COMM_UP) takes over only once its handshake is done, so that a host
  // that merely connects from a configured address cannot divert or stall our traffic.
  static int32_t send_assoc(const Connection& c) {
    return c.handshake ? link(c).authed_assoc.load() : link(c).assoc_id.load();
  }

  // One message as recvmsg returned it (receive thread).
  struct Received {
    size_t len = 0;
    int flags = 0;
    int32_t assoc_id = 0;
    uint32_t ppid = 0;
    sockaddr_storage from{};
  };

  // --- send thread ---
  // The proven association can take our DLM frames now. With auth, only while its
  // session key is unused: a key seals from counter 0 once, never twice (GCM nonces).
  bool sendable(Connection& c);
  void flush_plain(const ConnPtr& c);
  void flush_sealed(const ConnPtr& c);
  bool seal_more(const ConnPtr& c);
  void tamper(Connection& c);
  // One sendmmsg of n messages (an iovec each) on the association, counted; returns how
  // many the socket took, with *bytes their size, or -1 with *err.
  int send_msgs(Connection& c, int32_t assoc_id, iovec* iov, int n, size_t* bytes, int* err);
  // After a short send_msgs(): a full buffer polls again shortly, anything else ends the link.
  void send_stalled(const ConnPtr& c, int err);

  // --- receive thread ---
  void read();
  bool receive(Received* m);
  // The connection a message belongs to (adopting an association whose COMM_UP we
  // missed); null when it is dropped (stale, or from no configured node).
  ConnPtr conn_of_message(const Received& m);
  // Runs the handshake on the message if it is not done yet; true when the message is
  // DLM data to read.
  bool past_handshake(const ConnPtr& c, const Received& m);
  // Collects a message delivered in parts; true once *data/*len hold a whole one.
  bool whole_message(Connection& c, const Received& m, const uint8_t** data, size_t* len);
  // With auth: opens the message's record into plain_; false if it failed (dropped).
  bool open_record(const ConnPtr& c, int32_t assoc_id, const uint8_t** data, size_t* len);
  void deliver(Connection& c, int32_t assoc_id, const uint8_t* data, size_t len);
  void on_notification(const uint8_t* data, size_t len);
  void on_assoc_up(int32_t assoc_id, int state);
  void on_assoc_down(int32_t assoc_id, int state);
  void on_path_change(const sctp_paddr_change& pc);
  void on_shutdown(int32_t assoc_id);
  void abort(int32_t assoc_id);
  void tune_assoc(int32_t assoc_id);
  ConnPtr conn_of_assoc(int32_t assoc_id);
  bool was_aborted(int32_t assoc_id) const;
  void forget_aborted(int32_t assoc_id);
  // Forgets an association: its node, its epoch, its handshake.
  void forget_assoc(int32_t assoc_id);
  // The handshake per association (transport_sctp_auth.cc).
  void auth_start(const ConnPtr& c, int32_t assoc_id);
  void auth_message(const ConnPtr& c, int32_t assoc_id, const uint8_t* data, size_t len);
  void auth_failed(const ConnPtr& c, int32_t assoc_id, const char* why);
  void auth_verified(const ConnPtr& c, int32_t assoc_id, int verdict);
  void auth_try_verify(const ConnPtr& c, int32_t assoc_id);
  void drop_assoc(const ConnPtr& c, int32_t assoc_id);
  bool send_ctrl(int32_t assoc_id, const uint8_t* data, size_t len);
  bool ctrl_flush(int32_t assoc_id);
  void end_session(int32_t assoc_id);

  Lowcomms& e_;
  // The one-to-many socket: opened by listen() (JS thread); read and sent handshake
  // messages on by the receive thread, DLM data by the send thread.
  UniqueFd fd_;
  // Receive thread only, from here on.
  std::unordered_map<int32_t, uint32_t> assoc_nodes_;
  std::unordered_map<int32_t, uint32_t> assoc_epochs_;  // the node's reset_epoch at set-up
  // Authentication handshakes by association: an old and a new association of one
  // node can overlap for a moment.
  std::unordered_map<int32_t, auth::Session> sessions_;
  // With auth: the opener of each association past its handshake.
  std::unordered_map<int32_t, std::unique_ptr<record::Cipher>> openers_;
  // Handshake messages that met a full send buffer (one buffer for every association of
  // the socket), in order per association; retry() sends them.
  std::unordered_map<int32_t, std::deque<std::vector<uint8_t>>> ctrl_backlog_;
  // Associations we aborted whose COMM_LOST is not read yet: what is still queued for
  // them is stale and must not bring them back (bounded, oldest first out).
  std::deque<int32_t> aborted_;
  std::vector<uint8_t> buf_;    // read buffer
  std::vector<uint8_t> plain_;  // opened records
};

}  // namespace lowcomms
