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
      } else if (transport_->tx_event(key, work)) {
        // the transport's own key (SCTP: its socket writable)
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
  tx_check_down(c);
  bool has_work;
  size_t unsent;
  {
    std::lock_guard lk(c->mu);
    unsent = c->wq.unsent_bytes();
    has_work = unsent > 0 || !c->sendq.empty();
  }
  switch (c->tx_state.load()) {
    case Connection::TxState::kIdle:
      tx_idle(c, now, has_work);
      return;
    case Connection::TxState::kConnecting:
      transport_->connect_progress(c, now);
      return;
    case Connection::TxState::kAuthenticating:
      tx_authenticating(c, now);
      return;
    case Connection::TxState::kConnected:
      tx_connected_flush(c, now, unsent);
      return;
  }
}

void Lowcomms::tx_check_down(const ConnPtr& c) {
  if (c->tx_state == Connection::TxState::kIdle ||
      !(c->sock_failed.exchange(false) || (c->sock && c->sock->dead)))
    return;
  // Say what the receive thread saw: an orderly close by the peer is not a reset.
  const int e = transport_->down_reason(*c);
  if (e == 0)
    tx_lost(c, 0, "closed by peer");
  else
    tx_lost(c, e > 0 ? e : ECONNRESET,
            c->tx_state == Connection::TxState::kConnecting ? "connect" : "connection closed");
}

void Lowcomms::tx_idle(const ConnPtr& c, int64_t now, bool has_work) {
  if (!has_work) return;
  if (now < c->retry_at_ns) return;
  c->retry_at_ns = 0;
  tx_connect(c, now);
}

void Lowcomms::tx_await_handshake(const ConnPtr& c, int64_t now) {
  c->tx_state = Connection::TxState::kAuthenticating;
  c->retry_at_ns = now + 5000 * kMs;
  c->sock->handed_to_rx = true;
  {
    std::lock_guard lk(rx_cmd_mu_);
    rx_add_.push_back(c->sock);
  }
  rx_wake_.signal();
}

void Lowcomms::tx_authenticating(const ConnPtr& c, int64_t now) {
  if (c->sock && c->sock->auth.state == auth::State::kDone) {
    tx_connected(c);
  } else if (now >= c->retry_at_ns) {
    c->retry_at_ns = 0;
    tx_lost(c, ETIMEDOUT, "handshake");
  }
}

void Lowcomms::tx_connected_flush(const ConnPtr& c, int64_t now, size_t unsent) {
  if (!transport_->link_current(c)) return;
  if (!cfg_.flush.immediate && unsent < cfg_.flush.min_bytes) {
    if (unsent == 0) return;
    if (!c->flush_at_ns) c->flush_at_ns = now + int64_t(cfg_.flush.delay_us) * 1000;
    if (now < c->flush_at_ns) return;
  }
  c->flush_at_ns = 0;
  if (!c->writable) return;
  transport_->flush(c);
}

void Lowcomms::tx_connect(const ConnPtr& c, int64_t now) {
  int err = 0;
  if (!transport_->connect(c, &err)) {
    c->addr_idx++;
    tx_retry_later(c, now, err, "connect");
    return;
  }
  c->tx_state = Connection::TxState::kConnecting;
  transport_->connect_begun(c, now);
}

void Lowcomms::tx_retry_later(const ConnPtr& c, int64_t now, int err, const char* why) {
  c->ctr.connect_errors++;
  c->retries++;
  // 100 ms, doubling up to 1.6 s, never past connect_retry_max_ms.
  c->retry_at_ns = now + std::min<int64_t>(int64_t(cfg_.connect_retry_max_ms) * kMs,
                                           100 * kMs << std::min<uint32_t>(c->retries - 1, 4));
  if (c->retries == 1) emit_connect_failure(c, err, why);
}

void Lowcomms::tx_connected(const ConnPtr& c) {
  c->tx_state = Connection::TxState::kConnected;
  transport_->on_connected(*c);
  c->retries = 0;
  c->retry_at_ns = 0;
  c->writable = true;
  size_t resent;
  {
    std::lock_guard lk(c->mu);
    const bool v32 = c->mc.version() == PeerVersion::k32;
    resent = c->sendq.resend(c->wq, c->mc.ack_seq(), cfg_.local_nodeid, v32);
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

void Lowcomms::tx_lost(const ConnPtr& c, int err, const char* why) {
  const bool was_connected = c->tx_state == Connection::TxState::kConnected;
  transport_->on_lost(c, was_connected);
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
    tx_retry_later(c, now, err, why);
  }
}

void Lowcomms::tx_advanced(const ConnPtr& c, size_t n, uint64_t gen) {
  bool drained;
  {
    std::lock_guard lk(c->mu);
    c->wq.advance(n, gen);
    drained = drain_due_locked(*c);
  }
  if (drained) emit(Event{"drain", c->nodeid, "", "", 0});
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
