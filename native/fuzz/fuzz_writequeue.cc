// The send side: an arbitrary sequence of reserve (sequenced or not), partial sends,
// acks, reconnects (rewind) and resets against a model. After every rewind the unsent
// bytes must be whole frames only, and their sequenced frames exactly the unacked
// sequence numbers, each once, in increasing order: what midcomms resends.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>
#include "dlm/splitter.h"
#include "dlm/wire.h"
#include "fuzz/check.h"
#include "lowcomms/writequeue.h"

using namespace lowcomms;

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t u8() { return n ? (n--, *p++) : 0; }
  uint16_t u16() { return uint16_t(u8() | (u8() << 8)); }
};

// Every unsent byte, in order.
std::vector<uint8_t> unsent_bytes(WriteQueue& wq) {
  static std::vector<iovec> iov(4096);  // reused: the fuzzer calls this often
  uint64_t gen;
  const int n = wq.gather(iov.data(), int(iov.size()), SIZE_MAX, &gen);
  std::vector<uint8_t> out;
  for (int i = 0; i < n; i++) {
    const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
    out.insert(out.end(), b, b + iov[i].iov_len);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  WriteQueue wq(4096 + (in.u8() % 4) * 4096);
  std::deque<uint32_t> unacked;  // model
  uint32_t seq_send = 0;
  while (in.n) {
    switch (in.u8() % 6) {
      case 0: {  // a sequenced frame
        const uint32_t len = dlm::kOptsLen + dlm::kHeaderLen + in.u16() % (dlm::kMaxAppBufsize - dlm::kHeaderLen + 1);
        uint8_t* f = wq.reserve(len);
        dlm::write_opts(f, seq_send, 1, uint16_t(len - dlm::kOptsLen), dlm::kMsg);
        dlm::write_header(f + dlm::kOptsLen, dlm::kVersion32, 0, 1, uint16_t(len - dlm::kOptsLen), dlm::kMsg);
        std::memset(f + dlm::kOptsLen + dlm::kHeaderLen, 0xab, len - dlm::kOptsLen - dlm::kHeaderLen);
        wq.track_last(seq_send, len, false);
        unacked.push_back(seq_send++);
        break;
      }
      case 1:  // an ACK (unsequenced)
        dlm::write_ack(wq.reserve(uint32_t(dlm::kHeaderLen)), in.u16(), 1);
        break;
      case 2: {  // a partial send
        iovec iov[64];
        uint64_t gen;
        const int n = wq.gather(iov, 64, 1 << 20, &gen);
        size_t total = 0;
        for (int i = 0; i < n; i++) total += iov[i].iov_len;
        if (total) wq.advance(1 + in.u16() % total, gen);
        break;
      }
      case 3: {  // a cumulative ack up to some sequence number we sent
        const uint32_t upto = unacked.empty() ? seq_send : unacked.front() + in.u8() % (unacked.size() + 1);
        bool fin = false;
        const size_t released = wq.ack(upto, &fin);
        size_t model = 0;
        while (!unacked.empty() && dlm::seq_before(unacked.front(), upto)) {
          unacked.pop_front();
          model++;
        }
        FUZZ_CHECK(released == model);
        break;
      }
      case 4: {  // reconnect
        wq.rewind(0, 1, in.u8() & 1);
        const std::vector<uint8_t> bytes = unsent_bytes(wq);
        std::vector<uint32_t> seqs;
        const dlm::SplitResult r = dlm::split_frames(bytes.data(), bytes.size(), [&](const uint8_t* p, size_t) {
          if (p[dlm::kOffCmd] == dlm::kOpts) seqs.push_back(dlm::get_le32(p + dlm::kOffLockspaceOrSeq));
        });
        FUZZ_CHECK(r.status == dlm::SplitStatus::kOk && r.consumed == bytes.size());  // whole frames only
        FUZZ_CHECK(seqs.size() == unacked.size());
        for (size_t i = 0; i < seqs.size(); i++) FUZZ_CHECK(seqs[i] == unacked[i]);
        break;
      }
      case 5:  // node reset
        wq.clear();
        unacked.clear();
        break;
    }
    FUZZ_CHECK(wq.unacked_frames() == unacked.size());
    FUZZ_CHECK(wq.unsent_bytes() <= wq.held_bytes());
    // Nothing unsent and nothing unacked: nothing may count against the node's limit.
    if (wq.unacked_frames() == 0 && wq.unsent_bytes() == 0) FUZZ_CHECK(wq.held_bytes() == 0);
  }
  return 0;
}
