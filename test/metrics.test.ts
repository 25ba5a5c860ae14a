/**
 * Prometheus metrics: the text parses under a strict reading of the exposition format
 * (0.0.4), and every value is the stats() field it stands for; prom-client (a
 * devDependency here) shows the same series through registerMetrics().
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'prom-client';
import { ConfigError, formatMetrics, registerMetrics, type LowcommsStats, type NodeStats } from '../lib';
import { startCluster, until } from './helpers/cluster';

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  help: string;
  type: string;
  series: Series[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A strict parser: anything the format does not allow throws, naming the line. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.*)$/.exec(line);
      assert.ok(m && NAME.test(m[1]!), `bad HELP, ${where}`);
      assert.ok(!families.has(m[1]!), `second HELP for a family, ${where}`);
      assert.ok(!/\\[^\\n]/.test(m[2]!.replace(/\\\\/g, '')), `bad escape in HELP, ${where}`);
      current = { name: m[1]!, help: m[2]!, type: 'untyped', series: [] };
      families.set(m[1]!, current);
      return;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      assert.ok(m && current && current.name === m[1] && current.series.length === 0, `bad TYPE, ${where}`);
      current.type = m[2]!;
      return;
    }
    if (line === '') return; // the format ignores empty lines (prom-client separates families)
    assert.ok(!line.startsWith('#'), `unknown comment, ${where}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `bad sample, ${where}`);
    const [, name, , body, raw] = m;
    assert.ok(current && name === current.name, `sample outside its family, ${where}`);
    const labels: Record<string, string> = {};
    if (body !== undefined) {
      let rest = body;
      while (rest.length) {
        const lm = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
        assert.ok(lm && LABEL.test(lm[1]!) && !lm[1]!.startsWith('__'), `bad label, ${where}`);
        assert.ok(!(lm[1]! in labels), `repeated label, ${where}`);
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        rest = rest.slice(lm[0].length);
        if (lm[3] === ',') assert.ok(rest.length > 0, `trailing comma, ${where}`);
      }
    }
    assert.ok(/^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|NaN|[+-]Inf)$/.test(raw!), `bad value, ${where}`);
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (current.type === 'counter') {
      assert.ok(name!.endsWith('_total'), `counter not named _total, ${where}`);
      assert.ok(value >= 0, `negative counter, ${where}`);
    }
    const key = name + JSON.stringify(Object.entries(labels).sort());
    assert.ok(!seen.has(key), `duplicate series, ${where}`);
    seen.add(key);
    current.series.push({ name: name!, labels, value });
  });
  return families;
}

/** The stats() field behind each per-node metric (all of NativeNodeStats' numbers). */
const NODE_FIELDS: Record<string, keyof NodeStats> = {
  node_tx_messages_total: 'txMsgs',
  node_restarts_total: 'restarts',
  node_desync_reports_total: 'desyncReports',
  node_acks_backwards_total: 'acksBackwards',
  node_inner_nodeid_mismatches_total: 'innerNodeidMismatch',
  node_tx_bytes_total: 'txBytes',
  node_tx_syscalls_total: 'txSyscalls',
  node_tx_direct_total: 'txDirect',
  node_rx_messages_total: 'rxMsgs',
  node_rx_bytes_total: 'rxBytes',
  node_connects_total: 'connects',
  node_disconnects_total: 'disconnects',
  node_connect_errors_total: 'connectErrors',
  node_resent_total: 'resent',
  node_queued_bytes: 'queuedBytes',
  node_held_bytes: 'heldBytes',
  node_unacked_messages: 'unacked',
  node_backpressure_total: 'backpressure',
  node_unacked_dropped_total: 'droppedUnacked',
  node_acks_sent_total: 'acksSent',
  node_acks_received_total: 'acksRcvd',
  node_bad_acks_total: 'badAcks',
  node_duplicates_dropped_total: 'dupDropped',
  node_gaps_dropped_total: 'gapDropped',
  node_bad_frames_total: 'badFrames',
  node_bad_records_total: 'badRecords',
  node_version_mismatches_total: 'versionMismatch',
  node_bad_version_total: 'badVersion',
  node_skipped_total: 'skipped',
  node_nodeid_mismatches_total: 'nodeidMismatch',
  node_fins_received_total: 'finsRcvd',
};
const INSTANCE_FIELDS: Record<string, keyof LowcommsStats> = {
  rejected_total: 'rejected',
  auth_failures_total: 'authFailures',
  record_failures_total: 'recordFailures',
  accepts_total: 'accepts',
  stale_dropped_total: 'staleDropped',
  rx_batches_total: 'batches',
  rx_paused_total: 'rxPaused',
  rx_pending_bytes: 'rxPendingBytes',
};

