// The receive path as a stream: arbitrary bytes, cut at arbitrary points into reads,
// through the splitter (with the leftover carried over as the TCP receive loop does),
// the decoder and the midcomms receive state machine. Invariants: frames lie within
// [16, 4096] and inside the buffer, the leftover stays under 4096 bytes, an inner
// message lies inside its frame with a matching length, and midcomms delivers sequenced
// messages exactly in order.
#include <cstddef>
#include <cstdint>
#include <vector>
#include "dlm/decode.h"
#include "dlm/splitter.h"
#include "fuzz/check.h"
#include "midcomms/midcomms_node.h"

using namespace lowcomms;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t cut_seed = data[0];
  const bool kernel_minimums = data[1] & 1;
  data += 2;
  size -= 2;
  MidcommsNode node(2);
  std::vector<uint8_t> buf;
  size_t off = 0;
  unsigned step = cut_seed;
  while (off < size) {
    step = step * 1103515245u + 12345u;
    const size_t chunk = std::min<size_t>(size - off, 1 + (step >> 16) % 600);
    buf.insert(buf.end(), data + off, data + off + chunk);
    off += chunk;
    bool reset = false;
    const dlm::SplitResult r = dlm::split_frames(buf.data(), buf.size(), [&](const uint8_t* p, size_t len) {
      FUZZ_CHECK(len >= dlm::kHeaderLen && len <= dlm::kMaxSocketBufsize);
      FUZZ_CHECK(p >= buf.data() && p + len <= buf.data() + buf.size());
      const dlm::Decoded d = dlm::decode_frame(p, len, kernel_minimums);
      if (d.inner) {
        FUZZ_CHECK(d.inner >= p && d.inner + d.inner_len <= p + len);
        FUZZ_CHECK(d.inner_len >= dlm::kHeaderLen);
      }
      if (d.kind == dlm::FrameKind::kSequenced)
        FUZZ_CHECK(dlm::get_le16(d.inner + dlm::kOffLength) == d.inner_len);
      const uint32_t before = node.seq_next();
      const RxVerdict v = node.receive(d, 1000);
      if (d.kind == dlm::FrameKind::kSequenced && v.deliver) {
        FUZZ_CHECK(d.seq == before);  // in order, exactly once
        FUZZ_CHECK(node.seq_next() == before + 1);
      }
      if (d.kind == dlm::FrameKind::kSequenced && !v.deliver && d.inner_cmd != dlm::kFin)
        FUZZ_CHECK(node.seq_next() == before);  // a dropped frame moves nothing
      if (v.apply_ack) FUZZ_CHECK(!dlm::seq_before(1000, v.ack_value));
      reset |= v.reset;
    });
    if (reset) node.reset();
    if (r.status == dlm::SplitStatus::kBadLength) return 0;  // the connection is closed
    FUZZ_CHECK(r.consumed <= buf.size());
    buf.erase(buf.begin(), buf.begin() + long(r.consumed));
    FUZZ_CHECK(buf.size() < dlm::kMaxSocketBufsize);  // the kernel's rx_leftover_buf bound
  }
  return 0;
}
