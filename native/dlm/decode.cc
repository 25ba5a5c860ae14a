#include "dlm/decode.h"

namespace lowcomms::dlm {
namespace {

size_t min_len(uint8_t cmd, bool kernel_minimums) {
  if (cmd == kFin) return kHeaderLen;
  if (!kernel_minimums) return kHeaderLen;
  return cmd == kMsg ? kMessageMin : kRcomMin;
}

Decoded skipped(const Header& h) {
  return Decoded{FrameKind::kSkipped, h.version, h.nodeid, 0, nullptr, 0, 0};
}

}  // namespace

Decoded decode_frame(const uint8_t* p, size_t len, bool kernel_minimums) {
  const Header h = read_header(p);
  if (h.version != kVersion31 && h.version != kVersion32)
    return Decoded{FrameKind::kBadVersion, h.version, h.nodeid, 0, nullptr, 0, 0};

  if (h.version == kVersion31) {
    if (h.cmd != kMsg && h.cmd != kRcom) return skipped(h);
    if (len < min_len(h.cmd, kernel_minimums)) return skipped(h);
    return Decoded{FrameKind::kPlain31, h.version, h.nodeid, 0, p, uint16_t(len), h.cmd};
  }

  switch (h.cmd) {
    case kRcom: {
      // Only the stateless version-detection RCOMs may travel unwrapped.
      if (len < kRcomMin || !rcom_is_stateless(get_le32(p + kOffRcType))) return skipped(h);
      return Decoded{FrameKind::kStateless32, h.version, h.nodeid, 0, p, uint16_t(len), h.cmd};
    }
    case kOpts: {
      if (len < kOptsLen) return skipped(h);
      const size_t optlen = get_le16(p + kOffOptlen);
      if (len - kOptsLen < optlen) return skipped(h);
      const uint8_t nextcmd = p[kOffNextcmd];
      if (nextcmd != kMsg && nextcmd != kRcom && nextcmd != kFin) return skipped(h);
      const size_t inner_len = len - kOptsLen - optlen;
      if (inner_len < kHeaderLen || inner_len < min_len(nextcmd, kernel_minimums))
        return skipped(h);
      const uint8_t* inner = p + kOptsLen + optlen;
      const Header ih = read_header(inner);
      // The kernel leaves these unchecked ("tail size checking"); a lying inner header
      // would have the application read past the frame, so we drop it.
      if (ih.length != inner_len || ih.cmd != nextcmd) return skipped(h);
      return Decoded{FrameKind::kSequenced, h.version, h.nodeid, h.lockspace_or_seq, inner,
                     uint16_t(inner_len), nextcmd};
    }
    case kAck:
      return Decoded{FrameKind::kAck, h.version, h.nodeid, h.lockspace_or_seq, nullptr, 0, 0};
    default:
      return skipped(h);
  }
}

}  // namespace lowcomms::dlm
