/**
 * Every error lowcomms throws or emits is a LowcommsError with a stable `code`,
 * so that callers can branch on `err.code` rather than on message text.
 */
export type LowcommsErrorCode =
  | 'ERR_LOWCOMMS_CONFIG'
  | 'ERR_LOWCOMMS_UNKNOWN_NODE'
  | 'ERR_LOWCOMMS_MSG_SIZE'
  | 'ERR_LOWCOMMS_MESSAGE'
  | 'ERR_LOWCOMMS_STATE'
  | 'ERR_LOWCOMMS_SCTP_UNAVAILABLE'
  | 'ERR_LOWCOMMS_PERMISSION'
  | 'ERR_LOWCOMMS_ADDRESS_IN_USE'
  | 'ERR_LOWCOMMS_NATIVE'
  | 'ERR_LOWCOMMS_PEER'
  | 'ERR_LOWCOMMS_LOAD'
  | 'ERR_LOWCOMMS_COROSYNC_UNAVAILABLE'
  | 'ERR_LOWCOMMS_COROSYNC'
  | 'ERR_LOWCOMMS_CRYPTO';

export class LowcommsError extends Error {
  readonly code: LowcommsErrorCode;
  constructor(code: LowcommsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad options, node table or address: raised before anything is opened. */
export class ConfigError extends LowcommsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LOWCOMMS_CONFIG', message, options);
  }
}

/** A nodeid that is not in the node table. */
export class UnknownNodeError extends LowcommsError {
  readonly nodeid: number;
  constructor(nodeid: number) {
    super('ERR_LOWCOMMS_UNKNOWN_NODE', `nodeid ${nodeid} is not in the node table`);
    this.nodeid = nodeid;
  }
}

/**
 * A message outside the kernel's size limits: 16..4096 bytes on the wire, at most 4072 for
 * the application; with kernelMinimums also at least 88 for DLM_MSG and 48 for DLM_RCOM.
 */
export class MessageSizeError extends LowcommsError {
  readonly size: number;
  /** The largest size allowed. */
  readonly limit: number;
  /** The smallest size allowed. */
  readonly min: number;
  constructor(size: number, limit: number, what = 'message', min = 16) {
    super('ERR_LOWCOMMS_MSG_SIZE', `${what} of ${size} bytes is outside the limits (min ${min}, max ${limit})`);
    this.size = size;
    this.limit = limit;
    this.min = min;
  }
}

/**
 * An outgoing message the wire cannot carry: a command other than DLM_MSG/DLM_RCOM (a
 * receiver drops those), or a raw message whose h_length disagrees with its size.
 */
export class MessageError extends LowcommsError {
  constructor(message: string) {
    super('ERR_LOWCOMMS_MESSAGE', message);
  }
}

/** Called in the wrong state: send() before start(), start() twice, anything after close(). */
export class StateError extends LowcommsError {
  constructor(message: string) {
    super('ERR_LOWCOMMS_STATE', message);
  }
}

/** transport 'sctp' on a kernel that has no SCTP. */
export class SctpUnavailableError extends LowcommsError {
  constructor(detail: string) {
    super(
      'ERR_LOWCOMMS_SCTP_UNAVAILABLE',
      `this kernel has no SCTP (${detail}). Load it with 'modprobe sctp', or run your ` +
        `command inside user-mode-linux, from your project: 'npx lowcomms uml -- node app.js' (see README).`,
    );
  }
}

/** An operation the process lacks the capability for (SO_MARK needs CAP_NET_ADMIN). */
export class PermissionError extends LowcommsError {
  constructor(message: string) {
    super('ERR_LOWCOMMS_PERMISSION', message);
  }
}

/** The cluster port is taken on a local address. */
export class AddressInUseError extends LowcommsError {
  constructor(message: string) {
    super('ERR_LOWCOMMS_ADDRESS_IN_USE', message);
  }
}

/** Any other failure reported by the native layer (errno text included). */
export class NativeError extends LowcommsError {
  readonly errno: number | undefined;
  constructor(message: string, errno?: number) {
    super('ERR_LOWCOMMS_NATIVE', message);
    this.errno = errno;
  }
}

/**
 * Why a PeerError was raised:
 * - 'bad_frame': the peer sent something that cannot be framed (a length outside
 *   [16, 4096], a malformed SCTP message); its connection or association was closed and
 *   stats().nodes[].badFrames counts it. It reconnects, and midcomms resends.
 * - 'peer_state': the peer's midcomms state disagrees with ours (it acked messages we
 *   never sent, as after a restart without FIN); the frame was ignored and counted
 *   (badAcks), and the connection stays up.
 */
export type PeerErrorReason = 'bad_frame' | 'peer_state';

/** A peer broke the protocol; `reason` says what was done about it. */
export class PeerError extends LowcommsError {
  readonly nodeid: number;
  readonly reason: PeerErrorReason;
  constructor(nodeid: number, message: string, reason: PeerErrorReason = 'bad_frame') {
    super('ERR_LOWCOMMS_PEER', message);
    this.nodeid = nodeid;
    this.reason = reason;
  }
}

/** The native addon could not be loaded. */
export class LoadError extends LowcommsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LOWCOMMS_LOAD', message, options);
  }
}

/**
 * Corosync membership was asked for, but corosync's client libraries (libcpg.so.4,
 * libcmap.so.4, libquorum.so.5) cannot be loaded. Without membership nothing needs them.
 */
export class CorosyncUnavailableError extends LowcommsError {
  constructor(detail: string) {
    super(
      'ERR_LOWCOMMS_COROSYNC_UNAVAILABLE',
      `corosync client libraries not found (${detail}). On Debian/Ubuntu install them with ` +
        `'apt-get install libcpg4 libcmap4 libquorum5' (the 'corosync' package pulls them in).`,
    );
  }
}

/** A corosync call failed (corosync not running, not ours to use, shutting down...). */
export class CorosyncError extends LowcommsError {
  /** The call that failed (cpg_join, cmap_initialize, ...), or 'dispatch' when the link broke. */
  readonly op: string;
  /** corosync's cs_error_t (2 CS_ERR_LIBRARY: corosync is not running), 0 if none. */
  readonly cs: number;
  constructor(message: string, op: string, cs = 0) {
    super('ERR_LOWCOMMS_COROSYNC', message);
    this.op = op;
    this.cs = cs;
  }
}

/** auth was asked for, but OpenSSL's libcrypto 3 (which protects the records) is not in this process nor loadable. */
export class CryptoUnavailableError extends LowcommsError {
  constructor(message: string) {
    super('ERR_LOWCOMMS_CRYPTO', message);
  }
}
