/**
 * Checks of what a JavaScript caller hands us, so that bad input gets a typed error at
 * the call and never reaches the staging buffer or the native layer (where a NaN length
 * or a truncated field would lose or corrupt other messages). docs/errors.md lists every
 * kind of bad input and the error it gets.
 */
import { DLM_MAX_SOCKET_BUFSIZE, DLM_MSG, DLM_RCOM } from './dlm';
import { ConfigError, MessageError } from './errors';

const MAX_U32 = 0xffffffff;
const EMPTY = new Uint8Array(0);

/** A value as it should appear in an error message. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof ArrayBuffer) return 'an ArrayBuffer';
  if (typeof v === 'string') return `the string '${v.length > 20 ? `${v.slice(0, 20)}...` : v}'`;
  if (typeof v === 'object') return `an object of type ${v.constructor?.name ?? 'Object'}`;
  return `${typeof v} ${String(v)}`;
}

/**
 * The bytes of a body: a Uint8Array (Buffer) as is; any other typed array or DataView as
 * the bytes it spans (a Uint16Array [0x1234] is the two bytes 34 12 on this little-endian
 * host), never element by element; a string as UTF-8.
 */
export function bodyBytes(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new MessageError(
    `${what} must be a string, a Buffer/Uint8Array or another typed array or DataView, got ${describe(v)}` +
      (v instanceof ArrayBuffer ? ' (wrap it: new Uint8Array(buffer))' : ''),
  );
}

/** An integer field of an outgoing message. */
function u32(v: unknown, what: string, max = MAX_U32): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new MessageError(`${what} must be an integer in 0..${max}, got ${describe(v)}`);
  return v;
}

/** An outgoing message taken apart: raw (a whole DLM message) or header fields + body. */
export interface CheckedMessage {
  raw: boolean;
  lockspace: number;
  cmd: number;
  body: Uint8Array;
}

const PARTS = new Set(['lockspace', 'cmd', 'body']);

/** The common shape of send()'s message, with nothing to convert or default. */
export interface PlainOutgoing {
  lockspace: number;
  cmd: typeof DLM_MSG | typeof DLM_RCOM;
  body: Uint8Array;
}

/**
 * send()'s hot path: true when `msg` is { lockspace: u32, cmd: DLM_MSG | DLM_RCOM, body:
 * Uint8Array }, which checkOutgoing would take as it is. Decides without allocating; every
 * other shape (and every error) goes through checkOutgoing, whose rules these are.
 */
export function isPlainOutgoing(msg: unknown): msg is PlainOutgoing {
  if (typeof msg !== 'object' || msg === null || msg instanceof Uint8Array) return false;
  const { lockspace, cmd, body } = msg as { lockspace?: unknown; cmd?: unknown; body?: unknown };
  return body instanceof Uint8Array && typeof lockspace === 'number' && lockspace >>> 0 === lockspace && (cmd === DLM_MSG || cmd === DLM_RCOM);
}

/**
 * What send() takes: bytes (a whole message, header included) or { lockspace, cmd, body }
 * with lockspace a u32, cmd DLM_MSG or DLM_RCOM (default DLM_MSG) and an optional body.
 * Everything else is a MessageError; nothing is converted silently.
 */
