// The AEAD of session_crypto.h: OpenSSL's AES-256-GCM through a small table of EVP
// functions resolved at run time. Node's own binaries export OpenSSL 3 (so inside any
// Node 20+ the process already has them: dlsym(RTLD_DEFAULT)); elsewhere (the fuzz
// targets, a Node built against a shared libcrypto) libcrypto.so.3 is loaded. No OpenSSL
// headers or libraries are needed to build or load the addon; when the headers are
// present the declarations below are checked against them.
#include "lowcomms/session_crypto.h"

#include <dlfcn.h>
#include <cstring>
#include <mutex>

// OpenSSL's own struct tags, so that the checks below compare identical types.
struct evp_cipher_ctx_st;
struct evp_cipher_st;
struct engine_st;

namespace lowcomms::record {

namespace {
using CTX = evp_cipher_ctx_st;
using CIPHER = evp_cipher_st;
using ENGINE = engine_st;

// From openssl/evp.h (stable ABI since 1.1): the GCM controls.
constexpr int kCtrlGcmSetIvLen = 0x9;
constexpr int kCtrlGcmGetTag = 0x10;
constexpr int kCtrlGcmSetTag = 0x11;
constexpr size_t kIvLen = 12;

struct Evp {
  CTX* (*ctx_new)();
  void (*ctx_free)(CTX*);
  const CIPHER* (*aes_256_gcm)();
  int (*ctx_ctrl)(CTX*, int, int, void*);
  int (*encrypt_init)(CTX*, const CIPHER*, ENGINE*, const unsigned char*, const unsigned char*);
  int (*encrypt_update)(CTX*, unsigned char*, int*, const unsigned char*, int);
  int (*encrypt_final)(CTX*, unsigned char*, int*);
  int (*decrypt_init)(CTX*, const CIPHER*, ENGINE*, const unsigned char*, const unsigned char*);
  int (*decrypt_update)(CTX*, unsigned char*, int*, const unsigned char*, int);
  int (*decrypt_final)(CTX*, unsigned char*, int*);
};

template <class F>
bool resolve(void* handle, const char* name, F* out) {
  void* p = ::dlsym(handle, name);
  if (!p) return false;
  *out = reinterpret_cast<F>(p);
  return true;
}

bool resolve_all(void* h, Evp* e) {
  return resolve(h, "EVP_CIPHER_CTX_new", &e->ctx_new) && resolve(h, "EVP_CIPHER_CTX_free", &e->ctx_free) &&
         resolve(h, "EVP_aes_256_gcm", &e->aes_256_gcm) && resolve(h, "EVP_CIPHER_CTX_ctrl", &e->ctx_ctrl) &&
         resolve(h, "EVP_EncryptInit_ex", &e->encrypt_init) && resolve(h, "EVP_EncryptUpdate", &e->encrypt_update) &&
         resolve(h, "EVP_EncryptFinal_ex", &e->encrypt_final) && resolve(h, "EVP_DecryptInit_ex", &e->decrypt_init) &&
         resolve(h, "EVP_DecryptUpdate", &e->decrypt_update) && resolve(h, "EVP_DecryptFinal_ex", &e->decrypt_final);
}

std::once_flag g_once;
Evp g_evp{};
bool g_ok = false;

const Evp* evp() {
  std::call_once(g_once, [] {
    // Every function from one library: the process's own (Node's) first.
    if (resolve_all(RTLD_DEFAULT, &g_evp)) {
      g_ok = true;
      return;
    }
    // Kept loaded for the life of the process (the functions are used until exit).
    void* h = ::dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    if (h && resolve_all(h, &g_evp)) g_ok = true;
  });
  return g_ok ? &g_evp : nullptr;
}

void make_iv(uint64_t counter, uint8_t* iv) {
  std::memset(iv, 0, 4);
  for (int i = 0; i < 8; i++) iv[4 + i] = uint8_t(counter >> (56 - 8 * i));
}
}  // namespace

const char* unavailable_reason() {
  return evp() ? nullptr
               : "record protection needs OpenSSL 3's libcrypto: neither this process (Node exports it) nor "
                 "libcrypto.so.3 provides EVP_aes_256_gcm";
}

struct Cipher::Ctx {
  CTX* ctx = nullptr;
  ~Ctx() {
    if (ctx) evp()->ctx_free(ctx);
  }
};

Cipher::Cipher(Mode mode, bool sealing, std::unique_ptr<Ctx> ctx)
    : mode_(mode), sealing_(sealing), ctx_(std::move(ctx)) {}
Cipher::~Cipher() = default;

std::unique_ptr<Cipher> Cipher::make(Mode mode, const uint8_t* key, bool sealing) {
  const Evp* e = evp();
  if (!e || mode == Mode::kOff) return nullptr;
  auto ctx = std::make_unique<Ctx>();
  ctx->ctx = e->ctx_new();
  if (!ctx->ctx) return nullptr;
  // The key once; each record sets only its nonce.
  auto init = sealing ? e->encrypt_init : e->decrypt_init;
  if (init(ctx->ctx, e->aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      e->ctx_ctrl(ctx->ctx, kCtrlGcmSetIvLen, int(kIvLen), nullptr) != 1 ||
      init(ctx->ctx, nullptr, nullptr, key, nullptr) != 1)
    return nullptr;
  return std::unique_ptr<Cipher>(new Cipher(mode, sealing, std::move(ctx)));
}

bool Cipher::seal(const iovec* iov, int n, size_t plain_len, uint8_t* out) {
  const Evp* e = evp();
  if (!sealing_ || dead_ || plain_len > kMaxPlain || counter_ == UINT64_MAX) return false;
  uint8_t iv[kIvLen];
  make_iv(counter_, iv);
  CTX* x = ctx_->ctx;
  int outl = 0;
  const uint32_t l = uint32_t(plain_len);
  out[0] = uint8_t(l);
  out[1] = uint8_t(l >> 8);
  out[2] = uint8_t(l >> 16);
  out[3] = uint8_t(l >> 24);
  if (e->encrypt_init(x, nullptr, nullptr, nullptr, iv) != 1) return false;
  if (e->encrypt_update(x, nullptr, &outl, out, int(kHeaderLen)) != 1) return false;
  uint8_t* body = out + kHeaderLen;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    const int len = int(iov[i].iov_len);
    if (mode_ == Mode::kEncrypt) {
      if (e->encrypt_update(x, body + off, &outl, p, len) != 1 || outl != len) return false;
    } else {
      // Integrity only: the payload is authenticated data and goes as it is.
      if (e->encrypt_update(x, nullptr, &outl, p, len) != 1) return false;
      if (len) std::memcpy(body + off, p, size_t(len));
    }
    off += size_t(len);
  }
  if (off != plain_len) return false;
  if (e->encrypt_final(x, body + off, &outl) != 1) return false;
  if (e->ctx_ctrl(x, kCtrlGcmGetTag, int(kTagLen), body + off) != 1) return false;
  counter_++;
  return true;
}

bool Cipher::open(const uint8_t* rec, size_t plain_len, uint8_t* plain) {
  const Evp* e = evp();
  if (sealing_ || dead_) return false;
  dead_ = true;  // until this record proves itself
  if (plain_len > kMaxPlain || record_len(rec) != plain_len || counter_ == UINT64_MAX) return false;
  uint8_t iv[kIvLen];
  make_iv(counter_, iv);
  CTX* x = ctx_->ctx;
  int outl = 0;
  const uint8_t* body = rec + kHeaderLen;
  uint8_t tag[kTagLen];
  std::memcpy(tag, body + plain_len, kTagLen);
  if (e->decrypt_init(x, nullptr, nullptr, nullptr, iv) != 1) return false;
  if (e->decrypt_update(x, nullptr, &outl, rec, int(kHeaderLen)) != 1) return false;
  if (mode_ == Mode::kEncrypt) {
    if (e->decrypt_update(x, plain, &outl, body, int(plain_len)) != 1 || size_t(outl) != plain_len) return false;
  } else if (e->decrypt_update(x, nullptr, &outl, body, int(plain_len)) != 1) {
    return false;
  }
  if (e->ctx_ctrl(x, kCtrlGcmSetTag, int(kTagLen), tag) != 1) return false;
  int fin = 0;
  if (e->decrypt_final(x, plain + (mode_ == Mode::kEncrypt ? plain_len : 0), &fin) != 1) return false;
  if (mode_ == Mode::kIntegrity && plain_len) std::memcpy(plain, body, plain_len);
  dead_ = false;
  counter_++;
  return true;
}

}  // namespace lowcomms::record

