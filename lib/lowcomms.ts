/**
 * The public API: one Lowcomms instance per local node. It owns the node table and the
 * policy (transport choice, batching, limits) and hands received messages to the
 * application; every byte on the wire is produced and consumed by the native threads.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type NativeBinding,
  type NativeEngine,
  type NativeEvent,
  type NativeNodeStats,
  type NativeOptions,
  type NativeStats,
} from '../binding';
import { ClusterKey, type AuthOptions } from './authkey';
import { DLM_HEADER_LEN, DLM_MAX_APP_BUFSIZE, DLM_MSG, DLM_MSG_MIN_LEN, DLM_RCOM, DLM_RCOM_MIN_LEN } from './dlm';
import {
  AddressInUseError,
  ConfigError,
  CryptoUnavailableError,
  LowcommsError,
  MessageError,
  MessageSizeError,
  NativeError,
  PeerError,
  PermissionError,
  SctpUnavailableError,
  StateError,
  UnknownNodeError,
} from './errors';
import { MessageBatch, type DlmMessage } from './message';
import { OPTION_DEFAULTS as D } from './defaults';
import { native } from './native';
import { formatMetrics, type MetricsOptions } from './metrics';
import { NodeTable, type NodeConfig } from './nodetable';
import { Sender } from './sender';
import { checkNodesOption, checkOptions, checkOutgoing, isPlainOutgoing } from './validate';

export type TransportName = 'tcp' | 'sctp';

/** stats() before start(): every counter zero, no incarnation yet. */
const NO_STATS: NativeStats = {
  rejected: 0, accepts: 0, authFailures: 0, recordFailures: 0, staleDropped: 0, batches: 0,
  rxPaused: 0, rxPendingBytes: 0, incarnation: '', nodes: [],
};

/** How the send thread batches: flush at every wake-up, or wait a little to fill entries. */
export type FlushPolicy = 'immediate' | { delayUs: number; minBytes?: number };

export interface SctpOptions {
  /** Initial / minimum / maximum retransmission timeout (ms). Defaults 300 / 100 / 1000. */
  rtoInitialMs?: number;
  rtoMinMs?: number;
  rtoMaxMs?: number;
  /** Heartbeat interval per path (ms). Default 1000. */
  heartbeatMs?: number;
  /** Retransmissions before a path is declared unreachable. Default 2. */
  pathMaxRetrans?: number;
  /** Retransmissions before a path is "potentially failed" (traffic moves off it). Default 0. */
  pfRetrans?: number;
  /** Retransmissions before the whole association is declared lost. Default 10. */
  assocMaxRetrans?: number;
  /** SO_SNDBUF / SO_RCVBUF (Linux SCTP does not autotune). Default 4 MiB each. */
  sndbuf?: number;
  rcvbuf?: number;
  /** Delayed SACK time (ms); 0 keeps the kernel's. */
  sackDelayMs?: number;
}

export interface LowcommsOptions {
  /** Our own nodeid; it must be in `nodes` with the local address(es). */
  nodeid: number;
  /** Every node of the cluster, ourselves included. */
  nodes: NodeTable | Iterable<NodeConfig>;
  /** 'detect': SCTP when the kernel has it and some node has several addresses, else TCP. */
  transport?: TransportName | 'detect';
  /** Cluster port, the same on every node. Default 21064. */
  port?: number;
  /** SO_MARK for every socket (needs CAP_NET_ADMIN). */
  mark?: number;
  batching?: {
    /**
     * Write-queue entry size: messages are copied into entries of this size. Default 4096
     * (a page, as the kernel) for TCP; 65536 for SCTP, where an entry is one SCTP message.
     */
    entryBytes?: number;
    /** Default 'immediate'. */
    flush?: FlushPolicy;
    /**
     * With the 'immediate' policy on TCP: when a node's queue is empty and its socket
     * writable, the thread that calls send() writes the message itself at the end of the
     * tick (one non-blocking sendmsg) instead of waking the send thread, which saves a
     * thread wake-up per direction of a request/response. The send thread still owns
     * connecting, a full socket and everything one write did not take. Default true;
     * false keeps every socket syscall off the JS thread.
     */
    directWrite?: boolean;
  };
  limits?: {
    /** Queued plus unacked bytes per node; past it send() returns false. Default 16 MiB. */
    maxNodeBytes?: number;
    /** Delivered to the application and not yet consumed; past it reading stops. Default 8 MiB. */
    maxRxPendingBytes?: number;
  };
  /**
   * Enforce the kernel's minimum sizes of DLM_MSG (88) and DLM_RCOM (48): on receive a
   * shorter message is skipped, and send() refuses one (MessageSizeError), since a kernel
   * receiver would skip it too. Set it when kernel DLM nodes are in the cluster.
   */
  kernelMinimums?: boolean;
  /**
   * '3.2' (default): midcomms, sequence numbers, acks, resend after reconnect, FIN.
   * '3.1': the old protocol, for clusters of 3.1 peers: no wrapper, and messages in
   * flight when a connection drops are lost.
   */
  protocol?: '3.1' | '3.2';
  /**
   * Peer authentication (beyond the kernel, so off by default: kernel DLM peers cannot
   * do it). Every node holds the same key; when a connection comes up, both sides prove
   * it with HMAC-SHA256 over both nodeids and fresh nonces before any message is read or
   * sent. A peer without the key is refused and counted (stats().authFailures). With
   * SCTP every association runs the handshake; DLM data on an association that has not
   * passed it is refused. The key is 32 or more random bytes ({ key: fs.readFileSync(FILE) }
   * after `lowcomms keygen FILE`), or a passphrase stretched with scrypt ({ passphrase,
   * salt }, derived in start()); anything weaker is a ConfigError (see lib/authkey.ts).
   * After the handshake the whole session is protected: every record either way is
   * sealed with AES-256-GCM under keys of that connection alone (`records: 'encrypt'`,
   * the default, or `'integrity'`: authenticated but readable); a record altered,
   * injected, replayed, reordered or dropped on the way closes the connection and is
   * counted (stats().recordFailures). Needs OpenSSL 3's libcrypto, which Node itself
   * exports (CryptoUnavailableError otherwise). Wire format: docs/protocol.md.
   */
  auth?: AuthOptions;
  /**
   * What the other nodes run. 'lowcomms' (default): every connection with another
   * lowcomms node starts with a short handshake that carries each side's incarnation, so
   * that a peer that restarted is recognised and its session starts over on both sides
   * (see "When a node restarts" in the README). 'kernel': every other node is a kernel
   * DLM node, spoken to in pure DLM; in a mixed cluster mark the kernel nodes with
   * `kernel: true` in the node table instead. Kernel peers cannot take part in the
   * handshake: the membership layer must call resetNode() when one rejoins.
   */
  peers?: 'lowcomms' | 'kernel';
  /** TCP_USER_TIMEOUT: a peer that acks nothing for this long is dead. Default 10000. */
  tcpUserTimeoutMs?: number;
  /** Reconnect backoff cap (the kernel retries every second). Default 1000. */
  connectRetryMaxMs?: number;
  /** An ACK goes out after this long without traffic, if any delivery is unacked. Default 20. */
  ackDelayMs?: number;
  sctp?: SctpOptions;
}

