// The handshake reader, auth::consume() and auth::verify() (native/lowcomms/auth.h), fed
// a peer's byte stream cut into reads at points the input chooses, the unread rest
// carried over between reads as the TCP receive loop does. The stream is a HELLO, with a
// cluster key a PROOF, built from the input (each part valid or not, as the input says)
// and whatever follows them. A model written from the format (HELLO = "LCH2", le32
// nodeid, le32 flags (bit 0: the sender holds a key; with a key, bits 1-2 the record
// protection, which must be ours (encrypt, 2); other bits ignored), le64
// incarnation (never 0), 32-byte nonce; PROOF = "LCP2", 32-byte MAC, sent only with a
// key) says what must happen, and the checks are:
//  - our own HELLO from start() is that format, with our nodeid, key flag, incarnation
//    and the session's nonce; every start() bumps the generation;
//  - a HELLO is refused exactly when the model refuses it, for the model's reason:
//    kNotHandshake as soon as the bytes so far cannot begin the magic, else (once all
//    52 bytes are there and never before) kWrongNode for another nodeid, kKeyMismatch
//    when the key flag is not the session's, kModeMismatch (keyed) when the record
//    protection is not ours, kNotHandshake for incarnation 0;
//  - with a key, a PROOF is refused exactly when its magic is wrong, at 36 bytes;
//    without one, no PROOF is read (what follows the HELLO stays, byte for byte);
//  - the nonce, the incarnation and the MAC handed on are the stream's bytes; consumed
//    counts add up to 52 (+ 36 with a key);
//  - verify() is 0 until the peer's side is complete: keyless once the HELLO is read,
//    keyed once both MACs are known; then 1 exactly when they are equal, -1 otherwise;
//    it never sets kDone itself (the loop does, as rx_auth_check does);
//  - after kDone the bytes left over are exactly the stream after the handshake (what the
//    receive loop then parses as DLM), and until then at most kMaxPreAuthBytes are held
//    (the loop's cap, modelled here).
// The receive loop itself (TcpTransport::read_socket, rx_auth) needs a socket and the engine;
// it is not isolated from transport_tcp.cc, so it is tested by test/net/auth.test.ts.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#include "dlm/wire.h"
#include "fuzz/check.h"
#include "lowcomms/auth.h"

using namespace lowcomms;

