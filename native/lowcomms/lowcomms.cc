#include "lowcomms/lowcomms.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include "dlm/wire.h"
#include "midcomms/midcomms_tx.h"
#include "util/clock.h"

namespace lowcomms {

Lowcomms::Lowcomms(Config cfg, std::shared_ptr<Sink> sink)
    : cfg_(cfg), sink_(std::move(sink)), transport_(make_transport(*this, cfg_)), batch_(std::make_unique<Batch>()) {}

Lowcomms::~Lowcomms() { stop(); }

void Lowcomms::emit(Event ev) { sink_->event(std::move(ev)); }

EngineError Lowcomms::bind_error(const SockAddr& a, int e) const {
  std::string msg = "bind " + addr_to_string(a.sa()) + " port " + std::to_string(cfg_.port) + ": " +
                    std::strerror(e);
  if (e == EACCES) msg += " (a port below net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE)";
  return EngineError{e == EADDRINUSE ? "EADDRINUSE" : e == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : e == EACCES ? "EACCES" : "ERRNO",
                     msg, e};
}

void Lowcomms::check_mark_allowed(uint32_t nodeid, uint32_t mark) {
  // A node's mark is set on its sockets by the send and receive threads, where a refusal
  // could only be ignored: find out now, on a scratch socket, as the cluster mark is.
  if (mark == 0) return;
  UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!probe) probe.reset(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (probe && ::setsockopt(probe.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0 && errno == EPERM)
    throw EngineError{"EPERM", "mark " + std::to_string(mark) + " of node " + std::to_string(nodeid) +
                                   ": SO_MARK needs the CAP_NET_ADMIN capability",
                      EPERM};
}

void Lowcomms::apply_mark(int fd, uint32_t mark) {
  // The node's own mark, else the cluster's (as configfs: a node's mark starts as the cluster's).
  if (!cfg_.has_mark && mark == 0) return;
  const uint32_t m = mark ? mark : cfg_.mark;
  if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) != 0 && errno == EPERM)
    throw EngineError{"EPERM", "SO_MARK needs the CAP_NET_ADMIN capability", EPERM};
}

Lowcomms::ConnPtr Lowcomms::find(uint32_t nodeid) {
  std::shared_lock lk(table_mu_);
  auto it = conns_.find(nodeid);
  return it == conns_.end() ? nullptr : it->second;
}

std::vector<Lowcomms::ConnPtr> Lowcomms::all_connections() {
  std::shared_lock lk(table_mu_);
  std::vector<ConnPtr> v;
  v.reserve(conns_.size());
  for (auto& [id, c] : conns_) v.push_back(c);
  return v;
}

uint32_t Lowcomms::nodeid_of(const sockaddr* sa) {
  std::shared_lock lk(table_mu_);
  for (auto& [id, c] : conns_)
    for (auto& a : c->addrs)
      if (same_ip(a.sa(), sa)) return id;
  return 0;
}

void Lowcomms::add_node(uint32_t nodeid, std::vector<SockAddr> addrs, uint32_t mark, bool kernel) {
  if (running_) check_mark_allowed(nodeid, mark);
  for (auto& a : addrs) a = with_port(a, cfg_.port);
  ConnPtr c;
  {
    std::unique_lock lk(table_mu_);
    auto& slot = conns_[nodeid];
    if (slot) {
      // Known node, new address list: queue, protocol state and sockets carry on.
      slot->addrs = std::move(addrs);
      return;
    }
    slot = c = std::make_shared<Connection>(nodeid, std::move(addrs), mark, cfg_.entry_bytes,
                                            cfg_.protocol31 ? PeerVersion::k31 : PeerVersion::kNotSet,
                                            !kernel && !cfg_.protocol31);
    c->link = transport_->make_link();
    if (auto e = next_epoch_.find(nodeid); e != next_epoch_.end()) c->local_epoch = e->second;
  }
  if (running_ && nodeid != cfg_.local_nodeid) kick_tx(c);
}

bool Lowcomms::remove_node(uint32_t nodeid) {
  ConnPtr c;
  {
    std::unique_lock lk(table_mu_);
    auto it = conns_.find(nodeid);
    if (it == conns_.end()) return false;
    c = std::move(it->second);
    conns_.erase(it);
    next_epoch_[nodeid] = c->local_epoch + 1;
  }
  size_t dropped;
  {
    std::lock_guard lk(c->mu);
    dropped = drop_session_locked(*c);
  }
  c->ctr.dropped_unacked += dropped;
  c->removed = true;
  if (dropped) emit(Event{"dropped", nodeid, "node removed with unacked messages", "removed",
                          int64_t(dropped)});
  if (running_) kick_tx(c);  // the send thread closes its sockets and frees the queue
  return true;
}

