/**
 * Loader and typed surface of the native addon. Everything the TypeScript layer may
 * call on the C++ side is declared here, and nowhere else.
 */
import fs from 'node:fs';
import path from 'node:path';
import load = require('node-gyp-build');
import { LoadError } from '../lib/errors';

/** Options as the native engine reads them (validated by lib/ first). */
export interface NativeOptions {
  nodeid: number;
  transport: 'tcp' | 'sctp';
  port: number;
  mark?: number;
  entryBytes: number;
  flush: { immediate: boolean; delayUs: number; minBytes: number };
  maxNodeBytes: number;
  maxRxPendingBytes: number;
  kernelMinimums: boolean;
  protocol: '3.1' | '3.2';
  /** A cluster key: the handshake with lowcomms peers ends with HMAC proofs. */
  auth: boolean;
  /** With auth: how records are protected after the handshake. */
  records?: 'encrypt' | 'integrity';
  tcpUserTimeoutMs: number;
  connectRetryMaxMs: number;
  ackDelayMs: number;
  sctp: NativeSctpTuning;
}

export interface NativeSctpTuning {
  rtoInitialMs: number;
  rtoMinMs: number;
  rtoMaxMs: number;
  heartbeatMs: number;
  pathMaxRetrans: number;
  pfRetrans: number;
  assocMaxRetrans: number;
  sndbuf: number;
  rcvbuf: number;
  sackDelayMs: number;
}

/** One event from a native thread. */
export interface NativeEvent {
  type: string;
  nodeid: number;
  detail: string;
  code: string;
  value: number;
}

export interface NativeNodeStats {
  nodeid: number;
  connected: boolean;
  txMsgs: number;
  txBytes: number;
  txSyscalls: number;
  rxMsgs: number;
  rxBytes: number;
  connects: number;
  disconnects: number;
  connectErrors: number;
  resent: number;
  badFrames: number;
  /** With auth: records from this node that failed authentication (each closed its connection). */
  badRecords: number;
  backpressure: number;
  acksSent: number;
  droppedUnacked: number;
  /** New incarnations of this peer seen (it restarted; its session started over). */
  restarts: number;
  /** 'desync' events emitted for this peer. */
  desyncReports: number;
  /** Acks from this peer below one it sent before (its state is not ours). */
  acksBackwards: number;
  /** A kernel DLM node: no lowcomms handshake, restarts are the membership layer's. */
  kernel: boolean;
  /** The peer's incarnation (16 hex digits) from its last handshake; zeros before one. */
  peerIncarnation: string;
  queuedBytes: number;
  heldBytes: number;
  unacked: number;
  seqSend: number;
  seqNext: number;
  version: '3.1' | '3.2' | 'unknown';
  state: string;
  dupDropped: number;
  gapDropped: number;
  versionMismatch: number;
  badVersion: number;
  skipped: number;
  nodeidMismatch: number;
  /** Sequenced frames dropped because the inner header named another node (seq used, acked). */
  innerNodeidMismatch: number;
  acksRcvd: number;
  badAcks: number;
  finsRcvd: number;
}

export interface NativeStats {
  rejected: number;
  accepts: number;
  authFailures: number;
  staleDropped: number;
  recordFailures: number;
  batches: number;
  rxPaused: number;
  rxPendingBytes: number;
  /** Our incarnation (16 hex digits), chosen at start(). */
  incarnation: string;
  nodes: NativeNodeStats[];
}

export interface NativeEngine {
  addNode(nodeid: number, addrs: readonly string[], mark?: number, kernel?: boolean): void;
  removeNode(nodeid: number): boolean;
  resetNode(nodeid: number): boolean;
  /** Binds and starts both threads; returns the bound port. Throws {code, errno}. */
  start(): number;
  /**
   * Moves a run of staged records (see lib/sender.ts) into the write queues. Returns 0,
   * -1 when not running, or what was dropped (unknown node, or node closing).
   */
  submit(records: Uint8Array, length: number): number | { dropped: number; nodeid: number };
  /** Queued + unacked bytes of a node; marks it backpressured if `wanted` more won't fit. */
  heldBytes(nodeid: number, wanted: number): number;
  /**
   * The application consumed batch `batchId` (`bytes` long): reading may resume, and its
   * messages may now be acknowledged to their senders.
   */
  release(batchId: number, bytes: number): void;
  beginClose(): void;
  /** FIN to one node; false if none was due (never talked to, or a 3.1 peer). */
  beginCloseNode(nodeid: number): boolean;
  /** No FIN handshake under way and nothing unacked (for all nodes, or one). */
  quiesced(nodeid?: number): boolean;
  stop(): void;
  stats(): NativeStats;
  ref(): void;
  unref(): void;
  killConnections(nodeid: number): void;
  /**
   * Test hook (auth): the next record sent to the node is altered, preceded by
   * a forged one, sent twice, dropped or swapped with the one after it. False when the
   * node is unknown or its records are not protected.
   */
  tamperRecords(nodeid: number, what: 'flip' | 'inject' | 'replay' | 'drop' | 'reorder'): boolean;
  /**
   * The answer to an 'auth' event: the nonce of ours it was computed for (a reply to an
   * earlier handshake is ignored), our PROOF and the one expected from the peer, and the
   * connection's two session keys (ours to seal, the peer's to open; 32 bytes each).
   */
  authReply(socketId: number, nonce: Uint8Array, proof: Uint8Array, expected: Uint8Array, txKey: Uint8Array, rxKey: Uint8Array): void;
}

export type BatchCallback = (data: Buffer, index: Uint32Array, batchId: number) => void;
export type EventCallback = (ev: NativeEvent) => void;

export interface NativeBinding {
  Engine: new (opts: NativeOptions, onBatch: BatchCallback, onEvent: EventCallback) => NativeEngine;
  limits: { maxSocketBufsize: number; maxAppBufsize: number; optsLen: number; headerLen: number };
  /** Whether this kernel can open an SCTP one-to-many socket of the given family. */
  sctpAvailable(family: 4 | 6): { ok: boolean; errno: number };
}

/** The package root, from binding/ (sources) or dist/binding/ (compiled). */
function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'CMakeLists.txt')))
      return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

let cached: NativeBinding | undefined;

export function loadBinding(): NativeBinding {
  if (cached) return cached;
  try {
    // LOWCOMMS_ADDON_PATH: a specific build, e.g. the sanitizer build (scripts/test-asan.sh).
    const override = process.env.LOWCOMMS_ADDON_PATH;
    cached = (override ? require(path.resolve(override)) : load(packageRoot())) as NativeBinding;
  } catch (err) {
    throw new LoadError(
      'the lowcomms native addon is not built for this platform: run `npm run build:native` ' +
        '(needs cmake and a C++ compiler) or install a package with prebuilds/',
      { cause: err },
    );
  }
  return cached;
}
