// SCTP (transport_sctp.h): set-up, reading, notifications, connecting and sending. The
// per-association handshake is in transport_sctp_auth.cc. Which thread runs what:
// transport.h and the header.
// The uapi header wants the libc socket types declared first.
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <cstdint>
#include <linux/sctp.h>
#include <algorithm>
#include <tuple>
#include <cerrno>
#include <cstring>
#include "lowcomms/transport_sctp.h"
#include "lowcomms/lowcomms.h"
#include "util/clock.h"

namespace lowcomms {

#ifndef SOL_SCTP
#define SOL_SCTP IPPROTO_SCTP
#endif

namespace {
constexpr size_t kSctpRxBytes = 256 * 1024;
constexpr int kMaxMsgs = 32;
// With auth: sealed-message buffers kept for reuse per node (each up to an entry + 20 B).
constexpr size_t kSealedSpares = 8;
// Aborted associations remembered until their COMM_LOST (one is read soon after each).
constexpr size_t kMaxAborted = 256;
constexpr int64_t kMs = 1000000;

template <class T>
bool set_opt(int fd, int opt, const T& v) {
  return ::setsockopt(fd, SOL_SCTP, opt, &v, sizeof v) == 0;
}

const char* path_state_name(int s) {
  switch (s) {
    case SCTP_ADDR_AVAILABLE: return "available";
    case SCTP_ADDR_UNREACHABLE: return "unreachable";
    case SCTP_ADDR_REMOVED: return "removed";
    case SCTP_ADDR_ADDED: return "added";
    case SCTP_ADDR_MADE_PRIM: return "primary";
    case SCTP_ADDR_CONFIRMED: return "confirmed";
    case SCTP_ADDR_POTENTIALLY_FAILED: return "potentially_failed";
  }
  return "unknown";
}

const char* assoc_state_name(int s) {
  switch (s) {
    case SCTP_COMM_UP: return "up";
    case SCTP_COMM_LOST: return "lost";
    case SCTP_RESTART: return "restart";
    case SCTP_SHUTDOWN_COMP: return "shutdown";
    case SCTP_CANT_STR_ASSOC: return "cant_start";
  }
  return "unknown";
}
}  // namespace

void SctpTransport::attach_sndinfo(msghdr& mh, char* cbuf, size_t cbuf_len, const sctp_sndinfo& si) {
  std::memset(cbuf, 0, cbuf_len);
  mh.msg_control = cbuf;
  mh.msg_controllen = cbuf_len;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = IPPROTO_SCTP;
  cm->cmsg_type = SCTP_SNDINFO;
  cm->cmsg_len = CMSG_LEN(sizeof si);
  std::memcpy(CMSG_DATA(cm), &si, sizeof si);
}

// ---- set-up (JS thread) ----

void SctpTransport::tune_assoc(int32_t assoc_id) {
  const int fd = fd_.get();
  const SctpTuning& t = e_.cfg_.sctp;
  sctp_rtoinfo rto{};
  rto.srto_assoc_id = assoc_id;
  rto.srto_initial = t.rto_initial_ms;
  rto.srto_max = t.rto_max_ms;
  rto.srto_min = t.rto_min_ms;
  set_opt(fd, SCTP_RTOINFO, rto);
  sctp_paddrparams pp{};
  pp.spp_assoc_id = assoc_id;
  pp.spp_hbinterval = t.hb_interval_ms;
  pp.spp_pathmaxrxt = t.path_max_retrans;
  pp.spp_flags = SPP_HB_ENABLE;
  if (t.sack_delay_ms) {
    pp.spp_sackdelay = t.sack_delay_ms;
    pp.spp_flags |= SPP_SACKDELAY_ENABLE;
  }
  set_opt(fd, SCTP_PEER_ADDR_PARAMS, pp);
  sctp_paddrthlds th{};
  th.spt_assoc_id = assoc_id;
  th.spt_pathmaxrxt = t.path_max_retrans;
  th.spt_pathpfthld = t.pf_retrans;
  set_opt(fd, SCTP_PEER_ADDR_THLDS, th);
  sctp_assocparams ap{};
  ap.sasoc_assoc_id = assoc_id;
  ap.sasoc_asocmaxrxt = t.assoc_max_retrans;
  set_opt(fd, SCTP_ASSOCINFO, ap);
}

void SctpTransport::listen() {
  const Config& cfg = e_.cfg_;
  const SockAddr& la = e_.local_[0];
  UniqueFd fd(::socket(la.family(), SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_SCTP));
  if (!fd) {
    const int e = errno;
    throw EngineError{"ESOCKTNOSUPPORT", std::string("socket(SOCK_SEQPACKET, IPPROTO_SCTP): ") +
                                             std::strerror(e),
                      e};
  }
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Linux SCTP does not autotune: without room for a window of messages it stalls.
  for (auto [force, plain, v] : {std::tuple{SO_SNDBUFFORCE, SO_SNDBUF, cfg.sctp.sndbuf},
                                 std::tuple{SO_RCVBUFFORCE, SO_RCVBUF, cfg.sctp.rcvbuf}}) {
    const int iv = int(v);
    if (::setsockopt(fd.get(), SOL_SOCKET, force, &iv, sizeof iv) != 0)
      ::setsockopt(fd.get(), SOL_SOCKET, plain, &iv, sizeof iv);
  }
  e_.apply_mark(fd.get(), 0);
  set_opt(fd.get(), SCTP_NODELAY, one);
  set_opt(fd.get(), SCTP_RECVRCVINFO, one);
  for (uint16_t type : {uint16_t(SCTP_ASSOC_CHANGE), uint16_t(SCTP_PEER_ADDR_CHANGE),
                        uint16_t(SCTP_SHUTDOWN_EVENT), uint16_t(SCTP_SEND_FAILED_EVENT),
                        uint16_t(SCTP_PARTIAL_DELIVERY_EVENT)}) {
    sctp_event ev{};
    ev.se_assoc_id = 0;  // SCTP_FUTURE_ASSOC: every association of this socket
    ev.se_type = type;
    ev.se_on = 1;
    set_opt(fd.get(), SCTP_EVENT, ev);
  }
  sctp_initmsg im{};
  im.sinit_num_ostreams = 1;
  im.sinit_max_instreams = 1;
  im.sinit_max_attempts = cfg.sctp.init_max_attempts;
  im.sinit_max_init_timeo = cfg.sctp.init_max_timeo_ms;
  set_opt(fd.get(), SCTP_INITMSG, im);

  if (::bind(fd.get(), la.sa(), la.len) != 0) throw e_.bind_error(la, errno);
  const std::vector<SockAddr>& local = e_.local_;
  for (size_t i = 1; i < local.size(); i++) {
    if (::setsockopt(fd.get(), SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, local[i].sa(), local[i].len) != 0) {
      const int e = errno;
      throw EngineError{"ERRNO", "sctp_bindx " + addr_to_string(local[i].sa()) + ": " + std::strerror(e), e};
    }
  }
  if (::listen(fd.get(), 128) != 0)
    throw EngineError{"ERRNO", std::string("listen (SCTP): ") + std::strerror(errno), errno};
  fd_ = std::move(fd);
  // Endpoint defaults, inherited by every association; COMM_UP applies them again.
  tune_assoc(0);
  e_.bound_port_ = cfg.port;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenKey;
  epoll_ctl(e_.rx_epoll_.get(), EPOLL_CTL_ADD, fd_.get(), &ev);
  ev.events = EPOLLOUT | EPOLLET;
  ev.data.u64 = kSctpKey;
  epoll_ctl(e_.tx_epoll_.get(), EPOLL_CTL_ADD, fd_.get(), &ev);
  buf_.resize(kSctpRxBytes);
}

// ---- association bookkeeping (receive thread) ----

ConnPtr SctpTransport::conn_of_assoc(int32_t assoc_id) {
  auto it = assoc_nodes_.find(assoc_id);
  if (it != assoc_nodes_.end()) return e_.find(it->second);
  // Our own connect attempt, not up yet: the send thread stored its id.
  for (auto& c : e_.all_connections())
    if (link(*c).assoc_id == assoc_id) return c;
  return nullptr;
}

void SctpTransport::abort(int32_t assoc_id) {
  char cbuf[CMSG_SPACE(sizeof(sctp_sndinfo))];
  msghdr mh{};
  sctp_sndinfo si{};
  si.snd_flags = SCTP_ABORT;
  si.snd_assoc_id = assoc_id;
  attach_sndinfo(mh, cbuf, sizeof cbuf, si);
  ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (assoc_id == 0 || was_aborted(assoc_id)) return;
  if (aborted_.size() >= kMaxAborted) aborted_.pop_front();
  aborted_.push_back(assoc_id);
}

bool SctpTransport::was_aborted(int32_t assoc_id) const {
  return std::find(aborted_.begin(), aborted_.end(), assoc_id) != aborted_.end();
}

void SctpTransport::forget_aborted(int32_t assoc_id) {
  auto it = std::find(aborted_.begin(), aborted_.end(), assoc_id);
  if (it != aborted_.end()) aborted_.erase(it);
}

void SctpTransport::forget_assoc(int32_t assoc_id) {
  assoc_nodes_.erase(assoc_id);
  assoc_epochs_.erase(assoc_id);
  end_session(assoc_id);
}

void SctpTransport::drop_node(uint32_t nodeid) {
  for (auto it = assoc_nodes_.begin(); it != assoc_nodes_.end();) {
    if (it->second != nodeid) {
      ++it;
      continue;
    }
    abort(it->first);
    end_session(it->first);
    assoc_epochs_.erase(it->first);
    it = assoc_nodes_.erase(it);
  }
}

void SctpTransport::kill_node(uint32_t nodeid) {
  drop_node(nodeid);
  // Every association with the node is gone, whichever id the send thread knew it by.
  if (ConnPtr c = e_.find(nodeid)) {
    link(*c).assoc_up = false;
    link(*c).assoc_id = 0;
    link(*c).authed_assoc = 0;
    c->sock_failed = true;
    e_.kick_tx(c);
  }
}

void SctpTransport::drop_assoc(const ConnPtr& c, int32_t assoc_id) {
  SctpLink& l = link(*c);
  abort(assoc_id);
  forget_assoc(assoc_id);
  const bool ours = send_assoc(*c) == assoc_id;
  if (l.authed_assoc == assoc_id) l.authed_assoc = 0;
  if (l.assoc_id == assoc_id) {
    const int32_t keep = l.authed_assoc.load();
    l.assoc_id = keep;
    l.assoc_up = keep != 0;
  }
  // A stranger's association going takes nothing of ours with it.
  if (ours) c->sock_failed = true;
  e_.kick_tx(c);
}

// ---- notifications (receive thread) ----

void SctpTransport::on_notification(const uint8_t* data, size_t len) {
  union sctp_notification sn;
  std::memcpy(&sn, data, std::min(len, sizeof sn));
  switch (sn.sn_header.sn_type) {
    case SCTP_ASSOC_CHANGE: {
      const sctp_assoc_change& ac = sn.sn_assoc_change;
      // The id is live again (COMM_UP) or gone for good: either way no longer ours to ignore.
      forget_aborted(ac.sac_assoc_id);
      if (ac.sac_state == SCTP_COMM_UP || ac.sac_state == SCTP_RESTART)
        on_assoc_up(ac.sac_assoc_id, ac.sac_state);
      else
        on_assoc_down(ac.sac_assoc_id, ac.sac_state);
      return;
    }
    case SCTP_PEER_ADDR_CHANGE:
      on_path_change(sn.sn_paddr_change);
      return;
    case SCTP_SHUTDOWN_EVENT:
      on_shutdown(sn.sn_shutdown_event.sse_assoc_id);
      return;
    case SCTP_SEND_FAILED_EVENT:
      // The data is still in the write queue's unacked set: midcomms resends it.
      if (ConnPtr c = conn_of_assoc(sn.sn_send_failed_event.ssf_assoc_id))
        e_.emit(Event{"error", c->nodeid, "SCTP send failed", "send_failed",
                      int64_t(sn.sn_send_failed_event.ssf_error)});
      return;
    default:
      return;
  }
}

void SctpTransport::on_assoc_up(int32_t id, int state) {
  // Which node is this? Its primary address must belong to a configured node.
  sctp_prim prim{};
  prim.ssp_assoc_id = id;
  socklen_t pl = sizeof prim;
  uint32_t nodeid = 0;
  std::string addr = "?";
  if (::getsockopt(fd_.get(), SOL_SCTP, SCTP_PRIMARY_ADDR, &prim, &pl) == 0) {
    sockaddr_storage ss;
    std::memcpy(&ss, &prim.ssp_addr, sizeof ss);
    nodeid = e_.nodeid_of(reinterpret_cast<sockaddr*>(&ss));
    addr = addr_to_string(reinterpret_cast<sockaddr*>(&ss));
  }
  if (addr == "?") return;  // already gone again; data, if any, is mapped by its source
  ConnPtr c = nodeid && nodeid != e_.cfg_.local_nodeid ? e_.find(nodeid) : nullptr;
  if (!c) {
    e_.gctr_.rejected++;
    abort(id);
    e_.emit(Event{"reject", 0, addr, "unknown_address", 0});
    return;
  }
  assoc_nodes_[id] = nodeid;
  assoc_epochs_[id] = c->reset_epoch;
  tune_assoc(id);
  // A lowcomms peer's new association takes over once proven (send_assoc); a kernel
  // peer's at once.
  const bool restart = state == SCTP_RESTART || (!c->handshake && link(*c).assoc_up && link(*c).assoc_id != id);
  // SCTP_RESTART keeps the id: whatever this association had proven is void until
  // its new handshake is done (a keyless host could restart it otherwise).
  if (link(*c).authed_assoc == id) link(*c).authed_assoc = 0;
  link(*c).assoc_id = id;
  link(*c).assoc_up = true;
  // A restart is a new session: rewind as after any reconnect.
  if (restart) c->sock_failed = true;
  e_.emit(Event{"assoc", nodeid, addr, assoc_state_name(state), id});
  if (c->handshake) auth_start(c, id);
  e_.kick_tx(c);
}

void SctpTransport::on_assoc_down(int32_t id, int state) {
  ConnPtr c = conn_of_assoc(id);
  forget_assoc(id);
  if (!c) return;
  SctpLink& l = link(*c);
  if (l.assoc_id == id) {
    // The latest association went; a proven older one, if any, is still the one.
    const int32_t keep = l.authed_assoc != id ? l.authed_assoc.load() : 0;
    l.assoc_id = keep;
    l.assoc_up = keep != 0;
    if (!c->handshake) c->sock_failed = true;
  }
  if (send_assoc(*c) == 0 || l.authed_assoc == id)
    l.down_err = state == SCTP_SHUTDOWN_COMP    ? 0
                        : state == SCTP_CANT_STR_ASSOC ? ECONNREFUSED  // the setup failed
                                                       : ECONNRESET;
  if (l.authed_assoc == id) {
    l.authed_assoc = 0;
    c->sock_failed = true;
  }
  l.partial.clear();
  e_.emit(Event{"assoc", c->nodeid, "", assoc_state_name(state), id});
  e_.kick_tx(c);
}

void SctpTransport::on_path_change(const sctp_paddr_change& pc) {
  sockaddr_storage ss;
  std::memcpy(&ss, &pc.spc_aaddr, sizeof ss);
  auto it = assoc_nodes_.find(pc.spc_assoc_id);
  e_.emit(Event{"path", it == assoc_nodes_.end() ? 0 : it->second,
                addr_to_string(reinterpret_cast<sockaddr*>(&ss)), path_state_name(pc.spc_state),
                pc.spc_error});
}

void SctpTransport::on_shutdown(int32_t id) {
  if (ConnPtr c = conn_of_assoc(id); c && send_assoc(*c) == id) {
    link(*c).down_err = 0;  // the peer is shutting the association down in order
    c->sock_failed = true;
    e_.kick_tx(c);
  }
}

// ---- reading (receive thread) ----

void SctpTransport::read() {
  for (int round = 0; round < 64 && !e_.rx_paused_; round++) {
    Received m;
    if (!receive(&m)) return;  // EAGAIN, or an error the association events report
    if (m.flags & MSG_NOTIFICATION) {
      on_notification(buf_.data(), m.len);
      continue;
    }
    ConnPtr c = conn_of_message(m);
    if (!c || !past_handshake(c, m)) continue;
    const uint8_t* data = buf_.data();
    size_t len = m.len;
    if (!whole_message(*c, m, &data, &len)) continue;
    if (c->handshake && e_.cfg_.auth && !open_record(c, m.assoc_id, &data, &len)) continue;
    deliver(*c, m.assoc_id, data, len);
  }
}

bool SctpTransport::receive(Received* m) {
  iovec iov{buf_.data(), buf_.size()};
  char cbuf[CMSG_SPACE(sizeof(sctp_rcvinfo))];
  msghdr mh{};
  mh.msg_name = &m->from;
  mh.msg_namelen = sizeof m->from;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  const ssize_t r = ::recvmsg(fd_.get(), &mh, MSG_DONTWAIT);
  if (r < 0) return false;
  m->len = size_t(r);
  m->flags = mh.msg_flags;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == IPPROTO_SCTP && cm->cmsg_type == SCTP_RCVINFO) {
      sctp_rcvinfo ri;
      std::memcpy(&ri, CMSG_DATA(cm), sizeof ri);
      m->assoc_id = ri.rcv_assoc_id;
      m->ppid = ri.rcv_ppid;
    }
  }
  return true;
}

