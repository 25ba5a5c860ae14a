// The N-API surface: one Engine object per Lowcomms instance. Native threads reach
// JavaScript only through two thread-safe functions: one call per batch of received
// messages (one Buffer + one Uint32Array of (nodeid, offset, length) triples), one per
// rare event. Nothing here keeps static mutable state, so worker_threads work.
#include <napi.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include "lowcomms/lowcomms.h"
#include "membership/binding.h"

namespace lowcomms {
namespace {

// Owns the thread-safe functions; the engine threads hold it through Sink.
class JsSink : public Sink {
 public:
  JsSink(Napi::Env env, Napi::Function on_batch, Napi::Function on_event) {
    batch_tsfn_ = BatchTsfn::New(env, on_batch, "lowcomms.batch", 0, 1);
    event_tsfn_ = EventTsfn::New(env, on_event, "lowcomms.event", 0, 1);
  }

  void deliver(std::unique_ptr<Batch> batch) override {
    Batch* raw = batch.release();
    if (batch_tsfn_.NonBlockingCall(raw) != napi_ok) delete raw;
  }

  void event(Event ev) override {
    auto* raw = new Event(std::move(ev));
    if (event_tsfn_.NonBlockingCall(raw) != napi_ok) delete raw;
  }

  // After the engine's threads are joined: queued calls still run, then the functions go.
  void release() {
    std::call_once(released_, [this] {
      batch_tsfn_.Release();
      event_tsfn_.Release();
    });
  }
  void unref(Napi::Env env) {
    batch_tsfn_.Unref(env);
    event_tsfn_.Unref(env);
  }
  void ref(Napi::Env env) {
    batch_tsfn_.Ref(env);
    event_tsfn_.Ref(env);
  }

 private:
  // Typed thread-safe functions hand us every queued item, even when the environment is
  // going away (env null): that is where its memory is freed.
  static void call_batch(Napi::Env env, Napi::Function fn, std::nullptr_t*, Batch* b) {
    std::unique_ptr<Batch> owned(b);
    if (!env || !b) return;  // environment going away: drop
    const size_t count = owned->index.size();
    auto index = Napi::Uint32Array::New(env, count);
    if (count) std::memcpy(index.Data(), owned->index.data(), count * sizeof(uint32_t));
    const size_t len = owned->data.size();
    uint8_t* data = owned->data.data();
    // The Buffer owns the batch's bytes: freed when JS lets go of it.
    auto buf = Napi::Buffer<uint8_t>::New(env, data, len,
                                          [](Napi::Env, uint8_t*, Batch* p) { delete p; },
                                          owned.get());
    const double id = double(owned->id);
    owned.release();
    deliver_call(fn, {buf, index, Napi::Number::New(env, id)});
  }

  // A handler's exception goes back to JavaScript as an uncaught exception, as any
  // callback's would; while a worker is being terminated there is nothing to throw to.
  static void deliver_call(Napi::Function fn, const std::initializer_list<napi_value>& args) {
    try {
      fn.Call(args);
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();
    }
  }

  static void call_event(Napi::Env env, Napi::Function fn, std::nullptr_t*, Event* e) {
    std::unique_ptr<Event> owned(e);
    if (!env || !e) return;
    auto o = Napi::Object::New(env);
    o.Set("type", owned->type);
    o.Set("nodeid", Napi::Number::New(env, owned->nodeid));
    o.Set("detail", owned->detail);
    o.Set("code", owned->code);
    o.Set("value", Napi::Number::New(env, double(owned->value)));
    deliver_call(fn, {o});
  }

