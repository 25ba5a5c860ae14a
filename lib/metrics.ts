/**
 * stats() as Prometheus metrics, with no dependency: formatMetrics() renders the text
 * exposition format (version 0.0.4) that a /metrics endpoint serves, and
 * registerMetrics() adds the same metrics to an application's own prom-client, passed
 * in by the caller (prom-client is never imported here).
 *
 * One table (FAMILIES) defines every metric; both paths read it, so the two cannot
 * drift apart. Per-peer series carry the peer's `nodeid` label.
 */
import { ConfigError } from './errors';
import type { LowcommsStats, NodeStats } from './lowcomms';

export interface MetricsOptions {
  /** Prefix of every metric name. Default 'lowcomms_'. */
  prefix?: string;
  /** Constant labels added to every series, e.g. { cluster: 'prod-a' }. */
  labels?: Record<string, string>;
}

type Labels = Record<string, string>;
type Sample = { labels: Labels; value: number };

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: readonly string[];
  samples(s: LowcommsStats): Sample[];
}

/** SCTP path states as a state set: the kernel's events folded into three states. */
export const PATH_STATES = ['active', 'potentially_failed', 'unreachable'] as const;
function pathState(event: string): (typeof PATH_STATES)[number] {
  if (event === 'unreachable') return 'unreachable';
  if (event === 'potentially_failed') return 'potentially_failed';
  return 'active'; // available, added, confirmed, primary
}

const instance = (
  name: string,
  type: Family['type'],
  help: string,
  get: (s: LowcommsStats) => number,
): Family => ({ name, type, help, labelNames: [], samples: (s) => [{ labels: {}, value: get(s) }] });

const node = (
  name: string,
  type: Family['type'],
  help: string,
  get: (n: NodeStats) => number,
): Family => ({
  name,
  type,
  help,
  labelNames: ['nodeid'],
  samples: (s) => s.nodes.map((n) => ({ labels: { nodeid: String(n.nodeid) }, value: get(n) })),
});

