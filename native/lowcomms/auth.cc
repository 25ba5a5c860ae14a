#include "lowcomms/auth.h"

#include <sys/random.h>
#include <cerrno>
#include "dlm/wire.h"
#include "util/clock.h"

namespace lowcomms::auth {

namespace {
bool random_bytes(uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::getrandom(out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;  // a signal is no reason to drop a connection
    if (r <= 0) return false;
    got += size_t(r);
  }
  return true;
}

void put_le64(uint8_t* p, uint64_t v) {
  dlm::put_le32(p, uint32_t(v));
  dlm::put_le32(p + 4, uint32_t(v >> 32));
}
uint64_t get_le64(const uint8_t* p) { return dlm::get_le32(p) | uint64_t(dlm::get_le32(p + 4)) << 32; }
}  // namespace

bool make_nonce(uint8_t* out) { return random_bytes(out, kNonceLen); }

bool make_incarnation(uint64_t* out) {
  uint8_t b[8];
  do {
    if (!random_bytes(b, sizeof b)) return false;
    *out = get_le64(b);
  } while (*out == 0);
  return true;
}

const char* bad_reason(Bad b) {
  switch (b) {
    case Bad::kNone: return "";
    case Bad::kNotHandshake: return "not a lowcomms handshake";
    case Bad::kWrongNode: return "HELLO names another node";
    case Bad::kKeyMismatch: return "one side has a cluster key and the other has none";
    case Bad::kModeMismatch:
      return "the peers protect records differently (auth.records 'encrypt' vs 'integrity', or an older lowcomms "
             "that protects none)";
  }
  return "";
}

bool Session::start(uint32_t our_nodeid, uint64_t our_incarnation, bool with_key, record::Mode m, uint8_t* hello) {
  reset();
  generation++;
  started_ns = now_ns();
  keyed = with_key;
  mode = with_key ? m : record::Mode::kOff;
  my_incarnation = our_incarnation;
  if (!make_nonce(my_nonce)) return false;
  std::memcpy(hello, kHelloMagic, 4);
  dlm::put_le32(hello + 4, our_nodeid);
  dlm::put_le32(hello + 8, with_key ? kFlagKeyed | uint32_t(mode) << kFlagModeShift : 0);
  put_le64(hello + 12, our_incarnation);
  std::memcpy(hello + 20, my_nonce, kNonceLen);
  state = State::kAwaitHello;
  return true;
}

void Session::reset() {
  state = State::kOff;
  std::memset(tx_key, 0, sizeof tx_key);
  std::memset(rx_key, 0, sizeof rx_key);
  peer_incarnation = 0;
  have_peer_proof = false;
  have_expected = false;
}

Step consume(Session& s, uint32_t peer_nodeid, const uint8_t* buf, size_t len) {
  Step st;
  if (s.state == State::kAwaitHello) {
    if (len < kHelloLen) {
      // A prefix that cannot become a HELLO is refused now, not after kMaxPreAuthBytes.
      if (len && std::memcmp(buf, kHelloMagic, len < 4 ? len : 4) != 0) st.bad = Bad::kNotHandshake;
      return st;
    }
    if (!is_magic(buf, kHelloMagic)) {
      st.bad = Bad::kNotHandshake;
      return st;
    }
    // The node the address says it is, or nothing.
    if (dlm::get_le32(buf + 4) != peer_nodeid) {
      st.bad = Bad::kWrongNode;
      return st;
    }
    // No downgrade either way: both sides hold a key or neither does.
    if (((dlm::get_le32(buf + 8) & kFlagKeyed) != 0) != s.keyed) {
      st.bad = Bad::kKeyMismatch;
      return st;
    }
    if (s.keyed && ((dlm::get_le32(buf + 8) & kFlagModeMask) >> kFlagModeShift) != uint32_t(s.mode)) {
      st.bad = Bad::kModeMismatch;
      return st;
    }
    s.peer_incarnation = get_le64(buf + 12);
    if (s.peer_incarnation == 0) {
      st.bad = Bad::kNotHandshake;
      return st;
    }
    st.peer_nonce = buf + 20;
    s.state = State::kAwaitProof;
    st.consumed = kHelloLen;
  }
  if (s.keyed && s.state == State::kAwaitProof && !s.have_peer_proof) {
    if (len - st.consumed < kProofLen) return st;
    if (!is_magic(buf + st.consumed, kProofMagic)) {
      st.bad = Bad::kNotHandshake;
      return st;
    }
    std::memcpy(s.peer_proof, buf + st.consumed + 4, kMacLen);
    s.have_peer_proof = true;
    st.got_proof = true;
    st.consumed += kProofLen;
  }
  return st;
}

int verify(const Session& s) {
  if (s.state != State::kAwaitProof) return 0;
  if (!s.keyed) return 1;
  if (!s.have_peer_proof || !s.have_expected) return 0;
  return macs_equal(s.peer_proof, s.expected) ? 1 : -1;
}

}  // namespace lowcomms::auth
