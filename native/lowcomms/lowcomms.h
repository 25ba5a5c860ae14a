// One lowcomms instance (the engine): the node table of connections, the send thread
// (connect, reconnect, flush write queues) and the receive thread (read, split,
// midcomms, batched hand-off). What differs between TCP and SCTP is behind one
// Transport (transport.h; transport_tcp.*, transport_sctp.*, transport_sctp_auth.cc),
// made by make_transport() at construction. Method bodies are spread over files by job:
// lowcomms.cc (API, JS thread), threads_tx.cc (send thread), threads_rx.cc (receive
// thread), handshake.cc (the handshake, receive thread), tx_direct.cc (JS thread).
#pragma once
#include <sys/uio.h>
#include <atomic>
#include <deque>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include "lowcomms/config.h"
#include "lowcomms/connection.h"
#include "lowcomms/epoll_keys.h"
#include "lowcomms/sink.h"
#include "lowcomms/transport.h"
#include "util/clock.h"
#include "util/unique_fd.h"
#include "util/wakeup.h"

namespace lowcomms {

// Results of framing one message into a write queue.
enum SendResult : int {
  kSendOk = 0,
  kSendClosing = -3,       // the node is in its FIN handshake
};

constexpr size_t kStagedRecordHeader = 12;
constexpr uint8_t kStagedRaw = 1;

// Thrown by start() and friends; `code` names the kind for the binding.
struct EngineError {
  std::string code;   // EADDRINUSE, EPERM, ESOCKTNOSUPPORT, CONFIG, ...
  std::string message;
  int err = 0;
};

struct GlobalCounters {
  std::atomic<uint64_t> rejected{0};       // connections from unknown addresses
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> rx_paused{0};      // times reading stopped for the JS side
  std::atomic<uint64_t> accepts{0};
  std::atomic<uint64_t> auth_failures{0};  // peers that failed the authentication handshake
  std::atomic<uint64_t> stale_dropped{0};  // SCTP messages of associations we had aborted
  std::atomic<uint64_t> record_failures{0};  // records that failed authentication (auth)
};

class Lowcomms {
 public:
  Lowcomms(Config cfg, std::shared_ptr<Sink> sink);
  ~Lowcomms();
  Lowcomms(const Lowcomms&) = delete;
  Lowcomms& operator=(const Lowcomms&) = delete;

  // Node table. Before or after start(); re-adding a nodeid replaces its addresses.
  // `kernel`: a kernel DLM node, spoken to in pure DLM (no lowcomms handshake).
  void add_node(uint32_t nodeid, std::vector<SockAddr> addrs, uint32_t mark, bool kernel);
  // midcomms close: stop I/O, drop queued and unacked messages (counted, reported).
  bool remove_node(uint32_t nodeid);
  // Forget a peer's midcomms state (it restarted without a FIN handshake).
  bool reset_node(uint32_t nodeid);

  void start();   // throws EngineError
  // Orderly close, step 1: FIN to every established 3.2 node (and refuse new sends).
  void begin_close();
  // The same for one node (it leaves the cluster); false if no FIN was due.
  bool begin_close_node(uint32_t nodeid);
  // True when no node (or just `nodeid`, if non-zero) is in a FIN handshake or holds
  // unacked messages.
  bool quiesced(uint32_t nodeid = 0);
  void stop();    // joins both threads; closes every socket

  // Fault injection for tests and drills: abort every connection with the node (TCP:
  // RST; SCTP: ABORT of the association), as a network failure would.
  void kill_connections(uint32_t nodeid);
  // Fault injection for the tests of record protection (auth): the next record sent
  // to the node is altered, injected before, replayed, dropped or swapped with the one after
  // it, as an attacker on the path would; the node must close the association. False if
  // there is no such node or records are not protected.
  enum class Tamper : uint8_t { kNone, kFlip, kInject, kReplay, kDrop, kReorder };
  bool tamper_records(uint32_t nodeid, Tamper what);

