// What the engine hands to the JavaScript side: batches of received messages and
// rare events. Implemented by the binding; called from the native threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace lowcomms {

// A batch's bytes: appended to once per message by the receive thread. Not a
// std::vector<uint8_t>: no zero-fill on growth, and a 16..64-byte message (the common DLM
// size) is copied inline instead of through a memmove call per message.
class BatchBytes {
 public:
  uint8_t* data() { return buf_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  void reserve(size_t n) {
    if (n <= cap_) return;
    auto nb = std::make_unique_for_overwrite<uint8_t[]>(n);
    if (size_) std::memcpy(nb.get(), buf_.get(), size_);
    buf_ = std::move(nb);
    cap_ = n;
  }
  void append(const uint8_t* p, size_t n) {
    if (n > cap_ - size_) reserve(std::max(size_ + n, cap_ * 2));
    uint8_t* d = buf_.get() + size_;
    if (n >= 16 && n <= 64) {
      // 16-byte pieces, the last one ending at n (it may overlap the one before).
      for (size_t i = 0; i + 16 < n; i += 16) std::memcpy(d + i, p + i, 16);
      std::memcpy(d + n - 16, p + n - 16, 16);
    } else if (n) {
      std::memcpy(d, p, n);
    }
    size_ += n;
  }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  size_t size_ = 0;
  size_t cap_ = 0;
};

// Received application messages, back to back in `data`; `index` holds one
// (nodeid, offset, length) triple per message, in delivery order.
struct Batch {
  uint64_t id = 0;   // handed back to Lowcomms::release() once the application consumed it
  BatchBytes data;
  std::vector<uint32_t> index;
  size_t messages() const { return index.size() / 3; }
};

struct Event {
  std::string type;     // connect, disconnect, reject, error, drain, closed, assoc, path
  uint32_t nodeid = 0;
  std::string detail;   // human-readable: address, reason
  std::string code;     // machine-readable reason (errno name, state name)
  int64_t value = 0;    // a count or errno where it applies
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void deliver(std::unique_ptr<Batch> batch) = 0;
  virtual void event(Event ev) = 0;
};

}  // namespace lowcomms