ConnPtr SctpTransport::conn_of_message(const Received& m) {
  const int32_t assoc_id = m.assoc_id;
  auto it = assoc_nodes_.find(assoc_id);
  if (it != assoc_nodes_.end()) {
    if (ConnPtr c = e_.find(it->second)) return c;
  } else if (was_aborted(assoc_id)) {
    // Queued before we aborted it: its sender resends what we did not ack.
    e_.gctr_.stale_dropped++;
    return nullptr;
  }
  // Data before COMM_UP was processed, or from nobody we know.
  const sockaddr* from = reinterpret_cast<const sockaddr*>(&m.from);
  const uint32_t nodeid = e_.nodeid_of(from);
  ConnPtr c = nodeid && nodeid != e_.cfg_.local_nodeid ? e_.find(nodeid) : nullptr;
  if (!c) {
    e_.gctr_.rejected++;
    abort(assoc_id);
    e_.emit(Event{"reject", 0, addr_to_string(from), "unknown_address", 0});
    return nullptr;
  }
  assoc_nodes_[assoc_id] = c->nodeid;
  assoc_epochs_[assoc_id] = c->reset_epoch;
  if (!link(*c).assoc_up) {
    // Its COMM_UP went unanswered (the association was briefly unreadable): adopt it.
    link(*c).assoc_id = assoc_id;
    link(*c).assoc_up = true;
    if (c->handshake) auth_start(c, assoc_id);
    e_.kick_tx(c);
    if (!assoc_nodes_.count(assoc_id)) return nullptr;  // its handshake could not start: dropped
  }
  return c;
}

