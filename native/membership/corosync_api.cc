// dlopen of corosync's client libraries: see corosync_api.h.
#include "membership/corosync_api.h"

#include <dlfcn.h>
#include <mutex>

namespace lowcomms::corosync {
namespace {

// Immutable once loaded (written under call_once, then only read): safe to share
// between worker threads.
struct Loaded {
  Api api{};
  std::string error;
  bool ok = false;
};

bool open_lib(const char* soname, void** out, std::string* why) {
  *out = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!*out) {
    const char* e = ::dlerror();
    *why = std::string(soname) + ": " + (e ? e : "cannot be loaded");
    return false;
  }
  return true;
}

template <typename Fn>
bool sym(void* lib, const char* name, Fn* out, std::string* why) {
  void* p = ::dlsym(lib, name);
  if (!p) {
    *why = std::string("symbol ") + name + " not found";
    return false;
  }
  *out = reinterpret_cast<Fn>(p);
  return true;
}

void load_once(Loaded* l) {
  void *cpg = nullptr, *cmap = nullptr, *quorum = nullptr;
  std::string* why = &l->error;
  Api& a = l->api;
  l->ok = open_lib("libcpg.so.4", &cpg, why) && open_lib("libcmap.so.4", &cmap, why) &&
          open_lib("libquorum.so.5", &quorum, why) &&
          sym(cpg, "cpg_initialize", &a.cpg_initialize, why) &&
          sym(cpg, "cpg_finalize", &a.cpg_finalize, why) && sym(cpg, "cpg_fd_get", &a.cpg_fd_get, why) &&
          sym(cpg, "cpg_dispatch", &a.cpg_dispatch, why) && sym(cpg, "cpg_join", &a.cpg_join, why) &&
          sym(cpg, "cpg_leave", &a.cpg_leave, why) && sym(cpg, "cpg_local_get", &a.cpg_local_get, why) &&
          sym(cmap, "cmap_initialize", &a.cmap_initialize, why) &&
          sym(cmap, "cmap_finalize", &a.cmap_finalize, why) &&
          sym(cmap, "cmap_get_uint32", &a.cmap_get_uint32, why) &&
          sym(cmap, "cmap_get_string", &a.cmap_get_string, why) &&
          sym(cmap, "cmap_iter_init", &a.cmap_iter_init, why) &&
          sym(cmap, "cmap_iter_next", &a.cmap_iter_next, why) &&
          sym(cmap, "cmap_iter_finalize", &a.cmap_iter_finalize, why) &&
          sym(quorum, "quorum_initialize", &a.quorum_initialize, why) &&
          sym(quorum, "quorum_finalize", &a.quorum_finalize, why) &&
          sym(quorum, "quorum_fd_get", &a.quorum_fd_get, why) &&
          sym(quorum, "quorum_dispatch", &a.quorum_dispatch, why) &&
          sym(quorum, "quorum_trackstart", &a.quorum_trackstart, why) &&
          sym(quorum, "quorum_getquorate", &a.quorum_getquorate, why);
  // A partial load keeps its libraries mapped: unloading corosync's libqb users is
  // not safe, and a second attempt in the same process would fail the same way.
}

}  // namespace

const Api* load(std::string* why) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, load_once, &loaded);
  if (!loaded.ok) {
    if (why) *why = loaded.error;
    return nullptr;
  }
  return &loaded.api;
}

const char* cs_error_name(cs_error_t e) {
  static const char* const names[] = {
      "CS_OK",          "CS_ERR_LIBRARY",       "CS_ERR_VERSION",       "CS_ERR_INIT",
      "CS_ERR_TIMEOUT", "CS_ERR_TRY_AGAIN",     "CS_ERR_INVALID_PARAM", "CS_ERR_NO_MEMORY",
      "CS_ERR_BAD_HANDLE", "CS_ERR_BUSY",       "CS_ERR_ACCESS",        "CS_ERR_NOT_EXIST",
      "CS_ERR_NAME_TOO_LONG", "CS_ERR_EXIST",   "CS_ERR_NO_SPACE",      "CS_ERR_INTERRUPT",
      "CS_ERR_NAME_NOT_FOUND", "CS_ERR_NO_RESOURCES", "CS_ERR_NOT_SUPPORTED",
      "CS_ERR_BAD_OPERATION", "CS_ERR_FAILED_OPERATION", "CS_ERR_MESSAGE_ERROR",
      "CS_ERR_QUEUE_FULL", "CS_ERR_QUEUE_NOT_AVAILABLE", "CS_ERR_BAD_FLAGS", "CS_ERR_TOO_BIG",
      "CS_ERR_NO_SECTIONS", "CS_ERR_CONTEXT_NOT_FOUND"};
  if (e >= 1 && size_t(e) <= sizeof names / sizeof names[0]) return names[e - 1];
  if (e == 30) return "CS_ERR_TOO_MANY_GROUPS";
  if (e == 100) return "CS_ERR_SECURITY";
  return "CS_ERR_UNKNOWN";
}

}  // namespace lowcomms::corosync
