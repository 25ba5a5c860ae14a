// What the engine hands to the JavaScript side: batches of received messages and
// rare events. Implemented by the binding; called from the native threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowcomms {

// Received application messages, back to back in `data`; `index` holds one
// (nodeid, offset, length) triple per message, in delivery order.
struct Batch {
  uint64_t id = 0;   // handed back to Lowcomms::release() once the application consumed it
  std::vector<uint8_t> data;
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