bool SctpTransport::past_handshake(const ConnPtr& c, const Received& m) {
  if (!c->handshake) return true;
  const int32_t assoc_id = m.assoc_id;
  const uint8_t* data = buf_.data();
  auto sit = sessions_.find(assoc_id);
  bool done = sit != sessions_.end() && sit->second.state == auth::State::kDone;
  const bool ctrl = m.ppid == kAuthPpid && (m.flags & MSG_EOR);
  // A HELLO after the handshake: the peer started over on this association (a
  // restart we were not told of yet). DLM data never starts with the magic.
  if (done && ctrl && m.len >= 4 && auth::is_magic(data, auth::kHelloMagic)) {
    if (link(*c).authed_assoc == assoc_id) link(*c).authed_assoc = 0;
    auth_start(c, assoc_id);
    if (!sessions_.count(assoc_id)) return false;
    done = false;
  }
  if (!done) {
    if (ctrl)
      auth_message(c, assoc_id, data, m.len);
    else
      auth_failed(c, assoc_id, "data before the handshake");
    return false;
  }
  if (sit->second.peer_incarnation != c->peer_incarnation) {
    // An association of the peer's previous incarnation: a dead session's frames.
    e_.gctr_.stale_dropped++;
    return false;
  }
  return true;
}

bool SctpTransport::whole_message(Connection& c, const Received& m, const uint8_t** data, size_t* len) {
  SctpLink& l = link(c);
  const bool eor = m.flags & MSG_EOR;
  if (eor && l.partial.empty()) return true;
  // Partial delivery of a large message: gather until MSG_EOR.
  l.partial.insert(l.partial.end(), *data, *data + *len);
  if (!eor) {
    if (l.partial.size() > 16 * dlm::kMaxSocketBufsize * 16) {
      c.ctr.bad_frames++;
      l.partial.clear();
      abort(m.assoc_id);
    }
    return false;
  }
  *data = l.partial.data();
  *len = l.partial.size();
  return true;
}

