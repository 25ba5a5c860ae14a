// A transport: how one lowcomms instance moves its bytes over kernel sockets (the kernel's
// dlm_proto_ops, knet's transport ops table). The engine (lowcomms.h) owns the node
// table, the write queues, midcomms and the two threads; it calls its transport at the
// few points where TCP and SCTP differ, and nowhere else asks which one it has. Each
// operation says which thread calls it; a transport's state belongs to those threads as
// marked in its own header (transport_tcp.h, transport_sctp.h).
//
// A transport reaches into the engine (connections, counters, rx_process, tx_lost, ...)
// as its friend: it is a part of the engine, not a client of it.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>
#include "lowcomms/addr.h"
#include "lowcomms/auth.h"
#include "lowcomms/config.h"
#include "lowcomms/connection.h"

namespace lowcomms {

class Lowcomms;

// One non-blocking write of what a connection's queue holds unsent.
enum class TxRound : uint8_t { kEmpty, kSent, kAgain, kError };

class Transport {
 public:
  virtual ~Transport() = default;

  // --- JS thread, start() ---
  // Refuses a set of local addresses the transport cannot serve (throws EngineError).
  virtual void check_local(const std::vector<SockAddr>& local) const = 0;
  // Opens the listening socket on the local addresses and registers it with the receive
  // thread's epoll (kListenKey) and, where the transport wants it, the send thread's.
  // Throws EngineError; the engine then calls close().
  virtual void listen() = 0;
  // --- JS thread, stop() (both threads joined) or a failed start() ---
  // Closes what listen() opened.
  virtual void close() = 0;

  // --- JS thread, add_node() ---
  // The transport's own state for a new connection (null: it keeps none).
  virtual std::unique_ptr<LinkState> make_link() const { return nullptr; }

  // --- JS thread, any time ---
  // For stats(): is the node's link up (TCP: connected; SCTP: an association stands).
  virtual bool link_up(const Connection& c) const = 0;
  // May the caller's thread write a node's queue itself (tx_direct.cc)? Then
  // write_round() is the one write, made under c.tx_mu with the send thread away.
  virtual bool direct_write() const { return false; }
  virtual TxRound write_round(const ConnPtr&, int*) { return TxRound::kEmpty; }

  // --- send thread (threads_tx.cc), tx_main ---
  // An event on a key the transport registered in the send thread's epoll other than a
  // nodeid (SCTP: kSctpKey, its one socket writable again for every association): marks
  // the connections that may write now and adds them to `work`. False: not its key.
  virtual bool tx_event(uint64_t /*key*/, std::vector<ConnPtr>& /*work*/) { return false; }

  // --- send thread (threads_tx.cc), every call under c->tx_mu ---
  // Starts connecting to the node (its addresses in turn, by c->addr_idx); false with
  // *err when it failed at once (the engine backs off and retries).
  virtual bool connect(const ConnPtr& c, int* err) = 0;
  // Right after a successful connect(), the state now kConnecting: a transport whose
  // link comes up by itself sets its deadline here (and may already call tx_connected).
  virtual void connect_begun(const ConnPtr&, int64_t /*now*/) {}
  // kConnecting, on each service: completes the connect (or the handshake's start) and
  // moves the connection on through tx_connected() or tx_lost().
  virtual void connect_progress(const ConnPtr& c, int64_t now) = 0;
  // The receive thread said the link died: why, for the disconnect event (0 an orderly
  // close by the peer, an errno, -1 not known).
  virtual int down_reason(Connection& c) = 0;
  // In tx_connected(), before the queue is rewound: take what the new link brings
  // (SCTP: the association and its session key).
  virtual void on_connected(Connection&) {}
  // First thing in tx_lost(): anything the transport must end beyond the engine's
  // socket (SCTP: an association whose key is spent).
  virtual void on_lost(const ConnPtr&, bool /*was_connected*/) {}
  // kConnected, before a flush: false if the link the queue was rewound for is gone or
  // replaced (the transport has called tx_lost()).
  virtual bool link_current(const ConnPtr&) { return true; }
  // Sends what the node's write queue holds unsent, as far as the socket takes it.
  virtual void flush(const ConnPtr& c) = 0;

  // --- receive thread (threads_rx.cc) ---
  // The listening socket (kListenKey) is readable: accept (TCP) or read (SCTP).
  virtual void on_listen_readable() = 0;
  // A socket the engine registered (rx_socks_, a Socket::id key) is readable.
  virtual void read_socket(const std::shared_ptr<Socket>&) {}
  // kill_connections(): abort the node's links beyond its sockets (the engine has
  // aborted those), as a network failure would.
  virtual void kill_node(uint32_t /*nodeid*/) {}
  // The node was removed or reset: close its links beyond its sockets.
  virtual void drop_node(uint32_t /*nodeid*/) {}
  // The JS side's answer to an "auth" event whose id has auth::kLinkReply set: a
  // handshake the transport runs itself (SCTP: per association). `proof`: our PROOF
  // message, ready to send.
  virtual void auth_reply(const auth::Reply&, const uint8_t* /*proof*/) {}
  // Handshakes the transport runs itself that are overdue at `now` fail here; returns
  // whether any is still under way.
  virtual bool handshake_deadlines(int64_t /*now*/) { return false; }
  // Milliseconds until the transport wants retry() (-1: nothing to retry), and the retry
  // itself, run after every epoll_wait (SCTP: handshake messages that met a full buffer).
  virtual int retry_ms() const { return -1; }
  virtual void retry() {}
};

// The one place that maps Config::transport to an implementation.
std::unique_ptr<Transport> make_transport(Lowcomms& engine, const Config& cfg);

}  // namespace lowcomms
