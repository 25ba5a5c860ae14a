// SCTP: the lowcomms handshake per association (auth.h), on the receive thread. Its
// messages travel on the association under their own PPID (kAuthPpid), queued per
// association when the socket's one send buffer is full. The session itself (auth.h,
// handshake_begin, peer_identified in handshake.cc) is the engine's, as for TCP; this
// file carries it over associations. Once verified, the association takes over sending
// (SctpLink::authed_assoc) with its session key.
#include <netinet/in.h>
#include <sys/socket.h>
#include <cstdint>
#include <linux/sctp.h>
#include <cerrno>
#include <cstring>
#include "lowcomms/transport_sctp.h"
#include "lowcomms/lowcomms.h"

namespace lowcomms {

namespace {
// How soon a handshake message that met a full send buffer is tried again.
constexpr int kCtrlRetryMs = 2;
}  // namespace

// Queues a handshake message behind any not yet sent for this association and sends what
// it can; false when the association is going (the caller drops it).
bool SctpTransport::send_ctrl(int32_t assoc_id, const uint8_t* data, size_t len) {
  ctrl_backlog_[assoc_id].emplace_back(data, data + len);
  return ctrl_flush(assoc_id);
}

bool SctpTransport::ctrl_flush(int32_t assoc_id) {
  auto it = ctrl_backlog_.find(assoc_id);
  if (it == ctrl_backlog_.end()) return true;
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
    if (::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == ssize_t(iov.iov_len)) {
      q.pop_front();
      continue;
    }
    // The buffer is full of other associations' data: try again shortly (kCtrlRetryMs).
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOMEM || errno == ENOBUFS) return true;
    ctrl_backlog_.erase(it);
    return false;
  }
  ctrl_backlog_.erase(it);
  return true;
}

int SctpTransport::retry_ms() const { return ctrl_backlog_.empty() ? -1 : kCtrlRetryMs; }

void SctpTransport::retry() {
  if (ctrl_backlog_.empty()) return;
  std::vector<int32_t> ids;
  for (auto& [id, q] : ctrl_backlog_) ids.push_back(id);
  for (int32_t id : ids) {
    ConnPtr c = conn_of_assoc(id);
    if (!c) {
      end_session(id);
    } else if (!ctrl_flush(id)) {
      drop_assoc(c, id);
    } else if (!ctrl_backlog_.count(id)) {
      auth_try_verify(c, id);  // our PROOF is out now: DATA may follow it
    }
  }
}

void SctpTransport::end_session(int32_t assoc_id) {
  sessions_.erase(assoc_id);
  openers_.erase(assoc_id);
  ctrl_backlog_.erase(assoc_id);
}

void SctpTransport::auth_try_verify(const ConnPtr& c, int32_t assoc_id) {
  auto it = sessions_.find(assoc_id);
  // Not before our own PROOF has left: DLM data must never overtake it.
  if (it == sessions_.end() || ctrl_backlog_.count(assoc_id)) return;
  if (it->second.state == auth::State::kDone) return;
  auth_verified(c, assoc_id, auth::verify(it->second));
}

void SctpTransport::auth_start(const ConnPtr& c, int32_t assoc_id) {
  ctrl_backlog_.erase(assoc_id);  // a restarted association starts over
  openers_.erase(assoc_id);       // and its records with new keys
  auth::Session& sess = sessions_[assoc_id];
  uint8_t hello[auth::kHelloLen];
  // A full send buffer only queues the HELLO (send_ctrl); a HELLO that cannot go out
  // at all means the association is going: lost, not unauthenticated.
  if (!e_.handshake_begin(*c, sess, hello) || !send_ctrl(assoc_id, hello, sizeof hello))
    drop_assoc(c, assoc_id);
  else
    e_.rx_handshake_started();
}