/**
 * What send() takes: a whole DLM message, or the parts to build one from. A typed array
 * other than Uint8Array, or a DataView, stands for the bytes it spans (never converted
 * element by element); a string is sent as UTF-8. Anything else is a MessageError.
 */
export type OutgoingMessage =
  | ArrayBufferView
  | { lockspace?: number; cmd?: number; body?: ArrayBufferView | string };

export interface NodeStats extends NativeNodeStats {}

/** SCTP: a peer address (path) and the kernel's last report on it (the 'path' event). */
export interface PathStats {
  nodeid: number;
  address: string;
  /** available, unreachable, potentially_failed, added, confirmed or primary. */
  state: string;
}

/** The native engine's counters (binding/index.ts NativeStats: one schema), and ours. */
export interface LowcommsStats extends Omit<NativeStats, 'nodes'> {
  nodeid: number;
  transport: TransportName;
  /** Every other node (never ourselves). */
  nodes: NodeStats[];
  /** SCTP: every path the kernel reported on, with its last state (empty for TCP). */
  paths: PathStats[];
}

export interface CloseOptions {
  /** Finish the FIN handshake with every node first (all sent messages acked). Default true. */
  flush?: boolean;
  /** Give up flushing after this long. Default 5000 (the kernel's shutdown timeout). */
  timeoutMs?: number;
}

export interface CloseResult {
  /** True when every node finished its handshake (or had nothing outstanding). */
  flushed: boolean;
  /** Messages still unacked at close, per nodeid (dropped). */
  unacked: Record<number, number>;
}

export interface LowcommsEvents {
  connect: [{ nodeid: number; address: string; resent: number }];
  /**
   * The link to a node went down; `errno` 0 when the peer closed it in order (`reason`
   * 'closed by peer'). lowcomms reconnects by itself.
   */
  disconnect: [{ nodeid: number; reason: string; errno: number }];
  /**
   * The first attempt to reach a node failed because it is not up yet (refused,
   * unreachable, timed out): normal while a cluster starts. lowcomms keeps retrying
   * (stats().nodes[].connectErrors counts the attempts); 'connect' follows when it is up.
   */
  connecting: [{ nodeid: number; reason: string; errno: number }];
  reject: [{ address: string; nodeid?: number; reason?: string }];
  error: [LowcommsError];
  drain: [{ nodeid: number }];
  closed: [{ nodeid: number }];
  /**
   * Messages that were not delivered and never will be: `reason` 'removed' (removeNode),
   * 'reset' (resetNode), 'closing' (sent to a node in its FIN handshake) or 'restart'
   * (sent to a peer's previous session and never acknowledged by it: the peer restarted,
   * or reset or removed and re-added us; some may have reached its application first).
   */
  dropped: [{ nodeid: number; count: number; reason: string }];
  /**
   * A peer restarted (a new incarnation; also when it called resetNode() on us, or
   * removeNode() and addNode()): its session started over on both sides before
   * any message of the new one was read. `dropped` messages sent to the old incarnation
   * were never acknowledged (also reported by a 'dropped' event); messages queued but not
   * yet sent go to the new incarnation.
   */
  restart: [{ nodeid: number; previous: string; incarnation: string; dropped: number }];
  /**
   * A peer's frames keep being dropped as duplicates or gaps, or its acks went backwards:
   * its protocol state is not ours (typically a kernel DLM node that restarted and was
   * not reset). Rate-limited; `message` says what to do (usually resetNode(nodeid)).
   */
  desync: [{ nodeid: number; reason: 'duplicates' | 'gaps' | 'acks_backwards'; count: number; message: string }];
  assoc: [{ nodeid: number; state: string; address: string }];
  path: [{ nodeid: number; address: string; state: string }];
  close: [];
}

