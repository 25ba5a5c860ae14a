/**
 * A lossy path under SCTP multihoming: two nodes in two namespaces joined by two veth
 * pairs (two paths). Path 1, the primary (the first address of each node), loses 20%
 * of its packets in both directions; it never goes down. Does the association keep
 * its traffic on the good path, and what goodput is left compared with both paths
 * clean? Measured with lowcomms' defaults and with the alternatives the README
 * discusses, side by side in one run. Bytes per path come from the veth counters.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SctpOptions } from '../../lib';
import { requireGuest } from '../helpers/guest';
import { clearQdisc, setNetem } from '../helpers/netem';
import { makePair, startNode, txBytes } from '../helpers/netns';

const COUNT = Number(process.env.LOWCOMMS_NETEM_MESSAGES ?? 2000);

const CONFIGS: Array<{ name: string; sctp: SctpOptions }> = [
  { name: 'lowcomms defaults (pfRetrans 0, pathMaxRetrans 2)', sctp: {} },
  { name: 'no potentially-failed state (pfRetrans = pathMaxRetrans = 2)', sctp: { pfRetrans: 2 } },
];

/** bytes/ms: what this node sent in the phase and how long until the peer acked it all. */
interface StreamReply {
  ok: boolean;
  dataReceived: number;
  dataExpected: number;
  bytes: number;
  ms: number;
  errors: string[];
}
interface Ev {
  t: number;
  type: string;
  detail: Record<string, unknown>;
}

test('SCTP multihoming with one lossy path (20% loss): traffic on the good path, goodput against both clean', async (t) => {
  requireGuest('the lossy multihoming test');
  const rows: string[] = [];
  let cfgIndex = 0;
  for (const cfg of CONFIGS) {
    const pair = makePair(t, `m${cfgIndex}`, 2, 50 + 2 * cfgIndex);
    cfgIndex++;
    const nodes = [
      { nodeid: 1, addrs: pair.addrA },
      { nodeid: 2, addrs: pair.addrB },
    ];
    const b = await startNode(t, pair.b, { nodeid: 2, peer: 1, nodes, transport: 'sctp', port: 21064, options: { sctp: cfg.sctp } });
    const a = await startNode(t, pair.a, { nodeid: 1, peer: 2, nodes, transport: 'sctp', port: 21064, options: { sctp: cfg.sctp } });
    const measure = async (label: string) => {
      const before = pair.links.map(([la]) => txBytes(pair.a, la));
      const [ra, rb] = await Promise.all([a.cmd<StreamReply>({ cmd: 'stream', count: COUNT, timeoutMs: 60_000 }), b.cmd<StreamReply>({ cmd: 'stream', count: COUNT, timeoutMs: 60_000 })]);
      assert.deepEqual([ra.errors, rb.errors], [[], []], `${label}: exactly once, in order`);
      assert.ok(ra.ok && rb.ok, `${label}: complete and acked: ${JSON.stringify([ra, rb])}`);
      const after = pair.links.map(([la]) => txBytes(pair.a, la));
      const onPath = after.map((x, i) => x - before[i]!);
      const ms = Math.max(ra.ms, rb.ms);
      return { mbps: (ra.bytes + rb.bytes) / 1e6 / (ms / 1000), share1: onPath[0]! / (onPath[0]! + onPath[1]!) };
    };
    await Promise.all([a.cmd({ cmd: 'stream', count: 500, timeoutMs: 60_000 }), b.cmd({ cmd: 'stream', count: 500, timeoutMs: 60_000 })]); // warm-up
    const clean = await measure(`${cfg.name}, both clean`);
    const [l1a, l1b] = pair.links[0]!;
    setNetem(pair.a, l1a, ['loss', '20%']);
    setNetem(pair.b, l1b, ['loss', '20%']);
    const t0 = Date.now();
    const lossy = await measure(`${cfg.name}, path 1 at 20% loss`);
    clearQdisc(pair.a, l1a);
    clearQdisc(pair.b, l1b);
    const st = await a.cmd<{ events: Ev[] }>({ cmd: 'stats' });
    const pathEvents = st.events.filter((e) => e.type === 'path' && e.t >= t0);
    const lost = st.events.filter((e) => e.type === 'disconnect' || (e.type === 'assoc' && e.detail.state === 'lost'));
    assert.deepEqual(lost, [], `${cfg.name}: the association survived`);
    const pf = pathEvents.filter((e) => e.detail.state === 'potentially_failed' || e.detail.state === 'unreachable').length;
    rows.push(
      `| ${cfg.name} | ${clean.mbps.toFixed(2)} | ${lossy.mbps.toFixed(2)} | ${(lossy.mbps / clean.mbps).toFixed(2)} | ` +
        `${(100 * clean.share1).toFixed(0)}% | ${(100 * lossy.share1).toFixed(0)}% | ${pf} / ${pathEvents.length} |`,
    );
    await Promise.all([a.cmd({ cmd: 'close' }), b.cmd({ cmd: 'close' })]);
  }
  const lines = [
    `SCTP multihoming, path 1 (primary) at 20% loss both ways, ${COUNT} messages each way (24-4072 B):`,
    '| configuration | goodput both clean MB/s | goodput path 1 lossy MB/s | lossy/clean | node 1 bytes on path 1, clean | on path 1, lossy | path events (failed / all) |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ];
  for (const l of lines) console.log(`# ${l}`);
});
