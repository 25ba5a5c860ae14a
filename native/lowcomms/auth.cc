#include "lowcomms/auth.h"

#include <sys/random.h>
#include "dlm/wire.h"

namespace lowcomms::auth {

bool make_nonce(uint8_t* out) {
  size_t got = 0;
  while (got < kNonceLen) {
    const ssize_t r = ::getrandom(out + got, kNonceLen - got, 0);
    if (r <= 0) return false;
    got += size_t(r);
  }
  return true;
}

bool Session::start(uint32_t our_nodeid, uint8_t* hello) {
  reset();
  generation++;
  if (!make_nonce(my_nonce)) return false;
  std::memcpy(hello, kHelloMagic, 4);
  dlm::put_le32(hello + 4, our_nodeid);
  std::memcpy(hello + 8, my_nonce, kNonceLen);
  state = State::kAwaitHello;
  return true;
}

void Session::reset() {
  state = State::kOff;
  have_peer_proof = false;
  have_expected = false;
}

Step consume(Session& s, uint32_t peer_nodeid, const uint8_t* buf, size_t len) {
  Step st;
  if (s.state == State::kAwaitHello) {
    if (len < kHelloLen) return st;
    // The node the address says it is, or nothing.
    if (!is_magic(buf, kHelloMagic) || dlm::get_le32(buf + 4) != peer_nodeid) {
      st.bad = true;
      return st;
    }
    st.peer_nonce = buf + 8;
    s.state = State::kAwaitProof;
    st.consumed = kHelloLen;
  }
  if (s.state == State::kAwaitProof && !s.have_peer_proof) {
    if (len - st.consumed < kProofLen) return st;
    if (!is_magic(buf + st.consumed, kProofMagic)) {
      st.bad = true;
      return st;
    }
    std::memcpy(s.peer_proof, buf + st.consumed + 4, kMacLen);
    s.have_peer_proof = true;
    st.got_proof = true;
    st.consumed += kProofLen;
  }
  return st;
}

int verify(Session& s) {
  if (!s.have_peer_proof || !s.have_expected) return 0;
  if (!macs_equal(s.peer_proof, s.expected)) return -1;
  s.state = State::kDone;
  return 1;
}

}  // namespace lowcomms::auth