type MessageHandler = (msg: DlmMessage) => void;
type BatchHandler = (batch: MessageBatch) => void;

/** The largest body send() takes with { lockspace, cmd, body }: the header is added to it. */
const MAX_BODY = DLM_MAX_APP_BUFSIZE - DLM_HEADER_LEN;

const AUTH_LABEL = 'lowcomms-auth-v2';
/** HKDF info label of the session keys (docs/protocol.md). */
const RECORD_LABEL = 'lowcomms-record-v1';

function positiveInt(name: string, v: unknown, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new ConfigError(`${name} must be an integer in 0..${max}, got ${String(v)}`);
  return v;
}

export class Lowcomms extends EventEmitter<LowcommsEvents> {
  readonly nodeid: number;
  readonly nodes: NodeTable;
  private readonly opts: LowcommsOptions;
  private transportName: TransportName | undefined;
  private engine: NativeEngine | undefined;
  private sender: Sender | undefined;
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private readonly messageHandlers: MessageHandler[] = [];
  private readonly batchHandlers: BatchHandler[] = [];
  private readonly iterators = new Set<BatchQueue>();
  /** Iterators still holding each batch; the batch's bytes are released at zero. */
  private readonly holds = new WeakMap<MessageBatch, number>();
  /**
   * The native id of each batch: releasing it tells the native side the application has
   * consumed its messages, and only then are they acknowledged to their senders.
   */
  private readonly batchIds = new WeakMap<MessageBatch, number>();
  private boundPort = 0;
  private readonly clusterKey: ClusterKey | undefined;
  /** The key's bytes, once start() has them (a passphrase is stretched there). */
  private authKey: Buffer | undefined;
  private readonly kernelMinimums: boolean;
  /** The last nodeid send() found in the table (and not ourselves), at this table revision. */
  private checkedDest = -1;
  private checkedDestRevision = -1;
  /** SCTP path states from 'path' events, by "nodeid address". */
  private readonly paths = new Map<string, PathStats>();

  constructor(opts: LowcommsOptions) {
    super();
    if (!opts || typeof opts !== 'object') throw new ConfigError('options object required');
    this.nodeid = positiveInt('nodeid', opts.nodeid);
    checkOptions(opts as unknown as Record<string, unknown>);
    if (!(opts.nodes instanceof NodeTable)) checkNodesOption(opts.nodes);
    this.nodes = opts.nodes instanceof NodeTable ? opts.nodes : new NodeTable(opts.nodes);
    if (!this.nodes.has(this.nodeid))
      throw new ConfigError(`local nodeid ${this.nodeid} is not in the node table`);
    if (opts.auth !== undefined) {
      this.clusterKey = ClusterKey.from(opts.auth);
      this.authKey = this.clusterKey.key; // undefined for a passphrase: start() stretches it
    }
    if (opts.kernelMinimums !== undefined && typeof opts.kernelMinimums !== 'boolean')
      throw new ConfigError('kernelMinimums must be a boolean');
    this.kernelMinimums = opts.kernelMinimums ?? false;
    if (opts.protocol !== undefined && opts.protocol !== '3.1' && opts.protocol !== '3.2')
      throw new ConfigError(`protocol must be '3.1' or '3.2', got ${String(opts.protocol)}`);
    if (opts.peers !== undefined && opts.peers !== 'lowcomms' && opts.peers !== 'kernel')
      throw new ConfigError(`peers must be 'lowcomms' or 'kernel', got ${String(opts.peers)}`);
    if (this.clusterKey && (opts.peers === 'kernel' || [...this.nodes].some((n) => n.kernel && n.nodeid !== this.nodeid)))
      throw new ConfigError('auth cannot be used with kernel DLM peers: they cannot take part in the handshake');
    const t = opts.transport ?? 'tcp';
    if (t !== 'tcp' && t !== 'sctp' && t !== 'detect')
      throw new ConfigError(`transport must be 'tcp', 'sctp' or 'detect', got ${String(t)}`);
    const eb = opts.batching?.entryBytes;
    if (eb !== undefined && (positiveInt('batching.entryBytes', eb) < 4096 || eb > 1 << 20))
      throw new ConfigError('batching.entryBytes must be 4096..1048576 (an entry holds the largest message)');
    const dw = opts.batching?.directWrite;
    if (dw !== undefined && typeof dw !== 'boolean') throw new ConfigError(`batching.directWrite must be a boolean, got ${typeof dw}`);
    const f = opts.batching?.flush;
    if (f !== undefined && f !== 'immediate') {
      if (typeof f !== 'object') throw new ConfigError("batching.flush must be 'immediate' or { delayUs, minBytes }");
      positiveInt('batching.flush.delayUs', f.delayUs, 10_000_000);
      if (f.minBytes !== undefined) positiveInt('batching.flush.minBytes', f.minBytes);
    }
    this.opts = opts;
    if (t === 'tcp' && this.nodes.require(this.nodeid).addrs.length > 1)
      throw new ConfigError(
        `TCP can't handle multi-homed hosts: node ${this.nodeid} has several addresses; use transport 'sctp'`,
      );
  }