bool Lowcomms::reset_node(uint32_t nodeid) {
  ConnPtr c = find(nodeid);
  if (!c) return false;
  size_t dropped;
  {
    std::lock_guard lk(c->mu);
    dropped = drop_session_locked(*c);
    c->reset_epoch++;  // what the old sockets still hold is not read (rx_process)
  }
  c->ctr.dropped_unacked += dropped;
  c->local_epoch++;  // the peer sees a new incarnation of ours and starts over too
  if (dropped) emit(Event{"dropped", nodeid, "node reset with unacked messages", "reset",
                          int64_t(dropped)});
  // Start over on fresh sockets, so that the peer starts over too.
  c->sock_failed = true;
  if (running_) {
    {
      std::lock_guard lk(rx_cmd_mu_);
      rx_drop_nodes_.push_back(nodeid);
    }
    rx_wake_.signal();
    kick_tx(c);
  }
  return true;
}

void Lowcomms::kill_connections(uint32_t nodeid) {
  if (!running_) return;
  {
    std::lock_guard lk(rx_cmd_mu_);
    rx_kill_nodes_.push_back(nodeid);
  }
  rx_wake_.signal();
}

bool Lowcomms::tamper_records(uint32_t nodeid, Tamper what) {
  ConnPtr c = find(nodeid);
  if (!c || !cfg_.auth || !c->handshake) return false;
  c->tamper = uint8_t(what);
  kick_tx(c);
  return true;
}

void Lowcomms::reset_locked(Connection& c) {
  c.mc.reset();
  c.sendq.forget(c.wq);
}

bool Lowcomms::drain_due_locked(Connection& c) {
  if (!c.backpressured || c.wq.held_bytes() > cfg_.max_node_bytes / 2) return false;
  c.backpressured = false;
  return true;
}

size_t Lowcomms::drop_session_locked(Connection& c) {
  // Frames of the old session carry its sequence numbers: none may reach the new one.
  c.mc.reset();
  c.wq.clear();
  return c.sendq.drop_all();
}

void Lowcomms::kick_tx(const ConnPtr& c) {
  if (c->tx_pending.exchange(true)) return;
  {
    std::lock_guard lk(ready_mu_);
    ready_.push_back(c);
  }
  // Pairs with tx_main: it announces sleep, then looks at ready_ again.
  if (tx_sleeping_.exchange(false)) tx_wake_.signal();
}

void Lowcomms::queue_ack_locked(Connection& c, bool all) {
  midcomms_tx::queue_ack(c.mc, c.wq, cfg_.local_nodeid, all);
  c.ctr.acks_sent++;
}

void Lowcomms::queue_fin_locked(Connection& c) { midcomms_tx::queue_fin(c.mc, c.sendq, c.wq, cfg_.local_nodeid); }

int Lowcomms::enqueue_locked(Connection& c, uint32_t lockspace, uint8_t cmd, const uint8_t* body,
                             size_t body_len, bool* wake) {
  const size_t unsent_before = c.wq.unsent_bytes();
  const midcomms_tx::MessageOut out =
      midcomms_tx::queue_message(c.mc, c.sendq, c.wq, cfg_.local_nodeid, lockspace, cmd, body, body_len);
  if (out.result == midcomms_tx::Framed::kClosing) return kSendClosing;
  if (out.ack_piggybacked) c.ctr.acks_sent++;
  c.ctr.tx_msgs.fetch_add(1, std::memory_order_relaxed);
  // Wake the send thread for the first unsent byte only: while bytes are queued it is
  // already due (flushing, waiting for EPOLLOUT, the connect, or its timer). The delayed
  // policy also wakes it once min_bytes are queued.
  const size_t unsent = c.wq.unsent_bytes();
  *wake |= unsent_before == 0 || (!cfg_.flush.immediate && unsent >= cfg_.flush.min_bytes &&
                                  unsent_before < cfg_.flush.min_bytes);
  return kSendOk;
}