export function checkOutgoing(msg: unknown): CheckedMessage {
  if (msg instanceof Uint8Array) return { raw: true, lockspace: 0, cmd: 0, body: msg };
  if (typeof msg !== 'object' || msg === null)
    throw new MessageError(`send() takes a whole message (Uint8Array) or { lockspace, cmd, body }, got ${describe(msg)}`);
  const m = msg as { lockspace?: unknown; cmd?: unknown; body?: unknown };
  const b = m.body;
  // The hot path first: { lockspace, cmd, body } with bytes or a string. Arrays, buffers
  // and typed arrays have no body: they are told apart only below.
  if (b === undefined) {
    if (ArrayBuffer.isView(msg)) return { raw: true, lockspace: 0, cmd: 0, body: bodyBytes(msg, 'message') };
    if (Array.isArray(msg) || msg instanceof ArrayBuffer)
      throw new MessageError(`send() takes a whole message (Uint8Array) or { lockspace, cmd, body }, got ${describe(msg)}`);
    // An empty body is legal, but a misspelt one ({ data: ... }) must not send an empty message.
    for (const k of Object.keys(m))
      if (!PARTS.has(k)) throw new MessageError(`unknown message field '${k}' (expected lockspace, cmd, body)`);
  }
  const lockspace = m.lockspace === undefined ? 0 : u32(m.lockspace, 'lockspace');
  const cmd = m.cmd === undefined ? DLM_MSG : u32(m.cmd, 'cmd', 255);
  if (cmd !== DLM_MSG && cmd !== DLM_RCOM)
    throw new MessageError(`h_cmd ${cmd}: only DLM_MSG (1) and DLM_RCOM (2) carry application messages`);
  return { raw: false, lockspace, cmd, body: b === undefined ? EMPTY : bodyBytes(b, 'body') };
}

// ---------------------------------------------------------------------------------
// Options

function int(name: string, v: unknown, min: number, max: number, why = ''): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ConfigError(`${name} must be an integer in ${min}..${max}${why}, got ${describe(v)}`);
  return v;
}

function optInt(name: string, v: unknown, min: number, max: number, why = ''): void {
  if (v !== undefined) int(name, v, min, max, why);
}

function optObject(name: string, v: unknown): Record<string, unknown> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ConfigError(`${name} must be an object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

/** The largest frame on the wire: a limit below it would refuse every large send() forever. */
export const MIN_NODE_BYTES = DLM_MAX_SOCKET_BUFSIZE;
const MAX_MS = 0x7fffffff;

/**
 * The numeric and structural options the constructor did not check itself (the node
 * table, transport, batching and auth are checked where they are used).
 */
export function checkOptions(o: Record<string, unknown>): void {
  optInt('port', o.port, 1, 65535, ' (0 would bind a random port on every node: they never meet)');
  optInt('mark', o.mark, 0, MAX_U32);
  optInt('tcpUserTimeoutMs', o.tcpUserTimeoutMs, 0, MAX_MS, ' (0: the kernel default)');
  optInt('connectRetryMaxMs', o.connectRetryMaxMs, 1, MAX_MS);
  optInt('ackDelayMs', o.ackDelayMs, 0, MAX_MS);
  optObject('batching', o.batching);
  const limits = optObject('limits', o.limits);
  if (limits) {
    optInt('limits.maxNodeBytes', limits.maxNodeBytes, MIN_NODE_BYTES, Number.MAX_SAFE_INTEGER, ' (at least one whole frame)');
    optInt('limits.maxRxPendingBytes', limits.maxRxPendingBytes, DLM_MAX_SOCKET_BUFSIZE, Number.MAX_SAFE_INTEGER, ' (at least one whole frame)');
  }
  const sctp = optObject('sctp', o.sctp);
  if (sctp) {
    for (const k of ['rtoInitialMs', 'rtoMinMs', 'rtoMaxMs', 'heartbeatMs'] as const)
      optInt(`sctp.${k}`, sctp[k], 1, MAX_MS);
    for (const k of ['pathMaxRetrans', 'pfRetrans', 'assocMaxRetrans'] as const)
      optInt(`sctp.${k}`, sctp[k], 0, 65535);
    for (const k of ['sndbuf', 'rcvbuf'] as const) optInt(`sctp.${k}`, sctp[k], 4096, 0x7fffffff);
    optInt('sctp.sackDelayMs', sctp.sackDelayMs, 0, 500, ' (0: the kernel default; RFC 4960 caps it at 500)');
  }
}

/** `nodes` must be a NodeTable or an iterable of node objects (an array, usually). */
export function checkNodesOption(v: unknown): void {
  if (v === null || typeof v !== 'object' || typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function')
    throw new ConfigError(`nodes must be a NodeTable or an array of { nodeid, addrs }, got ${describe(v)}`);
}