/** Every value in `fams` is the stats() field it stands for, and nothing is left out. */
function assertMatches(fams: Map<string, Family>, s: LowcommsStats, prefix = 'lowcomms_'): void {
  for (const [metric, field] of Object.entries(INSTANCE_FIELDS)) {
    const f = fams.get(prefix + metric);
    assert.ok(f, `${prefix + metric} present`);
    assert.deepEqual(f.series.map((x) => x.value), [s[field]], metric);
  }
  for (const [metric, field] of Object.entries(NODE_FIELDS)) {
    const f = fams.get(prefix + metric);
    assert.ok(f, `${prefix + metric} present`);
    assert.equal(f.type, metric.endsWith('_total') ? 'counter' : 'gauge', metric);
    const got = new Map(f.series.map((x) => [x.labels.nodeid, x.value]));
    assert.equal(got.size, s.nodes.length, `${metric}: one series per node`);
    for (const n of s.nodes) assert.equal(got.get(String(n.nodeid)), n[field], `${metric} of node ${n.nodeid}`);
  }
  const connected = fams.get(prefix + 'node_connected')!;
  for (const n of s.nodes)
    assert.equal(connected.series.find((x) => x.labels.nodeid === String(n.nodeid))?.value, n.connected ? 1 : 0);
  const info = fams.get(prefix + 'node_info')!;
  for (const n of s.nodes)
    assert.ok(info.series.some((x) => x.labels.nodeid === String(n.nodeid) && x.labels.version === n.version && x.labels.state === n.state && x.value === 1));
  assert.deepEqual(fams.get(prefix + 'info')!.series, [
    { name: prefix + 'info', labels: { local_nodeid: String(s.nodeid), transport: s.transport }, value: 1 },
  ]);
  // Every numeric NodeStats field but the sequence numbers has a metric.
  const covered = new Set<string>(Object.values(NODE_FIELDS));
  const numeric = Object.keys(s.nodes[0] ?? {}).filter((k) => typeof s.nodes[0]![k as keyof NodeStats] === 'number');
  assert.deepEqual(numeric.filter((k) => !covered.has(k) && k !== 'nodeid' && !k.startsWith('seq')), [], 'stats() fields without a metric');
}

test('metrics() is strict exposition text whose values are the stats() counters', async (t) => {
  const cl = await startCluster(t, { n: 3, transport: 'tcp' });
  let got = 0;
  cl.get(2).onMessage(() => got++);
  cl.get(3).onMessage(() => got++);
  for (let i = 0; i < 300; i++) {
    cl.get(1).send(2, { cmd: 1, body: `m${i}` });
    cl.get(1).send(3, { cmd: 1, body: 'x'.repeat(i) });
  }
  await until(() => got === 600, 10_000, 'all 600 messages');
  // Exact: a snapshot and its rendering.
  const s = cl.get(1).stats();
  assert.equal(s.nodes.length, 2);
  assertMatches(parseExposition(formatMetrics(s)), s);
  // Live: metrics() after the acks settle equals the stats() taken just after it.
  await until(() => cl.get(1).stats().nodes.every((n) => n.unacked === 0), 5000, 'acks');
  const fams = parseExposition(cl.get(1).metrics());
  const after = cl.get(1).stats();
  assertMatches(fams, after);
  const tx = fams.get('lowcomms_node_tx_messages_total')!.series;
  assert.deepEqual(tx.map((x) => [x.labels.nodeid, x.value]).sort(), [['2', 300], ['3', 300]]);
  const rx = parseExposition(cl.get(2).metrics()).get('lowcomms_node_rx_messages_total')!.series;
  assert.deepEqual(rx.map((x) => [x.labels.nodeid, x.value]).sort(), [['1', 300], ['3', 0]]);
});