const FAMILIES: readonly Family[] = [
  {
    name: 'info',
    type: 'gauge',
    help: 'Always 1: the local nodeid and the transport in use.',
    labelNames: ['local_nodeid', 'transport'],
    samples: (s) => [{ labels: { local_nodeid: String(s.nodeid), transport: s.transport }, value: 1 }],
  },
  instance('rejected_total', 'counter', 'Connections or associations refused: their address belongs to no node.', (s) => s.rejected),
  instance('auth_failures_total', 'counter', 'Connections refused: the peer failed the authentication handshake.', (s) => s.authFailures),
  instance('record_failures_total', 'counter', 'Records that failed authentication (auth); each closed its connection.', (s) => s.recordFailures),
  instance('accepts_total', 'counter', 'Incoming connections accepted.', (s) => s.accepts),
  instance('stale_dropped_total', 'counter', 'SCTP messages read for an association already aborted (their sender resends them).', (s) => s.staleDropped),
  instance('rx_batches_total', 'counter', 'Hand-offs into JavaScript (one per batch of received messages).', (s) => s.batches),
  instance('rx_paused_total', 'counter', 'Times the receive thread stopped reading because the application fell behind.', (s) => s.rxPaused),
  instance('rx_pending_bytes', 'gauge', 'Received bytes handed to the application and not yet released.', (s) => s.rxPendingBytes),
  node('node_connected', 'gauge', '1 while the connection (TCP) or association (SCTP) with the node is up.', (n) => (n.connected ? 1 : 0)),
  {
    name: 'node_info',
    type: 'gauge',
    help: "Always 1: the node's midcomms protocol version and session state.",
    labelNames: ['nodeid', 'version', 'state'],
    samples: (s) => s.nodes.map((n) => ({ labels: { nodeid: String(n.nodeid), version: n.version, state: n.state }, value: 1 })),
  },
  node('node_tx_messages_total', 'counter', 'Messages sent to the node.', (n) => n.txMsgs),
  node('node_tx_bytes_total', 'counter', 'Bytes sent to the node.', (n) => n.txBytes),
  node('node_tx_syscalls_total', 'counter', 'Send system calls for the node (batching: messages per call).', (n) => n.txSyscalls),
  node('node_tx_direct_total', 'counter', 'Of the send system calls, those made on the JS thread itself (batching.directWrite).', (n) => n.txDirect),
  node('node_rx_messages_total', 'counter', 'Messages received from the node and handed to the application.', (n) => n.rxMsgs),
  node('node_rx_bytes_total', 'counter', 'Bytes received from the node.', (n) => n.rxBytes),
  node('node_connects_total', 'counter', 'Connections established with the node (every one after the first is a reconnect).', (n) => n.connects),
  node('node_disconnects_total', 'counter', 'Connections with the node lost or closed.', (n) => n.disconnects),
  node('node_connect_errors_total', 'counter', 'Failed connection attempts to the node.', (n) => n.connectErrors),
  node('node_resent_total', 'counter', 'Unacked messages sent again after a reconnect.', (n) => n.resent),
  node('node_queued_bytes', 'gauge', 'Bytes in the write queue, not yet sent.', (n) => n.queuedBytes),
  node('node_held_bytes', 'gauge', 'Bytes queued or sent and unacked (what the per-node limit counts).', (n) => n.heldBytes),
  node('node_unacked_messages', 'gauge', 'Messages sent and not yet acknowledged.', (n) => n.unacked),
  node('node_backpressure_total', 'counter', "Times send() was refused: the node's byte limit was reached.", (n) => n.backpressure),
  node('node_unacked_dropped_total', 'counter', 'Unacked messages dropped (node removed or reset, or it restarted before acknowledging them).', (n) => n.droppedUnacked),
  node('node_restarts_total', 'counter', 'New incarnations of the node seen (it restarted; its session started over).', (n) => n.restarts),
  node('node_desync_reports_total', 'counter', "Times the node's frames kept being dropped or its acks went backwards (a 'desync' event).", (n) => n.desyncReports),
  node('node_acks_backwards_total', 'counter', 'Acknowledgements from the node below one it sent before.', (n) => n.acksBackwards),
  node('node_acks_sent_total', 'counter', 'Acknowledgements sent to the node.', (n) => n.acksSent),
  node('node_acks_received_total', 'counter', 'Acknowledgements received from the node.', (n) => n.acksRcvd),
  node('node_bad_acks_total', 'counter', 'Acknowledgements from the node for sequence numbers never sent.', (n) => n.badAcks),
  node('node_duplicates_dropped_total', 'counter', 'Messages from the node dropped as already delivered.', (n) => n.dupDropped),
  node('node_gaps_dropped_total', 'counter', 'Messages from the node dropped for arriving ahead of a gap in sequence.', (n) => n.gapDropped),
  node('node_bad_frames_total', 'counter', 'Malformed frames from the node (the connection is dropped).', (n) => n.badFrames),
  node('node_bad_records_total', 'counter', 'Records from the node that failed authentication (auth; the connection is dropped).', (n) => n.badRecords),
  node('node_version_mismatches_total', 'counter', 'Messages from the node whose protocol version changed mid-session.', (n) => n.versionMismatch),
  node('node_bad_version_total', 'counter', 'Messages from the node with an unknown protocol version.', (n) => n.badVersion),
  node('node_skipped_total', 'counter', 'Messages from the node skipped as not for the application (unknown or short commands).', (n) => n.skipped),
  node('node_nodeid_mismatches_total', 'counter', 'Messages from the node claiming another nodeid.', (n) => n.nodeidMismatch),
  node('node_inner_nodeid_mismatches_total', 'counter', 'Wrapped messages from the node whose inner header names another nodeid (dropped).', (n) => n.innerNodeidMismatch),
  node('node_fins_received_total', 'counter', 'Orderly session closes (DLM_FIN) received from the node.', (n) => n.finsRcvd),
  {
    name: 'sctp_path_state',
    type: 'gauge',
    help: 'SCTP: 1 for the current state of each path (peer address) the kernel reported on, 0 for the others.',
    labelNames: ['nodeid', 'address', 'state'],
    samples: (s) =>
      s.paths.flatMap((p) =>
        PATH_STATES.map((st) => ({
          labels: { nodeid: String(p.nodeid), address: p.address, state: st },
          value: pathState(p.state) === st ? 1 : 0,
        })),
      ),
  },
];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const RESERVED = new Set(FAMILIES.flatMap((f) => f.labelNames));

