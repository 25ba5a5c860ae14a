// Classifies one whole frame by the receive rules of docs/protocol.md ("Receive rules" 2-5),
// plus the inner/outer length cross-check the kernel lacks. Pure: no state, no I/O,
// so that it can be fuzzed and tested byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include "dlm/wire.h"

namespace lowcomms::dlm {

enum class FrameKind : uint8_t {
  kPlain31,       // a 3.1 DLM_MSG/DLM_RCOM: delivered as is, no sequence number
  kStateless32,   // an unwrapped 3.2 RCOM STATUS/NAMES (or reply): delivered, unsequenced
  kSequenced,     // a valid DLM_OPTS frame: seq + inner message
  kAck,           // DLM_ACK: cumulative, seq = peer's next expected
  kBadVersion,    // neither 3.1 nor 3.2: skipped
  kSkipped,       // a command or shape the rules skip (counted, connection kept)
};

struct Decoded {
  FrameKind kind;
  uint32_t version;
  uint32_t nodeid;    // h_nodeid of the outer header
  uint32_t seq;       // kSequenced, kAck
  const uint8_t* inner;  // the application message (kPlain31, kStateless32, kSequenced)
  uint16_t inner_len;
  uint8_t inner_cmd;
};

// kernel_minimums: also enforce sizeof(dlm_message)=88 / sizeof(dlm_rcom)=48 on
// DLM_MSG/DLM_RCOM bodies, as a kernel peer does. Off, any inner message >= 16 passes.
Decoded decode_frame(const uint8_t* p, size_t len, bool kernel_minimums);

}  // namespace lowcomms::dlm