  using BatchTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Batch, &JsSink::call_batch>;
  using EventTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Event, &JsSink::call_event>;
  BatchTsfn batch_tsfn_;
  EventTsfn event_tsfn_;
  std::once_flag released_;
};

// Every option must be present: the defaults live in lib/defaults.ts alone, and a key
// missing here is a bug in the layer above, not something to paper over.
Napi::Value need(const Napi::Object& o, const std::string& where, const char* key, bool (Napi::Value::*is)() const,
                 const char* type) {
  Napi::Value v = o.Get(key);
  if (!(v.*is)())
    throw Napi::TypeError::New(o.Env(), "Engine options: " + where + key + " missing or not a " + type);
  return v;
}
uint32_t need_u32(const Napi::Object& o, const std::string& where, const char* key) {
  return need(o, where, key, &Napi::Value::IsNumber, "number").As<Napi::Number>().Uint32Value();
}
double need_num(const Napi::Object& o, const std::string& where, const char* key) {
  return need(o, where, key, &Napi::Value::IsNumber, "number").As<Napi::Number>().DoubleValue();
}
bool need_bool(const Napi::Object& o, const std::string& where, const char* key) {
  return need(o, where, key, &Napi::Value::IsBoolean, "boolean").As<Napi::Boolean>().Value();
}
std::string need_str(const Napi::Object& o, const std::string& where, const char* key) {
  return need(o, where, key, &Napi::Value::IsString, "string").As<Napi::String>().Utf8Value();
}
Napi::Object need_obj(const Napi::Object& o, const char* key) {
  return need(o, "", key, &Napi::Value::IsObject, "object").As<Napi::Object>();
}

Config parse_config(const Napi::Object& o) {
  Config c;
  c.local_nodeid = need_u32(o, "", "nodeid");
  c.transport = need_str(o, "", "transport") == "sctp" ? TransportKind::kSctp : TransportKind::kTcp;
  c.port = uint16_t(need_u32(o, "", "port"));
  if (o.Get("mark").IsNumber()) {  // the one optional key: no SO_MARK unless given
    c.has_mark = true;
    c.mark = o.Get("mark").As<Napi::Number>().Uint32Value();
  }
  c.entry_bytes = need_u32(o, "", "entryBytes");
  const Napi::Object f = need_obj(o, "flush");
  c.flush.immediate = need_bool(f, "flush.", "immediate");
  c.flush.delay_us = need_u32(f, "flush.", "delayUs");
  c.flush.min_bytes = need_u32(f, "flush.", "minBytes");
  c.flush.direct = need_bool(f, "flush.", "direct");
  c.max_node_bytes = size_t(need_num(o, "", "maxNodeBytes"));
  c.max_rx_pending_bytes = size_t(need_num(o, "", "maxRxPendingBytes"));
  c.kernel_minimums = need_bool(o, "", "kernelMinimums");
  c.protocol31 = need_str(o, "", "protocol") == "3.1";
  c.auth = need_bool(o, "", "auth");
  const std::string records = need_str(o, "", "records");
  if (records != "encrypt" && records != "integrity")
    throw Napi::TypeError::New(o.Env(), "records must be 'encrypt' or 'integrity'");
  c.record_mode = records == "encrypt" ? record::Mode::kEncrypt : record::Mode::kIntegrity;
  c.tcp_user_timeout_ms = need_u32(o, "", "tcpUserTimeoutMs");
  c.connect_retry_max_ms = need_u32(o, "", "connectRetryMaxMs");
  c.ack_delay_ms = need_u32(o, "", "ackDelayMs");
  const Napi::Object s = need_obj(o, "sctp");
  SctpTuning& t = c.sctp;
  t.rto_initial_ms = need_u32(s, "sctp.", "rtoInitialMs");
  t.rto_min_ms = need_u32(s, "sctp.", "rtoMinMs");
  t.rto_max_ms = need_u32(s, "sctp.", "rtoMaxMs");
  t.hb_interval_ms = need_u32(s, "sctp.", "heartbeatMs");
  t.path_max_retrans = uint16_t(need_u32(s, "sctp.", "pathMaxRetrans"));
  t.pf_retrans = uint16_t(need_u32(s, "sctp.", "pfRetrans"));
  t.assoc_max_retrans = uint16_t(need_u32(s, "sctp.", "assocMaxRetrans"));
  t.sndbuf = need_u32(s, "sctp.", "sndbuf");
  t.rcvbuf = need_u32(s, "sctp.", "rcvbuf");
  t.sack_delay_ms = need_u32(s, "sctp.", "sackDelayMs");
  return c;
}

std::vector<SockAddr> parse_addrs(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, "addrs must be an array of IP strings");
  auto arr = v.As<Napi::Array>();
  std::vector<SockAddr> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    SockAddr a;
    if (!parse_addr(arr.Get(i).ToString().Utf8Value(), 0, &a))
      throw Napi::TypeError::New(env, "not an IP address: " + arr.Get(i).ToString().Utf8Value());
    out.push_back(a);
  }
  return out;
}

