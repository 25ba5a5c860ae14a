// Optional peer authentication (beyond the kernel; off by default, since kernel DLM peers
// cannot speak it). When a TCP connection comes up, each side sends HELLO (its nodeid and
// a fresh 32-byte nonce); on the peer's HELLO each side sends PROOF, an HMAC-SHA256 under
// the shared cluster key over both nodeids and both nonces. Only after the peer's PROOF
// checks out is any DLM frame read or sent. The HMACs are computed by the JS side with
// Node's crypto (never a home-made primitive); this file only frames and compares.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lowcomms::auth {

constexpr size_t kNonceLen = 32;
constexpr size_t kMacLen = 32;
constexpr uint8_t kHelloMagic[4] = {'L', 'C', 'A', '1'};
constexpr uint8_t kProofMagic[4] = {'L', 'C', 'P', '1'};
constexpr size_t kHelloLen = 4 + 4 + kNonceLen;  // magic, le32 nodeid, nonce
constexpr size_t kProofLen = 4 + kMacLen;        // magic, mac
// Bytes a peer may send before it is authenticated (HELLO + PROOF + a little slack).
constexpr size_t kMaxPreAuthBytes = 4096;

enum class State : uint8_t { kOff, kAwaitHello, kAwaitProof, kDone };

// Fills a nonce from the kernel's random source; false if it failed.
bool make_nonce(uint8_t* out);

// One handshake: a TCP connection's, or an SCTP association's. `state` is read by the
// send thread (it may send once kDone); the rest belongs to the receive thread.
struct Session {
  std::atomic<State> state{State::kOff};
  uint8_t my_nonce[kNonceLen] = {};
  uint8_t peer_proof[kMacLen] = {};
  uint8_t expected[kMacLen] = {};
  bool have_peer_proof = false;
  bool have_expected = false;
  // Bumped by every start(): a reply computed for an earlier start (an SCTP association
  // restarted under the same id) is recognised and ignored.
  uint8_t generation = 0;

  // A fresh nonce, and our HELLO (kHelloLen bytes) to send; false if no randomness.
  bool start(uint32_t our_nodeid, uint8_t* hello);
  void reset();
};

struct Step {
  size_t consumed = 0;
  bool bad = false;                   // not a handshake, or a HELLO naming another node
  const uint8_t* peer_nonce = nullptr;  // set when the peer's HELLO was just read
  bool got_proof = false;             // the peer's PROOF was just read
};

// Reads HELLO, then PROOF, from the front of buf (as much as is there).
Step consume(Session& s, uint32_t peer_nodeid, const uint8_t* buf, size_t len);

// Once both the peer's PROOF and ours-expected are known: 1 verified (state kDone),
// -1 wrong key, 0 not yet.
int verify(Session& s);

inline bool is_magic(const uint8_t* p, const uint8_t (&magic)[4]) { return std::memcmp(p, magic, 4) == 0; }

// Compares without an early exit, so that timing says nothing about where it differs.
inline bool macs_equal(const uint8_t* a, const uint8_t* b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < kMacLen; i++) diff |= uint8_t(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace lowcomms::auth