  // A run of messages staged by the JS thread, each record: le32 nodeid, le32 lockspace,
  // le16 body length, u8 cmd, u8 flags (kStagedRaw: the body is a whole message), body.
  // One call moves the whole run into the write queues, one lock per run of a node.
  struct SubmitResult {
    size_t accepted = 0;
    size_t dropped = 0;            // unknown node or node closing: reported by the caller
    uint32_t first_dropped_node = 0;
    bool not_running = false;
  };
  SubmitResult submit(const uint8_t* records, size_t len);
  // Queued + unacked bytes of a node, for the caller's limit check; marks the node
  // backpressured (so that a drain event follows) if `wanted` more would not fit.
  size_t held_bytes(uint32_t nodeid, size_t wanted);

  // Peer authentication: the JS side's answer to an "auth" event for socket `sock_id`:
  // the PROOF to send and the one expected from the peer (auth.h).
  // With them, the session keys of this connection (session_crypto.h): ours, the peer's.
  void auth_reply(uint64_t sock_id, const uint8_t* nonce, const uint8_t* proof, const uint8_t* expected,
                  const uint8_t* tx_key, const uint8_t* rx_key);

  // The application consumed batch `batch_id` (`bytes` long): reading may resume, and
  // its messages may now be acked.
  void release(uint64_t batch_id, size_t bytes);

  struct NodeStats {
    uint32_t nodeid;
    bool connected;
    uint64_t tx_msgs, tx_bytes, tx_syscalls, tx_direct, rx_msgs, rx_bytes, connects, disconnects,
        connect_errors, resent, bad_frames, backpressure, acks_sent, dropped_unacked, restarts,
        desync_reports, bad_records;
    uint64_t peer_incarnation;
    bool kernel;
    size_t queued_bytes, held_bytes, unacked;
    uint32_t seq_send, seq_next;
    PeerVersion version;
    FinState state;
    MidcommsRxStats rx;
  };
  std::vector<NodeStats> node_stats();
  const GlobalCounters& counters() const { return gctr_; }
  size_t rx_pending_bytes() const { return rx_pending_.load(); }
  uint16_t bound_port() const { return bound_port_; }
  uint64_t incarnation() const { return incarnation_; }

 private:
  // The transports are parts of the engine: they reach its internals directly.
  friend class TcpTransport;
  friend class SctpTransport;

  using ConnPtr = lowcomms::ConnPtr;
  ConnPtr find(uint32_t nodeid);
  uint32_t nodeid_of(const sockaddr* sa);
  std::vector<ConnPtr> all_connections();

  // Frames one application message into c's write queue (under c.mu); a SendResult.
  int enqueue_locked(Connection& c, uint32_t lockspace, uint8_t cmd, const uint8_t* body,
                     size_t body_len, bool* wake);
  void kick_tx(const ConnPtr& c);
  // The latency path: writes c's newly queued bytes on the caller's thread when the
  // transport allows it (TCP), the send thread is not busy with c and its socket is up
  // and writable; else kick_tx.
  void tx_direct(const ConnPtr& c);
  // Under c.mu: frames the protocol adds on its own.
  // `all`: ack everything received, consumed or not (the last ACK of our own close).
  void queue_ack_locked(Connection& c, bool all = false);
  void queue_fin_locked(Connection& c);
  void reset_locked(Connection& c);
  // Under c.mu, after the queue shrank: whether a sender refused for space is owed a
  // 'drain' event now (it is then no longer backpressured).
  bool drain_due_locked(Connection& c);
  size_t drop_session_locked(Connection& c);
  void emit(Event ev);
  void close_fds();
  EngineError bind_error(const SockAddr& a, int err) const;
  // SO_MARK: the node's mark, else the cluster's; EPERM names the capability.
  void apply_mark(int fd, uint32_t mark);
  // Throws EngineError EPERM if this process may not set SO_MARK `mark`.
  static void check_mark_allowed(uint32_t nodeid, uint32_t mark);
  bool node_quiesced(const Connection& c) const;