bool SctpTransport::open_record(const ConnPtr& c, int32_t assoc_id, const uint8_t** data, size_t* len) {
  // One message, one record: nothing of it is read before its tag checks out.
  auto op = openers_.find(assoc_id);
  const size_t plen = *len >= record::kOverhead ? *len - record::kOverhead : 0;
  if (plain_.size() < plen) plain_.resize(plen);
  if (op == openers_.end() || *len < record::kOverhead || record::record_len(*data) != plen ||
      !op->second->open(*data, plen, plain_.data())) {
    link(*c).partial.clear();
    e_.rx_bad_record(*c, "record failed authentication");
    drop_assoc(c, assoc_id);
    return false;
  }
  *data = plain_.data();
  *len = plen;
  return true;
}

void SctpTransport::deliver(Connection& c, int32_t assoc_id, const uint8_t* data, size_t len) {
  size_t consumed = 0;
  bool stale = false;
  auto ep = assoc_epochs_.find(assoc_id);
  const uint32_t epoch = ep == assoc_epochs_.end() ? c.reset_epoch.load() : ep->second;
  const bool ok = e_.rx_process(c, epoch, const_cast<uint8_t*>(data), len, &consumed, &stale);
  link(c).partial.clear();
  if (stale) {
    e_.gctr_.stale_dropped++;  // an association of before a resetNode(): its abort is under way
    return;
  }
  if (!ok || consumed != len) {
    // An SCTP message holds whole DLM messages; anything else is malformed.
    c.ctr.bad_frames++;
    e_.emit(Event{"error", c.nodeid, "malformed SCTP message: association aborted", "bad_frame", 0});
    abort(assoc_id);
  }
}

