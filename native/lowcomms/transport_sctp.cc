// SCTP: one one-to-many (SOCK_SEQPACKET) socket per instance, bound to every local
// address (bind + SCTP_SOCKOPT_BINDX_ADD); each peer node is one association set up
// to all of its addresses (SCTP_SOCKOPT_CONNECTX3) and recognised again by its id on
// receive. Each SCTP message carries whole DLM messages: one write-queue entry. Path
// failover is the kernel's; we tune it and report association and path changes.
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
#include "lowcomms/lowcomms.h"
#include "util/clock.h"

namespace lowcomms {

#ifndef SOL_SCTP
#define SOL_SCTP IPPROTO_SCTP
#endif

namespace {
constexpr size_t kSctpRxBytes = 256 * 1024;
// PPID of the authentication handshake's messages (DLM data carries the sender's nodeid).
constexpr uint32_t kAuthPpid = 0x4c434131;  // "LCA1"
constexpr int kMaxMsgs = 32;
// With auth: sealed-message buffers kept for reuse per node (each up to an entry + 20 B).
constexpr size_t kSealedSpares = 8;
// Aborted associations remembered until their COMM_LOST (one is read soon after each).
constexpr size_t kMaxAborted = 256;

template <class T>
bool set_opt(int fd, int opt, const T& v) {
  return ::setsockopt(fd, SOL_SCTP, opt, &v, sizeof v) == 0;
}

// Attaches one SCTP_SNDINFO cmsg (association, flags, ppid) to a message.
void attach_sndinfo(msghdr& mh, char* cbuf, size_t cbuf_len, const sctp_sndinfo& si) {
  std::memset(cbuf, 0, cbuf_len);
  mh.msg_control = cbuf;
  mh.msg_controllen = cbuf_len;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = IPPROTO_SCTP;
  cm->cmsg_type = SCTP_SNDINFO;
  cm->cmsg_len = CMSG_LEN(sizeof si);
  std::memcpy(CMSG_DATA(cm), &si, sizeof si);
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

void Lowcomms::sctp_tune_assoc(int32_t assoc_id) {
  const int fd = listen_fd_.get();
  const SctpTuning& t = cfg_.sctp;
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

void Lowcomms::sctp_listen() {
  const SockAddr& la = local_[0];
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
  for (auto [force, plain, v] : {std::tuple{SO_SNDBUFFORCE, SO_SNDBUF, cfg_.sctp.sndbuf},
                                 std::tuple{SO_RCVBUFFORCE, SO_RCVBUF, cfg_.sctp.rcvbuf}}) {
    const int iv = int(v);
    if (::setsockopt(fd.get(), SOL_SOCKET, force, &iv, sizeof iv) != 0)
      ::setsockopt(fd.get(), SOL_SOCKET, plain, &iv, sizeof iv);
  }
  apply_mark(fd.get(), 0);
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
  im.sinit_max_attempts = cfg_.sctp.init_max_attempts;
  im.sinit_max_init_timeo = cfg_.sctp.init_max_timeo_ms;
  set_opt(fd.get(), SCTP_INITMSG, im);

  if (::bind(fd.get(), la.sa(), la.len) != 0) throw bind_error(la, errno);
  for (size_t i = 1; i < local_.size(); i++) {
    if (::setsockopt(fd.get(), SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, local_[i].sa(), local_[i].len) != 0) {
      const int e = errno;
      throw EngineError{"ERRNO", "sctp_bindx " + addr_to_string(local_[i].sa()) + ": " + std::strerror(e), e};
    }
  }
  if (::listen(fd.get(), 128) != 0)
    throw EngineError{"ERRNO", std::string("listen (SCTP): ") + std::strerror(errno), errno};
  listen_fd_ = std::move(fd);
  // Endpoint defaults, inherited by every association; COMM_UP applies them again.
  sctp_tune_assoc(0);
  bound_port_ = cfg_.port;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenKey;
  epoll_ctl(rx_epoll_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev);
  ev.events = EPOLLOUT | EPOLLET;
  ev.data.u64 = kSctpKey;
  epoll_ctl(tx_epoll_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev);
  sctp_buf_.resize(kSctpRxBytes);
}

Lowcomms::ConnPtr Lowcomms::sctp_conn_of_assoc(int32_t assoc_id) {
  auto it = assoc_nodes_.find(assoc_id);
  if (it != assoc_nodes_.end()) return find(it->second);
  // Our own connect attempt, not up yet: the send thread stored its id.
  for (auto& c : all_connections())
    if (c->assoc_id == assoc_id) return c;
  return nullptr;
}

void Lowcomms::sctp_abort(int32_t assoc_id) {
  char cbuf[CMSG_SPACE(sizeof(sctp_sndinfo))];
  msghdr mh{};
  sctp_sndinfo si{};
  si.snd_flags = SCTP_ABORT;
  si.snd_assoc_id = assoc_id;
  attach_sndinfo(mh, cbuf, sizeof cbuf, si);
  ::sendmsg(listen_fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (assoc_id == 0 || sctp_was_aborted(assoc_id)) return;
  if (sctp_aborted_.size() >= kMaxAborted) sctp_aborted_.pop_front();
  sctp_aborted_.push_back(assoc_id);
}

bool Lowcomms::sctp_was_aborted(int32_t assoc_id) const {
  return std::find(sctp_aborted_.begin(), sctp_aborted_.end(), assoc_id) != sctp_aborted_.end();
}

void Lowcomms::sctp_forget_aborted(int32_t assoc_id) {
  auto it = std::find(sctp_aborted_.begin(), sctp_aborted_.end(), assoc_id);
  if (it != sctp_aborted_.end()) sctp_aborted_.erase(it);
}

void Lowcomms::sctp_on_notification(const uint8_t* data, size_t len) {
  union sctp_notification sn;
  std::memcpy(&sn, data, std::min(len, sizeof sn));
  switch (sn.sn_header.sn_type) {
    case SCTP_ASSOC_CHANGE: {
      const sctp_assoc_change& ac = sn.sn_assoc_change;
      const int32_t id = ac.sac_assoc_id;
      // The id is live again (COMM_UP) or gone for good: either way no longer ours to ignore.
      sctp_forget_aborted(id);
      if (ac.sac_state == SCTP_COMM_UP || ac.sac_state == SCTP_RESTART) {
        // Which node is this? Its primary address must belong to a configured node.
        sctp_prim prim{};
        prim.ssp_assoc_id = id;
        socklen_t pl = sizeof prim;
        uint32_t nodeid = 0;
        std::string addr = "?";
        if (::getsockopt(listen_fd_.get(), SOL_SCTP, SCTP_PRIMARY_ADDR, &prim, &pl) == 0) {
          sockaddr_storage ss;
          std::memcpy(&ss, &prim.ssp_addr, sizeof ss);
          nodeid = nodeid_of(reinterpret_cast<sockaddr*>(&ss));
          addr = addr_to_string(reinterpret_cast<sockaddr*>(&ss));
        }
        if (addr == "?") return;  // already gone again; data, if any, is mapped by its source
        ConnPtr c = nodeid && nodeid != cfg_.local_nodeid ? find(nodeid) : nullptr;
        if (!c) {
          gctr_.rejected++;
          sctp_abort(id);
          emit(Event{"reject", 0, addr, "unknown_address", 0});
          return;
        }
        assoc_nodes_[id] = nodeid;
        assoc_epochs_[id] = c->reset_epoch;
        sctp_tune_assoc(id);
        // A lowcomms peer's new association takes over once proven (send_assoc); a kernel
        // peer's at once.
        const bool restart = ac.sac_state == SCTP_RESTART || (!c->handshake && c->assoc_up && c->assoc_id != id);
        // SCTP_RESTART keeps the id: whatever this association had proven is void until
        // its new handshake is done (a keyless host could restart it otherwise).
        if (c->sctp_authed_assoc == id) c->sctp_authed_assoc = 0;
        c->assoc_id = id;
        c->assoc_up = true;
        // A restart is a new session: rewind as after any reconnect.
        if (restart) c->sock_failed = true;
        emit(Event{"assoc", nodeid, addr, assoc_state_name(ac.sac_state), id});
        if (c->handshake) sctp_auth_start(c, id);
        kick_tx(c);
        return;
      }
      ConnPtr c = sctp_conn_of_assoc(id);
      assoc_nodes_.erase(id);
      assoc_epochs_.erase(id);
      sctp_end_session(id);
      if (!c) return;
      if (c->assoc_id == id) {
        // The latest association went; a proven older one, if any, is still the one.
        const int32_t keep = c->sctp_authed_assoc != id ? c->sctp_authed_assoc.load() : 0;
        c->assoc_id = keep;
        c->assoc_up = keep != 0;
        if (!c->handshake) c->sock_failed = true;
      }
      if (c->send_assoc() == 0 || c->sctp_authed_assoc == id)
        c->assoc_down_err = ac.sac_state == SCTP_SHUTDOWN_COMP    ? 0
                            : ac.sac_state == SCTP_CANT_STR_ASSOC ? ECONNREFUSED  // the setup failed
                                                                  : ECONNRESET;
      if (c->sctp_authed_assoc == id) {
        c->sctp_authed_assoc = 0;
        c->sock_failed = true;
      }
      c->sctp_partial.clear();
      emit(Event{"assoc", c->nodeid, "", assoc_state_name(ac.sac_state), id});
      kick_tx(c);
      return;
    }
    case SCTP_PEER_ADDR_CHANGE: {
      const sctp_paddr_change& pc = sn.sn_paddr_change;
      sockaddr_storage ss;
      std::memcpy(&ss, &pc.spc_aaddr, sizeof ss);
      auto it = assoc_nodes_.find(pc.spc_assoc_id);
      emit(Event{"path", it == assoc_nodes_.end() ? 0 : it->second,
                 addr_to_string(reinterpret_cast<sockaddr*>(&ss)), path_state_name(pc.spc_state),
                 pc.spc_error});
      return;
    }
    case SCTP_SHUTDOWN_EVENT: {
      const int32_t id = sn.sn_shutdown_event.sse_assoc_id;
      if (ConnPtr c = sctp_conn_of_assoc(id); c && c->send_assoc() == id) {
        c->assoc_down_err = 0;  // the peer is shutting the association down in order
        c->sock_failed = true;
        kick_tx(c);
      }
      return;
    }
    case SCTP_SEND_FAILED_EVENT: {
      // The data is still in the write queue's unacked set: midcomms resends it.
      if (ConnPtr c = sctp_conn_of_assoc(sn.sn_send_failed_event.ssf_assoc_id))
        emit(Event{"error", c->nodeid, "SCTP send failed", "send_failed",
                   int64_t(sn.sn_send_failed_event.ssf_error)});
      return;
    }
    default:
      return;
  }
}

void Lowcomms::sctp_read() {
  for (int round = 0; round < 64 && !rx_paused_; round++) {
    iovec iov{sctp_buf_.data(), sctp_buf_.size()};
    char cbuf[CMSG_SPACE(sizeof(sctp_rcvinfo))];
    sockaddr_storage from{};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    const ssize_t r = ::recvmsg(listen_fd_.get(), &mh, MSG_DONTWAIT);
    if (r < 0) return;  // EAGAIN, or an error the association events report
    if (mh.msg_flags & MSG_NOTIFICATION) {
      sctp_on_notification(sctp_buf_.data(), size_t(r));
      continue;
    }
    int32_t assoc_id = 0;
    uint32_t ppid = 0;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level == IPPROTO_SCTP && cm->cmsg_type == SCTP_RCVINFO) {
        sctp_rcvinfo ri;
        std::memcpy(&ri, CMSG_DATA(cm), sizeof ri);
        assoc_id = ri.rcv_assoc_id;
        ppid = ri.rcv_ppid;
      }
    }
    ConnPtr c;
    auto it = assoc_nodes_.find(assoc_id);
    if (it != assoc_nodes_.end()) {
      c = find(it->second);
    } else if (sctp_was_aborted(assoc_id)) {
      // Queued before we aborted it: its sender resends what we did not ack.
      gctr_.stale_dropped++;
      continue;
    }
    if (!c) {
      // Data before COMM_UP was processed, or from nobody we know.
      const uint32_t nodeid = nodeid_of(reinterpret_cast<sockaddr*>(&from));
      c = nodeid && nodeid != cfg_.local_nodeid ? find(nodeid) : nullptr;
      if (!c) {
        gctr_.rejected++;
        sctp_abort(assoc_id);
        emit(Event{"reject", 0, addr_to_string(reinterpret_cast<sockaddr*>(&from)), "unknown_address", 0});
        continue;
      }
      assoc_nodes_[assoc_id] = c->nodeid;
      assoc_epochs_[assoc_id] = c->reset_epoch;
      if (!c->assoc_up) {
        // Its COMM_UP went unanswered (the association was briefly unreadable): adopt it.
        c->assoc_id = assoc_id;
        c->assoc_up = true;
        if (c->handshake) sctp_auth_start(c, assoc_id);
        kick_tx(c);
        if (!assoc_nodes_.count(assoc_id)) continue;  // its handshake could not start: dropped
      }
    }
    const uint8_t* data = sctp_buf_.data();
    size_t len = size_t(r);
    if (c->handshake) {
      auto sit = sctp_sessions_.find(assoc_id);
      bool done = sit != sctp_sessions_.end() && sit->second.state == auth::State::kDone;
      // A HELLO after the handshake: the peer started over on this association (a
      // restart we were not told of yet). DLM data never starts with the magic.
      const bool hello = ppid == kAuthPpid && (mh.msg_flags & MSG_EOR) && len >= 4 &&
                         auth::is_magic(data, auth::kHelloMagic);
      if (done && hello) {
        if (c->sctp_authed_assoc == assoc_id) c->sctp_authed_assoc = 0;
        sctp_auth_start(c, assoc_id);
        if (!sctp_sessions_.count(assoc_id)) continue;
        done = false;
      }
      if (!done) {
        if (ppid == kAuthPpid && (mh.msg_flags & MSG_EOR))
          sctp_auth_message(c, assoc_id, data, len);
        else
          sctp_auth_failed(c, assoc_id, "data before the handshake");
        continue;
      }
      if (sit->second.peer_incarnation != c->peer_incarnation) {
        // An association of the peer's previous incarnation: a dead session's frames.
        gctr_.stale_dropped++;
        continue;
      }
    }
    if (!(mh.msg_flags & MSG_EOR) || !c->sctp_partial.empty()) {
      // Partial delivery of a large message: gather until MSG_EOR.
      c->sctp_partial.insert(c->sctp_partial.end(), data, data + len);
      if (!(mh.msg_flags & MSG_EOR)) {
        if (c->sctp_partial.size() > 16 * dlm::kMaxSocketBufsize * 16) {
          c->ctr.bad_frames++;
          c->sctp_partial.clear();
          sctp_abort(assoc_id);
        }
        continue;
      }
      data = c->sctp_partial.data();
      len = c->sctp_partial.size();
    }
    if (c->handshake && cfg_.auth) {
      // One message, one record: nothing of it is read before its tag checks out.
      auto op = sctp_openers_.find(assoc_id);
      const size_t plen = len >= record::kOverhead ? len - record::kOverhead : 0;
      if (rx_plain_.size() < plen) rx_plain_.resize(plen);
      if (op == sctp_openers_.end() || len < record::kOverhead || record::record_len(data) != plen ||
          !op->second->open(data, plen, rx_plain_.data())) {
        c->sctp_partial.clear();
        rx_bad_record(*c, "record failed authentication");
        sctp_drop_assoc(c, assoc_id);
        continue;
      }
      data = rx_plain_.data();
      len = plen;
    }
    size_t consumed = 0;
    bool stale = false;
    auto ep = assoc_epochs_.find(assoc_id);
    const uint32_t epoch = ep == assoc_epochs_.end() ? c->reset_epoch.load() : ep->second;
    const bool ok = rx_process(*c, epoch, const_cast<uint8_t*>(data), len, &consumed, &stale);
    c->sctp_partial.clear();
    if (stale) {
      gctr_.stale_dropped++;  // an association of before a resetNode(): its abort is under way
      continue;
    }
    if (!ok || consumed != len) {
      // An SCTP message holds whole DLM messages; anything else is malformed.
      c->ctr.bad_frames++;
      emit(Event{"error", c->nodeid, "malformed SCTP message: association aborted", "bad_frame", 0});
      sctp_abort(assoc_id);
    }
  }
}

// Queues a handshake message behind any not yet sent for this association and sends what
// it can; false when the association is going (the caller drops it).
bool Lowcomms::sctp_send_ctrl(int32_t assoc_id, const uint8_t* data, size_t len) {
  sctp_ctrl_backlog_[assoc_id].emplace_back(data, data + len);
  return sctp_ctrl_flush(assoc_id);
}

bool Lowcomms::sctp_ctrl_flush(int32_t assoc_id) {
  auto it = sctp_ctrl_backlog_.find(assoc_id);
  if (it == sctp_ctrl_backlog_.end()) return true;
  auto& q = it->second;
  while (!q.empty()) {
    char cbuf[CMSG_SPACE(sizeof(sctp_sndinfo))];
    iovec iov{q.front().data(), q.front().size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    sctp_sndinfo si{};
    si.snd_assoc_id = assoc_id;
    si.snd_ppid = kAuthPpid;
    attach_sndinfo(mh, cbuf, sizeof cbuf, si);
    if (::sendmsg(listen_fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == ssize_t(iov.iov_len)) {
      q.pop_front();
      continue;
    }
    // The buffer is full of other associations' data: try again shortly (kCtrlRetryMs).
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOMEM || errno == ENOBUFS) return true;
    sctp_ctrl_backlog_.erase(it);
    return false;
  }
  sctp_ctrl_backlog_.erase(it);
  return true;
}

void Lowcomms::sctp_ctrl_retry() {
  std::vector<int32_t> ids;
  for (auto& [id, q] : sctp_ctrl_backlog_) ids.push_back(id);
  for (int32_t id : ids) {
    ConnPtr c = sctp_conn_of_assoc(id);
    if (!c) {
      sctp_end_session(id);
    } else if (!sctp_ctrl_flush(id)) {
      sctp_drop_assoc(c, id);
    } else if (!sctp_ctrl_backlog_.count(id)) {
      sctp_auth_try_verify(c, id);  // our PROOF is out now: DATA may follow it
    }
  }
}

void Lowcomms::sctp_end_session(int32_t assoc_id) {
  sctp_sessions_.erase(assoc_id);
  sctp_openers_.erase(assoc_id);
  sctp_ctrl_backlog_.erase(assoc_id);
}

void Lowcomms::sctp_auth_try_verify(const ConnPtr& c, int32_t assoc_id) {
  auto it = sctp_sessions_.find(assoc_id);
  // Not before our own PROOF has left: DLM data must never overtake it.
  if (it == sctp_sessions_.end() || sctp_ctrl_backlog_.count(assoc_id)) return;
  if (it->second.state == auth::State::kDone) return;
  sctp_auth_verified(c, assoc_id, auth::verify(it->second));
}

void Lowcomms::sctp_auth_start(const ConnPtr& c, int32_t assoc_id) {
  sctp_ctrl_backlog_.erase(assoc_id);  // a restarted association starts over
  sctp_openers_.erase(assoc_id);       // and its records with new keys
  auth::Session& sess = sctp_sessions_[assoc_id];
  uint8_t hello[auth::kHelloLen];
  // A full send buffer only queues the HELLO (sctp_send_ctrl); a HELLO that cannot go out
  // at all means the association is going: lost, not unauthenticated.
  if (!handshake_begin(*c, sess, hello) || !sctp_send_ctrl(assoc_id, hello, sizeof hello))
    sctp_drop_assoc(c, assoc_id);
  else
    rx_handshake_started();
}

void Lowcomms::sctp_auth_message(const ConnPtr& c, int32_t assoc_id, const uint8_t* data, size_t len) {
  // A handshake on an association we have not greeted yet (its COMM_UP is still to come).
  if (!sctp_sessions_.count(assoc_id)) sctp_auth_start(c, assoc_id);
  auto it = sctp_sessions_.find(assoc_id);
  if (it == sctp_sessions_.end()) return;  // gone already
  auth::Session& sess = it->second;
  const auth::Step st = auth::consume(sess, c->nodeid, data, len);
  if (st.bad != auth::Bad::kNone || st.consumed != len) {
    sctp_auth_failed(c, assoc_id, st.bad != auth::Bad::kNone ? auth::bad_reason(st.bad) : "not a lowcomms handshake");
    return;
  }
  if (st.peer_nonce && sess.keyed)
    emit_auth_request(c->nodeid, sess, st.peer_nonce, kSctpAuthReply | uint32_t(assoc_id));
  if (st.peer_nonce || st.got_proof) sctp_auth_try_verify(c, assoc_id);
}

void Lowcomms::sctp_auth_reply(int32_t assoc_id, const AuthReply& r, const uint8_t* proof) {
  const uint8_t* nonce = r.nonce;
  ConnPtr c = sctp_conn_of_assoc(assoc_id);
  auto it = sctp_sessions_.find(assoc_id);
  if (!c || it == sctp_sessions_.end()) return;
  auth::Session& sess = it->second;
  // A reply computed for an earlier handshake of this id (it restarted) is not ours.
  if (sess.state != auth::State::kAwaitProof || sess.have_expected ||
      std::memcmp(sess.my_nonce, nonce, auth::kNonceLen) != 0)
    return;
  if (!sctp_send_ctrl(assoc_id, proof, auth::kProofLen)) {
    sctp_drop_assoc(c, assoc_id);  // as for a HELLO that could not go out
    return;
  }
  std::memcpy(sess.expected, r.expected, auth::kMacLen);
  std::memcpy(sess.tx_key, r.tx_key, record::kKeyLen);
  std::memcpy(sess.rx_key, r.rx_key, record::kKeyLen);
  sess.have_expected = true;
  sctp_auth_try_verify(c, assoc_id);
}

void Lowcomms::sctp_auth_verified(const ConnPtr& c, int32_t assoc_id, int verdict) {
  if (verdict < 0) sctp_auth_failed(c, assoc_id, "wrong cluster key");
  if (verdict > 0) {
    auth::Session& sess = sctp_sessions_[assoc_id];
    if (sess.keyed) {
      // From here on every message either way is one record under this session's keys.
      auto opener = record::Cipher::make(sess.mode, sess.rx_key, false);
      if (!opener) {
        sctp_auth_failed(c, assoc_id, "record protection could not be set up (OpenSSL)");
        return;
      }
      sctp_openers_[assoc_id] = std::move(opener);
      std::memset(sess.rx_key, 0, record::kKeyLen);
    }
    peer_identified(c, sess.peer_incarnation, nullptr);
    sess.state = auth::State::kDone;
    {
      // The association and its key together: the send thread takes both under this lock.
      std::lock_guard lk(c->keys_mu);
      if (sess.keyed) {
        c->keys_assoc = assoc_id;
        std::memcpy(c->keys_tx, sess.tx_key, record::kKeyLen);
        std::memset(sess.tx_key, 0, record::kKeyLen);
        c->keys_gen++;
      }
      c->sctp_authed_assoc = assoc_id;  // it takes over sending (the send thread rewinds for it)
    }
    kick_tx(c);  // it may now send on this association
  }
}

void Lowcomms::sctp_auth_failed(const ConnPtr& c, int32_t assoc_id, const char* why) {
  gctr_.auth_failures++;
  emit(Event{"reject", c->nodeid, why, "auth", 0});
  sctp_drop_assoc(c, assoc_id);
}

void Lowcomms::sctp_drop_assoc(const ConnPtr& c, int32_t assoc_id) {
  sctp_abort(assoc_id);
  assoc_nodes_.erase(assoc_id);
  assoc_epochs_.erase(assoc_id);
  sctp_end_session(assoc_id);
  const bool ours = c->send_assoc() == assoc_id;
  if (c->sctp_authed_assoc == assoc_id) c->sctp_authed_assoc = 0;
  if (c->assoc_id == assoc_id) {
    const int32_t keep = c->sctp_authed_assoc.load();
    c->assoc_id = keep;
    c->assoc_up = keep != 0;
  }
  // A stranger's association going takes nothing of ours with it.
  if (ours) c->sock_failed = true;
  kick_tx(c);
}

bool Lowcomms::sctp_connect(const ConnPtr& c, int* err) {
  if (c->assoc_up) return true;
  std::vector<uint8_t> packed;
  {
    std::shared_lock lk(table_mu_);
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
  const int r = ::getsockopt(listen_fd_.get(), SOL_SCTP, SCTP_SOCKOPT_CONNECTX3, &param, &pl);
  if (r == 0 || errno == EINPROGRESS) {
    if (!c->assoc_up) c->assoc_id = param.assoc_id;
    return true;
  }
  if (errno == EALREADY || errno == EISCONN) return true;  // the peer's INIT won the race
  *err = errno;
  return false;
}

void Lowcomms::sctp_tamper(Connection& c) {
  auto& q = c.sctp_sealed;
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

bool Lowcomms::sctp_seal_more(const ConnPtr& c) {
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
    if (!c->sctp_spare.empty()) {
      m = std::move(c->sctp_spare.back());
      c->sctp_spare.pop_back();
    }
    const size_t need = iov[i].iov_len + record::kOverhead;
    if (m.cap < need) {
      m.cap = std::max(need, size_t(cfg_.entry_bytes) + record::kOverhead);
      m.buf = std::make_unique_for_overwrite<uint8_t[]>(m.cap);
    }
    // Its counter is spent: the message goes as sealed, or not at all (association lost).
    if (!c->sctp_sealer->seal(&iov[i], 1, iov[i].iov_len, m.buf.get())) return false;
    m.len = need;
    plain += iov[i].iov_len;
    c->sctp_sealed.push_back(std::move(m));
  }
  if (n) tx_advanced(c, plain, gen);
  return true;
}

void Lowcomms::sctp_flush_sealed(const ConnPtr& c) {
  iovec iov[kMaxMsgs];
  mmsghdr msgs[kMaxMsgs];
  char cbufs[kMaxMsgs][CMSG_SPACE(sizeof(sctp_sndinfo))];
  const int32_t assoc_id = c->send_assoc();
  if (assoc_id == 0 || assoc_id != c->tx_assoc) {
    kick_tx(c);  // the state machine sees the new association and reconnects
    return;
  }
  if (!c->sctp_sealer || c->keys_gen != c->sealer_gen) {
    // A new handshake on this association (restarted under the same id): rewind for it.
    tx_lost(c, ECONNRESET, "association re-keyed");
    return;
  }
  for (int round = 0; round < 16; round++) {
    if (c->sctp_sealed.empty() && !sctp_seal_more(c)) {
      tx_lost(c, EIO, "record protection");
      return;
    }
    if (c->sctp_sealed.empty()) return;
    if (c->tamper) {
      sctp_tamper(*c);
      if (c->sctp_sealed.empty()) continue;  // dropped
    }
    const int n = int(std::min<size_t>(c->sctp_sealed.size(), kMaxMsgs));
    sctp_sndinfo si{};
    si.snd_assoc_id = assoc_id;
    si.snd_ppid = cfg_.local_nodeid;
    for (int i = 0; i < n; i++) {
      iov[i] = iovec{c->sctp_sealed[size_t(i)].buf.get(), c->sctp_sealed[size_t(i)].len};
      std::memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      attach_sndinfo(msgs[i].msg_hdr, cbufs[i], sizeof cbufs[i], si);
    }
    const int r = ::sendmmsg(listen_fd_.get(), msgs, unsigned(n), MSG_NOSIGNAL | MSG_DONTWAIT);
    c->ctr.tx_syscalls++;
    if (r > 0) {
      for (int i = 0; i < r; i++) {
        c->ctr.tx_bytes += msgs[i].msg_len;
        if (c->sctp_spare.size() < kSealedSpares) c->sctp_spare.push_back(std::move(c->sctp_sealed.front()));
        c->sctp_sealed.pop_front();
      }
      if (r == n) continue;
    }
    const int e = r < 0 ? errno : EAGAIN;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOMEM) {
      c->flush_at_ns = now_ns() + 1000000;
      return;
    }
    tx_lost(c, e, "send");
    return;
  }
  kick_tx(c);
}

void Lowcomms::sctp_flush(const ConnPtr& c) {
  if (c->handshake && cfg_.auth) {
    sctp_flush_sealed(c);
    return;
  }
  iovec iov[kMaxMsgs];
  mmsghdr msgs[kMaxMsgs];
  char cbufs[kMaxMsgs][CMSG_SPACE(sizeof(sctp_sndinfo))];
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
    const int32_t assoc_id = c->send_assoc();
    if (assoc_id == 0 || assoc_id != c->tx_assoc) {
      kick_tx(c);  // the state machine sees the new association and reconnects
      return;
    }
    sctp_sndinfo si{};
    si.snd_assoc_id = assoc_id;
    si.snd_ppid = cfg_.local_nodeid;  // as the kernel did: the sender's nodeid
    for (int i = 0; i < n; i++) {
      std::memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      attach_sndinfo(msgs[i].msg_hdr, cbufs[i], sizeof cbufs[i], si);
    }
    const int r = ::sendmmsg(listen_fd_.get(), msgs, unsigned(n), MSG_NOSIGNAL | MSG_DONTWAIT);
    c->ctr.tx_syscalls++;
    if (r > 0) {
      size_t bytes = 0;
      for (int i = 0; i < r; i++) bytes += msgs[i].msg_len;
      c->ctr.tx_bytes += bytes;
      tx_advanced(c, bytes, gen);
      if (r == n) continue;
    }
    const int e = r < 0 ? errno : EAGAIN;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOMEM) {
      // The socket's EPOLLOUT is shared by every association: poll again shortly too.
      c->flush_at_ns = now_ns() + 1000000;
      return;
    }
    tx_lost(c, e, "send");
    return;
  }
  kick_tx(c);
}

}  // namespace lowcomms