  // Send thread (threads_tx.cc).
  void tx_main();
  void tx_service(const ConnPtr& c, int64_t now);  // takes c->tx_mu
  void tx_service_locked(const ConnPtr& c, int64_t now);
  void tx_connect(const ConnPtr& c, int64_t now);
  // The steps of tx_service_locked, by the connection's state.
  void tx_check_down(const ConnPtr& c);
  void tx_idle(const ConnPtr& c, int64_t now, bool has_work);
  void tx_authenticating(const ConnPtr& c, int64_t now);
  void tx_connected_flush(const ConnPtr& c, int64_t now, size_t unsent);
  // The link is up (and, for a lowcomms peer, through its handshake): rewind and send.
  void tx_connected(const ConnPtr& c);
  // A fresh TCP socket runs its handshake on the receive thread; we wait for it (bounded).
  void tx_await_handshake(const ConnPtr& c, int64_t now);
  void tx_lost(const ConnPtr& c, int err, const char* why);
  // A connect failed: counted, retried after the capped backoff, the first one reported.
  void tx_retry_later(const ConnPtr& c, int64_t now, int err, const char* why);
  // n bytes of the last gather() are on their way: advance, and say 'drain' if due.
  void tx_advanced(const ConnPtr& c, size_t n, uint64_t gen);
  void emit_connect_failure(const ConnPtr& c, int err, const char* why);
  void tx_teardown(const ConnPtr& c);
  int64_t tx_next_deadline();

  // Receive thread (threads_rx.cc).
  void rx_main();
  void rx_commands();
  // Feed received bytes of one node through splitting, midcomms and the batch.
  // Returns false if the bytes were malformed (the caller closes the connection).
  // `epoch`: the reset_epoch of the socket or association the bytes came on; if the node was
  // reset since, nothing is processed and *stale is set (the caller drops that socket).
  bool rx_process(Connection& c, uint32_t epoch, uint8_t* data, size_t len, size_t* consumed, bool* stale);
  void rx_flush_batch();
  void rx_idle_acks();
  void rx_drop_socket(uint64_t id, bool notify_tx);
  void rx_kill_node(uint32_t nodeid);

  // The handshake (auth.h; handshake.cc): identity, and with a key, authentication.
  using AuthReply = auth::Reply;
  bool auth_start(Socket& s);
  bool handshake_begin(const Connection& c, auth::Session& sess, uint8_t* hello);
  // The incarnation node `c` sees: ours, changed by every resetNode() of that node.
  uint64_t incarnation_for(const Connection& c) const;
  void emit_auth_request(uint32_t nodeid, const auth::Session& a, const uint8_t* peer_nonce, uint64_t reply_id);
  size_t rx_auth(const std::shared_ptr<Socket>& s, const uint8_t* buf, size_t len, const char** fail);
  void rx_auth_check(const std::shared_ptr<Socket>& s);
  void rx_auth_failed(const std::shared_ptr<Socket>& s, const char* why);
  void rx_auth_reply(const AuthReply& r);
  // Bytes of a socket past its handshake: opened record by record with auth, then split
  // and processed; keeps the rest in s->leftover. False if the socket was dropped.
  bool rx_stream(const std::shared_ptr<Socket>& s, Connection& c, uint8_t* buf, size_t len);
  // A record failed authentication: counted, reported, its connection closed by the caller.
  void rx_bad_record(Connection& c, const char* why);
  // A handshake completed with `incarnation`: a peer seen before under another one has
  // restarted, so its session starts over before any frame of the new one is read
  // (receive thread). `via` is the socket that learned it (TCP), else null.
  void peer_identified(const ConnPtr& c, uint64_t incarnation, const Socket* via);
  size_t restart_session_locked(Connection& c, bool* drained);
  // Drops connections and associations whose handshake is overdue (receive thread);
  // returns whether any handshake is still under way (the thread then wakes to check).
  bool rx_handshake_deadlines();
  void rx_handshake_started() {
    if (!rx_hs_check_ns_) rx_hs_check_ns_ = now_ns() + 250'000'000;
  }
  int64_t rx_hs_check_ns_ = 0;  // next deadline check (rx thread)
  // Frames dropped as duplicates or gaps, or acks going backwards, with no delivery in
  // between: the peer's state is not ours. Says so, rate-limited (receive thread).
  void rx_desync(Connection& c, uint64_t drops, uint64_t acks_backwards, bool delivered);