// ---- connecting (send thread) ----

bool SctpTransport::connect(const ConnPtr& c, int* err) {
  if (link(*c).assoc_up) return true;
  std::vector<uint8_t> packed;
  {
    std::shared_lock lk(e_.table_mu_);
    if (c->addrs.empty()) {
      *err = EDESTADDRREQ;
      return false;
    }
    // Start with the address after the last one tried, so each attempt leads with another.
    const size_t n = c->addrs.size();
    for (size_t i = 0; i < n; i++) {
      const SockAddr& a = c->addrs[(c->addr_idx + i) % n];
      const auto* p = reinterpret_cast<const uint8_t*>(&a.ss);
      packed.insert(packed.end(), p, p + a.len);
    }
  }
  sctp_getaddrs_old param{};
  param.assoc_id = 0;
  param.addr_num = int(packed.size());  // despite the name: the size in bytes
  param.addrs = reinterpret_cast<sockaddr*>(packed.data());
  socklen_t pl = sizeof param;
  const int r = ::getsockopt(fd_.get(), SOL_SCTP, SCTP_SOCKOPT_CONNECTX3, &param, &pl);
  if (r == 0 || errno == EINPROGRESS) {
    if (!link(*c).assoc_up) link(*c).assoc_id = param.assoc_id;
    return true;
  }
  if (errno == EALREADY || errno == EISCONN) return true;  // the peer's INIT won the race
  *err = errno;
  return false;
}

