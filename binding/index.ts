/**
 * Loader and typed surface of the native addon. Everything the TypeScript layer may
 * call on the C++ side is declared here, and nowhere else.
 */
import fs from 'node:fs';
import path from 'node:path';
import load = require('node-gyp-build');

/** Options as the native engine reads them (validated by lib/ first). */
export interface NativeOptions {
  nodeid: number;
  transport: 'tcp' | 'sctp';
  port: number;
  mark?: number;
  entryBytes: number;
  flush: { immediate: boolean; delayUs: number; minBytes: number; direct: boolean };
  maxNodeBytes: number;
  maxRxPendingBytes: number;
  kernelMinimums: boolean;
  protocol: '3.1' | '3.2';
  /** A cluster key: the handshake with lowcomms peers ends with HMAC proofs. */
  auth: boolean;
  /** With auth: how records are protected after the handshake (ignored without auth). */
  records: 'encrypt' | 'integrity';
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
  /** Of txSyscalls, the writes made on the JS thread itself (batching.directWrite). */
  txDirect: number;
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
  /** Connections or associations refused because their address belongs to no node. */
  rejected: number;
  accepts: number;
  /** Connections refused because the peer failed the authentication handshake. */
  authFailures: number;
  /**
   * SCTP: messages still queued for an association we had just aborted (a kill, a bad
   * frame, a failed handshake) when we read them. Dropped: their sender resends them.
   */
  staleDropped: number;
  /** AEAD records (auth) that failed to open: the connection was closed each time. */
  recordFailures: number;
  /** Crossings into JavaScript (one per batch of messages). */
  batches: number;
  /** Times the receive thread stopped reading because the application fell behind. */
  rxPaused: number;
  rxPendingBytes: number;
  /** Our incarnation (16 hex digits), chosen at start(). */
  incarnation: string;
  nodes: NativeNodeStats[];
}

/**
 * The stats schema as data: the compiler holds these tables to exactly the keys of the
 * interfaces above, and test/schema.test.ts holds native/binding/addon.cc's stats() to
 * exactly these keys, so the three cannot drift apart.
 */
export const NATIVE_STATS_KEYS = Object.keys({
  rejected: 0, accepts: 0, authFailures: 0, recordFailures: 0, staleDropped: 0, batches: 0,
  rxPaused: 0, rxPendingBytes: 0, incarnation: 0, nodes: 0,
} satisfies Record<keyof NativeStats, 0>);
export const NATIVE_NODE_STATS_KEYS = Object.keys({
  nodeid: 0, connected: 0, txMsgs: 0, txBytes: 0, txSyscalls: 0, txDirect: 0, rxMsgs: 0, rxBytes: 0,
  connects: 0, disconnects: 0, connectErrors: 0, resent: 0, badFrames: 0, backpressure: 0,
  acksSent: 0, droppedUnacked: 0, badRecords: 0, restarts: 0, desyncReports: 0, acksBackwards: 0,
  kernel: 0, peerIncarnation: 0, queuedBytes: 0, heldBytes: 0, unacked: 0, seqSend: 0,
  seqNext: 0, version: 0, state: 0, dupDropped: 0, gapDropped: 0, versionMismatch: 0,
  badVersion: 0, skipped: 0, nodeidMismatch: 0, innerNodeidMismatch: 0, acksRcvd: 0,
  badAcks: 0, finsRcvd: 0,
} satisfies Record<keyof NativeNodeStats, 0>);

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

/** One corosync CPG group member (process) as a configuration change lists it. */
export interface NativeCpgMember {
  nodeid: number;
  pid: number;
  /** CPG_REASON_*: 1 join, 2 leave, 3 node down, 4 node up, 5 process down. */
  reason: number;
}

export type NativeMembershipEvent =
  | { type: 'confchg'; members: NativeCpgMember[]; left: NativeCpgMember[]; joined: NativeCpgMember[] }
  | { type: 'quorum'; quorate: boolean; ringSeq: number; view: number[] }
  | { type: 'lost'; error: string };

/** corosync's nodelist as cmap holds it. */
export interface NativeCorosyncNodelist {
  /** 0 when cmap does not say. */
  localNodeid: number;
  clusterName: string;
  /** totem.ip_version and totem.transport, '' when cmap has none. */
  ipVersion?: string;
  transport?: string;
  nodes: Array<{ nodeid: number; name: string; addrs: string[] }>;
}

/**
 * A CPG group membership followed by a dispatch thread (native/membership). The
 * constructor throws {code: 'ENOCOROSYNC'} when corosync's client libraries are not
 * installed; start() throws {code: 'ECOROSYNC', op, cs, csName} when corosync refuses.
 */
export interface NativeMembership {
  /** Joins the group; returns the local nodeid. */
  start(): number;
  /** Leaves the group and stops the thread; final. */
  stop(): void;
  quorate(): boolean;
  ref(): void;
  unref(): void;
}

export type BatchCallback = (data: Buffer, index: Uint32Array, batchId: number) => void;
export type EventCallback = (ev: NativeEvent) => void;

export interface NativeBinding {
  Engine: new (opts: NativeOptions, onBatch: BatchCallback, onEvent: EventCallback) => NativeEngine;
  /** Whether this kernel can open an SCTP one-to-many socket of the given family. */
  sctpAvailable(family: 4 | 6): { ok: boolean; errno: number };
  Membership: new (group: string, onEvent: (ev: NativeMembershipEvent) => void) => NativeMembership;
  /** Reads nodelist.node.* from a running corosync's cmap (throws like Membership). */
  corosyncNodelist(): NativeCorosyncNodelist;
  /** Whether libcpg.so.4, libcmap.so.4 and libquorum.so.5 load; `detail` says why not. */
  corosyncAvailable(): { ok: boolean; detail: string };
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
    // A plain Error: lib/native.ts wraps it in lib's LoadError (binding/ sits below lib).
    throw new Error(
      'the lowcomms native addon is not built for this platform: run `npm run build:native` ' +
        '(needs cmake and a C++ compiler) or install a package with prebuilds/',
      { cause: err },
    );
  }
  return cached;
}
