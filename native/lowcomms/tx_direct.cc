// The latency path of the send side, run on the caller's (JS) thread at the end of a
// submit: when a node's queue was empty, its TCP connection is up and writable and the
// send thread is not working on it, the caller writes the new bytes itself with one
// non-blocking sendmsg. That saves a wake-up of the send thread per message in
// request/response traffic (docs/performance.md). The send thread stays the owner of
// everything that does not go out at once: connecting, a full socket buffer, errors,
// what one sendmsg did not take, SCTP, the delayed flush policy, auth records.
#include <cerrno>
#include "lowcomms/lowcomms.h"

namespace lowcomms {

namespace {
// Larger runs go to the send thread: a stream goes faster with its syscalls on another
// CPU while the JS thread goes on producing (docs/performance.md, section 4).
constexpr size_t kDirectMaxBytes = 16 * 1024;
}  // namespace

void Lowcomms::tx_direct(const ConnPtr& c) {
  if (!transport_->direct_write() || !cfg_.flush.direct || !cfg_.flush.immediate || c->tx_pending) {
    kick_tx(c);
    return;
  }
  // Never wait for the send thread: if it holds the connection, it sees the new bytes.
  std::unique_lock lk(c->tx_mu, std::try_to_lock);
  // With auth, records are sealed and sent by the send thread (TcpTransport::flush_sealed).
  if (!lk.owns_lock() || c->tx_state != Connection::TxState::kConnected || !c->writable ||
      !c->sock || c->sock->dead || c->sock->sealer || c->sock_failed || c->removed) {
    if (lk.owns_lock()) lk.unlock();
    kick_tx(c);
    return;
  }
  {
    std::lock_guard q(c->mu);
    if (c->wq.unsent_bytes() > kDirectMaxBytes) {
      lk.unlock();
      kick_tx(c);
      return;
    }
  }
  int err = 0;
  const TxRound round = transport_->write_round(c, &err);
  if (round != TxRound::kEmpty) c->ctr.tx_direct++;
  switch (round) {
    case TxRound::kEmpty:
      return;
    case TxRound::kSent: {
      bool more;
      {
        std::lock_guard q(c->mu);
        more = c->wq.has_unsent();
      }
      if (!more) return;
      break;  // the rest is the send thread's
    }
    case TxRound::kAgain:
      break;  // the send thread finds the socket full too and waits for EPOLLOUT
    case TxRound::kError: {
      // The send thread ends the connection and reports why (as the receive thread's
      // close_err would have said).
      int unknown = -1;
      c->sock->close_err.compare_exchange_strong(unknown, err);
      c->sock_failed = true;
      break;
    }
  }
  lk.unlock();
  kick_tx(c);
}

}  // namespace lowcomms