  /** The transport in use ('detect' is resolved by start()). */
  get transport(): TransportName | undefined {
    return this.transportName;
  }

  /** The cluster port the listen socket is bound to (after start()). */
  get port(): number {
    return this.boundPort;
  }

  /** Called once per received message, in order per sending node. Returns an unsubscribe. */
  onMessage(handler: MessageHandler): () => void {
    this.messageHandlers.push(handler);
    return () => remove(this.messageHandlers, handler);
  }

  /** Called once per batch: the fast path (no object per message unless asked for). */
  onBatch(handler: BatchHandler): () => void {
    this.batchHandlers.push(handler);
    return () => remove(this.batchHandlers, handler);
  }

  /**
   * Received messages as an async iterator. Batches wait here until consumed, and
   * they count against limits.maxRxPendingBytes: a slow consumer slows the senders.
   */
  messages(): AsyncIterableIterator<DlmMessage> {
    const q = new BatchQueue((b) => this.batchDone(b), () => this.iterators.delete(q));
    this.iterators.add(q);
    if (this.state === 'closed') q.end();
    return q;
  }

  /** Opens the listen socket and starts the send and receive threads. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new StateError(`start() called in state '${this.state}'`);
    this.state = 'starting';
    try {
      if (this.clusterKey && !this.authKey) {
        this.authKey = await this.clusterKey.bytes();
        if (this.state !== 'starting') throw new StateError('close() was called while start() derived the auth key');
      }
      const binding = native();
      const transport = this.resolveTransport(binding);
      this.transportName = transport;
      const engine = new binding.Engine(
        this.nativeOptions(transport),
        (data, index, id) => this.dispatch(data, index, id),
        (ev) => this.onNativeEvent(ev),
      );
      for (const n of this.nodes) engine.addNode(n.nodeid, n.addrs, n.mark, this.isKernel(n));
      try {
        this.boundPort = engine.start();
      } catch (err) {
        engine.stop();
        throw mapStartError(err, transport);
      }
      this.engine = engine;
      this.sender = new Sender(engine, this.opts.limits?.maxNodeBytes ?? 16 << 20, (nodeid, count) =>
        this.emit('dropped', { nodeid, count, reason: 'closing' }),
      );
      this.state = 'running';
    } catch (err) {
      if (this.state === 'starting') this.state = 'new';
      throw err;
    }
  }

  /**
   * Queues a message for `nodeid` and returns at once; it never does socket I/O.
   * Returns false when the node's queue is over limits.maxNodeBytes (nothing was
   * queued: retry after its 'drain' event). Throws for an unknown node or a message
   * outside the size limits. A message to a node that is in its closing (FIN)
   * handshake is dropped and reported by a 'dropped' event.
   */
  send(nodeid: number, msg: OutgoingMessage): boolean {
    const sender = this.sender;
    if (sender === undefined || this.state !== 'running')
      throw new StateError(`send() before start() or after close() (state '${this.state}')`);
    // Streams go to one node at a time: its check is remembered until the table changes.
    if (nodeid !== this.checkedDest || this.nodes.revision !== this.checkedDestRevision) this.checkDest(nodeid);
    // The common shape needs no CheckedMessage per message (validate.ts keeps both rules).
    if (isPlainOutgoing(msg) && msg.body.length <= MAX_BODY && !this.kernelMinimums)
      return sender.stage(nodeid, msg.lockspace, msg.cmd, msg.body, false);
    const m = checkOutgoing(msg);
    if (m.raw) {
      const raw = m.body;
      if (raw.length < DLM_HEADER_LEN || raw.length > DLM_MAX_APP_BUFSIZE)
        throw new MessageSizeError(raw.length, DLM_MAX_APP_BUFSIZE);
      const hlen = raw[12]! | (raw[13]! << 8);
      if (hlen !== raw.length)
        throw new MessageError(`raw message h_length ${hlen} does not match its ${raw.length} bytes`);
      checkCmd(raw[14]!);
      if (this.kernelMinimums) checkKernelMinimum(raw[14]!, raw.length);
      return sender.stage(nodeid, 0, 0, raw, true);
    }
    const body = m.body;
    if (DLM_HEADER_LEN + body.length > DLM_MAX_APP_BUFSIZE)
      throw new MessageSizeError(DLM_HEADER_LEN + body.length, DLM_MAX_APP_BUFSIZE);
    if (this.kernelMinimums) checkKernelMinimum(m.cmd, DLM_HEADER_LEN + body.length);
    return sender.stage(nodeid, m.lockspace, m.cmd, body, false);
  }