Lowcomms::SubmitResult Lowcomms::submit(const uint8_t* p, size_t len) {
  SubmitResult res;
  if (!running_ || closing_) {
    res.not_running = true;
    return res;
  }
  ConnPtr c;
  uint32_t cur = 0;
  bool wake = false;
  std::unique_lock<std::mutex> lk;
  auto done_with_node = [&] {
    if (lk.owns_lock()) lk.unlock();
    if (wake && c) tx_direct(c);
    wake = false;
  };
  size_t off = 0;
  while (len - off >= kStagedRecordHeader) {
    const uint8_t* r = p + off;
    const uint32_t nodeid = dlm::get_le32(r);
    uint32_t lockspace = dlm::get_le32(r + 4);
    size_t body_len = dlm::get_le16(r + 8);
    uint8_t cmd = r[10];
    const bool raw = r[11] & kStagedRaw;
    const uint8_t* body = r + kStagedRecordHeader;
    if (body_len > len - off - kStagedRecordHeader) break;  // torn record: caller bug
    off += kStagedRecordHeader + body_len;
    if (raw) {
      // A whole message: header fields come from it; its length was checked by the caller.
      lockspace = dlm::get_le32(body + dlm::kOffLockspaceOrSeq);
      cmd = body[dlm::kOffCmd];
      body += dlm::kHeaderLen;
      body_len -= dlm::kHeaderLen;
    }
    if (nodeid != cur || !c) {
      done_with_node();
      cur = nodeid;
      c = nodeid == cfg_.local_nodeid ? nullptr : find(nodeid);
      if (c) lk = std::unique_lock<std::mutex>(c->mu);
    }
    if (!c || dlm::kHeaderLen + body_len > dlm::kMaxAppBufsize) {
      res.dropped++;
      res.first_dropped_node = res.first_dropped_node ? res.first_dropped_node : nodeid;
      continue;
    }
    // The limit was checked by the caller against held_bytes() when staging.
    if (enqueue_locked(*c, lockspace, cmd, body, body_len, &wake) == kSendOk) {
      res.accepted++;
    } else {
      res.dropped++;
      res.first_dropped_node = res.first_dropped_node ? res.first_dropped_node : nodeid;
    }
  }
  done_with_node();
  return res;
}

size_t Lowcomms::held_bytes(uint32_t nodeid, size_t wanted) {
  ConnPtr c = find(nodeid);
  if (!c) return 0;
  std::lock_guard lk(c->mu);
  const size_t held = c->wq.held_bytes();
  if (held + wanted > cfg_.max_node_bytes) {
    c->backpressured = true;  // a drain event is now due
    c->ctr.backpressure++;
  }
  return held;
}

void Lowcomms::begin_close() {
  closing_ = true;
  for (auto& c : all_connections())
    if (c->nodeid != cfg_.local_nodeid) begin_close_node(c->nodeid);
}

bool Lowcomms::begin_close_node(uint32_t nodeid) {
  ConnPtr c = find(nodeid);
  if (!c) return false;
  bool fin;
  {
    std::lock_guard lk(c->mu);
    fin = c->mc.start_close();
    if (fin) {
      // Ack what we delivered first: the peer can then free it before the handshake.
      if (c->mc.ack_due()) queue_ack_locked(*c);
      queue_fin_locked(*c);
    }
  }
  if (fin) kick_tx(c);
  return fin;
}

bool Lowcomms::node_quiesced(const Connection& c) const {
  const FinState s = c.mc.state();
  if (s != FinState::kClosed && s != FinState::kEstablished) return false;
  if (s == FinState::kEstablished && c.mc.version() != PeerVersion::k31 && !c.sendq.empty())
    return false;
  // The handshake's last ACK (or a 3.1 peer's messages) must be on the wire too.
  return !c.wq.has_unsent();
}

bool Lowcomms::quiesced(uint32_t nodeid) {
  for (auto& c : all_connections()) {
    if (nodeid && c->nodeid != nodeid) continue;
    std::lock_guard lk(c->mu);
    if (!node_quiesced(*c)) return false;
  }
  return true;
}

void Lowcomms::release(uint64_t batch_id, size_t bytes) {
  const size_t before = rx_pending_.fetch_sub(bytes);
  bool wake = before - bytes <= cfg_.max_rx_pending_bytes / 2 && before > cfg_.max_rx_pending_bytes / 2;
  // Batches are consumed in order as a rule; if not, a later one waits for the earlier.
  std::vector<ConsumeMark> done;
  {
    std::lock_guard lk(consume_mu_);
    for (auto& b : pending_batches_)
      if (b.id == batch_id) {
        b.consumed = true;
        break;
      }
    while (!pending_batches_.empty() && pending_batches_.front().consumed) {
      auto& m = pending_batches_.front().marks;
      done.insert(done.end(), m.begin(), m.end());
      pending_batches_.pop_front();
    }
  }
  bool due = false;
  for (const ConsumeMark& m : done) {
    ConnPtr c = find(m.nodeid);
    if (!c) continue;
    bool kick = false, closed = false;
    {
      std::lock_guard lk(c->mu);
      const int r = c->mc.on_consumed(m.epoch, m.seq_after, m.count);
      if ((r & MidcommsNode::kAckNow) && c->mc.version() == PeerVersion::k32) {
        queue_ack_locked(*c);
        kick = true;
        if (r & MidcommsNode::kResetAfter) {
          reset_locked(*c);  // the FIN handshake is complete with this ACK
          closed = true;
        }
      } else {
        due |= c->mc.ack_due();
      }
    }
    if (kick) kick_tx(c);
    if (closed) emit(Event{"closed", c->nodeid, "FIN handshake complete", "fin", 0});
  }
  // The receive thread acks the rest after ack_delay_ms; wake it only if it is not counting.
  if (due && !rx_ack_due_.exchange(true)) wake = true;
  if (wake) rx_wake_.signal();
}

