// The send side: the write queue (lowcomms) with midcomms' send queue over it. An
// arbitrary sequence of reserve (sequenced frames, FINs, plain ACKs, plain unwrapped
// messages), partial sends, cumulative acks anywhere in the 32-bit sequence space,
// forget (midcomms reset), reconnects (resend), new sessions (the peer restarted:
// new_session) and resets, against a model that holds every frame's
// bytes and whether some socket ever took it. After every op the queue's unsent byte
// count equals the model's; after every rewind and new session (and at the end) the
// unsent bytes are exactly the model's, byte for byte. Rewind: an optional ACK, the
// unacked frames the old socket took, then every frame never sent (sequenced ones only
// while unacked; queued ACKs only without the fresh ACK in front). New session: the
// unacked frames never taken by any socket (not FINs), renumbered from the new first
// sequence number in their order, with the plain messages between them; nothing a socket
// ever took, nothing acked or forgotten, no ACK, no FIN. A send gathered before a new
// session or reset still reads the old bytes and advances nothing. Sequence numbers
// start where the input says, so inputs cross the 2^32 wrap.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>
#include "dlm/wire.h"
#include "fuzz/check.h"
#include "lowcomms/writequeue.h"
#include "midcomms/send_queue.h"

using namespace lowcomms;

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t u8() { return n ? (n--, *p++) : 0; }
  uint16_t u16() { return uint16_t(u8() | (u8() << 8)); }
  uint32_t u32() { return uint32_t(u16()) | (uint32_t(u16()) << 16); }
};

// Every unsent byte, in order.
std::vector<uint8_t> unsent_bytes(WriteQueue& wq) {
  static std::vector<iovec> iov(1 << 16);  // reused: the fuzzer calls this often
  uint64_t gen;
  const int n = wq.gather(iov.data(), int(iov.size()), SIZE_MAX, &gen);
  std::vector<uint8_t> out;
  for (int i = 0; i < n; i++) {
    const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
    out.insert(out.end(), b, b + iov[i].iov_len);
  }
  return out;
}

struct Frame {
  std::vector<uint8_t> bytes;
  bool sequenced = false;
  uint32_t seq = 0;
  bool fin = false;
  bool ack = false;          // an ACK frame (unsequenced)
  bool transmitted = false;  // some socket took (a byte of) it, in this session
};

// What the queue must hold, frame by frame.
struct Model {
  std::deque<Frame> unacked;  // sequenced, not acked, not forgotten; in sequence order
  std::deque<Frame> pending;  // never sent on the current socket (no byte of them), in order
  std::vector<uint8_t> cut;   // the unsent rest of a frame the socket took part of
  size_t unsent = 0;          // cut.size() + every pending frame's size

