// The lowcomms handshake on the receive thread (auth.h): HELLO both ways, PROOF with a
// cluster key, and what follows from the peer's incarnation. TCP runs it per socket,
// SCTP per association (transport_sctp_auth.cc carries those messages); both end here, in
// peer_identified(), before a single DLM frame of the connection is read or sent.
#include <sys/socket.h>
#include <cstring>
#include <cerrno>
#include "dlm/wire.h"
#include <string>
#include "lowcomms/lowcomms.h"
#include "util/clock.h"

namespace lowcomms {

namespace {
std::string hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

std::string hex64(uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (56 - 8 * i));
  return hex(b, 8);
}

// After this long of drops without a delivery, a peer's state is taken to be out of
// step with ours (a reconnect's resend burst is over in milliseconds).
constexpr int64_t kDesyncAfterNs = 2'000'000'000;
constexpr int64_t kDesyncReportEveryNs = 10'000'000'000;
}  // namespace

uint64_t Lowcomms::incarnation_for(const Connection& c) const {
  // A different, never-zero id per reset: the peer takes it for a restart of ours.
  const uint64_t v = incarnation_ + uint64_t(c.local_epoch.load()) * 0x9e3779b97f4a7c15ull;
  return v ? v : 1;
}

bool Lowcomms::handshake_begin(const Connection& c, auth::Session& sess, uint8_t* hello) {
  return sess.start(cfg_.local_nodeid, incarnation_for(c), cfg_.auth, cfg_.record_mode, hello);
}

bool Lowcomms::auth_start(Socket& s) {
  uint8_t hello[auth::kHelloLen];
  ConnPtr c = find(s.nodeid);
  if (!c || !handshake_begin(*c, s.auth, hello)) return false;
  // A fresh socket's send buffer takes a HELLO at once.
  return ::send(s.fd.get(), hello, sizeof hello, MSG_NOSIGNAL | MSG_DONTWAIT) == ssize_t(sizeof hello);
}

void Lowcomms::auth_reply(uint64_t sock_id, const uint8_t* nonce, const uint8_t* proof, const uint8_t* expected,
                          const uint8_t* tx_key, const uint8_t* rx_key) {
  AuthReply r{sock_id, {}, {}, {}, {}, {}};
  std::memcpy(r.tx_key, tx_key, record::kKeyLen);
  std::memcpy(r.rx_key, rx_key, record::kKeyLen);
  std::memcpy(r.proof, proof, auth::kMacLen);
  std::memcpy(r.expected, expected, auth::kMacLen);
  std::memcpy(r.nonce, nonce, auth::kNonceLen);
  {
    std::lock_guard lk(rx_cmd_mu_);
    rx_auth_replies_.push_back(r);
  }
  rx_wake_.signal();
}

void Lowcomms::emit_auth_request(uint32_t nodeid, const auth::Session& a, const uint8_t* peer_nonce,
                                 uint64_t reply_id) {
  // The JS side computes both HMACs and answers through auth_reply(reply_id, ...).
  emit(Event{"auth", nodeid,
             hex(a.my_nonce, auth::kNonceLen) + ":" + hex(peer_nonce, auth::kNonceLen) + ":" +
                 hex64(a.my_incarnation) + ":" + hex64(a.peer_incarnation),
             "", int64_t(reply_id)});
}

size_t Lowcomms::rx_auth(const std::shared_ptr<Socket>& s, const uint8_t* buf, size_t len, const char** fail) {
  const auth::Step st = auth::consume(s->auth, s->nodeid, buf, len);
  if (st.bad != auth::Bad::kNone) {
    *fail = auth::bad_reason(st.bad);
    return st.consumed;
  }
  if (st.peer_nonce && s->auth.keyed) emit_auth_request(s->nodeid, s->auth, st.peer_nonce, s->id);
  if (st.peer_nonce || st.got_proof) rx_auth_check(s);
  return st.consumed;
}

