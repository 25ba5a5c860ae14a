// The record layer of an authenticated session (native/lowcomms/session_crypto.h): a
// sealer and an opener sharing a key, fed a sequence of records the input chooses
// (plaintext bytes, how they are cut into iovecs) and what an attacker on the path does
// to each (nothing, flip one bit anywhere, deliver it twice, drop it, swap it with the
// next, cut its length header). A model from the format says what must happen:
//  - a record is 4 + L + 16 bytes, its header le32 L; in integrity mode the payload is
//    the plaintext byte for byte, in encrypt mode (L >= 16) it is not;
//  - every record delivered unchanged and in order opens, to exactly its plaintext;
//  - the first record that is changed, repeated, missing one before it, or out of order
//    fails to open, and so does every record after it (the direction is dead);
//  - an opener under another key never opens anything.
// OpenSSL's libcrypto.so.3 is loaded at run time, as the addon does outside Node.
#include <sys/uio.h>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "fuzz/check.h"
#include "lowcomms/session_crypto.h"

using namespace lowcomms;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Without OpenSSL nothing would be checked: that is a failure, not a pass.
  if (const char* why = record::unavailable_reason()) {
    std::fprintf(stderr, "fuzz_record: %s\n", why);
    std::abort();
  }
  if (size < 2) return 0;
  const record::Mode mode = data[0] & 1 ? record::Mode::kEncrypt : record::Mode::kIntegrity;
  uint8_t key[record::kKeyLen];
  for (size_t i = 0; i < record::kKeyLen; i++) key[i] = uint8_t(i * 31 + data[1]);
  uint8_t other[record::kKeyLen];
  std::memcpy(other, key, sizeof key);
  other[data[1] % record::kKeyLen] ^= 1;
  data += 2;
  size -= 2;
  auto sealer = record::Cipher::make(mode, key, true);
  auto opener = record::Cipher::make(mode, key, false);
  auto stranger = record::Cipher::make(mode, other, false);
  FUZZ_CHECK(sealer && opener && stranger);

  // Sealed records, in the order the sender made them, with their plaintexts.
  std::vector<std::vector<uint8_t>> recs, plains;
  size_t off = 0;
  while (off + 3 <= size && recs.size() < 64) {
    const size_t len = std::min<size_t>(size - off - 3, size_t(data[off]) * 8 + data[off + 1] % 8);
    const uint8_t cuts = data[off + 2];
    off += 3;
    std::vector<uint8_t> plain(data + off, data + off + len);
    off += len;
    // Cut into up to 4 iovecs at points the input chose.
    iovec iov[4];
    int n = 0;
    size_t at = 0;
    for (int k = 0; k < 3 && at < len; k++) {
      const size_t piece = std::min<size_t>(len - at, (cuts >> (2 * k) & 3) * (len / 4 + 1));
      if (!piece) continue;
      iov[n++] = iovec{plain.data() + at, piece};
      at += piece;
    }
    if (at < len) iov[n++] = iovec{plain.data() + at, len - at};
    std::vector<uint8_t> rec(len + record::kOverhead);
    FUZZ_CHECK(sealer->seal(iov, n, len, rec.data()));
    FUZZ_CHECK(record::record_len(rec.data()) == len);
    if (mode == record::Mode::kIntegrity && len) FUZZ_CHECK(std::memcmp(rec.data() + 4, plain.data(), len) == 0);
    if (mode == record::Mode::kEncrypt && len >= 16) FUZZ_CHECK(std::memcmp(rec.data() + 4, plain.data(), len) != 0);
    recs.push_back(std::move(rec));
    plains.push_back(std::move(plain));
  }
  FUZZ_CHECK(sealer->counter() == recs.size());

  // Delivery: each record's fate from the rest of the input (what is left, cycled).
  const uint8_t* fate = data + off;
  const size_t fates = size - off;
  std::vector<uint8_t> out;
  bool dead = false;
  size_t expect = 0;  // the sender's index the opener expects next
  for (size_t i = 0; i < recs.size(); i++) {
    const uint8_t f = fates ? fate[i % fates] : 0;
    std::vector<uint8_t> rec = recs[i];
    size_t idx = i;
    switch (f & 7) {
      case 1:  // one bit flipped anywhere (header, payload or tag)
        rec[(size_t(f) * 7 + i) % rec.size()] ^= uint8_t(1u << (f >> 5));
        idx = SIZE_MAX;
        break;
      case 2:  // dropped
        continue;
      case 3:  // swapped with the next (that one goes now)
        if (i + 1 < recs.size()) {
          rec = recs[i + 1];
          idx = i + 1;
        }
        break;
      case 4:  // a replay of the previous one
        if (i > 0) {
          rec = recs[i - 1];
          idx = i - 1;
        }
        break;
      default:
        break;
    }
    // A receiver reads the header first: a length that does not match is refused unread
    // (TCP: longer than kMaxTcpPlain or waiting for bytes that fail later; SCTP: not the message).
    const size_t len = record::record_len(rec.data());
    const bool fits = len + record::kOverhead == rec.size();
    if (!fits) {
      FUZZ_CHECK(idx == SIZE_MAX);  // only a flipped header lies about the length
      break;                        // and the receiver closes the connection
    }
    out.assign(len + 1, 0);
    const bool ok = opener->open(rec.data(), len, out.data());
    const bool should = !dead && idx == expect;
    FUZZ_CHECK(ok == should);
    if (ok) {
      FUZZ_CHECK(len == plains[idx].size() && (len == 0 || std::memcmp(out.data(), plains[idx].data(), len) == 0));
      expect++;
    } else {
      dead = true;
    }
    // Another key opens nothing (its counter stays at 0 only until its first failure).
    std::vector<uint8_t> junk(len + 1);
    FUZZ_CHECK(!stranger->open(rec.data(), len, junk.data()));
  }
  return 0;
}