  bool is_unacked(uint32_t seq) const { return find_unacked(seq) != nullptr; }
  const Frame* find_unacked(uint32_t seq) const {
    for (const Frame& f : unacked)
      if (f.seq == seq) return &f;
    return nullptr;
  }
  std::vector<uint8_t> stream() const {
    std::vector<uint8_t> out(cut);
    for (const Frame& f : pending) out.insert(out.end(), f.bytes.begin(), f.bytes.end());
    return out;
  }
  // n bytes went out: frames whose first byte left are taken (off pending).
  void advance(size_t n) {
    unsent -= n;
    const size_t from_cut = std::min(n, cut.size());
    cut.erase(cut.begin(), cut.begin() + long(from_cut));
    n -= from_cut;
    while (n > 0) {
      const Frame& f = pending.front();
      if (f.sequenced)
        for (Frame& u : unacked)
          if (u.seq == f.seq) u.transmitted = true;
      const size_t take = std::min(n, f.bytes.size());
      cut.assign(f.bytes.begin() + long(take), f.bytes.end());
      pending.pop_front();
      n -= take;
    }
  }
  void add(Frame f) {
    unsent += f.bytes.size();
    if (f.sequenced) unacked.push_back(f);
    pending.push_back(std::move(f));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  WriteQueue wq(4096 + (in.u8() % 4) * 4096);
  SendQueue sq;
  // Near the wrap by default (the high bytes from the input, most often 0xff..).
  uint32_t seq_send = ~in.u32() ^ 0xff;
  Model m;
  uint8_t fill = 0;
  while (in.n) {
    const uint8_t op = in.u8();
    switch (op % 8) {
      case 0:    // a sequenced message
      case 1: {  // ... or a FIN (sequenced, 40 bytes)
        const bool fin = (op % 8) == 1;
        const uint32_t inner = fin ? uint32_t(dlm::kHeaderLen)
                                   : uint32_t(dlm::kHeaderLen + in.u16() % (dlm::kMaxAppBufsize - dlm::kHeaderLen + 1));
        const uint32_t len = uint32_t(dlm::kOptsLen) + inner;
        uint8_t* f = wq.reserve(len);
        const uint8_t cmd = fin ? dlm::kFin : dlm::kMsg;
        dlm::write_opts(f, seq_send, 1, uint16_t(inner), cmd);
        dlm::write_header(f + dlm::kOptsLen, dlm::kVersion32, 0, 1, uint16_t(inner), cmd);
        // A payload of its own per frame: a mix-up of frames shows in the bytes.
        fill++;
        for (uint32_t i = dlm::kOptsLen + dlm::kHeaderLen; i < len; i++) f[i] = uint8_t(fill + i);
        sq.track(wq, seq_send, len, fin);
        m.add(Frame{std::vector<uint8_t>(f, f + len), true, seq_send, fin});
        seq_send++;
        break;
      }
      case 2: {  // an ACK, or a plain (unwrapped) message: unsequenced
        if (op & 8) {
          const uint32_t len = uint32_t(dlm::kHeaderLen + in.u16() % (dlm::kMaxSocketBufsize - dlm::kHeaderLen + 1));
          uint8_t* f = wq.reserve(len);
          dlm::write_header(f, dlm::kVersion32, 0, 1, uint16_t(len), (op & 16) ? dlm::kMsg : dlm::kRcom);
          fill++;
          for (uint32_t i = dlm::kHeaderLen; i < len; i++) f[i] = uint8_t(fill + i);
          m.add(Frame{std::vector<uint8_t>(f, f + len)});
          break;
        }
        uint8_t* f = wq.reserve(uint32_t(dlm::kHeaderLen));
        dlm::write_ack(f, in.u16(), 1);
        Frame a{std::vector<uint8_t>(f, f + dlm::kHeaderLen)};
        a.ack = true;
        m.add(std::move(a));
        break;
      }
      case 3: {  // a partial send: as many iovecs and bytes as the input allows
        std::vector<iovec> iov(1 + in.u8() % 64);
        uint64_t gen;
        const int n = wq.gather(iov.data(), int(iov.size()), 1 + size_t(in.u16()) * 16, &gen);
        size_t total = 0;
        for (int i = 0; i < n; i++) total += iov[i].iov_len;
        FUZZ_CHECK((n == 0) == (m.unsent == 0));
        if (!total) break;
        const size_t sent = 1 + in.u16() % total;
        // What gather offers is the front of the model's unsent stream.
        const std::vector<uint8_t> want = m.stream();
        size_t off = 0;
        for (int i = 0; i < n && off < sent; i++) {
          const size_t k = std::min(iov[i].iov_len, sent - off);
          FUZZ_CHECK(std::memcmp(iov[i].iov_base, want.data() + off, k) == 0);
          off += k;
        }
        wq.advance(sent, gen);
        m.advance(sent);
        break;
      }
      case 4: {  // a cumulative ack: anywhere around what we sent, or any 32-bit value
        uint32_t upto;
        const uint8_t how = in.u8();
        if (how & 1)
          upto = in.u32();
        else
          upto = seq_send - uint32_t(m.unacked.size()) + uint32_t(int8_t(in.u8()));
        bool fin = false;
        const size_t released = sq.ack(wq, upto, &fin);
        size_t model = 0;
        bool model_fin = false;
        while (!m.unacked.empty() && dlm::seq_before(m.unacked.front().seq, upto)) {
          model_fin |= m.unacked.front().fin;
          m.unacked.pop_front();
          model++;
        }
        FUZZ_CHECK(released == model);
        FUZZ_CHECK(fin == model_fin);
        break;
      }
      case 5: {  // midcomms reset of the sequence state: nothing unacked is resent
        const size_t n = sq.forget(wq);
        FUZZ_CHECK(n == m.unacked.size());
        m.unacked.clear();
        break;
      }
      case 6: {  // reconnect
        const bool with_ack = in.u8() & 1;
        const uint32_t ack_seq = in.u32();
        // Expected: [ACK] + unacked frames already taken + never-sent frames (sequenced
        // ones only while unacked). The frame the old socket cut is never resumed.
        Model next;
        if (with_ack) {
          Frame a;
          a.bytes.resize(dlm::kHeaderLen);
          dlm::write_ack(a.bytes.data(), ack_seq, 7);
          a.ack = true;
          next.add(std::move(a));
        }
        size_t taken = 0;
        for (const Frame& f : m.unacked) {
          bool still_pending = false;
          for (const Frame& p : m.pending)
            if (p.sequenced && p.seq == f.seq) still_pending = true;
          if (still_pending) break;  // this one and every later one were never sent
          next.add(f);  // (transmitted: the old socket took it)
          taken++;
        }
        // Never sent: sequenced ones while unacked (whether a socket ever took them stays
        // as it was), plain ones, and queued ACKs unless the fresh one supersedes them.
        for (const Frame& p : m.pending) {
          if (p.sequenced) {
            if (const Frame* u = m.find_unacked(p.seq)) next.add(*u);
          } else if (!(with_ack && p.ack)) {
            next.add(p);
          }
        }
        const size_t resent = sq.resend(wq, ack_seq, 7, with_ack);
        FUZZ_CHECK(resent == taken);
        m = std::move(next);
        FUZZ_CHECK(unsent_bytes(wq) == m.stream());
        break;
      }
      case 7: {  // node reset, or a new session (the peer restarted)
        // A send in flight meanwhile: it gathered before, it advances after.
        const bool in_flight = op & 16;
        std::vector<iovec> iov(64);
        uint64_t gen = 0;
        int n = 0;
        std::vector<uint8_t> gathered;
        if (in_flight) {
          n = wq.gather(iov.data(), int(iov.size()), SIZE_MAX, &gen);
          for (int i = 0; i < n; i++)
            gathered.insert(gathered.end(), static_cast<const uint8_t*>(iov[i].iov_base),
                            static_cast<const uint8_t*>(iov[i].iov_base) + iov[i].iov_len);
        }
        if (!(op & 8)) {
          wq.clear();
          FUZZ_CHECK(sq.drop_all() == m.unacked.size());
          m = Model{};
        } else {
          const uint32_t first = (op & 32) ? in.u32() : 0;
          // Expected: every frame never taken by any socket, in order: sequenced non-FIN
          // ones while unacked, renumbered from `first`; plain messages as they are.
          // Dropped (and counted unless a FIN): unacked frames some socket took.
          size_t want_dropped = 0;
          for (const Frame& f : m.unacked)
            if (f.transmitted && !f.fin) want_dropped++;
          Model next;
          uint32_t want_renumbered = 0;
          for (const Frame& p : m.pending) {
            if (p.sequenced) {
              const Frame* u = m.find_unacked(p.seq);
              if (!u || u->transmitted || u->fin) continue;
              Frame r = *u;
              r.seq = first + want_renumbered++;
              dlm::put_le32(r.bytes.data() + dlm::kOffLockspaceOrSeq, r.seq);
              next.add(std::move(r));
            } else if (!p.ack) {
              next.add(p);
            }
          }
          uint32_t renumbered = 0xdeadbeef;
          const size_t dropped = sq.new_session(wq, first, &renumbered);
          FUZZ_CHECK(dropped == want_dropped);
          FUZZ_CHECK(renumbered == want_renumbered);
          m = std::move(next);
          seq_send = first + renumbered;  // MidcommsNode::renumbered()
        }
        if (in_flight) {
          // (Before any new gather: the send thread's next gather() frees the old entries.)
          // The old bytes are still there to be read (ASan: not freed), and unchanged.
          std::vector<uint8_t> again;
          for (int i = 0; i < n; i++)
            again.insert(again.end(), static_cast<const uint8_t*>(iov[i].iov_base),
                         static_cast<const uint8_t*>(iov[i].iov_base) + iov[i].iov_len);
          FUZZ_CHECK(again == gathered);
          const size_t before = wq.unsent_bytes();
          if (!gathered.empty()) wq.advance(1 + in.u16() % gathered.size(), gen);  // ignored
          FUZZ_CHECK(wq.unsent_bytes() == before);
        }
        if (op & 8) FUZZ_CHECK(unsent_bytes(wq) == m.stream());
        break;
      }
    }
    FUZZ_CHECK(sq.size() == m.unacked.size());
    FUZZ_CHECK(wq.unsent_bytes() == m.unsent);
    FUZZ_CHECK(wq.unsent_bytes() <= wq.held_bytes());
    // Nothing unsent and nothing unacked: nothing may count against the node's limit.
    if (sq.size() == 0 && wq.unsent_bytes() == 0) FUZZ_CHECK(wq.held_bytes() == 0);
  }
  FUZZ_CHECK(unsent_bytes(wq) == m.stream());
  return 0;
}
