// The receive path as a stream, cut at arbitrary points into reads, through the splitter
// (with the leftover carried over as the TCP receive loop does), the decoder and the
// midcomms receive state machine. Two modes, chosen by bit 1 of the second byte:
//  - raw: any bytes. Invariants: frames lie within [16, 4096] and inside the buffer, the
//    leftover stays under 4096 bytes, an inner message lies inside its frame with a
//    matching length, sequenced messages are delivered exactly in order, a dropped
//    frame moves nothing, an applied ack never passes what was sent; the application
//    consumes what each read delivered, after which an ACK would cover all of it.
//  - model: the input is a script of frames (in-order messages, duplicates, gaps, foreign
//    nodeids, bad versions, ACKs going forwards or backwards, unwrapped RCOM STATUS, the
//    peer's FIN) from a session that starts next to the 2^32 sequence wrap, and of events
//    between frames, as the engine's other threads cause them (the application consumes
//    some of what was delivered, the idle-ACK timer, our FIN acked, an active close, a
//    send). A model written from the protocol (docs/protocol.md, "midcomms 3.2", and the rule that
//    an ACK covers a message only once the application consumed it) runs beside the
//    engine, with the engine's caller (Lowcomms::rx_process, release(), rx_idle_acks)
//    modelled around MidcommsNode. Checked: the delivered bytes, exactly, in order; for
//    every frame and event the verdict (deliver, ACK at once, dropped, send FIN, reset,
//    ack applied/bad/backwards) or return value (on_consumed's kAckNow/kResetAfter,
//    on_fin_acked, start_close), the value of every ACK the caller queues, and after
//    it ack_seq(), ack_due(), pending(), delivered_unacked(), seq_next(), the FIN state,
//    can_send() and whether the epoch changed; the stats at the end.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>
#include "dlm/decode.h"
#include "dlm/splitter.h"
#include "fuzz/check.h"
#include "midcomms/midcomms_node.h"
#include "midcomms/midcomms_tx.h"
#include "lowcomms/writequeue.h"

using namespace lowcomms;

namespace {

constexpr uint32_t kSeqSend = 1000;  // what we "sent": acks beyond it are bad

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t u8() { return n ? (n--, *p++) : 0; }
  uint16_t u16() { return uint16_t(u8() | (u8() << 8)); }
};

