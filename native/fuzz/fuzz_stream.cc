// The receive path as a stream, cut at arbitrary points into reads, through the splitter
// (with the leftover carried over as the TCP receive loop does), the decoder and the
// midcomms receive state machine. Two modes, chosen by bit 1 of the second byte:
//  - raw: any bytes. Invariants: frames lie within [16, 4096] and inside the buffer, the
//    leftover stays under 4096 bytes, an inner message lies inside its frame with a
//    matching length, sequenced messages are delivered exactly in order, a dropped
//    frame moves nothing, an applied ack never passes what was sent.
//  - model: the input is a script of frames (in-order messages, duplicates, gaps, foreign
//    nodeids, bad versions, ACKs, unwrapped RCOM STATUS) from a session that starts next
//    to the 2^32 sequence wrap; a model says which inner messages must come out, and the
//    delivered bytes must equal them exactly, in order; and for every sequenced frame
//    whether it is delivered and whether it is ACKed at once (duplicates always, in-order
//    frames past 256 deliveries, gaps never).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#include "dlm/decode.h"
#include "dlm/splitter.h"
#include "fuzz/check.h"
#include "midcomms/midcomms_node.h"

using namespace lowcomms;

namespace {

constexpr uint32_t kSeqSend = 1000;  // what we "sent": acks beyond it are bad

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t u8() { return n ? (n--, *p++) : 0; }
  uint16_t u16() { return uint16_t(u8() | (u8() << 8)); }
};

// What midcomms said about one sequenced frame from the node itself.
struct SeqVerdict {
  uint32_t seq;
  bool deliver;
  bool ack_now;
  bool operator==(const SeqVerdict&) const = default;
};

// Feeds `stream` in reads cut by `cut_seed` through splitter, decoder and midcomms;
// returns every delivered inner message, in order, and checks the raw-mode invariants.
std::vector<std::vector<uint8_t>> receive_stream(const uint8_t* data, size_t size, uint8_t cut_seed,
                                                 bool kernel_minimums, MidcommsNode& node,
                                                 std::vector<SeqVerdict>* verdicts = nullptr) {
  std::vector<std::vector<uint8_t>> delivered;
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
      const RxVerdict v = node.receive(d, kSeqSend);
      if (d.kind == dlm::FrameKind::kSequenced && v.deliver) {
        FUZZ_CHECK(d.seq == before);  // in order, exactly once
        FUZZ_CHECK(node.seq_next() == before + 1);
      }
      if (d.kind == dlm::FrameKind::kSequenced && !v.deliver && d.inner_cmd != dlm::kFin)
        FUZZ_CHECK(node.seq_next() == before);  // a dropped frame moves nothing
      if (v.apply_ack) FUZZ_CHECK(!dlm::seq_before(kSeqSend, v.ack_value));
      if (verdicts && d.kind == dlm::FrameKind::kSequenced && d.nodeid == node.nodeid())
        verdicts->push_back(SeqVerdict{d.seq, v.deliver, v.ack_now});
      if (v.deliver) {
        FUZZ_CHECK(v.inner == d.inner && v.inner_len == d.inner_len);
        delivered.emplace_back(v.inner, v.inner + v.inner_len);
      }
      reset |= v.reset;
    });
    if (reset) node.reset();
    if (r.status == dlm::SplitStatus::kBadLength) return delivered;  // the connection is closed
    FUZZ_CHECK(r.consumed <= buf.size());
    buf.erase(buf.begin(), buf.begin() + long(r.consumed));
    FUZZ_CHECK(buf.size() < dlm::kMaxSocketBufsize);  // the kernel's rx_leftover_buf bound
  }
  return delivered;
}

// An application message of `len` bytes (>= 88, so that both size modes accept it).
std::vector<uint8_t> app_message(uint32_t nodeid, uint16_t len, uint8_t fill) {
  std::vector<uint8_t> m(len);
  dlm::write_header(m.data(), dlm::kVersion32, 0x1234, nodeid, len, dlm::kMsg);
  for (size_t i = dlm::kHeaderLen; i < len; i++) m[i] = uint8_t(fill + i * 7);
  return m;
}

void put_opts(std::vector<uint8_t>& out, uint32_t seq, uint32_t nodeid, const std::vector<uint8_t>& inner) {
  uint8_t o[dlm::kOptsLen];
  dlm::write_opts(o, seq, nodeid, uint16_t(inner.size()), inner[dlm::kOffCmd]);
  out.insert(out.end(), o, o + dlm::kOptsLen);
  out.insert(out.end(), inner.begin(), inner.end());
}

