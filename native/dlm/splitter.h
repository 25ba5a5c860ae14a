// Splits a received byte run into whole DLM messages by h_length (docs/protocol.md,
// "Receive rules", rule 1). A length outside [16, 4096] condemns the whole buffer: the caller closes
// the connection. A trailing partial message is left for the next read.
#pragma once
#include <cstddef>
#include <cstdint>
#include "dlm/wire.h"

namespace lowcomms::dlm {

enum class SplitStatus { kOk, kBadLength };

struct SplitResult {
  SplitStatus status;
  size_t consumed;  // bytes of whole messages; the rest is the leftover
};

template <class OnFrame>
SplitResult split_frames(const uint8_t* buf, size_t len, OnFrame&& on_frame) {
  size_t off = 0;
  while (len - off >= kHeaderLen) {
    const size_t mlen = get_le16(buf + off + kOffLength);
    if (mlen < kHeaderLen || mlen > kMaxSocketBufsize) return {SplitStatus::kBadLength, off};
    if (mlen > len - off) break;
    on_frame(buf + off, mlen);
    off += mlen;
  }
  return {SplitStatus::kOk, off};
}

}  // namespace lowcomms::dlm