// Feeds `stream` in reads cut by `cut_seed` through splitter, decoder and midcomms;
// returns every delivered inner message, in order, and checks the raw-mode invariants.
// `before_frame` runs before each frame is read (events between frames); `on_frame`
// sees every frame and verdict and acts as the engine's caller (a reset verdict resets
// the node at once, as Lowcomms::rx_process does); `after_read` runs after each read.
using FrameHook = std::function<void(size_t index, const dlm::Decoded&, const RxVerdict&)>;
std::vector<std::vector<uint8_t>> receive_stream(const uint8_t* data, size_t size, uint8_t cut_seed,
                                                 bool kernel_minimums, MidcommsNode& node,
                                                 const std::function<void(size_t index)>& before_frame,
                                                 const FrameHook& on_frame,
                                                 const std::function<void()>& after_read = nullptr) {
  std::vector<std::vector<uint8_t>> delivered;
  std::vector<uint8_t> buf;
  size_t off = 0, frames = 0;
  unsigned step = cut_seed;
  while (off < size) {
    step = step * 1103515245u + 12345u;
    const size_t chunk = std::min<size_t>(size - off, 1 + (step >> 16) % 600);
    buf.insert(buf.end(), data + off, data + off + chunk);
    off += chunk;
    const dlm::SplitResult r = dlm::split_frames(buf.data(), buf.size(), [&](const uint8_t* p, size_t len) {
      FUZZ_CHECK(len >= dlm::kHeaderLen && len <= dlm::kMaxSocketBufsize);
      FUZZ_CHECK(p >= buf.data() && p + len <= buf.data() + buf.size());
      if (before_frame) before_frame(frames);
      const dlm::Decoded d = dlm::decode_frame(p, len, kernel_minimums);
      if (d.inner) {
        FUZZ_CHECK(d.inner >= p && d.inner + d.inner_len <= p + len);
        FUZZ_CHECK(d.inner_len >= dlm::kHeaderLen);
      }
      if (d.kind == dlm::FrameKind::kSequenced)
        FUZZ_CHECK(dlm::get_le16(d.inner + dlm::kOffLength) == d.inner_len);
      const uint32_t before = node.seq_next();
      const uint64_t inner_other_before = node.stats().inner_nodeid_mismatch;
      const RxVerdict v = node.receive(d, kSeqSend);
      // A wrapped message whose inner header names another node uses its sequence number
      // but is not delivered (the kernel's "invalid h_nodeid").
      const bool inner_other = node.stats().inner_nodeid_mismatch > inner_other_before;
      if (d.kind == dlm::FrameKind::kSequenced && v.deliver) {
        FUZZ_CHECK(d.seq == before);  // in order, exactly once
        FUZZ_CHECK(node.seq_next() == before + 1);
      }
      if (d.kind == dlm::FrameKind::kSequenced && !v.deliver && d.inner_cmd != dlm::kFin)
        FUZZ_CHECK(node.seq_next() == before + (inner_other ? 1 : 0));  // a dropped frame moves nothing
      if (inner_other) FUZZ_CHECK(d.kind == dlm::FrameKind::kSequenced && d.seq == before && !v.deliver);
      if (v.dropped) FUZZ_CHECK(d.kind == dlm::FrameKind::kSequenced && d.seq != before && !v.deliver);
      if (v.apply_ack) FUZZ_CHECK(!dlm::seq_before(kSeqSend, v.ack_value));
      if (v.deliver) {
        FUZZ_CHECK(v.inner == d.inner && v.inner_len == d.inner_len);
        delivered.emplace_back(v.inner, v.inner + v.inner_len);
      }
      on_frame(frames, d, v);
      frames++;
    });
    if (r.status == dlm::SplitStatus::kBadLength) return delivered;  // the connection is closed
    FUZZ_CHECK(r.consumed <= buf.size());
    buf.erase(buf.begin(), buf.begin() + long(r.consumed));
    FUZZ_CHECK(buf.size() < dlm::kMaxSocketBufsize);  // the kernel's rx_leftover_buf bound
    if (after_read) after_read();
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

// One delivery the application has not consumed yet, as the engine's batch marks know it.
struct Delivery {
  uint32_t epoch;
  bool sequenced;
  uint32_t seq;        // sequenced: its number
  uint32_t seq_after;  // seq_next right after it was delivered (ConsumeMark::seq_after)
};

// Consumption of the oldest `k` deliveries, as release() reports it: per run of one
// epoch, one on_consumed(epoch, seq_after of the run's last, count). `count` is the
// sequenced messages of the run: the ones MidcommsNode counts in pending() (unwrapped
// RCOMs take no sequence number and are never acked).
struct ConsumeRun {
  uint32_t epoch, seq_after, count;
  size_t n;  // deliveries in the run
};
// The runs of the oldest `k` deliveries; each run leaves the queue only when its
// on_consumed() is called (`pop` does that), so that pending() is right in between.
std::vector<ConsumeRun> runs_of(const std::deque<Delivery>& q, size_t k) {
  std::vector<ConsumeRun> runs;
  for (size_t i = 0; i < k && i < q.size(); i++) {
    const Delivery& d = q[i];
    if (runs.empty() || runs.back().epoch != d.epoch) runs.push_back(ConsumeRun{d.epoch, 0, 0, 0});
    runs.back().seq_after = d.seq_after;
    runs.back().count += d.sequenced;
    runs.back().n++;
  }
  return runs;
}
void pop(std::deque<Delivery>& q, const ConsumeRun& run) { q.erase(q.begin(), q.begin() + long(run.n)); }

// What is observed after one frame or event. Frames: the verdict. Events: the return.
// Both: the ACK the caller queued (if any) and the node's ack state afterwards.
struct Obs {
  char kind = 0;
  uint32_t seq = 0;
  bool deliver = false, ack_now = false, dropped = false, send_fin = false, reset = false;
  bool apply_ack = false, bad_ack = false, ack_backwards = false;
  uint32_t ack_value = 0;
  int ret = 0;
  bool queued_ack = false;
  uint32_t queued_value = 0;
  uint32_t ack_seq = 0, pending = 0, delivered_unacked = 0, seq_next = 0;
  bool ack_due = false, can_send = false, new_epoch = false;
  FinState state = FinState::kClosed;
  bool operator==(const Obs&) const = default;
};

void print_obs(const char* who, const Obs& o) {
  std::fprintf(stderr,
               "%s: kind %c seq %u deliver %d ack_now %d dropped %d send_fin %d reset %d apply %d bad %d back %d "
               "value %u ret %d queued %d/%u ack_seq %u pending %u unacked %u seq_next %u due %d can_send %d "
               "new_epoch %d state %s\n",
               who, o.kind, o.seq, o.deliver, o.ack_now, o.dropped, o.send_fin, o.reset, o.apply_ack, o.bad_ack,
               o.ack_backwards, o.ack_value, o.ret, o.queued_ack, o.queued_value, o.ack_seq, o.pending,
               o.delivered_unacked, o.seq_next, o.ack_due, o.can_send, o.new_epoch, fin_state_name(o.state));
}

// The protocol, written from the rules (not from MidcommsNode): what node 2's session
// must look like from our side, and what the engine's caller then does.
struct Model {
  bool version_set = false;
  FinState state = FinState::kClosed;
  uint32_t seq_next = 0;
  uint32_t epoch = 0;
  std::deque<Delivery> unconsumed;  // every epoch's, in delivery order
  uint32_t consumed_unacked = 0;    // consumed since the last ACK we queued
  uint32_t last_ack_sent = 0;
  bool fin_waits = false;     // the peer's FIN is acked once what precedes it is consumed
  bool reset_waits = false;   // ... and that ACK also ends the FIN handshake
  bool have_rx_ack = false;
  uint32_t rx_ack = 0;        // the peer's last ACK
  bool stop_rx = false, stop_tx = false;
  bool our_fin_out = false;   // our FIN is queued and not acked
  MidcommsRxStats st;

  uint32_t pending() const {
    uint32_t n = 0;
    for (const Delivery& d : unconsumed) n += d.epoch == epoch && d.sequenced;
    return n;
  }
  // An ACK covers everything before the first message not consumed yet.
  uint32_t ack_seq() const {
    for (const Delivery& d : unconsumed)
      if (d.epoch == epoch && d.sequenced) return d.seq;
    return seq_next;
  }
  void queue_ack(Obs& o, uint32_t value) {
    o.queued_ack = true;
    o.queued_value = value;
    consumed_unacked = 0;
    last_ack_sent = ack_seq();
  }
  void reset(Obs& o) {
    version_set = false;
    state = FinState::kClosed;
    seq_next = 0;
    epoch++;
    consumed_unacked = 0;
    last_ack_sent = 0;
    fin_waits = reset_waits = false;
    have_rx_ack = false;
    stop_rx = stop_tx = false;
    our_fin_out = false;
    o.new_epoch = true;
  }
  void first_frame() {
    if (!version_set) {
      version_set = true;
      if (state == FinState::kClosed) state = FinState::kEstablished;
    }
  }
  void observe(Obs& o) const {
    o.ack_seq = ack_seq();
    o.pending = pending();
    o.delivered_unacked = consumed_unacked;
    o.seq_next = seq_next;
    o.ack_due = ack_seq() != last_ack_sent;
    o.can_send = !stop_tx;
    o.state = state;
  }

  // A sequenced frame of node 2 (a message, or the peer's FIN).
  Obs sequenced(uint32_t seq, bool fin) {
    Obs o;
    o.kind = fin ? 'F' : 'M';
    o.seq = seq;
    first_frame();
    if (seq != seq_next) {
      o.dropped = true;
      if (dlm::seq_before(seq, seq_next)) {
        st.dup_dropped++;
        o.ack_now = true;  // a duplicate: tell the peer where we are
      } else {
        st.gap_dropped++;
      }
    } else if (stop_rx) {
      st.skipped++;
    } else if (!fin) {
      seq_next++;
      st.delivered++;
      o.deliver = true;
      unconsumed.push_back(Delivery{epoch, true, seq, seq_next});
    } else {
      seq_next++;
      st.fins_rcvd++;
      o.ack_now = pending() == 0;
      fin_waits = !o.ack_now;
      switch (state) {
        case FinState::kEstablished:
          state = FinState::kLastAck;
          stop_rx = stop_tx = true;
          o.send_fin = true;
          break;
        case FinState::kFinWait1:
          state = FinState::kClosing;
          stop_rx = true;
          break;
        case FinState::kFinWait2:
          // Our close ends with this ACK: once what precedes the FIN was consumed.
          if (o.ack_now) {
            o.reset = true;
          } else {
            reset_waits = true;
            stop_rx = true;
          }
          break;
        default:
          break;
      }
    }
    // The caller: the ACK, our FIN, the reset (with an ACK of everything received).
    if (o.ack_now && !o.reset) queue_ack(o, ack_seq());
    if (o.send_fin) our_fin_out = true;
    if (o.reset) {
      queue_ack(o, seq_next);
      reset(o);
    }
    observe(o);
    return o;
  }
  Obs ack_frame(uint32_t value) {
    Obs o;
    o.kind = 'A';
    first_frame();
    st.acks_rcvd++;
    if (dlm::seq_before(kSeqSend, value)) {
      st.bad_acks++;
      o.bad_ack = true;
    } else if (have_rx_ack && dlm::seq_before(value, rx_ack)) {
      st.acks_backwards++;
      o.ack_backwards = true;
    } else {
      have_rx_ack = true;
      rx_ack = value;
      o.apply_ack = true;
      o.ack_value = value;
    }
    observe(o);
    return o;
  }
  Obs rcom() {
    Obs o;
    o.kind = 'R';
    first_frame();
    st.delivered++;
    o.deliver = true;
    unconsumed.push_back(Delivery{epoch, false, 0, seq_next});
    observe(o);
    return o;
  }
  Obs ignored(char kind) {  // another node's frame, or an unknown version
    Obs o;
    o.kind = kind;
    if (kind == 'N')
      st.nodeid_mismatch++;
    else
      st.bad_version++;
    observe(o);
    return o;
  }
  Obs consumed(const ConsumeRun& run) {
    Obs o;
    o.kind = 'C';
    if (run.epoch == epoch && run.count) {
      consumed_unacked += run.count;
      if (consumed_unacked > kRecvAckBackThreshold) o.ret = MidcommsNode::kAckNow;
      if (fin_waits && pending() == 0) {
        fin_waits = false;
        o.ret = MidcommsNode::kAckNow | (reset_waits ? MidcommsNode::kResetAfter : 0);
      }
      if (o.ret & MidcommsNode::kAckNow) {
        queue_ack(o, ack_seq());
        if (o.ret & MidcommsNode::kResetAfter) reset(o);
      }
    }
    observe(o);
    return o;
  }
  Obs idle_ack() {
    Obs o;
    o.kind = 'I';
    if (version_set && ack_seq() != last_ack_sent) queue_ack(o, ack_seq());
    observe(o);
    return o;
  }
  Obs fin_acked() {
    Obs o;
    o.kind = 'X';
    o.ret = -1;  // no FIN of ours to ack
    if (our_fin_out) {
      our_fin_out = false;
      o.ret = 0;
      if (state == FinState::kFinWait1) {
        state = FinState::kFinWait2;
      } else if (state == FinState::kLastAck || state == FinState::kClosing) {
        if (fin_waits)
          reset_waits = true;  // the reset waits for our ACK of the peer's FIN
        else
          o.ret = 1;
      }
      if (o.ret == 1) reset(o);
    }
    observe(o);
    return o;
  }
  Obs close() {
    Obs o;
    o.kind = 'S';
    if (state == FinState::kEstablished) {
      state = FinState::kFinWait1;
      stop_tx = true;
      our_fin_out = true;
      o.ret = 1;
    }
    observe(o);
    return o;
  }
  Obs send() {
    Obs o;
    o.kind = 'W';
    if (!stop_tx) {
      o.ret = 1;
      if (state == FinState::kClosed) state = FinState::kEstablished;
    }
    observe(o);
    return o;
  }
};

// The engine side of the same: MidcommsNode with its caller's actions, observed. ACKs
// and our FIN are framed by the real send side (midcomms_tx) into a write queue and read
// back off it: the value an ACK carries is the one on the wire.
constexpr uint32_t kOurNodeid = 1;

struct Engine {
  MidcommsNode& node;
  std::deque<Delivery> unconsumed;
  bool our_fin_out = false;
  uint32_t epoch_before = 0;
  WriteQueue wq{4096};
  SendQueue sq;

  // Everything queued since the last call, as it would go on the wire.
  std::vector<uint8_t> take_written() {
    std::vector<uint8_t> out;
    iovec iov[64];
    uint64_t gen;
    int n;
    while ((n = wq.gather(iov, 64, 1 << 20, &gen)) > 0) {
      size_t bytes = 0;
      for (int i = 0; i < n; i++) {
        const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
        out.insert(out.end(), b, b + iov[i].iov_len);
        bytes += iov[i].iov_len;
      }
      wq.advance(bytes, gen);
    }
    wq.clear();
    sq.drop_all();
    return out;
  }

  void begin(Obs& o, char kind) {
    o.kind = kind;
    epoch_before = node.epoch();
  }
  void queue_ack(Obs& o, bool all) {
    o.queued_ack = true;
    midcomms_tx::queue_ack(node, wq, kOurNodeid, all);
    const std::vector<uint8_t> w = take_written();
    FUZZ_CHECK(w.size() == dlm::kHeaderLen && w[dlm::kOffCmd] == dlm::kAck &&
               dlm::get_le32(&w[dlm::kOffNodeid]) == kOurNodeid &&
               dlm::get_le32(&w[dlm::kOffVersion]) == dlm::kVersion32 &&
               dlm::get_le16(&w[dlm::kOffLength]) == dlm::kHeaderLen);
    o.queued_value = dlm::get_le32(&w[dlm::kOffLockspaceOrSeq]);
  }
  // Our FIN: one DLM_OPTS frame with the next sequence number around a bare FIN header.
  void queue_fin() {
    const uint32_t seq = node.seq_send();
    midcomms_tx::queue_fin(node, sq, wq, kOurNodeid);
    const std::vector<uint8_t> w = take_written();
    FUZZ_CHECK(w.size() == dlm::kOptsLen + dlm::kHeaderLen && w[dlm::kOffCmd] == dlm::kOpts &&
               dlm::get_le32(&w[dlm::kOffLockspaceOrSeq]) == seq && w[dlm::kOffNextcmd] == dlm::kFin &&
               w[dlm::kOptsLen + dlm::kOffCmd] == dlm::kFin && node.seq_send() == seq + 1);
  }
  void reset() {
    node.reset();
    our_fin_out = false;
  }
  void observe(Obs& o) {
    o.ack_seq = node.ack_seq();
    o.pending = node.pending();
    o.delivered_unacked = node.delivered_unacked();
    o.seq_next = node.seq_next();
    o.ack_due = node.ack_due();
    o.can_send = node.can_send();
    o.state = node.state();
    o.new_epoch = node.epoch() != epoch_before;
  }
  Obs frame(const dlm::Decoded& d, const RxVerdict& v, uint32_t epoch_at_frame) {
    Obs o;
    epoch_before = epoch_at_frame;
    if (d.kind == dlm::FrameKind::kBadVersion) o.kind = 'V';
    else if (d.nodeid != node.nodeid()) o.kind = 'N';
    else if (d.kind == dlm::FrameKind::kAck) o.kind = 'A';
    else if (d.kind == dlm::FrameKind::kStateless32) o.kind = 'R';
    else if (d.kind == dlm::FrameKind::kSequenced) o.kind = d.inner_cmd == dlm::kFin ? 'F' : 'M';
    if (o.kind == 'M' || o.kind == 'F') o.seq = d.seq;
    o.deliver = v.deliver;
    o.ack_now = v.ack_now;
    o.dropped = v.dropped;
    o.send_fin = v.send_fin;
    o.reset = v.reset;
    o.apply_ack = v.apply_ack;
    o.bad_ack = v.bad_ack;
    o.ack_backwards = v.ack_backwards;
    o.ack_value = v.ack_value;
    if (v.deliver)
      unconsumed.push_back(Delivery{epoch_at_frame, d.kind == dlm::FrameKind::kSequenced,
                                    d.kind == dlm::FrameKind::kSequenced ? d.seq : 0, node.seq_next()});
    // Lowcomms::rx_process's order: the ACK, our FIN, the reset.
    if (v.ack_now && !v.reset) queue_ack(o, false);
    if (v.send_fin) {
      queue_fin();
      our_fin_out = true;
    }
    if (v.reset) {
      queue_ack(o, true);
      reset();
    }
    observe(o);
    return o;
  }
  Obs consumed(const ConsumeRun& run) {
    Obs o;
    begin(o, 'C');
    o.ret = node.on_consumed(run.epoch, run.seq_after, run.count);
    if ((o.ret & MidcommsNode::kAckNow) && node.version() == PeerVersion::k32) {
      queue_ack(o, false);
      if (o.ret & MidcommsNode::kResetAfter) reset();
    }
    observe(o);
    return o;
  }
  Obs idle_ack() {
    Obs o;
    begin(o, 'I');
    if (node.version() == PeerVersion::k32 && node.ack_due()) queue_ack(o, false);
    observe(o);
    return o;
  }
  Obs fin_acked() {
    Obs o;
    begin(o, 'X');
    o.ret = -1;
    if (our_fin_out) {
      our_fin_out = false;
      o.ret = node.on_fin_acked() ? 1 : 0;
      if (o.ret == 1) reset();
    }
    observe(o);
    return o;
  }
  Obs close() {
    Obs o;
    begin(o, 'S');
    o.ret = node.start_close() ? 1 : 0;
    if (o.ret) {
      queue_fin();
      our_fin_out = true;
    }
    observe(o);
    return o;
  }
  Obs send() {
    Obs o;
    begin(o, 'W');
    if (node.can_send()) {
      o.ret = 1;
      node.on_send();
      node.next_seq();
    }
    observe(o);
    return o;
  }
};

// An event between frames: before frame `pos` (or after the last).
struct Event {
  size_t pos;
  uint8_t kind;  // 0 consume `arg`, 1 idle ACK, 2 our FIN acked, 3 start_close, 4 a send
  uint32_t arg;
};

void model_mode(Input in, uint8_t cut_seed, bool kernel_minimums) {
  // Start within 255 of the wrap, so that a few messages cross it.
  const uint32_t start = 0xffffffffu - in.u8();
  MidcommsNode node(2);
  node.resume_at(start, kSeqSend);
  FUZZ_CHECK(node.ack_seq() == start && !node.ack_due() && node.pending() == 0);
  Model m;
  m.seq_next = start;
  m.last_ack_sent = start;
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> want;
  std::vector<Obs> want_obs;
  std::vector<Event> events;
  size_t frames = 0;
  uint8_t fill = 0;
  auto run_consume = [](std::deque<Delivery>& q, uint32_t k, auto&& consumed, std::vector<Obs>& out) {
    for (const ConsumeRun& run : runs_of(q, k)) {
      pop(q, run);
      out.push_back(consumed(run));
    }
  };
  while (in.n && stream.size() < (256 << 10)) {
    const uint8_t op = in.u8();
    if (op & 0x40) {  // an event
      Event e{frames, uint8_t(op % 8 < 4 ? 0 : op % 8 - 3), 0};
      if (op % 8 < 4) e.arg = op % 8 == 3 ? 0xffffffffu : 1 + in.u8();  // how many deliveries
      events.push_back(e);
      switch (e.kind) {
        case 0: run_consume(m.unconsumed, e.arg, [&](const ConsumeRun& r) { return m.consumed(r); }, want_obs); break;
        case 1: want_obs.push_back(m.idle_ack()); break;
        case 2: want_obs.push_back(m.fin_acked()); break;
        case 3: want_obs.push_back(m.close()); break;
        case 4: want_obs.push_back(m.send()); break;
      }
      continue;
    }
    // Mostly small messages (many frames per input), some up to the largest.
    const uint8_t kind = op % 8;
    uint16_t len = dlm::kMessageMin;
    if (kind != 5 && kind != 6 && kind != 7)
      len = uint16_t(dlm::kMessageMin + ((op & 0x80) ? in.u16() % (dlm::kMaxAppBufsize - dlm::kMessageMin + 1)
                                                     : in.u8() % 32));
    const std::vector<uint8_t> inner = app_message(2, len, fill++);
    frames++;
    switch (kind) {
      case 0:
      case 1:  // the next message in order: delivered
        want_obs.push_back(m.sequenced(m.seq_next, false));
        put_opts(stream, want_obs.back().seq, 2, inner);
        if (want_obs.back().deliver) want.push_back(inner);
        break;
      case 2: {  // a duplicate (up to 256 back, across the wrap): dropped, ACKed at once
        const uint32_t seq = m.seq_next - 1 - in.u8();
        want_obs.push_back(m.sequenced(seq, false));
        put_opts(stream, seq, 2, inner);
        break;
      }
      case 3: {  // a gap (up to 256 ahead): dropped, no buffering, no ACK
        const uint32_t seq = m.seq_next + 1 + in.u8();
        want_obs.push_back(m.sequenced(seq, false));
        put_opts(stream, seq, 2, inner);
        break;
      }
      case 4: {  // the right seq with another node's h_nodeid: dropped, seq unmoved
        std::vector<uint8_t> o(dlm::kOptsLen);
        dlm::write_opts(o.data(), m.seq_next, 3, uint16_t(inner.size()), dlm::kMsg);
        stream.insert(stream.end(), o.begin(), o.end());
        stream.insert(stream.end(), inner.begin(), inner.end());
        want_obs.push_back(m.ignored('N'));
        break;
      }
      case 5: {  // an ACK (in range, or beyond what we sent), or one under an unknown h_version
        uint8_t a[dlm::kHeaderLen];
        const uint16_t raw = in.u16();
        const uint32_t value = (op & 16) ? raw % (kSeqSend + 1) : raw;
        dlm::write_ack(a, value, 2);
        if (op & 8) {
          dlm::put_le32(a, 0x00040002);  // bad version
          want_obs.push_back(m.ignored('V'));
        } else {
          want_obs.push_back(m.ack_frame(value));
        }
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
        want_obs.push_back(m.rcom());
        break;
      }
      case 7: {  // the peer's FIN, in order (or, with op & 8, a duplicate FIN)
        std::vector<uint8_t> f(dlm::kHeaderLen);
        dlm::write_header(f.data(), dlm::kVersion32, 0, 2, uint16_t(dlm::kHeaderLen), dlm::kFin);
        const uint32_t seq = (op & 8) ? m.seq_next - 1 : m.seq_next;
        want_obs.push_back(m.sequenced(seq, true));
        put_opts(stream, seq, 2, f);
        break;
      }
    }
  }

  Engine e{node};
  std::vector<Obs> got_obs;
  size_t next_event = 0;
  auto run_events = [&](size_t pos) {
    for (; next_event < events.size() && events[next_event].pos == pos; next_event++) {
      const Event& ev = events[next_event];
      switch (ev.kind) {
        case 0: run_consume(e.unconsumed, ev.arg, [&](const ConsumeRun& r) { return e.consumed(r); }, got_obs); break;
        case 1: got_obs.push_back(e.idle_ack()); break;
        case 2: got_obs.push_back(e.fin_acked()); break;
        case 3: got_obs.push_back(e.close()); break;
        case 4: got_obs.push_back(e.send()); break;
      }
    }
  };
  uint32_t epoch_at_frame = 0;
  const auto got = receive_stream(
      stream.data(), stream.size(), cut_seed, kernel_minimums, node,
      [&](size_t index) {
        run_events(index);
        epoch_at_frame = node.epoch();
      },
      [&](size_t, const dlm::Decoded& d, const RxVerdict& v) { got_obs.push_back(e.frame(d, v, epoch_at_frame)); });
  run_events(frames);  // the events after the last frame
  FUZZ_CHECK(next_event == events.size());
  if (std::getenv("FUZZ_STREAM_TRACE"))  // to read what a seed does: every step, as the engine took it
    for (const Obs& o : got_obs) print_obs("step", o);
  for (size_t i = 0; i < want_obs.size() && i < got_obs.size(); i++) {
    if (got_obs[i] == want_obs[i]) continue;
    for (size_t j = i > 12 ? i - 12 : 0; j < i; j++) print_obs("  ok  ", got_obs[j]);
    std::fprintf(stderr, "step %zu of %zu:\n", i, want_obs.size());
    print_obs("model ", want_obs[i]);
    print_obs("engine", got_obs[i]);
    FUZZ_CHECK(got_obs[i] == want_obs[i]);
  }
  FUZZ_CHECK(got_obs.size() == want_obs.size());
  FUZZ_CHECK(got.size() == want.size());
  for (size_t i = 0; i < got.size(); i++) FUZZ_CHECK(got[i] == want[i]);
  FUZZ_CHECK(node.seq_next() == m.seq_next);
  const MidcommsRxStats& st = node.stats();
  FUZZ_CHECK(st.delivered == m.st.delivered && st.dup_dropped == m.st.dup_dropped &&
             st.gap_dropped == m.st.gap_dropped && st.skipped == m.st.skipped &&
             st.nodeid_mismatch == m.st.nodeid_mismatch && st.bad_version == m.st.bad_version &&
             st.acks_rcvd == m.st.acks_rcvd && st.bad_acks == m.st.bad_acks &&
             st.acks_backwards == m.st.acks_backwards && st.fins_rcvd == m.st.fins_rcvd &&
             st.version_mismatch == 0);
}

// Raw mode: the application consumes what each read delivered; then nothing is pending
// and an ACK would cover everything received.
void raw_mode(const uint8_t* data, size_t size, uint8_t cut_seed, bool kernel_minimums) {
  MidcommsNode node(2);
  std::deque<Delivery> unconsumed;
  receive_stream(
      data, size, cut_seed, kernel_minimums, node, nullptr,
      [&](size_t, const dlm::Decoded& d, const RxVerdict& v) {
        if (v.deliver)
          unconsumed.push_back(Delivery{node.epoch(), d.kind == dlm::FrameKind::kSequenced,
                                          d.kind == dlm::FrameKind::kSequenced ? d.seq : 0, node.seq_next()});
        if (v.reset) node.reset();
        uint32_t n = 0;
        for (const Delivery& u : unconsumed) n += u.epoch == node.epoch() && u.sequenced;
        FUZZ_CHECK(node.pending() == n);
        if (n == 0) FUZZ_CHECK(node.ack_seq() == node.seq_next());
      },
      [&]() {
        for (const ConsumeRun& run : runs_of(unconsumed, unconsumed.size())) {
          pop(unconsumed, run);
          const int r = node.on_consumed(run.epoch, run.seq_after, run.count);
          if (r & MidcommsNode::kAckNow) node.acked();
          if (r & MidcommsNode::kResetAfter) node.reset();
        }
        FUZZ_CHECK(node.pending() == 0 && node.ack_seq() == node.seq_next());
      });
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
  raw_mode(data + 2, size - 2, cut_seed, kernel_minimums);
  return 0;
}
