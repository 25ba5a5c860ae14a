// The handshake reader, auth::consume() and auth::verify() (native/lowcomms/auth.h), fed
// a peer's byte stream cut into reads at points the input chooses, the unread rest
// carried over between reads as the TCP receive loop does. The stream is a HELLO and a
// PROOF built from the input (each part valid or not, as the input says) and whatever
// follows them. A model written from the format (HELLO = "LCA1", le32 nodeid, 32-byte
// nonce; PROOF = "LCP1", 32-byte MAC) says what must happen, and the checks are:
// a HELLO is refused exactly when its magic or nodeid is wrong and accepted otherwise,
// once all 40 bytes are there and never before; likewise the PROOF's magic at 36
// bytes; the nonce and the MAC handed on are the stream's bytes; consumed counts add
// up to 40 + 36; verify() says 0 until both MACs are known, then 1 (state kDone) exactly
// when they are equal and -1 otherwise; after kDone the bytes left over are exactly the
// stream after the PROOF (what the receive loop then parses as DLM), and until then at
// most kMaxPreAuthBytes are held (the loop's cap, modelled here).
// The receive loop itself (Lowcomms::tcp_read, rx_auth) needs a socket and the engine;
// it is not isolated from transport_tcp.cc, so it is tested by test/net/auth.test.ts.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#include "dlm/wire.h"
#include "fuzz/check.h"
#include "lowcomms/auth.h"