  /** send()'s destination checks; remembers a node that passed them. */
  private checkDest(nodeid: number): void {
    if (nodeid === this.nodeid) throw new ConfigError('cannot send to our own nodeid');
    if (!this.nodes.has(nodeid)) throw new UnknownNodeError(nodeid);
    this.checkedDest = nodeid;
    this.checkedDestRevision = this.nodes.revision;
  }

  /**
   * Hands what send() staged to the native layer now (it happens at the end of each tick
   * anyway). With batching.directWrite (the default, TCP), an idle node's messages are
   * written here with one non-blocking sendmsg; it never waits.
   */
  flush(): void {
    this.sender?.flush();
  }

  /** Adds a node (or replaces its addresses) while running. */
  addNode(node: NodeConfig): void {
    const existing = this.nodes.get(node.nodeid);
    if (existing) this.nodes.remove(node.nodeid);
    try {
      this.nodes.add(node);
    } catch (err) {
      if (existing) this.nodes.add(existing);
      throw err;
    }
    const n = this.nodes.require(node.nodeid);
    if (this.clusterKey && this.isKernel(n)) {
      this.nodes.remove(n.nodeid);
      if (existing) this.nodes.add(existing);
      throw new ConfigError(`node ${n.nodeid}: auth cannot be used with kernel DLM peers`);
    }
    this.sender?.flush();
    try {
      this.engine?.addNode(n.nodeid, n.addrs, n.mark, this.isKernel(n));
    } catch (err) {
      // Refused (a mark without CAP_NET_ADMIN): the table goes back to what it was.
      this.nodes.remove(node.nodeid);
      if (existing) this.nodes.add(existing);
      throw mapStartError(err, this.transportName ?? 'tcp');
    }
  }

  /**
   * Removes a node (fenced, or gone from the cluster): its sockets close and its
   * queued and unacked messages are dropped, reported by a 'dropped' event. Added again
   * later, it starts a new session: a lowcomms peer sees a new incarnation of ours.
   */
  removeNode(nodeid: number): boolean {
    if (nodeid === this.nodeid) throw new ConfigError('cannot remove the local node');
    this.sender?.flush();
    const had = this.nodes.remove(nodeid);
    this.engine?.removeNode(nodeid);
    this.sender?.forget(nodeid);
    for (const [k, p] of this.paths) if (p.nodeid === nodeid) this.paths.delete(k);
    return had;
  }

  /**
   * Orderly leave of one node: the FIN handshake with it (so everything sent to it is
   * acked), then removeNode(). After `timeoutMs` the node is removed anyway (the forced
   * path for a dead or fenced node); what was still unacked is reported.
   */
  async closeNode(nodeid: number, opts: { timeoutMs?: number } = {}): Promise<CloseResult> {
    if (nodeid === this.nodeid) throw new ConfigError('cannot close the local node; use close()');
    if (!this.nodes.has(nodeid)) throw new UnknownNodeError(nodeid);
    const engine = this.engine;
    let flushed = true;
    const unacked: Record<number, number> = {};
    if (engine) {
      this.sender?.flush();
      engine.beginCloseNode(nodeid);
      const deadline = Date.now() + (opts.timeoutMs ?? 5000);
      while (!engine.quiesced(nodeid) && Date.now() < deadline) await sleep(5);
      const n = engine.stats().nodes.find((s) => s.nodeid === nodeid);
      if (n && n.unacked > 0) unacked[nodeid] = n.unacked;
      flushed = engine.quiesced(nodeid) && !unacked[nodeid];
    }
    if (this.nodes.has(nodeid)) this.removeNode(nodeid);
    return { flushed, unacked };
  }

  /**
   * Forgets a peer's protocol state (sequence numbers, unacked messages) and starts over
   * with it on fresh connections: what a membership manager does when a node restarted
   * without a clean close. Dropped messages are reported by a 'dropped' event. Between
   * lowcomms nodes a restart is found by the handshake and this is not needed; if it is
   * called anyway, the peer is shown a new incarnation of ours on the next connection and
   * starts its side over too (it sees a 'restart' of this node).
   */
  resetNode(nodeid: number): boolean {
    if (!this.nodes.has(nodeid)) throw new UnknownNodeError(nodeid);
    this.sender?.flush();
    const r = this.engine?.resetNode(nodeid) ?? false;
    this.sender?.forget(nodeid);
    return r;
  }

  stats(): LowcommsStats {
    this.sender?.flush();
    const { nodes, ...counters } = this.engine?.stats() ?? NO_STATS;
    return {
      nodeid: this.nodeid,
      transport: this.transportName ?? 'tcp',
      ...counters,
      nodes: nodes.filter((n) => n.nodeid !== this.nodeid),
      paths: [...this.paths.values()].map((p) => ({ ...p })),
    };
  }