Napi::Error engine_error(Napi::Env env, const EngineError& e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  err.Set("code", Napi::String::New(env, e.code));
  err.Set("errno", Napi::Number::New(env, e.err));
  return err;
}

// 16 hex digits: an incarnation as JavaScript shows it (a number would lose bits).
std::string hex64(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; i--, v >>= 4) out[size_t(i)] = digits[v & 15];
  return out;
}

const char* version_name(PeerVersion v) {
  return v == PeerVersion::k32 ? "3.2" : v == PeerVersion::k31 ? "3.1" : "unknown";
}

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod<&Engine::AddNode>("addNode"),
                        InstanceMethod<&Engine::RemoveNode>("removeNode"),
                        InstanceMethod<&Engine::ResetNode>("resetNode"),
                        InstanceMethod<&Engine::Start>("start"),
                        InstanceMethod<&Engine::Submit>("submit"),
                        InstanceMethod<&Engine::HeldBytes>("heldBytes"),
                        InstanceMethod<&Engine::Release>("release"),
                        InstanceMethod<&Engine::BeginClose>("beginClose"),
                        InstanceMethod<&Engine::Quiesced>("quiesced"),
                        InstanceMethod<&Engine::BeginCloseNode>("beginCloseNode"),
                        InstanceMethod<&Engine::Stop>("stop"),
                        InstanceMethod<&Engine::Stats>("stats"),
                        InstanceMethod<&Engine::Ref>("ref"),
                        InstanceMethod<&Engine::KillConnections>("killConnections"),
                        InstanceMethod<&Engine::TamperRecords>("tamperRecords"),
                        InstanceMethod<&Engine::AuthReply>("authReply"),
                        InstanceMethod<&Engine::Unref>("unref")});
  }

  // new Engine(options, onBatch(buf, index), onEvent(ev))
  Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction())
      throw Napi::TypeError::New(env, "new Engine(options, onBatch, onEvent)");
    sink_ = std::make_shared<JsSink>(env, info[1].As<Napi::Function>(), info[2].As<Napi::Function>());
    sink_->unref(env);  // only a started engine keeps the process alive
    engine_ = std::make_unique<Lowcomms>(parse_config(info[0].As<Napi::Object>()), sink_);
    // A worker that exits without close(): stop the threads before the env goes.
    napi_add_env_cleanup_hook(env, &Engine::cleanup, this);
    hooked_ = true;
  }

  ~Engine() override {
    shutdown();
    if (hooked_) napi_remove_env_cleanup_hook(Env(), &Engine::cleanup, this);
  }

 private:
  static void cleanup(void* self) {
    auto* e = static_cast<Engine*>(self);
    e->hooked_ = false;
    e->shutdown();
  }

  void shutdown() {
    if (engine_) engine_->stop();  // joins both threads
    if (sink_) sink_->release();
  }

  Napi::Value AddNode(const Napi::CallbackInfo& info) {
    const uint32_t nodeid = info[0].As<Napi::Number>().Uint32Value();
    auto addrs = parse_addrs(info.Env(), info[1]);
    const uint32_t mark = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
    const bool kernel = info.Length() > 3 && info[3].ToBoolean().Value();
    try {
      engine_->add_node(nodeid, std::move(addrs), mark, kernel);
    } catch (const EngineError& e) {
      throw engine_error(info.Env(), e);
    }
    return info.Env().Undefined();
  }
  Napi::Value RemoveNode(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->remove_node(info[0].As<Napi::Number>().Uint32Value()));
  }
  Napi::Value ResetNode(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->reset_node(info[0].As<Napi::Number>().Uint32Value()));
  }
  Napi::Value Start(const Napi::CallbackInfo& info) {
    try {
      engine_->start();
    } catch (const EngineError& e) {
      throw engine_error(info.Env(), e);
    }
    sink_->ref(info.Env());
    started_ = true;
    return Napi::Number::New(info.Env(), engine_->bound_port());
  }
  // submit(Uint8Array records, length) -> accepted | -dropped-... (see binding/index.ts)
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto buf = info[0].As<Napi::Uint8Array>();
    const size_t len = std::min<size_t>(buf.ByteLength(), size_t(info[1].As<Napi::Number>().Uint32Value()));
    const auto r = engine_->submit(buf.Data(), len);
    if (r.not_running) return Napi::Number::New(env, -1);
    if (r.dropped == 0) return Napi::Number::New(env, 0);
    auto o = Napi::Object::New(env);
    o.Set("dropped", Napi::Number::New(env, double(r.dropped)));
    o.Set("nodeid", Napi::Number::New(env, r.first_dropped_node));
    return o;
  }
  Napi::Value HeldBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(engine_->held_bytes(info[0].As<Napi::Number>().Uint32Value(),
                                                                    size_t(info[1].As<Napi::Number>().Uint32Value()))));
  }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    engine_->release(uint64_t(info[0].As<Napi::Number>().DoubleValue()),
                     size_t(info[1].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }
  Napi::Value BeginClose(const Napi::CallbackInfo& info) {
    engine_->begin_close();
    return info.Env().Undefined();
  }
  Napi::Value Quiesced(const Napi::CallbackInfo& info) {
    const uint32_t nodeid = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    return Napi::Boolean::New(info.Env(), engine_->quiesced(nodeid));
  }
  Napi::Value BeginCloseNode(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->begin_close_node(info[0].As<Napi::Number>().Uint32Value()));
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    shutdown();
    return info.Env().Undefined();
  }
  // authReply(socketId, nonce, proof, expected, txKey, rxKey): Uint8Arrays of 32 bytes
  Napi::Value AuthReply(const Napi::CallbackInfo& info) {
    if (info.Length() < 6 || !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsTypedArray() ||
        !info[4].IsTypedArray() || !info[5].IsTypedArray())
      throw Napi::TypeError::New(info.Env(), "authReply: socket id, nonce, two MACs and two session keys expected");
    auto nonce = info[1].As<Napi::Uint8Array>();
    auto proof = info[2].As<Napi::Uint8Array>();
    auto expected = info[3].As<Napi::Uint8Array>();
    auto tx_key = info[4].As<Napi::Uint8Array>();
    auto rx_key = info[5].As<Napi::Uint8Array>();
    if (nonce.ByteLength() != auth::kNonceLen || proof.ByteLength() != auth::kMacLen ||
        expected.ByteLength() != auth::kMacLen || tx_key.ByteLength() != record::kKeyLen ||
        rx_key.ByteLength() != record::kKeyLen)
      throw Napi::TypeError::New(info.Env(), "authReply: a 32-byte nonce, 32-byte MACs and 32-byte keys expected");
    engine_->auth_reply(uint64_t(info[0].As<Napi::Number>().Int64Value()), nonce.Data(), proof.Data(),
                        expected.Data(), tx_key.Data(), rx_key.Data());
    return info.Env().Undefined();
  }
  // tamperRecords(nodeid, 'flip' | 'inject' | 'replay' | 'drop' | 'reorder'): a test hook (auth).
  Napi::Value TamperRecords(const Napi::CallbackInfo& info) {
    const std::string w = info[1].ToString().Utf8Value();
    using T = Lowcomms::Tamper;
    const T what = w == "flip" ? T::kFlip : w == "inject" ? T::kInject : w == "replay" ? T::kReplay
                 : w == "drop" ? T::kDrop : w == "reorder" ? T::kReorder : T::kNone;
    if (what == T::kNone) throw Napi::TypeError::New(info.Env(), "tamperRecords: unknown action " + w);
    return Napi::Boolean::New(info.Env(), engine_->tamper_records(info[0].As<Napi::Number>().Uint32Value(), what));
  }
  Napi::Value KillConnections(const Napi::CallbackInfo& info) {
    engine_->kill_connections(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (started_) sink_->ref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    sink_->unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto out = Napi::Object::New(env);
    const auto& g = engine_->counters();
    out.Set("rejected", Napi::Number::New(env, double(g.rejected)));
    out.Set("accepts", Napi::Number::New(env, double(g.accepts)));
    out.Set("authFailures", Napi::Number::New(env, double(g.auth_failures)));
    out.Set("staleDropped", Napi::Number::New(env, double(g.stale_dropped)));
    out.Set("recordFailures", Napi::Number::New(env, double(g.record_failures)));
    out.Set("batches", Napi::Number::New(env, double(g.batches)));
    out.Set("rxPaused", Napi::Number::New(env, double(g.rx_paused)));
    out.Set("rxPendingBytes", Napi::Number::New(env, double(engine_->rx_pending_bytes())));
    out.Set("incarnation", Napi::String::New(env, hex64(engine_->incarnation())));
    auto nodes = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& s : engine_->node_stats()) {
      auto n = Napi::Object::New(env);
      auto num = [&](const char* k, double v) { n.Set(k, Napi::Number::New(env, v)); };
      num("nodeid", s.nodeid);
      n.Set("connected", Napi::Boolean::New(env, s.connected));
      num("txMsgs", double(s.tx_msgs));
      num("txBytes", double(s.tx_bytes));
      num("txSyscalls", double(s.tx_syscalls));
      num("txDirect", double(s.tx_direct));
      num("rxMsgs", double(s.rx_msgs));
      num("rxBytes", double(s.rx_bytes));
      num("connects", double(s.connects));
      num("disconnects", double(s.disconnects));
      num("connectErrors", double(s.connect_errors));
      num("resent", double(s.resent));
      num("badFrames", double(s.bad_frames));
      num("badRecords", double(s.bad_records));
      num("backpressure", double(s.backpressure));
      num("acksSent", double(s.acks_sent));
      num("droppedUnacked", double(s.dropped_unacked));
      num("restarts", double(s.restarts));
      num("desyncReports", double(s.desync_reports));
      num("acksBackwards", double(s.rx.acks_backwards));
      n.Set("kernel", Napi::Boolean::New(env, s.kernel));
      n.Set("peerIncarnation", Napi::String::New(env, hex64(s.peer_incarnation)));
      num("queuedBytes", double(s.queued_bytes));
      num("heldBytes", double(s.held_bytes));
      num("unacked", double(s.unacked));
      num("seqSend", s.seq_send);
      num("seqNext", s.seq_next);
      n.Set("version", version_name(s.version));
      n.Set("state", fin_state_name(s.state));
      num("dupDropped", double(s.rx.dup_dropped));
      num("gapDropped", double(s.rx.gap_dropped));
      num("versionMismatch", double(s.rx.version_mismatch));
      num("badVersion", double(s.rx.bad_version));
      num("skipped", double(s.rx.skipped));
      num("nodeidMismatch", double(s.rx.nodeid_mismatch));
      num("innerNodeidMismatch", double(s.rx.inner_nodeid_mismatch));
      num("acksRcvd", double(s.rx.acks_rcvd));
      num("badAcks", double(s.rx.bad_acks));
      num("finsRcvd", double(s.rx.fins_rcvd));
      nodes.Set(i++, n);
    }
    out.Set("nodes", nodes);
    return out;
  }

  std::shared_ptr<JsSink> sink_;
  std::unique_ptr<Lowcomms> engine_;
  bool hooked_ = false;
  bool started_ = false;
};

// Probe for 'detect' and for a clear error before start().
Napi::Value SctpAvailable(const Napi::CallbackInfo& info) {
  const int family = info.Length() > 0 && info[0].IsNumber() && info[0].As<Napi::Number>().Int32Value() == 6
                         ? AF_INET6 : AF_INET;
  UniqueFd fd(::socket(family, SOCK_SEQPACKET | SOCK_CLOEXEC, IPPROTO_SCTP));
  auto o = Napi::Object::New(info.Env());
  o.Set("ok", Napi::Boolean::New(info.Env(), bool(fd)));
  o.Set("errno", Napi::Number::New(info.Env(), fd ? 0 : errno));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Define(env));
  exports.Set("sctpAvailable", Napi::Function::New<SctpAvailable>(env, "sctpAvailable"));
  membership::Init(env, exports);
  return exports;
}

}  // namespace
}  // namespace lowcomms

static Napi::Object InitLowcomms(Napi::Env env, Napi::Object exports) {
  return lowcomms::Init(env, exports);
}

NODE_API_MODULE(lowcomms, InitLowcomms)