function checkOptions(opts: MetricsOptions | undefined): { prefix: string; labels: Labels } {
  const prefix = opts?.prefix ?? 'lowcomms_';
  if (typeof prefix !== 'string' || (prefix !== '' && !METRIC_NAME.test(prefix)))
    throw new ConfigError(`metrics prefix must match ${METRIC_NAME.source}, got ${JSON.stringify(prefix)}`);
  const labels: Labels = {};
  for (const [k, v] of Object.entries(opts?.labels ?? {})) {
    if (!LABEL_NAME.test(k) || k.startsWith('__'))
      throw new ConfigError(`metrics label name ${JSON.stringify(k)} is not a valid Prometheus label name`);
    if (RESERVED.has(k)) throw new ConfigError(`metrics label ${JSON.stringify(k)} is one lowcomms sets itself`);
    if (typeof v !== 'string') throw new ConfigError(`metrics label ${k} must be a string`);
    labels[k] = v;
  }
  return { prefix, labels };
}

const escapeHelp = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeValue = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders a stats() snapshot in the Prometheus text exposition format (0.0.4). */
export function formatMetrics(stats: LowcommsStats, opts?: MetricsOptions): string {
  const { prefix, labels: constant } = checkOptions(opts);
  const out: string[] = [];
  for (const f of FAMILIES) {
    const name = prefix + f.name;
    out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
    for (const s of f.samples(stats)) {
      const all = Object.entries({ ...constant, ...s.labels });
      const ls = all.length ? `{${all.map(([k, v]) => `${k}="${escapeValue(v)}"`).join(',')}}` : '';
      out.push(`${name}${ls} ${formatValue(s.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

/** The content type a /metrics endpoint serves formatMetrics() with. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The parts of prom-client's API that registerMetrics() uses (tested with prom-client 15). */
export interface PromClientLike<R extends PromRegistryLike = PromRegistryLike> {
  Counter: new (config: PromMetricConfig<R>) => PromMetric;
  Gauge: new (config: PromMetricConfig<R>) => PromMetric;
  register: R;
}
export interface PromMetricConfig<R extends PromRegistryLike = PromRegistryLike> {
  name: string;
  help: string;
  labelNames: string[];
  registers: R[];
  collect: () => void;
}
export interface PromMetric {
  reset(): void;
  inc?(labels: Labels, value: number): void;
  set?(labels: Labels, value: number): void;
}
export interface PromRegistryLike {
  removeSingleMetric(name: string): void;
}

/**
 * Registers the lowcomms metrics with the application's prom-client: pass the module
 * itself (`import * as client from 'prom-client'`), and optionally the registry (default
 * client.register). Each scrape takes one stats() snapshot, shared by all the metrics.
 * Returns a function that unregisters them (call it before comms is closed for good, or
 * to register a new instance under the same names).
 */
export function registerMetrics<R extends PromRegistryLike>(
  comms: { stats(): LowcommsStats },
  client: PromClientLike<R>,
  opts?: MetricsOptions & { registry?: R },
): () => void {
  const { prefix, labels: constant } = checkOptions(opts);
  if (!client || typeof client.Counter !== 'function' || typeof client.Gauge !== 'function')
    throw new ConfigError('registerMetrics needs the prom-client module (with Counter and Gauge)');
  const registry = opts?.registry ?? client.register;
  if (!registry || typeof registry.removeSingleMetric !== 'function')
    throw new ConfigError('registerMetrics needs a prom-client Registry');

  // prom-client calls every metric's collect() in one synchronous pass per scrape.
  let snapshot: LowcommsStats | undefined;
  const current = (): LowcommsStats => {
    if (!snapshot) {
      snapshot = comms.stats();
      queueMicrotask(() => (snapshot = undefined));
    }
    return snapshot;
  };

  const names: string[] = [];
  try {
    for (const f of FAMILIES) {
      const name = prefix + f.name;
      const isCounter = f.type === 'counter';
      const metric: PromMetric = new (isCounter ? client.Counter : client.Gauge)({
        name,
        help: f.help,
        labelNames: [...Object.keys(constant), ...f.labelNames],
        registers: [registry],
        collect: () => {
          // Absolute values: series of removed nodes and paths disappear.
          metric.reset();
          for (const s of f.samples(current())) {
            const ls = { ...constant, ...s.labels };
            if (isCounter) metric.inc!(ls, s.value);
            else metric.set!(ls, s.value);
          }
        },
      });
      names.push(name);
    }
  } catch (err) {
    for (const n of names) registry.removeSingleMetric(n);
    throw new ConfigError(`could not register the lowcomms metrics: ${(err as Error).message}`, { cause: err });
  }
  return () => {
    for (const n of names) registry.removeSingleMetric(n);
  };
}