void SctpTransport::connect_begun(const ConnPtr& c, int64_t now) {
  // The association comes up asynchronously (COMM_UP); give it a deadline.
  const SctpTuning& t = e_.cfg_.sctp;
  c->retry_at_ns = now + int64_t(t.init_max_attempts) * t.init_max_timeo_ms * kMs + kMs * 1000;
  if (sendable(*c)) e_.tx_connected(c);
}

void SctpTransport::connect_progress(const ConnPtr& c, int64_t now) {
  // To a lowcomms peer, an association carries DLM only once its handshake is done.
  if (sendable(*c)) {
    e_.tx_connected(c);
  } else if (c->retry_at_ns && now >= c->retry_at_ns) {
    c->retry_at_ns = 0;
    e_.tx_lost(c, ETIMEDOUT, "association setup");
  }
}

bool SctpTransport::tx_event(uint64_t key, std::vector<ConnPtr>& work) {
  if (key != kSctpKey) return false;
  // One socket for every association: each node may have been waiting for it.
  for (auto& c : e_.all_connections()) {
    c->writable = true;
    work.push_back(c);
  }
  return true;
}

bool SctpTransport::sendable(Connection& c) {
  const int32_t a = send_assoc(c);
  if (a == 0 || !c.handshake || !e_.cfg_.auth) return a != 0;
  std::lock_guard lk(link(c).keys_mu);
  return link(c).keys_assoc == a;
}

