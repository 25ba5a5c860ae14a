// Cluster membership from a running corosync: a CPG group's configuration changes and
// votequorum's quorum state, followed by a dispatch thread of its own, and the cluster's
// node list read from cmap. Pure C++ (no N-API): the binding turns events into JS calls.
//
// Why a thread of its own and not the receive thread's epoll: membership events are rare
// and corosync's dispatch calls are IPC into another process (libqb), which may block;
// the receive thread is the hot path and must never wait on corosync. A membership also
// lives independently of the engine (it can start before it and outlive a restart).
#pragma once
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "membership/corosync_api.h"
#include "util/wakeup.h"

namespace lowcomms::corosync {

// A corosync call failed: `op` names it, `cs` is corosync's cs_error_t.
struct CorosyncError : std::runtime_error {
  CorosyncError(std::string op_, cs_error_t cs_)
      : std::runtime_error(op_ + " failed: " + cs_error_name(cs_)), op(std::move(op_)), cs(cs_) {}
  std::string op;
  cs_error_t cs;
};

struct Member {
  uint32_t nodeid;
  uint32_t pid;
  uint32_t reason;  // CPG_REASON_*: 1 join, 2 leave, 3 node down, 4 node up, 5 process down
};

struct MembershipEvent {
  enum class Kind { kConfchg, kQuorum, kLost } kind = Kind::kConfchg;
  // kConfchg: the group's members after the change, and who left and joined, as CPG
  // delivered them.
  std::vector<Member> members, left, joined;
  // kQuorum
  bool quorate = false;
  uint64_t ring_seq = 0;
  std::vector<uint32_t> view;
  // kLost: the connection to corosync is gone (it stopped or crashed); no more events.
  std::string error;
};

class MembershipSink {
 public:
  virtual ~MembershipSink() = default;
  virtual void event(MembershipEvent ev) = 0;  // from the dispatch thread
};

class CpgMembership {
 public:
  CpgMembership(const Api* api, std::string group, MembershipSink* sink);
  ~CpgMembership();
  CpgMembership(const CpgMembership&) = delete;
  CpgMembership& operator=(const CpgMembership&) = delete;

  // Connects to CPG and quorum, joins the group and starts the dispatch thread.
  // Returns the local nodeid. Throws CorosyncError (nothing is left open then).
  uint32_t start();
  // Leaves the group, stops the thread and closes both connections. Idempotent.
  void stop();
  // Last quorum state delivered (or read at start()).
  bool quorate() const { return quorate_.load(); }

 private:
  void run();
  void finalize();
  static void on_confchg(cpg_handle_t, const cpg_name*, const cpg_address* members, size_t n_members,
                         const cpg_address* left, size_t n_left, const cpg_address* joined,
                         size_t n_joined);
  static void on_deliver(cpg_handle_t, const cpg_name*, uint32_t, uint32_t, void*, size_t) {}
  static void on_quorum(quorum_handle_t, uint32_t quorate, uint64_t ring_seq, uint32_t n_view,
                        uint32_t* view);

  const Api* api_;
  cpg_name group_{};
  MembershipSink* sink_;
  cpg_handle_t cpg_ = 0;
  quorum_handle_t quorum_ = 0;
  bool cpg_open_ = false, quorum_open_ = false, joined_ = false;
  std::atomic<bool> quorate_{false};
  Wakeup stop_;
  std::thread thread_;
};

struct NodeEntry {
  uint32_t nodeid = 0;
  std::string name;
  std::vector<std::string> addrs;  // ring0_addr, ring1_addr, ... in ring order
};

struct Nodelist {
  uint32_t local_nodeid = 0;  // 0 when cmap does not say
  std::string cluster_name;
  std::string ip_version, transport;  // totem.ip_version, totem.transport ('' if unset)
  std::vector<NodeEntry> nodes;  // in nodelist order
};

// Reads nodelist.node.* (and totem.cluster_name, the local node) from cmap over a
// connection of its own. Throws CorosyncError.
Nodelist read_nodelist(const Api* api);

}  // namespace lowcomms::corosync