  Config cfg_;
  std::shared_ptr<Sink> sink_;
  std::unique_ptr<Transport> transport_;  // made by make_transport() from cfg_

  std::shared_mutex table_mu_;
  std::unordered_map<uint32_t, ConnPtr> conns_;
  // (table_mu_) Per removed nodeid, the local_epoch its next Connection starts at: a node
  // removed and added again is a new session for the peer too (a new incarnation of ours),
  // or the peer would resend what we delivered before the removal into our fresh state.
  std::unordered_map<uint32_t, uint32_t> next_epoch_;
  std::vector<SockAddr> local_;       // copy of the local node's addresses at start()

  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closing_{false};
  uint16_t bound_port_ = 0;
  uint64_t incarnation_ = 0;  // ours, chosen at start(); sent in every HELLO

  // Send thread.
  UniqueFd tx_epoll_;
  Wakeup tx_wake_;
  std::mutex ready_mu_;
  std::vector<ConnPtr> ready_;
  // Set while the send thread is (about to be) in epoll_wait: only then does a kick
  // need the eventfd. Saves a syscall per send() while the thread is busy anyway.
  std::atomic<bool> tx_sleeping_{false};
  std::thread tx_thread_;

  // Receive thread.
  UniqueFd rx_epoll_;
  Wakeup rx_wake_;
  std::mutex rx_cmd_mu_;
  std::vector<std::shared_ptr<Socket>> rx_add_;
  std::vector<uint64_t> rx_drop_;
  std::vector<uint32_t> rx_drop_nodes_;   // close every socket of these nodes
  std::vector<uint32_t> rx_kill_nodes_;   // abort every socket of these nodes
  std::vector<AuthReply> rx_auth_replies_;
  std::unordered_map<uint64_t, std::shared_ptr<Socket>> rx_socks_;  // rx thread only
  std::vector<uint8_t> rx_plain_;  // opened records of sockets (rx thread; rx_stream)
  std::atomic<uint64_t> next_sock_id_{kFirstSocketId};  // epoll_keys.h
  std::unique_ptr<Batch> batch_;
  std::atomic<size_t> rx_pending_{0};
  bool rx_paused_ = false;
  // Some node may owe an ACK: the receive thread acks after ack_delay_ms. Set by the
  // receive thread, and by release() (which then wakes it) when consumption made one due.
  std::atomic<bool> rx_ack_due_{false};
  // When the owed ACKs go out at the latest (rx thread; 0: none owed). A deadline, not an
  // idle timeout: traffic from other nodes must not hold a node's ACK back.
  int64_t rx_ack_deadline_ns_ = 0;
  // Which messages of each node a batch holds, so that consuming it lets them be acked.
  struct ConsumeMark {
    uint32_t nodeid;
    uint32_t epoch;      // the node's midcomms session (MidcommsNode::epoch)
    uint32_t seq_after;  // its seq_next after the batch's last message from it
    uint32_t count;
  };
  struct PendingBatch {
    uint64_t id;
    bool consumed;
    std::vector<ConsumeMark> marks;
  };
  std::vector<ConsumeMark> batch_marks_;        // of the batch being filled (rx thread)
  uint64_t next_batch_id_ = 1;                  // rx thread
  std::mutex consume_mu_;
  std::deque<PendingBatch> pending_batches_;    // handed over, oldest first (consume_mu_)
  std::thread rx_thread_;

  GlobalCounters gctr_;
};

}  // namespace lowcomms
