// TCP: one listen socket on the local node's address; per peer an outgoing socket
// that we send on (and read, in case the peer answers on it) and accepted sockets
// that we only read (the kernel's othercon). The sockets themselves are the engine's
// Socket objects (the handshake runs on them); this class opens, reads and writes them.
#pragma once
#include <memory>
#include <vector>
#include "lowcomms/transport.h"
#include "util/unique_fd.h"

namespace lowcomms {

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(Lowcomms& engine) : e_(engine) {}

  void check_local(const std::vector<SockAddr>& local) const override;
  void listen() override;
  void close() override { listen_fd_.reset(); }
  bool link_up(const Connection& c) const override;
  bool direct_write() const override { return true; }
  TxRound write_round(const ConnPtr& c, int* err) override;

  bool connect(const ConnPtr& c, int* err) override;
  void connect_progress(const ConnPtr& c, int64_t now) override;
  int down_reason(Connection& c) override;
  void flush(const ConnPtr& c) override;

  void on_listen_readable() override { accept(); }
  void read_socket(const std::shared_ptr<Socket>& s) override;

 private:
  void accept();                                  // receive thread
  bool connect_done(const ConnPtr& c, int* err);  // send thread
  // With auth: records sealed into the socket's tx_out and sent from there (send thread).
  void flush_sealed(const ConnPtr& c);
  void tamper(Connection& c, Socket& s);

  Lowcomms& e_;
  UniqueFd listen_fd_;          // opened by listen() (JS thread), accepted on by the receive thread
  std::vector<uint8_t> rx_buf_;  // the receive thread's read buffer
};

}  // namespace lowcomms