void model_mode(Input in, uint8_t cut_seed, bool kernel_minimums) {
  // Start within 255 of the wrap, so that a few messages cross it.
  const uint32_t start = 0xffffffffu - in.u8();
  MidcommsNode node(2);
  node.resume_at(start, kSeqSend);
  uint32_t next = start;  // the model's seq_next
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> want;
  // Per sequenced frame of node 2: delivered in order (an ACK at once past 256 deliveries,
  // §3.3), or a duplicate (dropped, ACKed at once), or a gap (dropped, not ACKed).
  std::vector<SeqVerdict> want_verdicts;
  uint32_t in_order = 0;
  uint8_t fill = 0;
  while (in.n && stream.size() < (256 << 10)) {
    const uint8_t op = in.u8();
    // Mostly small messages (many frames per input), some up to the largest.
    const uint16_t len = uint16_t(dlm::kMessageMin + ((op & 0x80) ? in.u16() % (dlm::kMaxAppBufsize - dlm::kMessageMin + 1)
                                                                  : in.u8() % 32));
    const std::vector<uint8_t> inner = app_message(2, len, fill++);
    switch (op % 7) {
      case 0:
      case 1:  // the next message in order: delivered
        want_verdicts.push_back(SeqVerdict{next, true, ++in_order > kRecvAckBackThreshold});
        put_opts(stream, next++, 2, inner);
        want.push_back(inner);
        break;
      case 2: {  // a duplicate (up to 256 back, across the wrap): dropped
        const uint32_t seq = next - 1 - in.u8();
        want_verdicts.push_back(SeqVerdict{seq, false, true});
        put_opts(stream, seq, 2, inner);
        break;
      }
      case 3: {  // a gap (up to 256 ahead): dropped, no buffering
        const uint32_t seq = next + 1 + in.u8();
        want_verdicts.push_back(SeqVerdict{seq, false, false});
        put_opts(stream, seq, 2, inner);
        break;
      }
      case 4: {  // the right seq with another node's h_nodeid: dropped, seq unmoved
        std::vector<uint8_t> o(dlm::kOptsLen);
        dlm::write_opts(o.data(), next, 3, uint16_t(inner.size()), dlm::kMsg);
        stream.insert(stream.end(), o.begin(), o.end());
        stream.insert(stream.end(), inner.begin(), inner.end());
        break;
      }
      case 5: {  // an ACK, or the right seq under an unknown h_version: no delivery
        uint8_t a[dlm::kHeaderLen];
        dlm::write_ack(a, uint32_t(in.u16()), 2);
        if (op & 8) dlm::put_le32(a, 0x00040002);  // bad version
        stream.insert(stream.end(), a, a + dlm::kHeaderLen);
        break;
      }
      case 6: {  // an unwrapped RCOM STATUS (48 bytes): delivered, takes no seq
        std::vector<uint8_t> rc(dlm::kRcomMin, 0);
        dlm::write_header(rc.data(), dlm::kVersion32, 0x77, 2, uint16_t(rc.size()), dlm::kRcom);
        dlm::put_le32(rc.data() + dlm::kOffRcType, dlm::kRcomStatus);
        rc[dlm::kRcomMin - 1] = fill;
        stream.insert(stream.end(), rc.begin(), rc.end());
        want.push_back(rc);
        break;
      }
    }
  }
  std::vector<SeqVerdict> verdicts;
  const auto got = receive_stream(stream.data(), stream.size(), cut_seed, kernel_minimums, node, &verdicts);
  FUZZ_CHECK(verdicts == want_verdicts);
  FUZZ_CHECK(got.size() == want.size());
  for (size_t i = 0; i < got.size(); i++) FUZZ_CHECK(got[i] == want[i]);
  FUZZ_CHECK(node.seq_next() == next);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t cut_seed = data[0];
  const bool kernel_minimums = data[1] & 1;
  if (data[1] & 2) {
    model_mode(Input{data + 2, size - 2}, cut_seed, kernel_minimums);
    return 0;
  }
  MidcommsNode node(2);
  receive_stream(data + 2, size - 2, cut_seed, kernel_minimums, node);
  return 0;
}