test('labels and help text are escaped; SCTP paths form a state set; bad options are ConfigErrors', () => {
  const s: LowcommsStats = {
    nodeid: 1,
    transport: 'sctp',
    incarnation: '00000000000000aa',
    rejected: 3,
    authFailures: 1,
    recordFailures: 0,
    staleDropped: 0,
    accepts: 2,
    batches: 9,
    rxPaused: 0,
    rxPendingBytes: 0,
    nodes: [],
    paths: [
      { nodeid: 2, address: '10.0.0.2', state: 'confirmed' },
      { nodeid: 2, address: '10.1.0.2', state: 'unreachable' },
      { nodeid: 3, address: 'fe80::1%"eth\\0\n', state: 'potentially_failed' },
    ],
  };
  const fams = parseExposition(formatMetrics(s, { prefix: 'x_', labels: { cluster: 'a "b"\\c' } }));
  const paths = fams.get('x_sctp_path_state')!;
  assert.equal(paths.type, 'gauge');
  const on = paths.series.filter((x) => x.value === 1).map((x) => [x.labels.nodeid, x.labels.address, x.labels.state]);
  assert.deepEqual(on, [
    ['2', '10.0.0.2', 'active'],
    ['2', '10.1.0.2', 'unreachable'],
    ['3', 'fe80::1%"eth\\0\n', 'potentially_failed'],
  ]);
  assert.equal(paths.series.length, 9, 'three states per path');
  for (const f of fams.values()) for (const x of f.series) assert.equal(x.labels.cluster, 'a "b"\\c');
  assert.equal(fams.get('x_rejected_total')!.series[0]!.value, 3);
  assert.equal(fams.get('x_node_tx_messages_total')!.series.length, 0, 'no nodes, no series');

  assert.throws(() => formatMetrics(s, { prefix: '9x' }), ConfigError);
  assert.throws(() => formatMetrics(s, { labels: { 'a-b': 'x' } }), ConfigError);
  assert.throws(() => formatMetrics(s, { labels: { __x: 'x' } }), ConfigError);
  assert.throws(() => formatMetrics(s, { labels: { nodeid: '1' } }), /lowcomms sets itself/);
  assert.throws(() => formatMetrics(s, { labels: { a: 1 as unknown as string } }), ConfigError);
  assert.throws(() => registerMetrics({ stats: () => s }, {} as never), ConfigError);
});

test('registerMetrics() adds the same series to an application prom-client Registry', async (t) => {
  const cl = await startCluster(t, { n: 2, transport: 'tcp' });
  let got = 0;
  cl.get(2).onMessage(() => got++);
  for (let i = 0; i < 100; i++) cl.get(1).send(2, { cmd: 1, body: 'y'.repeat(i) });
  await until(() => got === 100, 10_000, '100 messages');
  await until(() => cl.get(1).stats().nodes.every((n) => n.unacked === 0), 5000, 'acks');

  const registry = new client.Registry();
  let calls = 0;
  const comms = cl.get(1);
  const counted = { stats: () => (calls++, comms.stats()) };
  const unregister = registerMetrics(counted, client, { registry, labels: { cluster: 'test' } });
  const text = await registry.metrics();
  assert.equal(calls, 1, 'one stats() snapshot per scrape');
  const fams = parseExposition(text);
  const s = comms.stats();
  assertMatches(
    new Map([...fams].map(([k, f]) => [k, { ...f, series: f.series.map((x) => ({ ...x, labels: withoutCluster(x.labels) })) }])),
    s,
  );
  // The same families, types and series as our own text (help text aside).
  const ours = parseExposition(formatMetrics(s, { labels: { cluster: 'test' } }));
  assert.deepEqual(
    [...fams.values()].map((f) => [f.name, f.type, f.series.length]),
    [...ours.values()].map((f) => [f.name, f.type, f.series.length]),
  );
  assert.equal(fams.get('lowcomms_node_tx_messages_total')!.series[0]!.labels.cluster, 'test');
  assert.equal(fams.get('lowcomms_node_tx_messages_total')!.series[0]!.value, 100);

  // A second registration under the same names is refused cleanly; unregistering frees them.
  assert.throws(() => registerMetrics(counted, client, { registry }), ConfigError);
  assert.ok((await registry.metrics()).includes('lowcomms_node_tx_messages_total'));
  unregister();
  assert.doesNotMatch(await registry.metrics(), /lowcomms_/, 'unregistered');
  registerMetrics(counted, client, { registry })();
});

function withoutCluster(l: Record<string, string>): Record<string, string> {
  const { cluster: _c, ...rest } = l;
  return rest;
}