using namespace lowcomms;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t cut_seed = data[0];
  const uint8_t flags = data[1];
  const uint8_t reply_at = data[2];  // the read after which the JS side's answer arrives
  const uint8_t mac_flip = data[3];  // 0: the expected MAC equals the PROOF's (right key)
  data += 4;
  size -= 4;
  constexpr uint32_t kPeer = 2;

  // The stream: HELLO, PROOF, then the rest of the input (the frames that follow).
  std::vector<uint8_t> stream(auth::kHelloLen + auth::kProofLen, 0);
  uint8_t* hello = stream.data();
  uint8_t* proof = hello + auth::kHelloLen;
  std::memcpy(hello, auth::kHelloMagic, 4);
  if (flags & 1) hello[flags >> 5] ^= uint8_t(1 + (flags >> 2 & 7));  // a wrong magic
  dlm::put_le32(hello + 4, (flags & 2) ? kPeer + 1 + (flags >> 3) : kPeer);  // another node
  std::memcpy(proof, auth::kProofMagic, 4);
  if (flags & 4) proof[flags >> 6] ^= 0x20;
  // Nonce and MAC bytes from the input, when there is enough of it.
  const size_t own = std::min<size_t>(size, auth::kNonceLen + auth::kMacLen);
  for (size_t i = 0; i < own; i++) (i < auth::kNonceLen ? hello + 8 : proof + 4 - auth::kNonceLen)[i] = data[i];
  if (flags & 0x80) stream.resize(size_t(cut_seed) % stream.size());  // the peer stops early
  stream.insert(stream.end(), data + own, data + size);

  // The model, from the format alone (a stream cut short is padded: those bytes never come).
  std::vector<uint8_t> padded(stream);
  padded.resize(std::max(padded.size(), auth::kHelloLen + auth::kProofLen), 0);
  const bool hello_ok = std::memcmp(padded.data(), auth::kHelloMagic, 4) == 0 && dlm::get_le32(padded.data() + 4) == kPeer;
  const bool proof_ok = std::memcmp(padded.data() + auth::kHelloLen, auth::kProofMagic, 4) == 0;
  uint8_t expected[auth::kMacLen];
  std::memcpy(expected, padded.data() + auth::kHelloLen + 4, auth::kMacLen);
  const bool right_key = mac_flip == 0;
  if (!right_key) expected[mac_flip % auth::kMacLen] ^= uint8_t(1u << (mac_flip >> 5));

  auth::Session s;
  uint8_t my_hello[auth::kHelloLen];
  FUZZ_CHECK(s.start(1, my_hello));
  FUZZ_CHECK(s.state == auth::State::kAwaitHello);
  FUZZ_CHECK(auth::is_magic(my_hello, auth::kHelloMagic) && dlm::get_le32(my_hello + 4) == 1);

  std::vector<uint8_t> held;  // what the receive loop keeps between reads
  size_t off = 0, read_no = 0, eaten = 0;
  bool saw_hello = false, saw_proof = false, replied = false, closed = false;
  unsigned step = cut_seed;
  while (off < stream.size() && !closed && s.state != auth::State::kDone) {
    step = step * 1103515245u + 12345u;
    const size_t chunk = std::min<size_t>(stream.size() - off, 1 + (step >> 16) % 97);
    held.insert(held.end(), stream.begin() + long(off), stream.begin() + long(off + chunk));
    off += chunk;
    read_no++;

    const auth::Step st = auth::consume(s, kPeer, held.data(), held.size());
    const size_t avail = eaten + held.size();  // stream bytes received so far
    if (st.peer_nonce) {
      FUZZ_CHECK(!saw_hello && hello_ok);
      FUZZ_CHECK(std::memcmp(st.peer_nonce, stream.data() + 8, auth::kNonceLen) == 0);
      saw_hello = true;
    }
    if (st.bad) {
      // Refused exactly when the model refuses, and only once the part is complete.
      FUZZ_CHECK(!saw_hello ? (!hello_ok && avail >= auth::kHelloLen)
                            : (!proof_ok && avail >= auth::kHelloLen + auth::kProofLen));
      FUZZ_CHECK(!st.got_proof);
      closed = true;
      break;
    }
    if (st.got_proof) {
      FUZZ_CHECK(saw_hello && !saw_proof && proof_ok);
      FUZZ_CHECK(std::memcmp(s.peer_proof, stream.data() + auth::kHelloLen + 4, auth::kMacLen) == 0);
      saw_proof = true;
    }
    // Whatever could be read was read, and no more.
    FUZZ_CHECK(saw_hello == (hello_ok && avail >= auth::kHelloLen));
    FUZZ_CHECK(saw_proof == (hello_ok && proof_ok && avail >= auth::kHelloLen + auth::kProofLen));
    eaten += st.consumed;
    FUZZ_CHECK(eaten == (saw_hello ? auth::kHelloLen : 0) + (saw_proof ? auth::kProofLen : 0));
    held.erase(held.begin(), held.begin() + long(st.consumed));
    FUZZ_CHECK(s.state == (saw_hello ? auth::State::kAwaitProof : auth::State::kAwaitHello));

    // The JS side answers (our PROOF sent, the expected MAC installed) once it has the HELLO.
    if (saw_hello && !replied && read_no >= reply_at % 8) {
      std::memcpy(s.expected, expected, auth::kMacLen);
      s.have_expected = true;
      replied = true;
    }
    const int v = auth::verify(s);
    if (!(saw_proof && replied)) {
      FUZZ_CHECK(v == 0);
    } else {
      FUZZ_CHECK(v == (right_key ? 1 : -1));
      if (v < 0) closed = true;  // wrong cluster key: the connection is dropped
    }
    // The loop's cap on what an unauthenticated peer may have us hold.
    if (s.state != auth::State::kDone && held.size() > auth::kMaxPreAuthBytes) closed = true;
  }
  if (s.state == auth::State::kDone) {
    FUZZ_CHECK(right_key && hello_ok && proof_ok && !closed);
    // A done session consumes nothing more; what is held is the stream after the PROOF.
    const auth::Step st = auth::consume(s, kPeer, held.data(), held.size());
    FUZZ_CHECK(st.consumed == 0 && !st.bad && !st.peer_nonce && !st.got_proof);
    held.insert(held.end(), stream.begin() + long(off), stream.end());
    FUZZ_CHECK(held.size() == stream.size() - auth::kHelloLen - auth::kProofLen);
    FUZZ_CHECK(std::memcmp(held.data(), stream.data() + auth::kHelloLen + auth::kProofLen, held.size()) == 0);
  } else if (!closed) {
    // The stream ended first: incomplete, or the answer or a part never came.
    FUZZ_CHECK(!(hello_ok && proof_ok && replied && right_key && stream.size() >= auth::kHelloLen + auth::kProofLen));
  }
  s.reset();
  FUZZ_CHECK(s.state == auth::State::kOff && !s.have_peer_proof && !s.have_expected);
  return 0;
}
