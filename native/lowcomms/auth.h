// The lowcomms handshake (beyond the kernel, so never run with a kernel DLM peer):
// when a TCP connection or an SCTP association with another lowcomms node comes up,
// each side sends HELLO: its nodeid, its incarnation (a random id chosen at start(), so
// that a peer that restarted is recognised for certain) and a fresh 32-byte nonce.
// Without a cluster key the handshake ends with the peer's HELLO. With a key, each side
// then sends PROOF, an HMAC-SHA256 under the key over both nodeids, both incarnations
// and both nonces; only after the peer's PROOF checks out is any DLM frame read or
// sent. The HMACs are computed by the JS side with Node's crypto (never a home-made
// primitive); this file only frames and compares. Wire format: docs/protocol.md.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include "lowcomms/session_crypto.h"

namespace lowcomms::auth {

constexpr size_t kNonceLen = 32;
constexpr size_t kMacLen = 32;
constexpr uint8_t kHelloMagic[4] = {'L', 'C', 'H', '2'};
constexpr uint8_t kProofMagic[4] = {'L', 'C', 'P', '2'};
// magic, le32 nodeid, le32 flags, le64 incarnation, nonce
constexpr size_t kHelloLen = 4 + 4 + 4 + 8 + kNonceLen;
constexpr size_t kProofLen = 4 + kMacLen;  // magic, mac
constexpr uint32_t kFlagKeyed = 1;         // the sender holds a cluster key
// Bits 1-2: how the sender protects records after the handshake (record::Mode; keyed
// only). Both sides must agree: an older keyed lowcomms (0) or another mode is refused.
constexpr uint32_t kFlagModeShift = 1;
constexpr uint32_t kFlagModeMask = 3u << kFlagModeShift;
// Bytes a peer may send before the handshake is done (HELLO + PROOF + a little slack).
constexpr size_t kMaxPreAuthBytes = 4096;
// A connection or association still in its handshake after this long is dropped: a host
// that cannot (or will not) complete it holds no resources of ours for longer.
constexpr int64_t kHandshakeTimeoutNs = 5'000'000'000;

enum class State : uint8_t { kOff, kAwaitHello, kAwaitProof, kDone };

// Fills a nonce from the kernel's random source; false if it failed.
bool make_nonce(uint8_t* out);
// A random incarnation id, never 0 (0 means "not known yet").
bool make_incarnation(uint64_t* out);

// One handshake: a TCP connection's, or an SCTP association's. `state` is read by the
// send thread (it may send once kDone); the rest belongs to the receive thread.
struct Session {
  std::atomic<State> state{State::kOff};
  bool keyed = false;                 // a PROOF follows the HELLOs
  record::Mode mode = record::Mode::kOff;  // record protection once done (keyed only)
  // The session keys (session_crypto.h), from the JS side with the PROOF; set before
  // state becomes kDone.
  uint8_t tx_key[record::kKeyLen] = {};
  uint8_t rx_key[record::kKeyLen] = {};
  uint8_t my_nonce[kNonceLen] = {};
  uint64_t my_incarnation = 0;        // what our HELLO said
  uint64_t peer_incarnation = 0;      // from the peer's HELLO
  uint8_t peer_proof[kMacLen] = {};
  uint8_t expected[kMacLen] = {};
  bool have_peer_proof = false;
  bool have_expected = false;
  // Bumped by every start(): a reply computed for an earlier start (an SCTP association
  // restarted under the same id) is recognised and ignored.
  uint32_t generation = 0;
  int64_t started_ns = 0;  // when start() ran (now_ns), for kHandshakeTimeoutNs

  // A fresh nonce, and our HELLO (kHelloLen bytes) to send; false if no randomness.
  bool start(uint32_t our_nodeid, uint64_t our_incarnation, bool with_key, record::Mode mode, uint8_t* hello);
  void reset();
};

// The JS side's answer to an "auth" event (Lowcomms::auth_reply), for the receive thread:
// the PROOF to send, the one expected from the peer, and the session keys.
struct Reply {
  uint64_t id;   // a Socket::id, or kLinkReply | a transport's own handshake id
  uint8_t proof[kMacLen];
  uint8_t expected[kMacLen];
  uint8_t nonce[kNonceLen];  // the nonce of ours it answers: a stale reply is ignored
  uint8_t tx_key[record::kKeyLen];
  uint8_t rx_key[record::kKeyLen];
};
// Set in the id of a handshake a transport runs itself (SCTP: per association, the id
// in the low 32 bits). Below 2^53, so that the id survives a JavaScript number.
constexpr uint64_t kLinkReply = uint64_t(1) << 40;

// Waiting for the peer's HELLO or PROOF (subject to kHandshakeTimeoutNs).
inline bool pending(const Session& s) { return s.state == State::kAwaitHello || s.state == State::kAwaitProof; }

enum class Bad : uint8_t { kNone, kNotHandshake, kWrongNode, kKeyMismatch, kModeMismatch };

struct Step {
  size_t consumed = 0;
  Bad bad = Bad::kNone;
  const uint8_t* peer_nonce = nullptr;  // set when the peer's HELLO was just read
  bool got_proof = false;               // the peer's PROOF was just read
};

const char* bad_reason(Bad b);

// Reads HELLO, then (keyed) PROOF, from the front of buf (as much as is there).
Step consume(Session& s, uint32_t peer_nodeid, const uint8_t* buf, size_t len);

// Is the handshake complete on the peer's side of it? Keyless: its HELLO was read.
// Keyed: 1 the PROOF checks out, -1 wrong key, 0 not both MACs known yet. The caller
// sets state = kDone once it has acted on the peer's incarnation.
int verify(const Session& s);

inline bool is_magic(const uint8_t* p, const uint8_t (&magic)[4]) { return std::memcmp(p, magic, 4) == 0; }

// Compares without an early exit, so that timing says nothing about where it differs.
inline bool macs_equal(const uint8_t* a, const uint8_t* b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < kMacLen; i++) diff |= uint8_t(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace lowcomms::auth
