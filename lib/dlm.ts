/**
 * The DLM wire format, for the TypeScript side: constants, and helpers to build or
 * read a whole DLM message (header + body) when an application wants raw frames.
 * The hot path never uses these: the native layer frames every message itself.
 */

/** h_version of DLM protocol 3.1 (no midcomms) and 3.2 (sequence numbers, acks). */
export const DLM_VERSION_3_1 = 0x00030001;
export const DLM_VERSION_3_2 = 0x00030002;

/** h_cmd values. */
export const DLM_MSG = 1;
export const DLM_RCOM = 2;
export const DLM_OPTS = 3;
export const DLM_ACK = 4;
export const DLM_FIN = 5;

/** Sizes of the kernel (config.h). */
export const DLM_HEADER_LEN = 16;
export const DLM_OPTS_LEN = 24;
export const DLM_MAX_SOCKET_BUFSIZE = 4096;
/** The largest application message: the 24-byte DLM_OPTS wrapper must still fit. */
export const DLM_MAX_APP_BUFSIZE = DLM_MAX_SOCKET_BUFSIZE - DLM_OPTS_LEN;
/** sizeof(struct dlm_message) and sizeof(struct dlm_rcom): a kernel receiver drops anything shorter. */
export const DLM_MSG_MIN_LEN = 88;
export const DLM_RCOM_MIN_LEN = 48;
/** The default cluster port (configfs tcp_port). */
export const DLM_DEFAULT_PORT = 21064;

/** rc_type of the RCOMs that travel unwrapped (stateless version detection). */
export const DLM_RCOM_STATUS = 1;
export const DLM_RCOM_NAMES = 2;
export const DLM_RCOM_STATUS_REPLY = 5;
export const DLM_RCOM_NAMES_REPLY = 6;

export interface DlmHeader {
  version: number;
  /** h_lockspace for DLM_MSG/DLM_RCOM; h_seq for DLM_OPTS/DLM_ACK. */
  lockspace: number;
  nodeid: number;
  length: number;
  cmd: number;
}

/** Reads the 16-byte little-endian header at `offset` (any alignment). */
export function readHeader(buf: Uint8Array, offset = 0): DlmHeader {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, DLM_HEADER_LEN);
  return {
    version: v.getUint32(0, true),
    lockspace: v.getUint32(4, true),
    nodeid: v.getUint32(8, true),
    length: v.getUint16(12, true),
    cmd: v.getUint8(14),
  };
}

/** Writes a 16-byte header at `offset`; h_pad is zeroed. */
export function writeHeader(buf: Uint8Array, h: DlmHeader, offset = 0): void {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, DLM_HEADER_LEN);
  v.setUint32(0, h.version >>> 0, true);
  v.setUint32(4, h.lockspace >>> 0, true);
  v.setUint32(8, h.nodeid >>> 0, true);
  v.setUint16(12, h.length, true);
  v.setUint8(14, h.cmd);
  v.setUint8(15, 0);
}

/** A whole DLM message: header (version 3.2 unless given) followed by `body`. */
export function encodeMessage(
  h: { lockspace: number; nodeid: number; cmd: number; version?: number },
  body: Uint8Array = new Uint8Array(0),
): Buffer {
  const out = Buffer.allocUnsafe(DLM_HEADER_LEN + body.length);
  writeHeader(out, {
    version: h.version ?? DLM_VERSION_3_2,
    lockspace: h.lockspace,
    nodeid: h.nodeid,
    length: out.length,
    cmd: h.cmd,
  });
  out.set(body, DLM_HEADER_LEN);
  return out;
}