void Lowcomms::rx_auth_check(const std::shared_ptr<Socket>& s) {
  const int v = auth::verify(s->auth);
  if (v == 0) return;
  if (v < 0) {
    rx_auth_failed(s, "wrong cluster key");
    return;
  }
  ConnPtr c = find(s->nodeid);
  if (!c) {
    rx_drop_socket(s->id, false);
    return;
  }
  if (s->auth.keyed) {
    // From here on every byte either way is a record under this session's keys.
    s->opener = record::Cipher::make(s->auth.mode, s->auth.rx_key, false);
    if (s->outgoing) s->sealer = record::Cipher::make(s->auth.mode, s->auth.tx_key, true);
    std::memset(s->auth.rx_key, 0, record::kKeyLen);
    std::memset(s->auth.tx_key, 0, record::kKeyLen);
    if (!s->opener || (s->outgoing && !s->sealer)) {
      rx_auth_failed(s, "record protection could not be set up (OpenSSL)");
      return;
    }
  }
  peer_identified(c, s->auth.peer_incarnation, s.get());
  s->auth.state = auth::State::kDone;  // only now may the send thread use it
  if (s->outgoing) kick_tx(c);
  if (!s->leftover.empty()) {
    // Frames the peer sent right behind its PROOF, read before our reply was computed.
    std::vector<uint8_t> pending;
    pending.swap(s->leftover);
    rx_stream(s, *c, pending.data(), pending.size());
  }
}

bool Lowcomms::rx_stream(const std::shared_ptr<Socket>& s, Connection& c, uint8_t* buf, size_t len) {
  auto process = [&](uint8_t* data, size_t n, size_t* consumed) {
    bool stale = false;
    const bool ok = rx_process(c, s->reset_epoch, data, n, consumed, &stale);
    if (stale) {
      rx_drop_socket(s->id, true);  // made before a resetNode(): its bytes are the old session's
      return false;
    }
    if (!ok) {
      // A length outside [16, 4096]: the stream cannot be resynchronised (§1.6 rule 2).
      c.ctr.bad_frames++;
      emit(Event{"error", c.nodeid, "malformed frame (bad length): connection closed", "bad_frame", 0});
      s->close_err = EBADMSG;
      rx_drop_socket(s->id, true);
      return false;
    }
    return true;
  };
  size_t consumed = 0;
  if (!s->opener) {
    if (!process(buf, len, &consumed)) return false;
    s->leftover.assign(buf + consumed, buf + len);
    return true;
  }
  if (rx_plain_.size() < record::kMaxTcpPlain + dlm::kMaxSocketBufsize)
    rx_plain_.resize(record::kMaxTcpPlain + dlm::kMaxSocketBufsize);
  size_t off = 0;
  while (len - off >= record::kHeaderLen) {
    const size_t plen = record::record_len(buf + off);
    const bool too_long = plen > record::kMaxTcpPlain;
    if (!too_long && len - off < plen + record::kOverhead) break;  // the rest of it is still to come
    // Only after its tag checks out is anything of a record read: a record that fails
    // (altered, injected, replayed, reordered, or one missing before it) ends the connection.
    const size_t carry = s->plain.size();
    if (carry) std::memcpy(rx_plain_.data(), s->plain.data(), carry);
    if (too_long || !s->opener->open(buf + off, plen, rx_plain_.data() + carry)) {
      rx_bad_record(c, too_long ? "record longer than any sender makes" : "record failed authentication");
      s->close_err = EBADMSG;
      rx_drop_socket(s->id, true);
      return false;
    }
    off += plen + record::kOverhead;
    if (!process(rx_plain_.data(), carry + plen, &consumed)) return false;
    s->plain.assign(rx_plain_.data() + consumed, rx_plain_.data() + carry + plen);
  }
  s->leftover.assign(buf + off, buf + len);
  return true;
}

void Lowcomms::rx_bad_record(Connection& c, const char* why) {
  c.ctr.bad_records++;
  gctr_.record_failures++;
  emit(Event{"reject", c.nodeid,
             std::string(why) + " (altered, injected, replayed, reordered or dropped on the way): connection closed",
             "record", 0});
}

void Lowcomms::rx_auth_failed(const std::shared_ptr<Socket>& s, const char* why) {
  gctr_.auth_failures++;
  emit(Event{"reject", s->nodeid, why, "auth", 0});
  rx_drop_socket(s->id, true);
}

