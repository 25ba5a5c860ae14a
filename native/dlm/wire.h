// The DLM wire format (docs/protocol.md, "The DLM wire format"): little-endian fields,
// a 16-byte header whose h_length frames the stream, the 24-byte DLM_OPTS wrapper of
// protocol 3.2. Messages start at any byte offset, so every access is byte-wise.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowcomms::dlm {

constexpr uint32_t kVersion31 = 0x00030001;
constexpr uint32_t kVersion32 = 0x00030002;

enum Cmd : uint8_t { kMsg = 1, kRcom = 2, kOpts = 3, kAck = 4, kFin = 5 };

constexpr size_t kHeaderLen = 16;
constexpr size_t kOptsLen = 24;
constexpr size_t kMaxSocketBufsize = 4096;                  // DLM_MAX_SOCKET_BUFSIZE
constexpr size_t kMaxAppBufsize = kMaxSocketBufsize - kOptsLen;  // 4072
constexpr size_t kMessageMin = 88;                          // sizeof(struct dlm_message)
constexpr size_t kRcomMin = 48;                             // sizeof(struct dlm_rcom)

// rc_type values that travel unwrapped (stateless version detection).
constexpr uint32_t kRcomStatus = 1, kRcomNames = 2, kRcomStatusReply = 5, kRcomNamesReply = 6;

// Header field offsets.
constexpr size_t kOffVersion = 0, kOffLockspaceOrSeq = 4, kOffNodeid = 8, kOffLength = 12,
                 kOffCmd = 14, kOffPad = 15;
// dlm_opts offsets after the header.
constexpr size_t kOffNextcmd = 16, kOffOptlen = 18;
// dlm_rcom: rc_type follows the header.
constexpr size_t kOffRcType = 16;

inline uint16_t get_le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t get_le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline void put_le16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
inline void put_le32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
  p[3] = uint8_t(v >> 24);
}

struct Header {
  uint32_t version;
  uint32_t lockspace_or_seq;
  uint32_t nodeid;
  uint16_t length;
  uint8_t cmd;
};

inline Header read_header(const uint8_t* p) {
  return Header{get_le32(p + kOffVersion), get_le32(p + kOffLockspaceOrSeq),
                get_le32(p + kOffNodeid), get_le16(p + kOffLength), p[kOffCmd]};
}

inline void write_header(uint8_t* p, uint32_t version, uint32_t lockspace_or_seq, uint32_t nodeid,
                         uint16_t length, uint8_t cmd) {
  put_le32(p + kOffVersion, version);
  put_le32(p + kOffLockspaceOrSeq, lockspace_or_seq);
  put_le32(p + kOffNodeid, nodeid);
  put_le16(p + kOffLength, length);
  p[kOffCmd] = cmd;
  p[kOffPad] = 0;
}

// The 24-byte OPTS wrapper in front of an inner message of inner_len bytes.
inline void write_opts(uint8_t* p, uint32_t seq, uint32_t nodeid, uint16_t inner_len,
                       uint8_t nextcmd) {
  write_header(p, kVersion32, seq, nodeid, uint16_t(kOptsLen + inner_len), kOpts);
  p[kOffNextcmd] = nextcmd;
  p[17] = 0;
  put_le16(p + kOffOptlen, 0);
  put_le32(p + 20, 0);
}

// An ACK: bare header, h_seq = the receiver's next expected sequence number.
inline void write_ack(uint8_t* p, uint32_t seq_next, uint32_t nodeid) {
  write_header(p, kVersion32, seq_next, nodeid, uint16_t(kHeaderLen), kAck);
}

// Wrap-safe "a comes before b" for 32-bit sequence numbers (TCP's before()).
inline bool seq_before(uint32_t a, uint32_t b) { return int32_t(a - b) < 0; }

// Unwrapped RCOMs that the 3.2 receiver accepts without a sequence number.
inline bool rcom_is_stateless(uint32_t rc_type) {
  return rc_type == kRcomStatus || rc_type == kRcomNames || rc_type == kRcomStatusReply ||
         rc_type == kRcomNamesReply;
}

}  // namespace lowcomms::dlm