  /**
   * stats() in the Prometheus text exposition format, for a /metrics endpoint (serve it
   * as METRICS_CONTENT_TYPE). To add the metrics to prom-client instead: registerMetrics().
   */
  metrics(opts?: MetricsOptions): string {
    return formatMetrics(this.stats(), opts);
  }

  /**
   * Fault injection (tests, failover drills): aborts every connection with `nodeid` as a
   * network failure would (TCP: RST; SCTP: ABORT of the association). Midcomms then
   * reconnects and resends what was unacked; nothing is lost or duplicated.
   */
  killConnections(nodeid: number): void {
    if (!this.nodes.has(nodeid)) throw new UnknownNodeError(nodeid);
    this.sender?.flush();
    this.engine?.killConnections(nodeid);
  }

  /** Lets the process exit while this instance is open (like socket.unref()). */
  unref(): this {
    this.engine?.unref();
    return this;
  }

  ref(): this {
    this.engine?.ref();
    return this;
  }

  /**
   * Closes: by default runs the FIN handshake with every node (so every message sent
   * before close() is acked), then joins both threads and closes every socket.
   */
  async close(opts: CloseOptions = {}): Promise<CloseResult> {
    if (this.state === 'closed') return { flushed: true, unacked: {} };
    if (this.state === 'closing') throw new StateError('close() already under way');
    const engine = this.engine;
    this.sender?.flush();
    this.state = 'closing';
    let flushed = true;
    const unacked: Record<number, number> = {};
    if (engine) {
      if (opts.flush ?? true) {
        engine.beginClose();
        const deadline = Date.now() + (opts.timeoutMs ?? 5000);
        while (!engine.quiesced() && Date.now() < deadline) await sleep(5);
        flushed = engine.quiesced();
      }
      for (const n of engine.stats().nodes) if (n.unacked > 0) unacked[n.nodeid] = n.unacked;
      if (Object.keys(unacked).length) flushed = false;
      engine.stop();
      // Batches queued before stop() arrive through the event loop: let them land.
      await new Promise<void>((r) => setImmediate(r));
    }
    this.engine = undefined;
    this.sender = undefined;
    this.state = 'closed';
    for (const q of this.iterators) q.end();
    this.emit('close');
    return { flushed, unacked };
  }

  private isKernel(n: Readonly<NodeConfig>): boolean {
    return this.opts.peers === 'kernel' || n.kernel === true;
  }

  /**
   * The peer's HELLO arrived on a connection: compute our PROOF and the one we expect,
   * HMAC-SHA256(key, label | nodeid of the prover | nodeid of the verifier | prover's
   * incarnation | verifier's incarnation | verifier's nonce | prover's nonce), so that
   * a proof is bound to this connection's two nonces and to both incarnations.
   */
  private answerAuth(ev: NativeEvent): void {
    const key = this.authKey;
    if (!key || !this.engine) return;
    const [mine, theirs, myInc, theirInc] = ev.detail.split(':').map((h) => Buffer.from(h, 'hex'));
    const mac = (prover: number, verifier: number, proverInc: Buffer, verifierInc: Buffer, verifierNonce: Buffer, proverNonce: Buffer) => {
      const ids = Buffer.alloc(8);
      ids.writeUInt32LE(prover, 0);
      ids.writeUInt32LE(verifier, 4);
      return createHmac('sha256', key)
        .update(AUTH_LABEL)
        .update(ids)
        .update(proverInc)
        .update(verifierInc)
        .update(verifierNonce)
        .update(proverNonce)
        .digest();
    };
    // The session key of the direction sender -> receiver: HKDF-SHA256(key, salt = the two
    // nonces, info = label | mode | sender | receiver | their incarnations). Sender first,
    // so each direction has its own key (a record reflected back does not open).
    const mode = this.clusterKey?.records ?? 'encrypt';
    const sessionKey = (sender: number, receiver: number, senderInc: Buffer, receiverInc: Buffer, senderNonce: Buffer, receiverNonce: Buffer) => {
      const ids = Buffer.alloc(8);
      ids.writeUInt32LE(sender, 0);
      ids.writeUInt32LE(receiver, 4);
      const info = Buffer.concat([Buffer.from(`${RECORD_LABEL}:${mode}:`), ids, senderInc, receiverInc]);
      return Buffer.from(hkdfSync('sha256', key, Buffer.concat([senderNonce, receiverNonce]), info, 32));
    };
    this.engine.authReply(
      ev.value,
      mine!,
      mac(this.nodeid, ev.nodeid, myInc!, theirInc!, theirs!, mine!),
      mac(ev.nodeid, this.nodeid, theirInc!, myInc!, mine!, theirs!),
      sessionKey(this.nodeid, ev.nodeid, myInc!, theirInc!, mine!, theirs!),
      sessionKey(ev.nodeid, this.nodeid, theirInc!, myInc!, theirs!, mine!),
    );
  }