void SctpTransport::on_connected(Connection& c) {
  SctpLink& l = link(c);
  if (c.handshake && e_.cfg_.auth) {
    // A new association (or a new handshake on one): new keys, counters from 0, and
    // nothing sealed for the old one goes (the rewind puts it in the queue again).
    l.sealed.clear();
    l.sealer.reset();
    std::lock_guard lk(l.keys_mu);  // the association and its key, as the receive thread set them
    l.tx_assoc = send_assoc(c);
    l.sealer_gen = l.keys_gen;
    if (l.keys_assoc == l.tx_assoc && l.tx_assoc != 0)
      l.sealer = record::Cipher::make(e_.cfg_.record_mode, l.keys_tx, true);
    // Used: another tx_connected on this association (after a send error that did not end
    // it) must not seal from counter 0 again under the same key; it waits for a new one.
    l.keys_assoc = 0;
    std::memset(l.keys_tx, 0, sizeof l.keys_tx);
  } else {
    l.tx_assoc = send_assoc(c);
  }
  l.down_err = -1;  // a reason left from an earlier association is not this one's
}

void SctpTransport::on_lost(const ConnPtr& c, bool was_connected) {
  if (c->handshake && e_.cfg_.auth && was_connected && link(*c).tx_assoc != 0 &&
      send_assoc(*c) == link(*c).tx_assoc && !sendable(*c)) {
    // The association still stands but its key is spent: end it, so that a new one (new
    // handshake, new key) takes over instead of waiting for it to go by itself.
    {
      std::lock_guard lk(e_.rx_cmd_mu_);
      e_.rx_kill_nodes_.push_back(c->nodeid);
    }
    e_.rx_wake_.signal();
  }
}

bool SctpTransport::link_current(const ConnPtr& c) {
  if (send_assoc(*c) == 0) {
    if (link(*c).down_err.exchange(-1) == 0)
      e_.tx_lost(c, 0, "closed by peer");
    else
      e_.tx_lost(c, ECONNRESET, "association down");
    return false;
  }
  if (send_assoc(*c) != link(*c).tx_assoc) {
    // Another association took over: rewind for it (what the old one took unacked goes again).
    e_.tx_lost(c, ECONNRESET, "association replaced");
    return false;
  }
  return true;
}

// ---- sending (send thread) ----

void SctpTransport::tamper(Connection& c) {
  using Tamper = Lowcomms::Tamper;
  auto& q = link(c).sealed;
  auto copy = [](const SealedMsg& m) {
    SealedMsg d;
    d.cap = d.len = m.len;
    d.buf = std::make_unique_for_overwrite<uint8_t[]>(m.len);
    std::memcpy(d.buf.get(), m.buf.get(), m.len);
    return d;
  };
  switch (Tamper(c.tamper.load())) {
    case Tamper::kNone:
      return;
    case Tamper::kFlip:
      q.front().buf[record::kHeaderLen + (q.front().len - record::kOverhead) / 2] ^= 0x40;
      break;
    case Tamper::kInject: {
      SealedMsg f;
      f.cap = f.len = 64 + record::kOverhead;
      f.buf = std::make_unique<uint8_t[]>(f.len);
      std::memset(f.buf.get(), 0x5a, f.len);
      f.buf[0] = 64, f.buf[1] = f.buf[2] = f.buf[3] = 0;
      q.push_front(std::move(f));
      break;
    }
    case Tamper::kReplay:
      q.insert(q.begin() + 1, copy(q.front()));
      break;
    case Tamper::kDrop:
      q.pop_front();
      break;
    case Tamper::kReorder:
      if (!c.tamper_held.len) {
        // Held back until the next one has gone.
        c.tamper_held = std::move(q.front());
        q.pop_front();
        return;
      }
      q.insert(q.begin() + 1, std::move(c.tamper_held));
      c.tamper_held = SealedMsg{};
      break;
  }
  c.tamper = 0;
}

bool SctpTransport::seal_more(const ConnPtr& c) {
  SctpLink& l = link(*c);
  iovec iov[kMaxMsgs];
  int n;
  uint64_t gen;
  {
    std::lock_guard lk(c->mu);
    n = c->wq.gather(iov, kMaxMsgs, 1 << 20, &gen);
  }
  size_t plain = 0;
  for (int i = 0; i < n; i++) {
    SealedMsg m;
    if (!l.spare.empty()) {
      m = std::move(l.spare.back());
      l.spare.pop_back();
    }
    const size_t need = iov[i].iov_len + record::kOverhead;
    if (m.cap < need) {
      m.cap = std::max(need, size_t(e_.cfg_.entry_bytes) + record::kOverhead);
      m.buf = std::make_unique_for_overwrite<uint8_t[]>(m.cap);
    }
    // Its counter is spent: the message goes as sealed, or not at all (association lost).
    if (!l.sealer->seal(&iov[i], 1, iov[i].iov_len, m.buf.get())) return false;
    m.len = need;
    plain += iov[i].iov_len;
    l.sealed.push_back(std::move(m));
  }
  if (n) e_.tx_advanced(c, plain, gen);
  return true;
}

