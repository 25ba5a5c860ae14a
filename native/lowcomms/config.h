// Settings of one lowcomms instance, as the TypeScript layer passes them in. The values
// of every option come from lib/defaults.ts through the binding, which refuses an options
// object with a key missing: no default is written here (zero until set), except for
// the SCTP INIT settings below, which are not options.
#pragma once
#include <cstddef>
#include <cstdint>
#include "lowcomms/session_crypto.h"

namespace lowcomms {

enum class TransportKind : uint8_t { kTcp, kSctp };  // transport.cc makes the Transport

struct FlushPolicy {
  // Immediate: the send thread flushes a node as soon as it is woken. Otherwise it
  // waits up to delay_us after the first queued byte, or until min_bytes are queued.
  bool immediate = true;
  uint32_t delay_us = 0;
  uint32_t min_bytes = 0;
  // Immediate only: the caller's thread may write a node's first queued bytes itself
  // (tx_direct.cc) instead of waking the send thread.
  bool direct = true;
};

struct SctpTuning {
  uint32_t rto_initial_ms = 0;
  uint32_t rto_min_ms = 0;
  uint32_t rto_max_ms = 0;
  uint32_t hb_interval_ms = 0;
  uint16_t path_max_retrans = 0;
  uint16_t pf_retrans = 0;          // potentially-failed after this many (0: at once)
  uint16_t assoc_max_retrans = 0;
  uint32_t sndbuf = 0;              // Linux SCTP does not autotune: size explicitly
  uint32_t rcvbuf = 0;
  uint32_t sack_delay_ms = 0;       // 0: kernel default
  uint16_t init_max_attempts = 4;
  uint16_t init_max_timeo_ms = 1000;
};

struct Config {
  uint32_t local_nodeid = 0;
  TransportKind transport = TransportKind::kTcp;
  uint16_t port = 0;
  bool has_mark = false;
  uint32_t mark = 0;
  uint32_t entry_bytes = 0;                   // writequeue entry size
  FlushPolicy flush;
  size_t max_node_bytes = 0;                  // queued + unacked per node; send() refuses past it
  size_t max_rx_pending_bytes = 0;            // handed to JS, not yet consumed; reading stops past it
  bool kernel_minimums = false;               // enforce sizeof(dlm_message)/sizeof(dlm_rcom)
  bool protocol31 = false;                    // speak DLM 3.1: no midcomms wrapper, acks, resend
  bool auth = false;                          // peer authentication handshake (handshake.cc, auth.cc), TCP and SCTP
  // With auth: how every record after the handshake is protected (session_crypto.h).
  record::Mode record_mode = record::Mode::kEncrypt;
  uint32_t tcp_user_timeout_ms = 0;
  uint32_t connect_retry_max_ms = 0;          // reconnect backoff cap
  uint32_t ack_delay_ms = 0;                  // idle ack after this long without traffic
  SctpTuning sctp;
};

}  // namespace lowcomms
