// The send thread (the kernel's send workqueue): connects on the first message for a
// node, reconnects after errors with a capped backoff trying the node's addresses in
// turn, rewinds the write queue so that unacked frames go first, and flushes each
// node's queue with as few syscalls as the socket takes.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include "lowcomms/lowcomms.h"
#include "util/clock.h"

namespace lowcomms {

namespace {
constexpr int64_t kMs = 1000000;
}  // namespace

int64_t Lowcomms::tx_next_deadline() {
  int64_t best = -1;
  for (auto& c : all_connections()) {
    for (int64_t t : {c->retry_at_ns.load(), c->flush_at_ns.load()}) {
      if (t > 0 && (best < 0 || t < best)) best = t;
    }
  }
  return best;
}

void Lowcomms::tx_main() {
  std::vector<ConnPtr> work;
  epoll_event evs[64];
  while (!stopping_) {
    int64_t now = now_ns();
    const int64_t deadline = tx_next_deadline();
    int timeout = deadline < 0 ? -1 : int(std::max<int64_t>(0, (deadline - now + kMs - 1) / kMs));
    tx_sleeping_.store(true);
    {
      std::lock_guard lk(ready_mu_);
      if (!ready_.empty()) timeout = 0;  // a kick raced our announcement: don't sleep
    }
    const int n = epoll_wait(tx_epoll_.get(), evs, 64, timeout);
    tx_sleeping_.store(false);
    if (stopping_) break;
    work.clear();
    for (int i = 0; i < n; i++) {
      const uint64_t key = evs[i].data.u64;
      if (key == kWakeKey) {
        tx_wake_.drain();
      } else if (key == kSctpKey) {
        for (auto& c : all_connections()) {
          c->writable = true;
          work.push_back(c);
        }
      } else if (ConnPtr c = find(uint32_t(key))) {
        c->writable = true;
        work.push_back(c);
      }
    }
    {
      std::lock_guard lk(ready_mu_);
      for (auto& c : ready_) work.push_back(std::move(c));
      ready_.clear();
    }
    now = now_ns();
    if (deadline >= 0 && now >= deadline) {
      for (auto& c : all_connections()) {
        if ((c->retry_at_ns && c->retry_at_ns <= now) || (c->flush_at_ns && c->flush_at_ns <= now))
          work.push_back(c);
      }
    }
    for (auto& c : work) tx_service(c, now);
  }
  // Last act: let go of every socket the send thread holds.
  for (auto& c : all_connections()) {
    std::lock_guard lk(c->tx_mu);
    c->sock.reset();
  }
}

void Lowcomms::tx_service(const ConnPtr& c, int64_t now) {
  std::lock_guard lk(c->tx_mu);
  tx_service_locked(c, now);
}

void Lowcomms::tx_service_locked(const ConnPtr& c, int64_t now) {
  c->tx_pending = false;  // before looking at the queue: a later send() kicks again
  if (c->removed) {
    tx_teardown(c);
    return;
  }
  if (c->nodeid == cfg_.local_nodeid) return;
  const bool sctp = cfg_.transport == Transport::kSctp;
  if (c->tx_state != Connection::TxState::kIdle &&
      (c->sock_failed.exchange(false) || (c->sock && c->sock->dead))) {
    // Say what the receive thread saw: an orderly close by the peer is not a reset.
    const int e = sctp ? c->assoc_down_err.exchange(-1) : c->sock ? c->sock->close_err.load() : -1;
    if (e == 0)
      tx_lost(c, 0, "closed by peer");
    else
      tx_lost(c, e > 0 ? e : ECONNRESET,
              c->tx_state == Connection::TxState::kConnecting ? "connect" : "connection closed");
  }

  bool has_work;
  size_t unsent;
  {
    std::lock_guard lk(c->mu);
    unsent = c->wq.unsent_bytes();
    has_work = unsent > 0 || c->wq.unacked_frames() > 0;
  }
  switch (c->tx_state.load()) {
    case Connection::TxState::kIdle:
      if (!has_work) return;
      if (now < c->retry_at_ns) return;
      c->retry_at_ns = 0;
      tx_connect(c, now);
      return;
    case Connection::TxState::kConnecting: {
      int err = 0;
      if (sctp) {
        // To a lowcomms peer, an association carries DLM only once its handshake is done.
        if (sctp_sendable(*c)) {
          tx_connected(c);
        } else if (c->retry_at_ns && now >= c->retry_at_ns) {
          c->retry_at_ns = 0;
          tx_lost(c, ETIMEDOUT, "association setup");
        }
        return;
      }
      if (!c->writable) return;
      if (!tcp_connect_done(c, &err)) {
        tx_lost(c, err, "connect");
      } else if (!c->handshake) {
        tx_connected(c);
      } else if (!auth_start(*c->sock)) {
        tx_lost(c, EIO, "handshake");
      } else {
        // The receive thread runs the handshake; we wait for it (bounded).
        c->tx_state = Connection::TxState::kAuthenticating;
        c->retry_at_ns = now + 5000 * kMs;
        c->sock->handed_to_rx = true;
        {
          std::lock_guard lk(rx_cmd_mu_);
          rx_add_.push_back(c->sock);
        }
        rx_wake_.signal();
      }
      return;
    }
    case Connection::TxState::kAuthenticating:
      if (c->sock && c->sock->auth.state == auth::State::kDone) {
        tx_connected(c);
      } else if (now >= c->retry_at_ns) {
        c->retry_at_ns = 0;
        tx_lost(c, ETIMEDOUT, "handshake");
      }
      return;
    case Connection::TxState::kConnected:
      if (sctp && c->send_assoc() == 0) {
        if (c->assoc_down_err.exchange(-1) == 0)
          tx_lost(c, 0, "closed by peer");
        else
          tx_lost(c, ECONNRESET, "association down");
        return;
      }
      if (sctp && c->send_assoc() != c->tx_assoc) {
        // Another association took over: rewind for it (what the old one took unacked goes again).
        tx_lost(c, ECONNRESET, "association replaced");
        return;
      }
      if (!cfg_.flush.immediate && unsent < cfg_.flush.min_bytes) {
        if (unsent == 0) return;
        if (!c->flush_at_ns) c->flush_at_ns = now + int64_t(cfg_.flush.delay_us) * 1000;
        if (now < c->flush_at_ns) return;
      }
      c->flush_at_ns = 0;
      if (!c->writable) return;
      if (sctp)
        sctp_flush(c);
      else
        tcp_flush(c);
      return;
  }
}

void Lowcomms::tx_connect(const ConnPtr& c, int64_t now) {
  int err = 0;
  const bool ok = cfg_.transport == Transport::kSctp ? sctp_connect(c, &err) : tcp_connect(c, &err);
  if (!ok) {
    c->ctr.connect_errors++;
    c->retries++;
    c->addr_idx++;
    const int64_t backoff = std::min<int64_t>(int64_t(cfg_.connect_retry_max_ms) * kMs,
                                              100 * kMs << std::min<uint32_t>(c->retries - 1, 4));
    c->retry_at_ns = now + backoff;
    if (c->retries == 1) emit_connect_failure(c, err, "connect");
    return;
  }
  c->tx_state = Connection::TxState::kConnecting;
  if (cfg_.transport == Transport::kSctp) {
    // The association comes up asynchronously (COMM_UP); give it a deadline.
    c->retry_at_ns = now + int64_t(cfg_.sctp.init_max_attempts) * cfg_.sctp.init_max_timeo_ms * kMs +
                     kMs * 1000;
    if (sctp_sendable(*c)) tx_connected(c);
  }
}

void Lowcomms::tx_connected(const ConnPtr& c) {
  c->tx_state = Connection::TxState::kConnected;
  if (cfg_.transport == Transport::kSctp && c->handshake && cfg_.auth) {
    // A new association (or a new handshake on one): new keys, counters from 0, and
    // nothing sealed for the old one goes (the rewind below puts it in the queue again).
    c->sctp_sealed.clear();
    c->sctp_sealer.reset();
    std::lock_guard lk(c->keys_mu);  // the association and its key, as the receive thread set them
    c->tx_assoc = c->send_assoc();
    c->sealer_gen = c->keys_gen;
    if (c->keys_assoc == c->tx_assoc && c->tx_assoc != 0)
      c->sctp_sealer = record::Cipher::make(cfg_.record_mode, c->keys_tx, true);
    // Used: another tx_connected on this association (after a send error that did not end
    // it) must not seal from counter 0 again under the same key; it waits for a new one.
    c->keys_assoc = 0;
    std::memset(c->keys_tx, 0, sizeof c->keys_tx);
  } else {
    c->tx_assoc = c->send_assoc();
  }
  c->assoc_down_err = -1;  // a reason left from an earlier association is not this one's
  c->retries = 0;
  c->retry_at_ns = 0;
  c->writable = true;
  size_t resent;
  {
    std::lock_guard lk(c->mu);
    const bool v32 = c->mc.version() == PeerVersion::k32;
    resent = c->wq.rewind(c->mc.ack_seq(), cfg_.local_nodeid, v32);
    if (v32) c->mc.acked();
  }
  c->ctr.resent += resent;
  c->ctr.connects++;
  if (c->sock && !c->sock->handed_to_rx.exchange(true)) {
    std::lock_guard lk(rx_cmd_mu_);
    rx_add_.push_back(c->sock);
  }
  rx_wake_.signal();
  std::string where;
  {
    std::shared_lock lk(table_mu_);
    if (!c->addrs.empty()) where = addr_to_string(c->addrs[c->addr_idx % c->addrs.size()].sa());
  }
  emit(Event{"connect", c->nodeid, where, resent ? "resent" : "", int64_t(resent)});
  tx_service_locked(c, now_ns());
}

bool Lowcomms::sctp_sendable(Connection& c) {
  const int32_t a = c.send_assoc();
  if (a == 0 || !c.handshake || !cfg_.auth) return a != 0;
  std::lock_guard lk(c.keys_mu);
  return c.keys_assoc == a;
}

void Lowcomms::tx_lost(const ConnPtr& c, int err, const char* why) {
  const bool was_connected = c->tx_state == Connection::TxState::kConnected;
  if (cfg_.transport == Transport::kSctp && c->handshake && cfg_.auth && was_connected &&
      c->tx_assoc != 0 && c->send_assoc() == c->tx_assoc && !sctp_sendable(*c)) {
    // The association still stands but its key is spent: end it, so that a new one (new
    // handshake, new key) takes over instead of waiting for it to go by itself.
    {
      std::lock_guard lk(rx_cmd_mu_);
      rx_kill_nodes_.push_back(c->nodeid);
    }
    rx_wake_.signal();
  }
  if (c->sock) {
    c->sock->dead = true;
    if (!c->sock->abort) ::shutdown(c->sock->fd.get(), SHUT_RDWR);
    epoll_ctl(tx_epoll_.get(), EPOLL_CTL_DEL, c->sock->fd.get(), nullptr);
    {
      std::lock_guard lk(rx_cmd_mu_);
      rx_drop_.push_back(c->sock->id);
    }
    rx_wake_.signal();
    c->sock.reset();
  }
  c->tx_state = Connection::TxState::kIdle;
  c->writable = false;
  c->addr_idx++;
  const int64_t now = now_ns();
  if (was_connected) {
    c->ctr.disconnects++;
    c->retries = 0;
    c->retry_at_ns = now;  // reconnect at once; back off only if that fails
    emit(Event{"disconnect", c->nodeid, err ? std::string(why) + ": " + std::strerror(err) : std::string(why),
               why, err});
  } else {
    c->ctr.connect_errors++;
    c->retries++;
    c->retry_at_ns = now + std::min<int64_t>(int64_t(cfg_.connect_retry_max_ms) * kMs,
                                             100 * kMs << std::min<uint32_t>(c->retries - 1, 4));
    if (c->retries == 1) emit_connect_failure(c, err, why);
  }
}

void Lowcomms::emit_connect_failure(const ConnPtr& c, int err, const char* why) {
  // A peer that is not up yet (refused, no route yet, timed out) is normal in a cluster:
  // a "connecting" event reports the retrying. Anything else is a fault: "error".
  const bool not_up = err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH ||
                      err == ENETUNREACH || err == EHOSTDOWN || err == ECONNRESET ||
                      err == ECONNABORTED;
  const bool connecting = not_up && std::strcmp(why, "authentication") != 0;
  emit(Event{connecting ? "connecting" : "error", c->nodeid,
             std::string(why) + ": " + std::strerror(err), why, err});
}

void Lowcomms::tx_teardown(const ConnPtr& c) {
  if (c->sock) {
    c->sock->dead = true;
    ::shutdown(c->sock->fd.get(), SHUT_RDWR);
    epoll_ctl(tx_epoll_.get(), EPOLL_CTL_DEL, c->sock->fd.get(), nullptr);
    c->sock.reset();
  }
  {
    std::lock_guard lk(rx_cmd_mu_);
    rx_drop_nodes_.push_back(c->nodeid);
  }
  rx_wake_.signal();
  c->tx_state = Connection::TxState::kIdle;
  c->retry_at_ns = 0;
  c->flush_at_ns = 0;
}

}  // namespace lowcomms