int SctpTransport::send_msgs(Connection& c, int32_t assoc_id, iovec* iov, int n, size_t* bytes, int* err) {
  mmsghdr msgs[kMaxMsgs];
  char cbufs[kMaxMsgs][CMSG_SPACE(sizeof(sctp_sndinfo))];
  sctp_sndinfo si{};
  si.snd_assoc_id = assoc_id;
  si.snd_ppid = e_.cfg_.local_nodeid;  // as the kernel did: the sender's nodeid
  for (int i = 0; i < n; i++) {
    std::memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    attach_sndinfo(msgs[i].msg_hdr, cbufs[i], sizeof cbufs[i], si);
  }
  const int r = ::sendmmsg(fd_.get(), msgs, unsigned(n), MSG_NOSIGNAL | MSG_DONTWAIT);
  *err = r < 0 ? errno : EAGAIN;
  c.ctr.tx_syscalls++;
  *bytes = 0;
  for (int i = 0; i < r; i++) *bytes += msgs[i].msg_len;
  c.ctr.tx_bytes += *bytes;
  return r;
}

void SctpTransport::send_stalled(const ConnPtr& c, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOMEM) {
    // The socket's EPOLLOUT is shared by every association: poll again shortly too.
    c->flush_at_ns = now_ns() + 1000000;
    return;
  }
  e_.tx_lost(c, err, "send");
}

void SctpTransport::flush(const ConnPtr& c) {
  if (c->handshake && e_.cfg_.auth)
    flush_sealed(c);
  else
    flush_plain(c);
}

void SctpTransport::flush_sealed(const ConnPtr& c) {
  SctpLink& l = link(*c);
  iovec iov[kMaxMsgs];
  const int32_t assoc_id = send_assoc(*c);
  if (assoc_id == 0 || assoc_id != l.tx_assoc) {
    e_.kick_tx(c);  // the state machine sees the new association and reconnects
    return;
  }
  if (!l.sealer || l.keys_gen != l.sealer_gen) {
    // A new handshake on this association (restarted under the same id): rewind for it.
    e_.tx_lost(c, ECONNRESET, "association re-keyed");
    return;
  }
  for (int round = 0; round < 16; round++) {
    if (l.sealed.empty() && !seal_more(c)) {
      e_.tx_lost(c, EIO, "record protection");
      return;
    }
    if (l.sealed.empty()) return;
    if (c->tamper) {
      tamper(*c);
      if (l.sealed.empty()) continue;  // dropped
    }
    const int n = int(std::min<size_t>(l.sealed.size(), kMaxMsgs));
    for (int i = 0; i < n; i++) iov[i] = iovec{l.sealed[size_t(i)].buf.get(), l.sealed[size_t(i)].len};
    size_t bytes;
    int err;
    const int r = send_msgs(*c, assoc_id, iov, n, &bytes, &err);
    for (int i = 0; i < r; i++) {
      if (l.spare.size() < kSealedSpares) l.spare.push_back(std::move(l.sealed.front()));
      l.sealed.pop_front();
    }
    if (r == n) continue;
    send_stalled(c, err);
    return;
  }
  e_.kick_tx(c);
}

void SctpTransport::flush_plain(const ConnPtr& c) {
  iovec iov[kMaxMsgs];
  for (int round = 0; round < 16; round++) {
    int n;
    uint64_t gen;
    {
      std::lock_guard lk(c->mu);
      n = c->wq.gather(iov, kMaxMsgs, 1 << 20, &gen);
    }
    if (n == 0) return;
    // The receive thread may replace the association at any moment: read its id once and
    // send only on that one, and to a lowcomms peer only once it passed the handshake.
    const int32_t assoc_id = send_assoc(*c);
    if (assoc_id == 0 || assoc_id != link(*c).tx_assoc) {
      e_.kick_tx(c);  // the state machine sees the new association and reconnects
      return;
    }
    size_t bytes;
    int err;
    const int r = send_msgs(*c, assoc_id, iov, n, &bytes, &err);
    if (r > 0) e_.tx_advanced(c, bytes, gen);
    if (r == n) continue;
    send_stalled(c, err);
    return;
  }
  e_.kick_tx(c);
}

}  // namespace lowcomms