#if __has_include(<openssl/evp.h>) && __has_include(<openssl/opensslconf.h>)
// Where the headers are installed (for this target: a cross build may see only the
// host's half of them), the hand-written declarations must match them.
#include <openssl/evp.h>
#include <type_traits>
namespace lowcomms::record {
namespace {
static_assert(kCtrlGcmSetIvLen == EVP_CTRL_GCM_SET_IVLEN && kCtrlGcmGetTag == EVP_CTRL_GCM_GET_TAG &&
              kCtrlGcmSetTag == EVP_CTRL_GCM_SET_TAG);
static_assert(std::is_same_v<decltype(Evp::ctx_new), decltype(&::EVP_CIPHER_CTX_new)>);
static_assert(std::is_same_v<decltype(Evp::ctx_free), decltype(&::EVP_CIPHER_CTX_free)>);
static_assert(std::is_same_v<decltype(Evp::aes_256_gcm), decltype(&::EVP_aes_256_gcm)>);
static_assert(std::is_same_v<decltype(Evp::ctx_ctrl), decltype(&::EVP_CIPHER_CTX_ctrl)>);
static_assert(std::is_same_v<decltype(Evp::encrypt_init), decltype(&::EVP_EncryptInit_ex)>);
static_assert(std::is_same_v<decltype(Evp::encrypt_update), decltype(&::EVP_EncryptUpdate)>);
static_assert(std::is_same_v<decltype(Evp::encrypt_final), decltype(&::EVP_EncryptFinal_ex)>);
static_assert(std::is_same_v<decltype(Evp::decrypt_init), decltype(&::EVP_DecryptInit_ex)>);
static_assert(std::is_same_v<decltype(Evp::decrypt_update), decltype(&::EVP_DecryptUpdate)>);
static_assert(std::is_same_v<decltype(Evp::decrypt_final), decltype(&::EVP_DecryptFinal_ex)>);
}  // namespace
}  // namespace lowcomms::record
#endif
