// The receive thread (the kernel's receive workqueue plus dlm_process): one epoll over
// the listen socket and every connection; bytes are split into frames, validated,
// run through midcomms, and the in-order application messages are collected into a
// batch that crosses into JavaScript once. Past max_rx_pending_bytes handed over and
// not yet consumed, reading stops, so that the transport pushes back on senders.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>
#include "dlm/decode.h"
#include "dlm/splitter.h"
#include "lowcomms/lowcomms.h"
#include "util/clock.h"

namespace lowcomms {

namespace {
// Below glibc's mmap threshold: batch buffers come from (and go back to) the heap.
constexpr size_t kBatchFlushBytes = 60 * 1024;
constexpr size_t kBatchReserve = kBatchFlushBytes + 8 * 1024;
// A batch that starts with a short read (a request, a reply, an ACK's worth) gets one
// page, not the full reserve: in request/response traffic every message is a batch, and
// a 68 KiB malloc per message (freed later on the JS thread) cost more than the message.
constexpr size_t kSmallBatchBytes = 4096;
constexpr size_t kBatchIndexReserve = 3 * 16;
// How often handshakes under way are checked against auth::kHandshakeTimeoutNs.
constexpr int kHsCheckMs = 250;
constexpr int64_t kHsCheckNs = int64_t(kHsCheckMs) * 1'000'000;
}  // namespace

void Lowcomms::rx_commands() {
  std::vector<std::shared_ptr<Socket>> add;
  std::vector<uint64_t> drop;
  std::vector<uint32_t> drop_nodes, kill_nodes;
  std::vector<AuthReply> replies;
  {
    std::lock_guard lk(rx_cmd_mu_);
    add.swap(rx_add_);
    drop.swap(rx_drop_);
    drop_nodes.swap(rx_drop_nodes_);
    kill_nodes.swap(rx_kill_nodes_);
    replies.swap(rx_auth_replies_);
  }
  for (uint32_t nodeid : kill_nodes) rx_kill_node(nodeid);
  for (const AuthReply& r : replies) rx_auth_reply(r);
  for (auto& s : add) {
    if (s->dead || rx_socks_.count(s->id)) continue;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = s->id;
    if (epoll_ctl(rx_epoll_.get(), EPOLL_CTL_ADD, s->fd.get(), &ev) == 0) rx_socks_[s->id] = s;
    if (s->auth.state != auth::State::kOff) rx_handshake_started();
  }
  for (uint64_t id : drop) rx_drop_socket(id, false);
  for (uint32_t nodeid : drop_nodes) {
    std::vector<uint64_t> ids;
    for (auto& [id, s] : rx_socks_)
      if (s->nodeid == nodeid) ids.push_back(id);
    for (uint64_t id : ids) rx_drop_socket(id, false);
    transport_->drop_node(nodeid);
  }
}

void Lowcomms::rx_drop_socket(uint64_t id, bool notify_tx) {
  auto it = rx_socks_.find(id);
  if (it == rx_socks_.end()) return;
  std::shared_ptr<Socket> s = std::move(it->second);
  rx_socks_.erase(it);
  epoll_ctl(rx_epoll_.get(), EPOLL_CTL_DEL, s->fd.get(), nullptr);
  s->dead = true;
  if (!s->abort) ::shutdown(s->fd.get(), SHUT_RDWR);
  if (notify_tx && s->outgoing) {
    if (ConnPtr c = find(s->nodeid)) {
      c->sock_failed = true;
      kick_tx(c);
    }
  }
}

void Lowcomms::rx_kill_node(uint32_t nodeid) {
  std::vector<uint64_t> ids;
  for (auto& [id, s] : rx_socks_) {
    if (s->nodeid != nodeid) continue;
    const linger lg{1, 0};  // close() sends RST
    ::setsockopt(s->fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    s->abort = true;
    ids.push_back(id);
  }
  for (uint64_t id : ids) rx_drop_socket(id, true);
  transport_->kill_node(nodeid);
}

bool Lowcomms::rx_process(Connection& c, uint32_t epoch, uint8_t* data, size_t len, size_t* consumed, bool* stale) {
  bool kick = false, closed = false, drained = false, bad_ack = false;
  uint64_t delivered = 0, drops = 0, acks_backwards = 0;
  dlm::SplitResult res;
  // A batch holds at most what the reads that fill it held: a short first read gets a
  // page; once the reads outgrow it, the full reserve at once (one move of < 4 KiB, no
  // doubling through 8, 16, 32 KiB).
  std::vector<uint8_t>& bd = batch_->data;
  if (bd.capacity() == 0) {
    bd.reserve(len < kSmallBatchBytes ? kSmallBatchBytes : kBatchReserve);
    batch_->index.reserve(kBatchIndexReserve);
  } else if (bd.size() + len > bd.capacity() && bd.capacity() < kBatchReserve) {
    bd.reserve(std::max(kBatchReserve, bd.size() + len));
  }
  {
    std::lock_guard lk(c.mu);
    if (epoch != c.reset_epoch) {
      *stale = true;
      *consumed = len;
      return true;
    }
    res = dlm::split_frames(data, len, [&](const uint8_t* p, size_t flen) {
      const dlm::Decoded d = dlm::decode_frame(p, flen, cfg_.kernel_minimums);
      const RxVerdict v = c.mc.receive(d, c.mc.seq_send());
      if (v.deliver) delivered++;
      if (v.deliver && d.kind == dlm::FrameKind::kSequenced) {
        // Only sequenced messages are acked, so only they wait for consumption. A batch
        // holds few nodes: a linear search finds this node's mark.
        const uint32_t epoch = c.mc.epoch();
        auto mark = std::find_if(batch_marks_.begin(), batch_marks_.end(), [&](const ConsumeMark& m) {
          return m.nodeid == c.nodeid && m.epoch == epoch;
        });
        if (mark == batch_marks_.end()) mark = batch_marks_.insert(mark, ConsumeMark{c.nodeid, epoch, 0, 0});
        mark->seq_after = c.mc.seq_next();
        mark->count++;
      }
      if (v.deliver) {
        Batch& b = *batch_;
        b.index.push_back(c.nodeid);
        b.index.push_back(uint32_t(b.data.size()));
        b.index.push_back(v.inner_len);
        b.data.insert(b.data.end(), v.inner, v.inner + v.inner_len);
      }
      if (v.apply_ack) {
        bool fin_acked = false;
        c.sendq.ack(c.wq, v.ack_value, &fin_acked);
        if (fin_acked && c.mc.on_fin_acked()) {
          reset_locked(c);
          closed = true;
        }
        drained |= drain_due_locked(c);
      }
      bad_ack |= v.bad_ack;
      drops += v.dropped;
      acks_backwards += v.ack_backwards;
      if (v.ack_now && !v.reset) {
        queue_ack_locked(c);
        kick = true;
      }
      if (v.send_fin) {
        queue_fin_locked(c);
        kick = true;
      }
      if (v.reset) {
        queue_ack_locked(c, true);  // our close: the peer's FIN and all before it
        kick = true;
        reset_locked(c);
        closed = true;
      }
    });
    if (c.mc.pending() > 0 || c.mc.ack_due()) rx_ack_due_ = true;
  }
  *consumed = res.consumed;
  c.ctr.rx_bytes.fetch_add(res.consumed, std::memory_order_relaxed);
  c.ctr.rx_msgs.fetch_add(delivered, std::memory_order_relaxed);
  if (kick)
    if (ConnPtr cp = find(c.nodeid)) kick_tx(cp);
  if (drained) emit(Event{"drain", c.nodeid, "", "", 0});
  if (drops || acks_backwards || (delivered && c.desync.since_ns)) rx_desync(c, drops, acks_backwards, delivered > 0);
  if (closed) emit(Event{"closed", c.nodeid, "FIN handshake complete", "fin", 0});
  if (bad_ack)
    emit(Event{"error", c.nodeid,
               "peer acked messages never sent: its state is not ours (restarted without FIN?)",
               "peer_state", 0});
  if (batch_->data.size() >= kBatchFlushBytes) rx_flush_batch();
  return res.status == dlm::SplitStatus::kOk;
}

void Lowcomms::rx_flush_batch() {
  if (batch_->index.empty()) return;
  const size_t bytes = batch_->data.size();
  const size_t pending = rx_pending_.fetch_add(bytes) + bytes;
  gctr_.batches++;
  batch_->id = next_batch_id_++;
  {
    std::lock_guard lk(consume_mu_);
    pending_batches_.push_back(PendingBatch{batch_->id, false, std::move(batch_marks_)});
  }
  batch_marks_.clear();
  sink_->deliver(std::move(batch_));
  batch_ = std::make_unique<Batch>();  // sized by rx_process when the next one starts
  if (pending > cfg_.max_rx_pending_bytes) {
    rx_paused_ = true;
    gctr_.rx_paused++;
  }
}

void Lowcomms::rx_idle_acks() {
  rx_ack_due_ = false;
  rx_ack_deadline_ns_ = 0;
  for (auto& c : all_connections()) {
    bool kick = false;
    {
      std::lock_guard lk(c->mu);
      if (c->mc.version() == PeerVersion::k32 && c->mc.ack_due()) {
        queue_ack_locked(*c);
        kick = true;
      }
    }
    if (kick) kick_tx(c);
  }
}

void Lowcomms::rx_main() {
  epoll_event evs[64];
  while (!stopping_) {
    rx_commands();
    if (rx_paused_) {
      if (rx_pending_.load() <= cfg_.max_rx_pending_bytes / 2) {
        rx_paused_ = false;
      } else {
        // Read nothing until JS catches up; only the wake fd matters.
        pollfd p{rx_wake_.fd(), POLLIN, 0};
        ::poll(&p, 1, 100);
        rx_wake_.drain();
        continue;
      }
    }
    int timeout = -1;
    if (rx_ack_due_) {
      const int64_t now = now_ns();
      if (!rx_ack_deadline_ns_) rx_ack_deadline_ns_ = now + int64_t(cfg_.ack_delay_ms) * 1'000'000;
      timeout = int(std::max<int64_t>(0, (rx_ack_deadline_ns_ - now + 999'999) / 1'000'000));
    }
    if (const int t = transport_->retry_ms(); t >= 0) timeout = timeout < 0 ? t : std::min(timeout, t);
    // Handshakes under way are checked against their deadline a few times a second.
    if (const int64_t now = now_ns(); rx_hs_check_ns_ && now >= rx_hs_check_ns_)
      rx_hs_check_ns_ = rx_handshake_deadlines() ? now + kHsCheckNs : 0;
    if (rx_hs_check_ns_) timeout = timeout < 0 ? kHsCheckMs : std::min(timeout, kHsCheckMs);
    const int n = epoll_wait(rx_epoll_.get(), evs, 64, timeout);
    if (stopping_) break;
    transport_->retry();
    if (n == 0) {
      rx_idle_acks();
      continue;
    }
    for (int i = 0; i < n; i++) {
      const uint64_t key = evs[i].data.u64;
      // Over the limit: read nothing more this round (the events stay pending).
      if (rx_paused_ && key != kWakeKey) continue;
      if (key == kWakeKey) {
        rx_wake_.drain();
      } else if (key == kListenKey) {
        transport_->on_listen_readable();
      } else {
        auto it = rx_socks_.find(key);
        if (it != rx_socks_.end()) transport_->read_socket(std::shared_ptr<Socket>(it->second));
      }
    }
    rx_flush_batch();
    // Busy with other nodes' traffic: the owed ACKs still go out on time.
    if (rx_ack_deadline_ns_ && now_ns() >= rx_ack_deadline_ns_) rx_idle_acks();
  }
  rx_flush_batch();
  rx_socks_.clear();
}

}  // namespace lowcomms
