// The N-API surface of corosync membership: corosyncNodelist() and the Membership
// class. Errors carry `code`: 'ENOCOROSYNC' when the client libraries cannot be
// loaded (with `detail`, dlerror's text), 'ECOROSYNC' when a call failed (with `op`
// and `cs`, corosync's cs_error_t, and `csName`).
#include <napi.h>

#include <memory>
#include <mutex>

#include "membership/binding.h"
#include "membership/corosync.h"

namespace lowcomms::membership {
namespace {

using corosync::CorosyncError;
using corosync::MembershipEvent;

Napi::Error unavailable(Napi::Env env, const std::string& why) {
  Napi::Error err = Napi::Error::New(env, "corosync client libraries not available: " + why);
  err.Set("code", Napi::String::New(env, "ENOCOROSYNC"));
  err.Set("detail", Napi::String::New(env, why));
  return err;
}

Napi::Error failed(Napi::Env env, const CorosyncError& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, "ECOROSYNC"));
  err.Set("op", Napi::String::New(env, e.op));
  err.Set("cs", Napi::Number::New(env, e.cs));
  err.Set("csName", Napi::String::New(env, corosync::cs_error_name(e.cs)));
  return err;
}

const corosync::Api* api_or_throw(Napi::Env env) {
  std::string why;
  const corosync::Api* api = corosync::load(&why);
  if (!api) throw unavailable(env, why);
  return api;
}

Napi::Array members_js(Napi::Env env, const std::vector<corosync::Member>& v) {
  auto arr = Napi::Array::New(env, v.size());
  for (uint32_t i = 0; i < v.size(); i++) {
    auto o = Napi::Object::New(env);
    o.Set("nodeid", Napi::Number::New(env, v[i].nodeid));
    o.Set("pid", Napi::Number::New(env, v[i].pid));
    o.Set("reason", Napi::Number::New(env, v[i].reason));
    arr.Set(i, o);
  }
  return arr;
}

// Hands the dispatch thread's events to JavaScript, one call each, in dispatch order.
class JsMembershipSink : public corosync::MembershipSink {
 public:
  JsMembershipSink(Napi::Env env, Napi::Function fn) {
    tsfn_ = Tsfn::New(env, fn, "lowcomms.membership", 0, 1);
  }
  void event(MembershipEvent ev) override {
    auto* raw = new MembershipEvent(std::move(ev));
    if (tsfn_.NonBlockingCall(raw) != napi_ok) delete raw;
  }
  void release() {
    std::call_once(released_, [this] { tsfn_.Release(); });
  }
  void ref(Napi::Env env) { tsfn_.Ref(env); }
  void unref(Napi::Env env) { tsfn_.Unref(env); }

 private:
  static void call(Napi::Env env, Napi::Function fn, std::nullptr_t*, MembershipEvent* e) {
    std::unique_ptr<MembershipEvent> owned(e);
    if (!env || !e) return;
    auto o = Napi::Object::New(env);
    switch (e->kind) {
      case MembershipEvent::Kind::kConfchg:
        o.Set("type", "confchg");
        o.Set("members", members_js(env, e->members));
        o.Set("left", members_js(env, e->left));
        o.Set("joined", members_js(env, e->joined));
        break;
      case MembershipEvent::Kind::kQuorum: {
        o.Set("type", "quorum");
        o.Set("quorate", Napi::Boolean::New(env, e->quorate));
        o.Set("ringSeq", Napi::Number::New(env, double(e->ring_seq)));
        auto view = Napi::Array::New(env, e->view.size());
        for (uint32_t i = 0; i < e->view.size(); i++) view.Set(i, Napi::Number::New(env, e->view[i]));
        o.Set("view", view);
        break;
      }
      case MembershipEvent::Kind::kLost:
        o.Set("type", "lost");
        o.Set("error", e->error);
        break;
    }
    try {
      fn.Call({o});
    } catch (const Napi::Error& err) {
      err.ThrowAsJavaScriptException();
    }
  }
  using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, MembershipEvent, &JsMembershipSink::call>;
  Tsfn tsfn_;
  std::once_flag released_;
};

