// The few corosync 3 client calls lowcomms uses (CPG, cmap, quorum), declared here from
// corosync's public ABI and resolved at run time with dlopen, so that the addon needs
// neither corosync's headers to build nor its libraries to load: only membership asks
// for them (Debian: libcpg4, libcmap4, libquorum5, all pulled in by `corosync`).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lowcomms::corosync {

// cs_error_t: CS_OK is 1; the others name what went wrong (see cs_strerror()).
using cs_error_t = int;
constexpr cs_error_t CS_OK = 1;
constexpr cs_error_t CS_ERR_TRY_AGAIN = 6;
constexpr cs_error_t CS_ERR_NO_SECTIONS = 27;  // an iterator's end

// cs_dispatch_flags_t
constexpr int CS_DISPATCH_ALL = 2;
// quorum_trackstart flags
constexpr unsigned CS_TRACK_CURRENT = 0x01;
constexpr unsigned CS_TRACK_CHANGES = 0x02;

using cpg_handle_t = uint64_t;
using cmap_handle_t = uint64_t;
using cmap_iter_handle_t = uint64_t;
using quorum_handle_t = uint64_t;

constexpr size_t CPG_MAX_NAME_LENGTH = 128;
constexpr size_t CMAP_KEYNAME_MAXLEN = 255;
constexpr int CMAP_VALUETYPE_UINT32 = 6;
constexpr int CMAP_VALUETYPE_STRING = 11;

struct cpg_name {
  uint32_t length;
  char value[CPG_MAX_NAME_LENGTH];
};

// reason: 1 join, 2 leave, 3 node down, 4 node up, 5 process down.
struct cpg_address {
  uint32_t nodeid;
  uint32_t pid;
  uint32_t reason;
};

using cpg_deliver_fn_t = void (*)(cpg_handle_t, const cpg_name*, uint32_t nodeid, uint32_t pid,
                                  void* msg, size_t msg_len);
using cpg_confchg_fn_t = void (*)(cpg_handle_t, const cpg_name*, const cpg_address* members,
                                  size_t n_members, const cpg_address* left, size_t n_left,
                                  const cpg_address* joined, size_t n_joined);
struct cpg_callbacks_t {
  cpg_deliver_fn_t cpg_deliver_fn;
  cpg_confchg_fn_t cpg_confchg_fn;
};

using quorum_notification_fn_t = void (*)(quorum_handle_t, uint32_t quorate, uint64_t ring_seq,
                                          uint32_t n_view, uint32_t* view);
struct quorum_callbacks_t {
  quorum_notification_fn_t quorum_notify_fn;
};

// The resolved entry points; every pointer is set when load() succeeded.
struct Api {
  cs_error_t (*cpg_initialize)(cpg_handle_t*, cpg_callbacks_t*);
  cs_error_t (*cpg_finalize)(cpg_handle_t);
  cs_error_t (*cpg_fd_get)(cpg_handle_t, int*);
  cs_error_t (*cpg_dispatch)(cpg_handle_t, int);
  cs_error_t (*cpg_join)(cpg_handle_t, const cpg_name*);
  cs_error_t (*cpg_leave)(cpg_handle_t, const cpg_name*);
  cs_error_t (*cpg_local_get)(cpg_handle_t, unsigned int*);
  cs_error_t (*cmap_initialize)(cmap_handle_t*);
  cs_error_t (*cmap_finalize)(cmap_handle_t);
  cs_error_t (*cmap_get_uint32)(cmap_handle_t, const char*, uint32_t*);
  cs_error_t (*cmap_get_string)(cmap_handle_t, const char*, char**);
  cs_error_t (*cmap_iter_init)(cmap_handle_t, const char*, cmap_iter_handle_t*);
  cs_error_t (*cmap_iter_next)(cmap_handle_t, cmap_iter_handle_t, char*, size_t*, int*);
  cs_error_t (*cmap_iter_finalize)(cmap_handle_t, cmap_iter_handle_t);
  cs_error_t (*quorum_initialize)(quorum_handle_t*, quorum_callbacks_t*, uint32_t*);
  cs_error_t (*quorum_finalize)(quorum_handle_t);
  cs_error_t (*quorum_fd_get)(quorum_handle_t, int*);
  cs_error_t (*quorum_dispatch)(quorum_handle_t, int);
  cs_error_t (*quorum_trackstart)(quorum_handle_t, unsigned int);
  cs_error_t (*quorum_getquorate)(quorum_handle_t, int*);
};

// Loads the three libraries once per process (the handles are never closed: the
// function table stays valid for the process's life). Returns nullptr and sets `why`
// (which library or symbol failed, dlerror's text) when they are not there.
const Api* load(std::string* why);

// corosync's name for an error code (CS_ERR_LIBRARY, ...), for messages.
const char* cs_error_name(cs_error_t e);

}  // namespace lowcomms::corosync