  private resolveTransport(binding: NativeBinding): TransportName {
    const want = this.opts.transport ?? 'tcp';
    const family = this.nodes.family ?? 4;
    if (want === 'tcp') return 'tcp';
    const probe = binding.sctpAvailable(family);
    if (want === 'sctp') {
      if (!probe.ok) throw new SctpUnavailableError(`socket() failed with errno ${probe.errno}`);
      return 'sctp';
    }
    const multihomed = [...this.nodes].some((n) => n.addrs.length > 1);
    return probe.ok && multihomed ? 'sctp' : 'tcp';
  }

  private nativeOptions(transport: TransportName): NativeOptions {
    const o = this.opts;
    const f = o.batching?.flush ?? 'immediate';
    const s = o.sctp ?? {};
    const sctp: Required<SctpOptions> = { ...D.sctp };
    for (const k of Object.keys(sctp) as Array<keyof SctpOptions>) sctp[k] = s[k] ?? sctp[k];
    return {
      nodeid: this.nodeid,
      transport,
      port: o.port ?? D.port,
      ...(o.mark !== undefined ? { mark: o.mark } : {}),
      // SCTP: an entry is one SCTP message; 64 KiB of whole DLM messages per message
      // costs the SCTP stack 16x fewer messages than a page (measured: 0.3x -> 0.8x TCP).
      entryBytes: o.batching?.entryBytes ?? (transport === 'sctp' ? D.entryBytesSctp : D.entryBytesTcp),
      flush:
        f === 'immediate'
          ? { immediate: true, delayUs: 0, minBytes: 0, direct: o.batching?.directWrite ?? D.directWrite }
          : { immediate: false, delayUs: f.delayUs, minBytes: f.minBytes ?? 0xffffffff, direct: false },
      maxNodeBytes: o.limits?.maxNodeBytes ?? D.maxNodeBytes,
      maxRxPendingBytes: o.limits?.maxRxPendingBytes ?? D.maxRxPendingBytes,
      kernelMinimums: o.kernelMinimums ?? false,
      protocol: o.protocol ?? D.protocol,
      auth: this.clusterKey !== undefined,
      // Sent with or without auth (the binding takes no optional keys); used only with it.
      records: this.clusterKey?.records ?? D.records,
      tcpUserTimeoutMs: o.tcpUserTimeoutMs ?? D.tcpUserTimeoutMs,
      connectRetryMaxMs: o.connectRetryMaxMs ?? D.connectRetryMaxMs,
      ackDelayMs: o.ackDelayMs ?? D.ackDelayMs,
      sctp,
    };
  }

  /**
   * One crossing from the receive thread: hand the batch to every consumer. A handler
   * that throws does not stop the batch: every other handler, and the rest of the batch,
   * still get their messages (the native side counted them as delivered and acks them).
   * Each error is then rethrown on its own on the next tick, outside our frames, so that
   * it surfaces as an uncaught exception ('uncaughtException', or the process exits), as
   * a throwing 'data' listener of a node:net socket does.
   */
  private dispatch(data: Buffer, index: Uint32Array, id: number): void {
    const batch = new MessageBatch(data, index);
    this.batchIds.set(batch, id);
    let held = 0;
    let errors: unknown[] | undefined;
    try {
      for (const h of this.batchHandlers) {
        try {
          h(batch);
        } catch (err) {
          (errors ??= []).push(err);
        }
      }
      if (this.messageHandlers.length) {
        for (let i = 0; i < batch.length; i++) {
          const m = batch.message(i);
          for (const h of this.messageHandlers) {
            try {
              h(m);
            } catch (err) {
              (errors ??= []).push(err);
            }
          }
        }
      }
      for (const q of this.iterators) if (q.push(batch)) held++;
    } finally {
      // Iterators release when they are done with the batch; otherwise it is done now.
      if (held) this.holds.set(batch, held);
      else this.engine?.release(id, data.length);
      if (errors) for (const err of errors) process.nextTick(rethrow, err);
    }
  }

  private batchDone(batch: MessageBatch): void {
    const left = (this.holds.get(batch) ?? 1) - 1;
    if (left > 0) {
      this.holds.set(batch, left);
      return;
    }
    this.holds.delete(batch);
    this.engine?.release(this.batchIds.get(batch) ?? 0, batch.data.length);
  }