class Membership : public Napi::ObjectWrap<Membership> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Membership",
                       {InstanceMethod<&Membership::Start>("start"),
                        InstanceMethod<&Membership::Stop>("stop"),
                        InstanceMethod<&Membership::Quorate>("quorate"),
                        InstanceMethod<&Membership::Ref>("ref"),
                        InstanceMethod<&Membership::Unref>("unref")});
  }

  // new Membership(group, onEvent)
  explicit Membership(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Membership>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "Membership(group: string, onEvent: function)");
    group_ = info[0].As<Napi::String>().Utf8Value();
    if (group_.empty() || group_.size() > corosync::CPG_MAX_NAME_LENGTH)
      throw Napi::RangeError::New(env, "CPG group name must be 1..128 bytes");
    api_ = api_or_throw(env);
    sink_ = std::make_unique<JsMembershipSink>(env, info[1].As<Napi::Function>());
  }

  ~Membership() override {
    cpg_.reset();  // joins the dispatch thread before the sink goes
    if (sink_) sink_->release();
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (cpg_ || stopped_) throw Napi::Error::New(env, "membership already started");
    auto m = std::make_unique<corosync::CpgMembership>(api_, group_, sink_.get());
    uint32_t local;
    try {
      local = m->start();
    } catch (const CorosyncError& e) {
      throw failed(env, e);
    }
    cpg_ = std::move(m);
    return Napi::Number::New(env, local);
  }

  // Stops the thread and leaves the group; events already queued are still delivered,
  // then the sink lets the event loop go.
  void Stop(const Napi::CallbackInfo&) {
    stopped_ = true;
    cpg_.reset();
    sink_->release();
  }

  Napi::Value Quorate(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), cpg_ && cpg_->quorate());
  }
  void Ref(const Napi::CallbackInfo& info) { sink_->ref(info.Env()); }
  void Unref(const Napi::CallbackInfo& info) { sink_->unref(info.Env()); }

  std::string group_;
  const corosync::Api* api_ = nullptr;
  std::unique_ptr<JsMembershipSink> sink_;
  std::unique_ptr<corosync::CpgMembership> cpg_;
  bool stopped_ = false;
};

Napi::Value CorosyncNodelist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const corosync::Api* api = api_or_throw(env);
  corosync::Nodelist nl;
  try {
    nl = corosync::read_nodelist(api);
  } catch (const CorosyncError& e) {
    throw failed(env, e);
  }
  auto o = Napi::Object::New(env);
  o.Set("localNodeid", Napi::Number::New(env, nl.local_nodeid));
  o.Set("clusterName", nl.cluster_name);
  o.Set("ipVersion", nl.ip_version);
  o.Set("transport", nl.transport);
  auto nodes = Napi::Array::New(env, nl.nodes.size());
  for (uint32_t i = 0; i < nl.nodes.size(); i++) {
    auto n = Napi::Object::New(env);
    n.Set("nodeid", Napi::Number::New(env, nl.nodes[i].nodeid));
    n.Set("name", nl.nodes[i].name);
    auto addrs = Napi::Array::New(env, nl.nodes[i].addrs.size());
    for (uint32_t j = 0; j < nl.nodes[i].addrs.size(); j++) addrs.Set(j, nl.nodes[i].addrs[j]);
    n.Set("addrs", addrs);
    nodes.Set(i, n);
  }
  o.Set("nodes", nodes);
  return o;
}

// { ok, detail }: whether the client libraries load, without touching corosync itself.
Napi::Value CorosyncAvailable(const Napi::CallbackInfo& info) {
  std::string why;
  bool ok = corosync::load(&why) != nullptr;
  auto o = Napi::Object::New(info.Env());
  o.Set("ok", Napi::Boolean::New(info.Env(), ok));
  o.Set("detail", why);
  return o;
}

}  // namespace

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Membership", Membership::Define(env));
  exports.Set("corosyncNodelist", Napi::Function::New<CorosyncNodelist>(env, "corosyncNodelist"));
  exports.Set("corosyncAvailable", Napi::Function::New<CorosyncAvailable>(env, "corosyncAvailable"));
}

}  // namespace lowcomms::membership