void Lowcomms::rx_auth_reply(const AuthReply& r) {
  uint8_t proof[auth::kProofLen];
  std::memcpy(proof, auth::kProofMagic, 4);
  std::memcpy(proof + 4, r.proof, auth::kMacLen);
  if (r.id & auth::kLinkReply) {
    transport_->auth_reply(r, proof);
    return;
  }
  auto it = rx_socks_.find(r.id);
  if (it == rx_socks_.end()) return;  // gone meanwhile
  std::shared_ptr<Socket> s = it->second;
  if (s->auth.state != auth::State::kAwaitProof || s->auth.have_expected ||
      std::memcmp(s->auth.my_nonce, r.nonce, auth::kNonceLen) != 0)
    return;
  if (::send(s->fd.get(), proof, sizeof proof, MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(sizeof proof)) {
    // The connection went (reset, closed) while the HMACs were computed: a lost
    // connection to reconnect, not a peer that failed to authenticate.
    rx_drop_socket(s->id, true);
    return;
  }
  std::memcpy(s->auth.expected, r.expected, auth::kMacLen);
  std::memcpy(s->auth.tx_key, r.tx_key, record::kKeyLen);
  std::memcpy(s->auth.rx_key, r.rx_key, record::kKeyLen);
  s->auth.have_expected = true;
  rx_auth_check(s);
}

size_t Lowcomms::restart_session_locked(Connection& c, bool* drained) {
  c.mc.reset();
  uint32_t renumbered = 0;
  const size_t dropped = c.sendq.new_session(c.wq, 0, &renumbered);
  c.mc.renumbered(renumbered);
  // What was dropped frees room: a sender waiting for 'drain' must hear of it.
  *drained = drain_due_locked(c);
  return dropped;
}

void Lowcomms::peer_identified(const ConnPtr& c, uint64_t incarnation, const Socket* via) {
  const uint64_t known = c->peer_incarnation.exchange(incarnation);
  if (known == incarnation || known == 0) return;  // the same process, or the first contact
  // The peer restarted: what it never acked died with it; what it was never sent is
  // for the new one, numbered from 0 as the new one expects.
  size_t dropped;
  bool drained = false;
  {
    std::lock_guard lk(c->mu);
    dropped = restart_session_locked(*c, &drained);
  }
  c->ctr.restarts++;
  c->ctr.dropped_unacked += dropped;
  c->desync = Connection::Desync{};
  // Sockets that still carry the old incarnation's frames: none of them may be read.
  std::vector<uint64_t> stale;
  for (auto& [id, s] : rx_socks_)
    if (s->nodeid == c->nodeid && s.get() != via && s->auth.state == auth::State::kDone &&
        s->auth.peer_incarnation != incarnation)
      stale.push_back(id);
  for (uint64_t id : stale) rx_drop_socket(id, true);
  emit(Event{"restart", c->nodeid, hex64(known) + ":" + hex64(incarnation), "restart", int64_t(dropped)});
  if (dropped)
    emit(Event{"dropped", c->nodeid, "the peer restarted before acknowledging them", "restart", int64_t(dropped)});
  if (drained) emit(Event{"drain", c->nodeid, "", "", 0});
  kick_tx(c);
}

bool Lowcomms::rx_handshake_deadlines() {
  const int64_t now = now_ns();
  bool any = false;
  std::vector<std::shared_ptr<Socket>> late;
  for (auto& [id, s] : rx_socks_) {
    if (!auth::pending(s->auth)) continue;
    if (now - s->auth.started_ns > auth::kHandshakeTimeoutNs) late.push_back(s);
    else any = true;
  }
  for (auto& s : late) rx_auth_failed(s, "no handshake within 5 s");
  // The transport's own handshakes (SCTP: per association).
  return transport_->handshake_deadlines(now) || any;
}

void Lowcomms::rx_desync(Connection& c, uint64_t drops, uint64_t acks_backwards, bool delivered) {
  Connection::Desync& d = c.desync;
  if (delivered && !acks_backwards) {
    d.since_ns = 0;
    d.drops = 0;
    d.acks_backwards = 0;
    return;
  }
  if (!drops && !acks_backwards) return;
  const int64_t now = now_ns();
  if (!d.since_ns) d.since_ns = now;
  d.drops += drops;
  d.acks_backwards += acks_backwards;
  // Acks going backwards cannot happen within one session of the peer: report at once.
  if (!d.acks_backwards && now - d.since_ns < kDesyncAfterNs) return;
  if (d.reported_ns && now - d.reported_ns < kDesyncReportEveryNs) return;
  d.reported_ns = now;
  c.ctr.desync_reports++;
  const MidcommsRxStats& st = c.mc.stats();
  const char* what = d.acks_backwards ? "acks_backwards" : st.dup_dropped >= st.gap_dropped ? "duplicates" : "gaps";
  const std::string n = std::to_string(c.nodeid);
  emit(Event{"desync", c.nodeid,
             std::string("node ") + n + ": " + std::to_string(d.drops) + " frames dropped as duplicates or gaps" +
                 (d.acks_backwards ? " and " + std::to_string(d.acks_backwards) + " acks going backwards" : "") +
                 " without a delivery: its midcomms state is not ours (it restarted and nobody reset it?). " +
                 "If node " + n + " left and rejoined, call resetNode(" + n + ")",
             what, int64_t(d.drops)});
}

}  // namespace lowcomms