std::vector<Lowcomms::NodeStats> Lowcomms::node_stats() {
  std::vector<NodeStats> out;
  for (auto& c : all_connections()) {
    NodeStats s{};
    s.nodeid = c->nodeid;
    auto& k = c->ctr;
    s.tx_msgs = k.tx_msgs;
    s.tx_bytes = k.tx_bytes;
    s.tx_syscalls = k.tx_syscalls;
    s.tx_direct = k.tx_direct;
    s.rx_msgs = k.rx_msgs;
    s.rx_bytes = k.rx_bytes;
    s.connects = k.connects;
    s.disconnects = k.disconnects;
    s.connect_errors = k.connect_errors;
    s.resent = k.resent;
    s.bad_frames = k.bad_frames;
    s.backpressure = k.backpressure;
    s.acks_sent = k.acks_sent;
    s.dropped_unacked = k.dropped_unacked;
    s.restarts = k.restarts;
    s.desync_reports = k.desync_reports;
    s.bad_records = k.bad_records;
    s.peer_incarnation = c->peer_incarnation;
    s.kernel = !c->handshake && !cfg_.protocol31;
    s.connected = transport_->link_up(*c);
    std::lock_guard lk(c->mu);
    s.queued_bytes = c->wq.unsent_bytes();
    s.held_bytes = c->wq.held_bytes();
    s.unacked = c->sendq.size();
    s.seq_send = c->mc.seq_send();
    s.seq_next = c->mc.seq_next();
    s.version = c->mc.version();
    s.state = c->mc.state();
    s.rx = c->mc.stats();
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.nodeid < b.nodeid; });
  return out;
}

void Lowcomms::start() {
  if (running_) throw EngineError{"STATE", "already started", 0};
  ConnPtr self = find(cfg_.local_nodeid);
  if (!self || self->addrs.empty())
    throw EngineError{"CONFIG", "no local IP address has been set (local nodeid " +
                                    std::to_string(cfg_.local_nodeid) + " not in the node table)",
                      0};
  local_ = self->addrs;
  for (auto& c : all_connections()) check_mark_allowed(c->nodeid, c->mark);
  transport_->check_local(local_);
  if (cfg_.auth)
    if (const char* why = record::unavailable_reason()) throw EngineError{"ECRYPTO", why, 0};
  if (!auth::make_incarnation(&incarnation_)) throw EngineError{"ERRNO", "getrandom failed", errno};
  tx_epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  rx_epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!tx_epoll_ || !rx_epoll_) throw EngineError{"ERRNO", "epoll_create1 failed", errno};
  try {
    tx_wake_.open();
    rx_wake_.open();
  } catch (const std::system_error& e) {
    throw EngineError{"ERRNO", e.what(), e.code().value()};
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  epoll_ctl(tx_epoll_.get(), EPOLL_CTL_ADD, tx_wake_.fd(), &ev);
  epoll_ctl(rx_epoll_.get(), EPOLL_CTL_ADD, rx_wake_.fd(), &ev);

  try {
    transport_->listen();
  } catch (...) {
    close_fds();  // a failed start holds nothing
    throw;
  }

  running_ = true;
  rx_thread_ = std::thread([this] { rx_main(); });
  tx_thread_ = std::thread([this] { tx_main(); });
  // Nodes added before start() with messages already queued.
  for (auto& c : all_connections())
    if (c->nodeid != cfg_.local_nodeid) kick_tx(c);
}

void Lowcomms::stop() {
  if (!running_.exchange(false)) return;
  stopping_ = true;
  tx_wake_.signal();
  rx_wake_.signal();
  if (tx_thread_.joinable()) tx_thread_.join();
  if (rx_thread_.joinable()) rx_thread_.join();
  for (auto& c : all_connections()) {
    c->sock.reset();
    c->tx_state = Connection::TxState::kIdle;
  }
  rx_socks_.clear();
  rx_add_.clear();
  ready_.clear();
  close_fds();
}

void Lowcomms::close_fds() {
  transport_->close();
  tx_epoll_.reset();
  rx_epoll_.reset();
  tx_wake_.close();
  rx_wake_.close();
}

}  // namespace lowcomms
