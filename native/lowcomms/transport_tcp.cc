// TCP (transport_tcp.h). Connections from addresses of no configured node are closed at
// once. Which thread runs what: transport.h.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>
#include "dlm/wire.h"
#include "lowcomms/transport_tcp.h"
#include "lowcomms/lowcomms.h"

namespace lowcomms {

namespace {
constexpr size_t kRxBufBytes = 64 * 1024;
constexpr size_t kMaxAcceptedPerNode = 4;  // stale othercons beyond this are closed
constexpr int kReadsPerEvent = 4;
// With auth: records sealed ahead of one send(). Four records: sealing more before the
// first byte goes out idles the receiver (256 KiB measured 0.51-0.60x of auth off at
// 4072 B where 64 KiB gave 0.63-0.75x, side by side; docs/performance.md).
constexpr size_t kSealBufBytes = 64 * 1024;

void set_int(int fd, int level, int opt, int v) { ::setsockopt(fd, level, opt, &v, sizeof v); }
}  // namespace

void TcpTransport::check_local(const std::vector<SockAddr>& local) const {
  if (local.size() > 1)
    throw EngineError{"CONFIG", "TCP can't handle multi-homed hosts, use SCTP (local node has " +
                                    std::to_string(local.size()) + " addresses)",
                      0};
}

bool TcpTransport::link_up(const Connection& c) const { return c.tx_state == Connection::TxState::kConnected; }

int TcpTransport::down_reason(Connection& c) { return c.sock ? c.sock->close_err.load() : -1; }

void TcpTransport::listen() {
  const SockAddr& la = e_.local_[0];
  UniqueFd fd(::socket(la.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw EngineError{"ERRNO", std::string("socket: ") + std::strerror(errno), errno};
  set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  e_.apply_mark(fd.get(), 0);
  if (::bind(fd.get(), la.sa(), la.len) != 0) throw e_.bind_error(la, errno);
  if (::listen(fd.get(), 128) != 0)
    throw EngineError{"ERRNO", std::string("listen: ") + std::strerror(errno), errno};
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &sl);
  e_.bound_port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                              : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenKey;
  epoll_ctl(e_.rx_epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev);
  listen_fd_ = std::move(fd);
}

void TcpTransport::accept() {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    UniqueFd fd(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &sl,
                          SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;  // EAGAIN, or out of fds: the backlog keeps the rest
    e_.gctr_.accepts++;
    const sockaddr* peer = reinterpret_cast<const sockaddr*>(&ss);
    const uint32_t nodeid = e_.nodeid_of(peer);
    if (nodeid == 0 || nodeid == e_.cfg_.local_nodeid) {
      e_.gctr_.rejected++;
      e_.emit(Event{"reject", 0, addr_to_string(peer), "unknown_address", 0});
      continue;  // fd closes here: nothing is sent to an unknown peer
    }
    ConnPtr c = e_.find(nodeid);
    set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
    set_int(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, int(e_.cfg_.tcp_user_timeout_ms));
    try {
      e_.apply_mark(fd.get(), c ? c->mark : 0);
    } catch (const EngineError&) {
      // Checked at listen time already; a failure here only loses the mark.
    }
    // Bound the othercons a node may hold: the oldest one still in its handshake goes, else
    // the oldest (so connects that never complete a handshake cannot push out a good one).
    uint64_t victim = 0, victim_hs = 0;
    size_t mine = 0;
    for (auto& [id, s] : e_.rx_socks_) {
      if (s->nodeid != nodeid || s->outgoing) continue;
      mine++;
      if (!victim || id < victim) victim = id;
      const bool in_hs = s->auth.state == auth::State::kAwaitHello || s->auth.state == auth::State::kAwaitProof;
      if (in_hs && (!victim_hs || id < victim_hs)) victim_hs = id;
    }
    if (mine >= kMaxAcceptedPerNode) e_.rx_drop_socket(victim_hs ? victim_hs : victim, false);
    auto s = std::make_shared<Socket>();
    s->fd = std::move(fd);
    s->id = e_.next_sock_id_++;
    s->nodeid = nodeid;
    s->reset_epoch = c ? c->reset_epoch.load() : 0;
    s->outgoing = false;
    if (c && c->handshake && !e_.auth_start(*s)) continue;  // closes it
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = s->id;
    if (epoll_ctl(e_.rx_epoll_.get(), EPOLL_CTL_ADD, s->fd.get(), &ev) == 0) e_.rx_socks_[s->id] = s;
    if (s->auth.state != auth::State::kOff) e_.rx_handshake_started();
  }
}

void TcpTransport::read_socket(const std::shared_ptr<Socket>& s) {
  // One read buffer for the thread; a socket keeps only its partial message between reads.
  if (rx_buf_.empty()) rx_buf_.resize(kRxBufBytes + dlm::kMaxSocketBufsize);
  uint8_t* buf = rx_buf_.data();
  for (int i = 0; i < kReadsPerEvent && !e_.rx_paused_; i++) {
    const size_t left = s->leftover.size();
    if (left) std::memcpy(buf, s->leftover.data(), left);
    s->leftover.clear();  // it lives in buf now: nothing may read it twice
    const ssize_t r = ::recv(s->fd.get(), buf + left, rx_buf_.size() - left, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      s->leftover.assign(buf, buf + left);
      return;
    }
    if (r <= 0) {
      s->close_err = r == 0 ? 0 : errno;
      e_.rx_drop_socket(s->id, true);
      return;
    }
    ConnPtr c = e_.find(s->nodeid);
    if (!c) {
      e_.rx_drop_socket(s->id, false);
      return;
    }
    const size_t have = left + size_t(r);
    size_t start = 0;
    if (s->auth.state != auth::State::kOff && s->auth.state != auth::State::kDone) {
      // Nothing is read as DLM before the handshake is done.
      const char* fail = nullptr;
      start = e_.rx_auth(s, buf, have, &fail);
      if (fail) {
        e_.rx_auth_failed(s, fail);
        return;
      }
      if (!e_.rx_socks_.count(s->id)) return;  // failed and dropped in rx_auth_check
      if (s->auth.state != auth::State::kDone) {
        if (have - start > auth::kMaxPreAuthBytes) {
          e_.rx_auth_failed(s, "data before authentication");
          return;
        }
        s->leftover.assign(buf + start, buf + have);
        continue;
      }
    }
    if (s->auth.state == auth::State::kDone && s->auth.peer_incarnation != c->peer_incarnation) {
      // A socket of the peer's previous incarnation: its frames belong to a dead session.
      e_.rx_drop_socket(s->id, true);
      return;
    }
    if (!e_.rx_stream(s, *c, buf + start, have - start)) return;
    if (size_t(r) < kRxBufBytes / 2) return;  // drained for now
  }
}

bool TcpTransport::connect(const ConnPtr& c, int* err) {
  SockAddr dst;
  {
    std::shared_lock lk(e_.table_mu_);
    if (c->addrs.empty()) {
      *err = EDESTADDRREQ;
      return false;
    }
    dst = c->addrs[c->addr_idx % c->addrs.size()];
  }
  UniqueFd fd(::socket(dst.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = errno;
    return false;
  }
  set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  set_int(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, int(e_.cfg_.tcp_user_timeout_ms));
  try {
    e_.apply_mark(fd.get(), c->mark);
  } catch (const EngineError&) {
  }
  // Bind the local node's address, port 0, so the peer sees the address it knows us by.
  set_int(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
  SockAddr src = with_port(e_.local_[0], 0);
  ::bind(fd.get(), src.sa(), src.len);  // failure only costs the source address choice
  if (::connect(fd.get(), dst.sa(), dst.len) != 0 && errno != EINPROGRESS) {
    *err = errno;
    return false;
  }
  auto s = std::make_shared<Socket>();
  s->fd = std::move(fd);
  s->id = e_.next_sock_id_++;
  s->nodeid = c->nodeid;
  s->reset_epoch = c->reset_epoch;
  s->outgoing = true;
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLET;
  ev.data.u64 = c->nodeid;
  if (epoll_ctl(e_.tx_epoll_.get(), EPOLL_CTL_ADD, s->fd.get(), &ev) != 0) {
    *err = errno;
    return false;
  }
  c->sock = std::move(s);
  c->writable = false;
  return true;
}

void TcpTransport::connect_progress(const ConnPtr& c, int64_t now) {
  if (!c->writable) return;  // EPOLLOUT says the connect finished, one way or the other
  int err = 0;
  if (!connect_done(c, &err)) {
    e_.tx_lost(c, err, "connect");
  } else if (!c->handshake) {
    e_.tx_connected(c);
  } else if (!e_.auth_start(*c->sock)) {
    e_.tx_lost(c, EIO, "handshake");
  } else {
    e_.tx_await_handshake(c, now);
  }
}

bool TcpTransport::connect_done(const ConnPtr& c, int* err) {
  int e = 0;
  socklen_t l = sizeof e;
  if (!c->sock || ::getsockopt(c->sock->fd.get(), SOL_SOCKET, SO_ERROR, &e, &l) != 0) e = errno;
  *err = e;
  return e == 0;
}

void TcpTransport::tamper(Connection& c, Socket& s) {
  uint8_t* b = s.tx_out.get();
  const size_t first = record::record_len(b) + record::kOverhead;
  using Tamper = Lowcomms::Tamper;
  switch (Tamper(c.tamper.load())) {
    case Tamper::kNone:
      return;
    case Tamper::kFlip:
      b[record::kHeaderLen + (first - record::kOverhead) / 2] ^= 0x40;
      break;
    case Tamper::kInject: {
      constexpr size_t kFake = 64 + record::kOverhead;
      std::memmove(b + kFake, b, s.tx_len);
      std::memset(b, 0x5a, kFake);
      b[0] = 64, b[1] = b[2] = b[3] = 0;
      s.tx_len += kFake;
      break;
    }
    case Tamper::kReplay:
      std::memmove(b + 2 * first, b + first, s.tx_len - first);
      std::memcpy(b + first, b, first);
      s.tx_len += first;
      break;
    case Tamper::kDrop:
      std::memmove(b, b + first, s.tx_len - first);
      s.tx_len -= first;
      break;
    case Tamper::kReorder: {
      SealedMsg& h = c.tamper_held;
      if (!h.len) {
        // Held back until the record after it has gone.
        h.buf = std::make_unique_for_overwrite<uint8_t[]>(first);
        h.cap = h.len = first;
        std::memcpy(h.buf.get(), b, first);
        std::memmove(b, b + first, s.tx_len - first);
        s.tx_len -= first;
        if (s.tx_len == 0) return;
      }
      const size_t next = record::record_len(b) + record::kOverhead;
      std::memmove(b + next + h.len, b + next, s.tx_len - next);
      std::memcpy(b + next, h.buf.get(), h.len);
      s.tx_len += h.len;
      h = SealedMsg{};
      break;
    }
  }
  c.tamper = 0;
}

void TcpTransport::flush_sealed(const ConnPtr& c) {
  Socket& s = *c->sock;
  // Room beyond kSealBufBytes for what tamper_records() may add (a replayed or forged record).
  if (!s.tx_out) s.tx_out = std::make_unique_for_overwrite<uint8_t[]>(kSealBufBytes + 2 * (record::kMaxTcpPlain + record::kOverhead));
  iovec iov[64];
  for (int round = 0; round < 64; round++) {
    if (s.tx_off == s.tx_len) {
      // Seal what is queued into records, as many as the buffer takes; the write queue
      // counts them as sent (a connection lost before they are rewinds like any other).
      s.tx_off = s.tx_len = 0;
      while (kSealBufBytes - s.tx_len >= record::kMaxTcpPlain + record::kOverhead) {
        int n;
        uint64_t gen;
        {
          std::lock_guard lk(c->mu);
          n = c->wq.gather(iov, 64, record::kMaxTcpPlain, &gen);
        }
        if (n == 0) break;
        size_t plain = 0;
        int used = 0;
        for (; used < n && plain < record::kMaxTcpPlain; used++) {
          iov[used].iov_len = std::min(iov[used].iov_len, record::kMaxTcpPlain - plain);
          plain += iov[used].iov_len;
        }
        if (!s.sealer->seal(iov, used, plain, s.tx_out.get() + s.tx_len)) {
          e_.tx_lost(c, EIO, "record protection");
          return;
        }
        s.tx_len += plain + record::kOverhead;
        e_.tx_advanced(c, plain, gen);
      }
      if (s.tx_len == 0) return;
      if (c->tamper) tamper(*c, s);
      if (s.tx_len == 0) continue;  // the only record was dropped
    }
    const ssize_t r = ::send(s.fd.get(), s.tx_out.get() + s.tx_off, s.tx_len - s.tx_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    c->ctr.tx_syscalls++;
    if (r > 0) {
      s.tx_off += size_t(r);
      c->ctr.tx_bytes += uint64_t(r);
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->writable = false;  // EPOLLOUT (edge) brings us back
      return;
    }
    e_.tx_lost(c, r < 0 ? errno : EPIPE, "send");
    return;
  }
  e_.kick_tx(c);
}

TxRound TcpTransport::write_round(const ConnPtr& c, int* err) {
  iovec iov[64];
  uint64_t gen;
  int n;
  {
    std::lock_guard lk(c->mu);
    n = c->wq.gather(iov, 64, 1 << 20, &gen);
  }
  if (n == 0) return TxRound::kEmpty;
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = size_t(n);
  const ssize_t r = ::sendmsg(c->sock->fd.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  c->ctr.tx_syscalls++;
  if (r > 0) {
    c->ctr.tx_bytes += uint64_t(r);
    e_.tx_advanced(c, size_t(r), gen);
    return TxRound::kSent;
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return TxRound::kAgain;
  *err = r < 0 ? errno : EPIPE;
  return TxRound::kError;
}

void TcpTransport::flush(const ConnPtr& c) {
  if (c->sock->sealer) {
    flush_sealed(c);
    return;
  }
  for (int round = 0; round < 64; round++) {
    int err = 0;
    switch (write_round(c, &err)) {
      case TxRound::kEmpty:
        return;
      case TxRound::kSent:
        continue;
      case TxRound::kAgain:
        c->writable = false;  // EPOLLOUT (edge) brings us back
        return;
      case TxRound::kError:
        e_.tx_lost(c, err, "send");
        return;
    }
  }
  e_.kick_tx(c);  // more queued: come back after the other nodes had their turn
}

}  // namespace lowcomms
