// The transport factory: the one place that maps Config::transport to a Transport.
#include "lowcomms/transport.h"
#include "lowcomms/transport_sctp.h"
#include "lowcomms/transport_tcp.h"

namespace lowcomms {

std::unique_ptr<Transport> make_transport(Lowcomms& engine, const Config& cfg) {
  switch (cfg.transport) {
    case TransportKind::kSctp:
      return std::make_unique<SctpTransport>(engine);
    case TransportKind::kTcp:
      break;
  }
  return std::make_unique<TcpTransport>(engine);
}

}  // namespace lowcomms
