// Record protection of an authenticated session (auth mode, beyond the kernel). Once the
// handshake is done, each direction of a connection or association has its own 32-byte
// key (HKDF over the cluster key, both nodeids, both incarnations and both nonces; the
// JS side derives them with node:crypto, see lib/lowcomms.ts) and every send unit is one
// record sealed with AES-256-GCM:
//
//   le32 L | L bytes (ciphertext, or the plaintext in integrity mode) | 16-byte tag
//
// The 12-byte GCM nonce is 4 zero bytes and the record's 64-bit counter (big-endian):
// per direction and per session, counted from 0, never sent. The receiver opens with the
// next counter it expects, so a record replayed, reordered, dropped or altered fails its
// tag. The header is authenticated data; in integrity mode the payload is too (GMAC) and
// travels in clear. The AEAD is OpenSSL's, resolved at run time (session_crypto.cc):
// never hand-written crypto, and no build- or load-time dependency for users without auth.
#pragma once
#include <sys/uio.h>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace lowcomms::record {

enum class Mode : uint8_t { kOff = 0, kIntegrity = 1, kEncrypt = 2 };

constexpr size_t kKeyLen = 32;
constexpr size_t kTagLen = 16;
constexpr size_t kHeaderLen = 4;
constexpr size_t kOverhead = kHeaderLen + kTagLen;
// TCP: a write run is cut into records of at most this much plaintext (the receiver holds
// one partial record per connection).
constexpr size_t kMaxTcpPlain = 16384;
// Any record (an SCTP message is one record): a longer header is refused unread.
constexpr size_t kMaxPlain = 1 << 20;

// Why records cannot be protected on this host (OpenSSL's libcrypto 3 not found in the
// process nor as libcrypto.so.3), or nullptr when they can.
const char* unavailable_reason();

// One direction of one session: its key and its record counter.
class Cipher {
 public:
  // nullptr when OpenSSL is unavailable or refuses the key.
  static std::unique_ptr<Cipher> make(Mode mode, const uint8_t* key, bool sealing);
  ~Cipher();
  Cipher(const Cipher&) = delete;
  Cipher& operator=(const Cipher&) = delete;

  // Writes the record of the plaintext spread over iov[0..n) (plain_len bytes in all) to
  // out (plain_len + kOverhead bytes), under the next counter.
  bool seal(const iovec* iov, int n, size_t plain_len, uint8_t* out);
  // Opens the whole record rec (plain_len + kOverhead bytes, header included) under the
  // next counter into plain (plain_len bytes); false when it fails authentication, after
  // which this direction is dead (the caller closes the connection).
  bool open(const uint8_t* rec, size_t plain_len, uint8_t* plain);
  uint64_t counter() const { return counter_; }

 private:
  struct Ctx;
  Cipher(Mode mode, bool sealing, std::unique_ptr<Ctx> ctx);
  Mode mode_;
  bool sealing_;
  bool dead_ = false;
  uint64_t counter_ = 0;
  std::unique_ptr<Ctx> ctx_;
};

inline uint32_t record_len(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace lowcomms::record
