// See corosync.h.
#include "membership/corosync.h"

#include <poll.h>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>

namespace lowcomms::corosync {
namespace {

// corosync's callbacks carry only a handle: the dispatch thread says whose they are.
thread_local CpgMembership* t_current = nullptr;

void check(cs_error_t e, const char* op) {
  if (e != CS_OK) throw CorosyncError(op, e);
}

// corosync answers CS_ERR_TRY_AGAIN while it synchronises a membership change; retry
// for up to ~5 s, as its own tools do.
template <typename F>
cs_error_t retry(F&& f) {
  cs_error_t e = CS_OK;
  for (int i = 0; i < 50; i++) {
    e = f();
    if (e != CS_ERR_TRY_AGAIN) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return e;
}

std::vector<Member> members_of(const cpg_address* a, size_t n) {
  std::vector<Member> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) out.push_back(Member{a[i].nodeid, a[i].pid, a[i].reason});
  return out;
}

}  // namespace

CpgMembership::CpgMembership(const Api* api, std::string group, MembershipSink* sink)
    : api_(api), sink_(sink) {
  if (group.empty() || group.size() > CPG_MAX_NAME_LENGTH)
    throw std::invalid_argument("CPG group name must be 1..128 bytes");
  group_.length = uint32_t(group.size());
  std::memcpy(group_.value, group.data(), group.size());
}

CpgMembership::~CpgMembership() { stop(); }

uint32_t CpgMembership::start() {
  try {
    cpg_callbacks_t cb{&CpgMembership::on_deliver, &CpgMembership::on_confchg};
    check(retry([&] { return api_->cpg_initialize(&cpg_, &cb); }), "cpg_initialize");
    cpg_open_ = true;
    unsigned int local = 0;
    check(retry([&] { return api_->cpg_local_get(cpg_, &local); }), "cpg_local_get");
    quorum_callbacks_t qcb{&CpgMembership::on_quorum};
    uint32_t quorum_type = 0;
    check(retry([&] { return api_->quorum_initialize(&quorum_, &qcb, &quorum_type); }),
          "quorum_initialize");
    quorum_open_ = true;
    int q = 0;
    check(retry([&] { return api_->quorum_getquorate(quorum_, &q); }), "quorum_getquorate");
    quorate_ = q != 0;
    check(retry([&] { return api_->quorum_trackstart(quorum_, CS_TRACK_CURRENT | CS_TRACK_CHANGES); }),
          "quorum_trackstart");
    check(retry([&] { return api_->cpg_join(cpg_, &group_); }), "cpg_join");
    joined_ = true;
    stop_.open();
    thread_ = std::thread([this] { run(); });
    return local;
  } catch (...) {
    finalize();
    throw;
  }
}

void CpgMembership::stop() {
  if (thread_.joinable()) {
    stop_.signal();
    thread_.join();
  }
  stop_.close();
  finalize();
}

void CpgMembership::finalize() {
  if (joined_ && cpg_open_) retry([&] { return api_->cpg_leave(cpg_, &group_); });
  joined_ = false;
  if (cpg_open_) api_->cpg_finalize(cpg_);
  if (quorum_open_) api_->quorum_finalize(quorum_);
  cpg_open_ = quorum_open_ = false;
}

void CpgMembership::run() {
  t_current = this;
  int cpg_fd = -1, quorum_fd = -1;
  std::string lost;
  cs_error_t e = api_->cpg_fd_get(cpg_, &cpg_fd);
  if (e == CS_OK) e = api_->quorum_fd_get(quorum_, &quorum_fd);
  if (e != CS_OK) lost = std::string("fd_get: ") + cs_error_name(e);
  while (lost.empty()) {
    pollfd p[3] = {{stop_.fd(), POLLIN, 0}, {cpg_fd, POLLIN, 0}, {quorum_fd, POLLIN, 0}};
    int n = ::poll(p, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      lost = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (p[0].revents) break;  // stop()
    // Dispatch before looking at HUP: what corosync sent before it went away still counts.
    if (p[1].revents) {
      e = api_->cpg_dispatch(cpg_, CS_DISPATCH_ALL);
      if (e != CS_OK && e != CS_ERR_TRY_AGAIN) lost = std::string("cpg_dispatch: ") + cs_error_name(e);
    }
    if (lost.empty() && p[2].revents) {
      e = api_->quorum_dispatch(quorum_, CS_DISPATCH_ALL);
      if (e != CS_OK && e != CS_ERR_TRY_AGAIN) lost = std::string("quorum_dispatch: ") + cs_error_name(e);
    }
    if (lost.empty() && ((p[1].revents | p[2].revents) & (POLLHUP | POLLERR | POLLNVAL)))
      lost = "connection to corosync closed";
  }
  if (!lost.empty()) {
    MembershipEvent ev;
    ev.kind = MembershipEvent::Kind::kLost;
    ev.error = std::move(lost);
    sink_->event(std::move(ev));
  }
  t_current = nullptr;
}

void CpgMembership::on_confchg(cpg_handle_t, const cpg_name*, const cpg_address* members,
                               size_t n_members, const cpg_address* left, size_t n_left,
                               const cpg_address* joined, size_t n_joined) {
  CpgMembership* self = t_current;
  if (!self) return;
  MembershipEvent ev;
  ev.kind = MembershipEvent::Kind::kConfchg;
  ev.members = members_of(members, n_members);
  ev.left = members_of(left, n_left);
  ev.joined = members_of(joined, n_joined);
  self->sink_->event(std::move(ev));
}

void CpgMembership::on_quorum(quorum_handle_t, uint32_t quorate, uint64_t ring_seq, uint32_t n_view,
                              uint32_t* view) {
  CpgMembership* self = t_current;
  if (!self) return;
  self->quorate_ = quorate != 0;
  MembershipEvent ev;
  ev.kind = MembershipEvent::Kind::kQuorum;
  ev.quorate = quorate != 0;
  ev.ring_seq = ring_seq;
  ev.view.assign(view, view + n_view);
  self->sink_->event(std::move(ev));
}

Nodelist read_nodelist(const Api* api) {
  cmap_handle_t h = 0;
  check(retry([&] { return api->cmap_initialize(&h); }), "cmap_initialize");
  struct Closer {
    const Api* api;
    cmap_handle_t h;
    ~Closer() { api->cmap_finalize(h); }
  } closer{api, h};

  auto get_string = [&](const std::string& key, std::string* out) {
    char* s = nullptr;
    cs_error_t e = retry([&] { return api->cmap_get_string(h, key.c_str(), &s); });
    if (e != CS_OK) return false;
    *out = s;
    std::free(s);  // cmap_get_string hands over malloc'd memory
    return true;
  };

  Nodelist out;
  get_string("totem.cluster_name", &out.cluster_name);
  get_string("totem.ip_version", &out.ip_version);
  get_string("totem.transport", &out.transport);

  // nodelist.node.<pos>.<field>: collect fields per position, in position order.
  struct Raw {
    uint32_t nodeid = 0;
    bool has_nodeid = false;
    std::string name;
    std::map<unsigned, std::string> rings;
  };
  std::map<unsigned, Raw> by_pos;
  cmap_iter_handle_t it = 0;
  check(retry([&] { return api->cmap_iter_init(h, "nodelist.node.", &it); }), "cmap_iter_init");
  char key[CMAP_KEYNAME_MAXLEN + 1];
  for (int guard = 0; guard < 100000; guard++) {
    size_t len = 0;
    int type = 0;
    cs_error_t e = api->cmap_iter_next(h, it, key, &len, &type);
    if (e == CS_ERR_NO_SECTIONS) break;
    if (e != CS_OK) {
      api->cmap_iter_finalize(h, it);
      throw CorosyncError("cmap_iter_next", e);
    }
    unsigned pos = 0;
    char field[CMAP_KEYNAME_MAXLEN + 1] = {0};
    if (std::sscanf(key, "nodelist.node.%u.%255s", &pos, field) != 2) continue;
    Raw& r = by_pos[pos];
    unsigned ring = 0;
    char tail = 0;
    if (std::strcmp(field, "nodeid") == 0 && type == CMAP_VALUETYPE_UINT32) {
      if (api->cmap_get_uint32(h, key, &r.nodeid) == CS_OK) r.has_nodeid = true;
    } else if (std::strcmp(field, "name") == 0 && type == CMAP_VALUETYPE_STRING) {
      get_string(key, &r.name);
    } else if (std::sscanf(field, "ring%u_addr%c", &ring, &tail) == 1 && type == CMAP_VALUETYPE_STRING) {
      std::string v;
      if (get_string(key, &v)) r.rings[ring] = v;
    }
  }
  api->cmap_iter_finalize(h, it);
  for (auto& [pos, r] : by_pos) {
    if (!r.has_nodeid) continue;  // knet needs nodeids; a node without one cannot be used
    NodeEntry n;
    n.nodeid = r.nodeid;
    n.name = r.name;
    for (auto& [ring, a] : r.rings) n.addrs.push_back(a);
    out.nodes.push_back(std::move(n));
  }
  uint32_t local_pos = 0;
  if (api->cmap_get_uint32(h, "nodelist.local_node_pos", &local_pos) == CS_OK) {
    auto it2 = by_pos.find(local_pos);
    if (it2 != by_pos.end() && it2->second.has_nodeid) out.local_nodeid = it2->second.nodeid;
  }
  if (!out.local_nodeid) api->cmap_get_uint32(h, "runtime.votequorum.this_node_id", &out.local_nodeid);
  return out;
}

}  // namespace lowcomms::corosync