namespace {

constexpr uint32_t kPeer = 2;
constexpr size_t kIncarnationOff = 12, kNonceOff = 20;

uint64_t le64(const uint8_t* p) { return dlm::get_le32(p) | uint64_t(dlm::get_le32(p + 4)) << 32; }

// The model's verdict on the HELLO when `avail` bytes of the stream have arrived:
// kNone with *accepted false means "wait for more".
auth::Bad model_hello(const std::vector<uint8_t>& stream, size_t avail, bool keyed, bool* accepted) {
  *accepted = false;
  for (size_t i = 0; i < 4 && i < avail; i++)
    if (stream[i] != auth::kHelloMagic[i]) return auth::Bad::kNotHandshake;
  if (avail < auth::kHelloLen) return auth::Bad::kNone;
  if (dlm::get_le32(stream.data() + 4) != kPeer) return auth::Bad::kWrongNode;
  if (bool(stream[8] & 1) != keyed) return auth::Bad::kKeyMismatch;
  if (keyed && ((stream[8] >> 1) & 3) != uint8_t(record::Mode::kEncrypt)) return auth::Bad::kModeMismatch;
  if (le64(stream.data() + kIncarnationOff) == 0) return auth::Bad::kNotHandshake;
  *accepted = true;
  return auth::Bad::kNone;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const uint8_t cut_seed = data[0];
  const uint8_t flags = data[1];
  const uint8_t reply_at = data[2];  // the read after which the JS side's answer arrives
  const uint8_t mac_flip = data[3];  // 0: the expected MAC equals the PROOF's (right key)
  const uint8_t mode = data[4];      // bit 0 keyed, 1 peer's key flag flipped, 2 incarnation 0,
                                     // 3 a PROOF follows a keyless HELLO anyway, 4-7 other flag bits
  data += 5;
  size -= 5;
  const bool keyed = mode & 1;

  // The stream: HELLO, [PROOF], then the rest of the input (the frames that follow).
  const bool has_proof = keyed || (mode & 8);
  std::vector<uint8_t> stream(auth::kHelloLen + (has_proof ? auth::kProofLen : 0), 0);
  uint8_t* hello = stream.data();
  std::memcpy(hello, auth::kHelloMagic, 4);
  if (flags & 1) hello[flags >> 5] ^= uint8_t(1 + (flags >> 2 & 7));  // a wrong magic (or a later byte)
  dlm::put_le32(hello + 4, (flags & 2) ? kPeer + 1 + (flags >> 3) : kPeer);  // another node
  // Bits 4-7 of mode, XORed onto the record protection we use (encrypt): 0 keeps it ours.
  dlm::put_le32(hello + 8, uint32_t(keyed != bool(mode & 2)) | (uint32_t(mode >> 4) ^ uint32_t(record::Mode::kEncrypt)) << 1);
  uint64_t incarnation = 0x0123456789abcdefull;
  if (has_proof) {
    std::memcpy(stream.data() + auth::kHelloLen, auth::kProofMagic, 4);
    if (flags & 4) stream[auth::kHelloLen + (flags >> 6)] ^= 0x20;
  }
  // Nonce, MAC and incarnation bytes from the input, when there is enough of it.
  size_t own = 0;
  for (; own < size && own < auth::kNonceLen + auth::kMacLen; own++) {
    if (own < auth::kNonceLen)
      hello[kNonceOff + own] = data[own];
    else if (has_proof)
      stream[auth::kHelloLen + 4 + own - auth::kNonceLen] = data[own];
  }
  for (size_t i = 0; i < 8 && own < size; i++, own++)
    incarnation = (incarnation & ~(uint64_t(0xff) << (8 * i))) | uint64_t(data[own]) << (8 * i);
  if (mode & 4) incarnation = 0;
  for (int i = 0; i < 8; i++) hello[kIncarnationOff + i] = uint8_t(incarnation >> (8 * i));
  const size_t handshake_len = stream.size();
  if (flags & 0x80) stream.resize(size_t(cut_seed) % stream.size());  // the peer stops early
  stream.insert(stream.end(), data + own, data + size);

  // The model, from the format alone (a stream cut short is padded: those bytes never come).
  std::vector<uint8_t> padded(stream);
  padded.resize(std::max(padded.size(), auth::kHelloLen + auth::kProofLen), 0);  // (handshake_len or more)
  const size_t consumed_len = auth::kHelloLen + (keyed ? auth::kProofLen : 0);
  const bool proof_ok = !keyed || std::memcmp(padded.data() + auth::kHelloLen, auth::kProofMagic, 4) == 0;
  uint8_t expected[auth::kMacLen];
  std::memcpy(expected, padded.data() + auth::kHelloLen + 4, auth::kMacLen);
  const bool right_key = mac_flip == 0;
  if (!right_key) expected[mac_flip % auth::kMacLen] ^= uint8_t(1u << (mac_flip >> 5));

  auth::Session s;
  uint8_t my_hello[auth::kHelloLen];
  const uint64_t my_incarnation = 0x1122334455667788ull ^ uint64_t(cut_seed) << 40;
  const uint32_t gen_before = s.generation;
  FUZZ_CHECK(s.start(1, my_incarnation, keyed, record::Mode::kEncrypt, my_hello));
  FUZZ_CHECK(s.generation == gen_before + 1 && s.started_ns > 0);
  FUZZ_CHECK(s.state == auth::State::kAwaitHello && s.keyed == keyed);
  FUZZ_CHECK(auth::is_magic(my_hello, auth::kHelloMagic) && dlm::get_le32(my_hello + 4) == 1);
  FUZZ_CHECK(dlm::get_le32(my_hello + 8) ==
             (keyed ? auth::kFlagKeyed | uint32_t(record::Mode::kEncrypt) << auth::kFlagModeShift : 0));
  FUZZ_CHECK(le64(my_hello + kIncarnationOff) == my_incarnation);
  FUZZ_CHECK(std::memcmp(my_hello + kNonceOff, s.my_nonce, auth::kNonceLen) == 0);
  FUZZ_CHECK(auth::verify(s) == 0);

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
    bool hello_accepted = saw_hello;
    const auth::Bad want_hello = saw_hello ? auth::Bad::kNone : model_hello(stream, avail, keyed, &hello_accepted);
    if (st.peer_nonce) {
      FUZZ_CHECK(!saw_hello && hello_accepted);
      FUZZ_CHECK(st.peer_nonce == held.data() + kNonceOff);
      FUZZ_CHECK(std::memcmp(st.peer_nonce, stream.data() + kNonceOff, auth::kNonceLen) == 0);
      FUZZ_CHECK(s.peer_incarnation == le64(stream.data() + kIncarnationOff));
      saw_hello = true;
    }
    // The model's verdict on this read: the HELLO's, else (keyed) the PROOF's.
    auth::Bad want = want_hello;
    if (want == auth::Bad::kNone && hello_accepted && keyed && !proof_ok && avail >= consumed_len)
      want = auth::Bad::kNotHandshake;
    FUZZ_CHECK(st.bad == want);
    if (st.bad != auth::Bad::kNone) {
      FUZZ_CHECK(!st.got_proof);
      closed = true;
      break;
    }
    if (st.got_proof) {
      FUZZ_CHECK(keyed && saw_hello && !saw_proof && proof_ok);
      FUZZ_CHECK(std::memcmp(s.peer_proof, stream.data() + auth::kHelloLen + 4, auth::kMacLen) == 0);
      saw_proof = true;
    }
    // Whatever could be read was read, and no more.
    FUZZ_CHECK(saw_hello == (avail >= auth::kHelloLen));
    FUZZ_CHECK(saw_proof == (keyed && avail >= consumed_len));
    eaten += st.consumed;
    FUZZ_CHECK(eaten == (saw_hello ? auth::kHelloLen : 0) + (saw_proof ? auth::kProofLen : 0));
    held.erase(held.begin(), held.begin() + long(st.consumed));
    FUZZ_CHECK(s.state == (saw_hello ? auth::State::kAwaitProof : auth::State::kAwaitHello));
    if (saw_hello && !keyed) {
      // Keyless: nothing after the HELLO is handshake, even what looks like a PROOF.
      const auth::Step again = auth::consume(s, kPeer, held.data(), held.size());
      FUZZ_CHECK(again.consumed == 0 && again.bad == auth::Bad::kNone && !again.peer_nonce && !again.got_proof);
      FUZZ_CHECK(!s.have_peer_proof);
    }

    // Keyed: the JS side answers (our PROOF sent, the expected MAC installed) once it has the HELLO.
    if (keyed && saw_hello && !replied && read_no >= reply_at % 8) {
      std::memcpy(s.expected, expected, auth::kMacLen);
      s.have_expected = true;
      replied = true;
    }
    const int v = auth::verify(s);
    FUZZ_CHECK(auth::verify(s) == v);  // a question, not a step
    FUZZ_CHECK(s.state == (saw_hello ? auth::State::kAwaitProof : auth::State::kAwaitHello));
    if (!keyed) {
      FUZZ_CHECK(v == (saw_hello ? 1 : 0));
    } else if (!(saw_proof && replied)) {
      FUZZ_CHECK(v == 0);
    } else {
      FUZZ_CHECK(v == (right_key ? 1 : -1));
    }
    if (v < 0) closed = true;  // wrong cluster key: the connection is dropped
    if (v > 0) s.state = auth::State::kDone;  // rx_auth_check, once the incarnation is acted on
    // The loop's cap on what an unauthenticated peer may have us hold.
    if (s.state != auth::State::kDone && held.size() > auth::kMaxPreAuthBytes) closed = true;
  }
  if (s.state == auth::State::kDone) {
    FUZZ_CHECK(!closed && saw_hello && (!keyed || (right_key && proof_ok && saw_proof)));
    FUZZ_CHECK(auth::verify(s) == 0);  // done: nothing more to verify
    // A done session consumes nothing more; what is held is the stream after the handshake.
    const auth::Step st = auth::consume(s, kPeer, held.data(), held.size());
    FUZZ_CHECK(st.consumed == 0 && st.bad == auth::Bad::kNone && !st.peer_nonce && !st.got_proof);
    held.insert(held.end(), stream.begin() + long(off), stream.end());
    FUZZ_CHECK(held.size() == stream.size() - consumed_len);
    FUZZ_CHECK(std::memcmp(held.data(), stream.data() + consumed_len, held.size()) == 0);
  } else if (!closed) {
    // The stream ended first: incomplete, or the answer or a part never came.
    bool accepted = false;
    const bool hello_ok = model_hello(padded, padded.size(), keyed, &accepted) == auth::Bad::kNone && accepted;
    FUZZ_CHECK(!(hello_ok && stream.size() >= consumed_len && (!keyed || (proof_ok && replied && right_key))));
  }
  s.reset();
  FUZZ_CHECK(s.state == auth::State::kOff && !s.have_peer_proof && !s.have_expected && s.peer_incarnation == 0);
  FUZZ_CHECK(auth::verify(s) == 0);
  return 0;
}