  private onNativeEvent(ev: NativeEvent): void {
    switch (ev.type) {
      case 'auth':
        this.answerAuth(ev);
        return;
      case 'connect':
        this.emit('connect', { nodeid: ev.nodeid, address: ev.detail, resent: ev.value });
        return;
      case 'disconnect':
        this.emit('disconnect', { nodeid: ev.nodeid, reason: ev.detail, errno: ev.value });
        return;
      case 'connecting':
        this.emit('connecting', { nodeid: ev.nodeid, reason: ev.detail, errno: ev.value });
        return;
      case 'reject':
        // An unknown address, or (code 'auth') a known node that failed authentication, or
        // (code 'record') a record of an authenticated connection that failed it.
        this.emit(
          'reject',
          ev.code === 'auth' || ev.code === 'record' ? { address: '', nodeid: ev.nodeid, reason: ev.detail } : { address: ev.detail },
        );
        return;
      case 'drain':
        this.emit('drain', { nodeid: ev.nodeid });
        return;
      case 'closed':
        this.emit('closed', { nodeid: ev.nodeid });
        return;
      case 'dropped':
        this.emit('dropped', { nodeid: ev.nodeid, count: ev.value, reason: ev.code });
        return;
      case 'restart': {
        const [previous = '', incarnation = ''] = ev.detail.split(':');
        // Messages staged for the old incarnation were handed to the native layer already.
        this.sender?.forget(ev.nodeid);
        this.emit('restart', { nodeid: ev.nodeid, previous, incarnation, dropped: ev.value });
        return;
      }
      case 'desync':
        this.emit('desync', {
          nodeid: ev.nodeid,
          reason: ev.code as 'duplicates' | 'gaps' | 'acks_backwards',
          count: ev.value,
          message: ev.detail,
        });
        return;
      case 'assoc':
        this.emit('assoc', { nodeid: ev.nodeid, state: ev.code, address: ev.detail });
        return;
      case 'path':
        if (ev.nodeid !== 0) {
          const key = `${ev.nodeid} ${ev.detail}`;
          if (ev.code === 'removed') this.paths.delete(key);
          else this.paths.set(key, { nodeid: ev.nodeid, address: ev.detail, state: ev.code });
        }
        this.emit('path', { nodeid: ev.nodeid, address: ev.detail, state: ev.code });
        return;
      case 'error': {
        // 'error' is informational here: a peer's fault must never crash the process,
        // so it is emitted only to listeners that asked for it.
        if (this.listenerCount('error') === 0) return;
        const err =
          ev.code === 'bad_frame' || ev.code === 'peer_state'
            ? new PeerError(ev.nodeid, `node ${ev.nodeid}: ${ev.detail}`, ev.code)
            : new NativeError(`node ${ev.nodeid}: ${ev.detail}`, ev.value);
        this.emit('error', err);
        return;
      }
    }
  }
}

/** Async-iterator queue of batches; each batch is released when fully consumed. */
class BatchQueue implements AsyncIterableIterator<DlmMessage> {
  private readonly batches: MessageBatch[] = [];
  private pos = 0;
  private waiter: ((r: IteratorResult<DlmMessage>) => void) | undefined;
  private done = false;

  constructor(
    private readonly release: (batch: MessageBatch) => void,
    private readonly detach: () => void,
  ) {}

  /** Returns true if the batch is held (released later). */
  push(b: MessageBatch): boolean {
    if (this.done || b.length === 0) return false;
    this.batches.push(b);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(this.take()!);
    }
    return true;
  }

  end(): void {
    this.done = true;
    if (this.waiter && this.batches.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  private take(): IteratorResult<DlmMessage> | undefined {
    const b = this.batches[0];
    if (!b) return undefined;
    const msg = b.message(this.pos++);
    if (this.pos >= b.length) {
      this.batches.shift();
      this.pos = 0;
      this.release(b);
    }
    return { value: msg, done: false };
  }

  next(): Promise<IteratorResult<DlmMessage>> {
    const r = this.take();
    if (r) return Promise.resolve(r);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  return(): Promise<IteratorResult<DlmMessage>> {
    this.done = true;
    for (const b of this.batches) this.release(b);
    this.batches.length = 0;
    this.detach();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** The receive rules (docs/protocol.md) deliver DLM_MSG and DLM_RCOM only. */
function checkCmd(cmd: number): void {
  if (cmd !== DLM_MSG && cmd !== DLM_RCOM)
    throw new MessageError(`h_cmd ${cmd}: only DLM_MSG (1) and DLM_RCOM (2) carry application messages`);
}

// A kernel receiver (and ours with kernelMinimums) skips a shorter message, but its sender
// already gave it a sequence number: every later message would wait behind that gap.
function checkKernelMinimum(cmd: number, len: number): void {
  const min = cmd === DLM_MSG ? DLM_MSG_MIN_LEN : DLM_RCOM_MIN_LEN;
  if (len < min) throw new MessageSizeError(len, DLM_MAX_APP_BUFSIZE, cmd === DLM_MSG ? 'DLM_MSG' : 'DLM_RCOM', min);
}

function rethrow(err: unknown): never {
  throw err;
}

function remove<T>(arr: T[], item: T): void {
  const i = arr.indexOf(item);
  if (i >= 0) arr.splice(i, 1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function mapStartError(err: unknown, transport: TransportName): LowcommsError {
  const e = err as { code?: string; errno?: number; message?: string };
  const msg = e?.message ?? String(err);
  switch (e?.code) {
    case 'EADDRINUSE':
      return new AddressInUseError(msg);
    case 'EPERM':
    case 'EACCES':
      return new PermissionError(msg);
    case 'ESOCKTNOSUPPORT':
      return transport === 'sctp' ? new SctpUnavailableError(msg) : new NativeError(msg, e.errno);
    case 'CONFIG':
    case 'EADDRNOTAVAIL':
      return new ConfigError(msg);
    case 'ECRYPTO':
      return new CryptoUnavailableError(msg);
    default:
      return new NativeError(msg, e?.errno);
  }
}