void SctpTransport::auth_message(const ConnPtr& c, int32_t assoc_id, const uint8_t* data, size_t len) {
  // A handshake on an association we have not greeted yet (its COMM_UP is still to come).
  if (!sessions_.count(assoc_id)) auth_start(c, assoc_id);
  auto it = sessions_.find(assoc_id);
  if (it == sessions_.end()) return;  // gone already
  auth::Session& sess = it->second;
  const auth::Step st = auth::consume(sess, c->nodeid, data, len);
  if (st.bad != auth::Bad::kNone || st.consumed != len) {
    auth_failed(c, assoc_id, st.bad != auth::Bad::kNone ? auth::bad_reason(st.bad) : "not a lowcomms handshake");
    return;
  }
  if (st.peer_nonce && sess.keyed)
    e_.emit_auth_request(c->nodeid, sess, st.peer_nonce, auth::kLinkReply | uint32_t(assoc_id));
  if (st.peer_nonce || st.got_proof) auth_try_verify(c, assoc_id);
}

void SctpTransport::auth_reply(const auth::Reply& r, const uint8_t* proof) {
  const int32_t assoc_id = int32_t(uint32_t(r.id));
  const uint8_t* nonce = r.nonce;
  ConnPtr c = conn_of_assoc(assoc_id);
  auto it = sessions_.find(assoc_id);
  if (!c || it == sessions_.end()) return;
  auth::Session& sess = it->second;
  // A reply computed for an earlier handshake of this id (it restarted) is not ours.
  if (sess.state != auth::State::kAwaitProof || sess.have_expected ||
      std::memcmp(sess.my_nonce, nonce, auth::kNonceLen) != 0)
    return;
  if (!send_ctrl(assoc_id, proof, auth::kProofLen)) {
    drop_assoc(c, assoc_id);  // as for a HELLO that could not go out
    return;
  }
  std::memcpy(sess.expected, r.expected, auth::kMacLen);
  std::memcpy(sess.tx_key, r.tx_key, record::kKeyLen);
  std::memcpy(sess.rx_key, r.rx_key, record::kKeyLen);
  sess.have_expected = true;
  auth_try_verify(c, assoc_id);
}

void SctpTransport::auth_verified(const ConnPtr& c, int32_t assoc_id, int verdict) {
  if (verdict < 0) auth_failed(c, assoc_id, "wrong cluster key");
  if (verdict > 0) {
    auth::Session& sess = sessions_[assoc_id];
    if (sess.keyed) {
      // From here on every message either way is one record under this session's keys.
      auto opener = record::Cipher::make(sess.mode, sess.rx_key, false);
      if (!opener) {
        auth_failed(c, assoc_id, "record protection could not be set up (OpenSSL)");
        return;
      }
      openers_[assoc_id] = std::move(opener);
      std::memset(sess.rx_key, 0, record::kKeyLen);
    }
    e_.peer_identified(c, sess.peer_incarnation, nullptr);
    sess.state = auth::State::kDone;
    {
      // The association and its key together: the send thread takes both under this lock.
      std::lock_guard lk(link(*c).keys_mu);
      if (sess.keyed) {
        link(*c).keys_assoc = assoc_id;
        std::memcpy(link(*c).keys_tx, sess.tx_key, record::kKeyLen);
        std::memset(sess.tx_key, 0, record::kKeyLen);
        link(*c).keys_gen++;
      }
      link(*c).authed_assoc = assoc_id;  // it takes over sending (the send thread rewinds for it)
    }
    e_.kick_tx(c);  // it may now send on this association
  }
}

void SctpTransport::auth_failed(const ConnPtr& c, int32_t assoc_id, const char* why) {
  e_.gctr_.auth_failures++;
  e_.emit(Event{"reject", c->nodeid, why, "auth", 0});
  drop_assoc(c, assoc_id);
}

bool SctpTransport::handshake_deadlines(int64_t now) {
  bool any = false;
  std::vector<int32_t> late;
  for (auto& [id, sess] : sessions_) {
    if (!auth::pending(sess)) continue;
    if (now - sess.started_ns > auth::kHandshakeTimeoutNs) late.push_back(id);
    else any = true;
  }
  for (int32_t id : late) {
    if (ConnPtr c = conn_of_assoc(id)) {
      auth_failed(c, id, "no handshake within 5 s");
    } else {
      abort(id);
      end_session(id);
    }
  }
  return any;
}

}  // namespace lowcomms
