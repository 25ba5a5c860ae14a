/**
 * Lossy links: two lowcomms nodes in two network namespaces of the guest, joined by a
 * veth pair whose both ends go through netem. For TCP and SCTP (both, whatever
 * LOWCOMMS_TEST_TRANSPORTS says: this is a guest-only test), the link is clean and
 * then loses, delays, reorders and duplicates packets; in each profile both nodes
 * stream to each other (every message checked: exactly once, per-node order, intact)
 * and then run sequential ping-pongs. Prints goodput and RTT against the clean link
 * measured in the same run (the README's table comes from this output).
 *
 * LOWCOMMS_NETEM_MESSAGES (default 2000 per direction and profile) and
 * LOWCOMMS_NETEM_PINGS (default 100) size the run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requireGuest } from '../helpers/guest';
import { clearQdisc, setNetem } from '../helpers/netem';
import { makePair, startNode } from '../helpers/netns';

const COUNT = Number(process.env.LOWCOMMS_NETEM_MESSAGES ?? 2000);
const PINGS = Number(process.env.LOWCOMMS_NETEM_PINGS ?? 100);

const PROFILES: Array<{ name: string; netem: string[] }> = [
  { name: 'clean', netem: [] },
  { name: '1% loss, 2 ms ± 1 ms delay', netem: ['loss', '1%', 'delay', '2ms', '1ms'] },
  { name: '5% loss, reordering (25%, 1 ms delay)', netem: ['loss', '5%', 'delay', '1ms', 'reorder', '25%', '50%'] },
  { name: '0.5% duplication, 10 ms delay', netem: ['duplicate', '0.5%', 'delay', '10ms'] },
  // Clean again: the guest's CPU, not the link, bounds a clean stream, and a loaded host
  // makes any one figure noisy; the better of the two clean runs is the reference.
  { name: 'clean (again)', netem: [] },
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
interface PingReply {
  ok: boolean;
  rtts: number[];
  errors: string[];
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

for (const transport of (process.env.LOWCOMMS_NETEM_ONLY ? [process.env.LOWCOMMS_NETEM_ONLY] : ['tcp', 'sctp']) as Array<'tcp' | 'sctp'>) {
  test(`lossy links over ${transport}: every message exactly once and in order under loss, reordering, duplication`, async (t) => {
    requireGuest('the lossy-link test');
    const pair = makePair(t, `l${transport[0]}`, 1, transport === 'tcp' ? 40 : 41);
    const nodes = [
      { nodeid: 1, addrs: pair.addrA },
      { nodeid: 2, addrs: pair.addrB },
    ];
    const port = 21064;
    const b = await startNode(t, pair.b, { nodeid: 2, peer: 1, nodes, transport, port });
    const a = await startNode(t, pair.a, { nodeid: 1, peer: 2, nodes, transport, port });
    const [la, lb] = pair.links[0]!;
    // Warm-up: the connection (association) setup stays out of the clean figures.
    await Promise.all([a.cmd({ cmd: 'stream', count: 1000, timeoutMs: 60_000 }), b.cmd({ cmd: 'stream', count: 1000, timeoutMs: 60_000 })]);
    await a.cmd({ cmd: 'ping', count: 10 });
    const rows: Array<{ profile: string; mbps: number; msgs: number; p50: number; p99: number }> = [];
    for (const prof of PROFILES) {
      if (prof.netem.length) {
        setNetem(pair.a, la, [...prof.netem, 'limit', '10000']);
        setNetem(pair.b, lb, [...prof.netem, 'limit', '10000']);
      } else {
        clearQdisc(pair.a, la);
        clearQdisc(pair.b, lb);
      }
      const [ra, rb] = await Promise.all([a.cmd<StreamReply>({ cmd: 'stream', count: COUNT, timeoutMs: 60_000 }), b.cmd<StreamReply>({ cmd: 'stream', count: COUNT, timeoutMs: 60_000 })]);
      assert.deepEqual([ra.errors, rb.errors], [[], []], `${prof.name}: every message exactly once, in order, intact`);
      assert.ok(ra.ok && rb.ok, `${prof.name}: both streams complete and acked: ${JSON.stringify([ra, rb])}`);
      assert.equal(ra.dataReceived, ra.dataExpected);
      assert.equal(rb.dataReceived, rb.dataExpected);
      const ping = await a.cmd<PingReply>({ cmd: 'ping', count: PINGS });
      assert.deepEqual(ping.errors, [], `${prof.name}: ping-pong`);
      assert.ok(ping.ok);
      const ms = Math.max(ra.ms, rb.ms);
      rows.push({
        profile: prof.name,
        mbps: (ra.bytes + rb.bytes) / 1e6 / (ms / 1000),
        msgs: (2 * COUNT) / (ms / 1000),
        p50: pct(ping.rtts, 50),
        p99: pct(ping.rtts, 99),
      });
    }
    clearQdisc(pair.a, la);
    clearQdisc(pair.b, lb);
    type Closed = { errors: string[]; received: number; sent: number };
    const [ca, cb] = await Promise.all([a.cmd<Closed>({ cmd: 'close' }), b.cmd<Closed>({ cmd: 'close' })]);
    assert.deepEqual([ca.errors, cb.errors], [[], []]);
    assert.equal(ca.received, cb.sent, 'node 1 received every message node 2 sent');
    assert.equal(cb.received, ca.sent, 'node 2 received every message node 1 sent');

    const cleanRows = rows.filter((r) => r.profile.startsWith('clean'));
    const clean = { mbps: Math.max(...cleanRows.map((r) => r.mbps)), p50: Math.min(...cleanRows.map((r) => r.p50)) };
    const lines = [
      `lossy links, ${transport}, ${COUNT} messages each way per profile (24-4072 B, mixed; goodput = bytes sent both ways / time until the last was acked), ${PINGS} ping-pongs of 64 B:`,
      '| transport | link (netem on both ends) | goodput MB/s (both ways) | msgs/s | vs clean | RTT p50 ms | RTT p99 ms | p50 vs clean |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${transport} | ${r.profile} | ${r.mbps.toFixed(2)} | ${Math.round(r.msgs)} | ${(r.mbps / clean.mbps).toFixed(2)} | ` +
          `${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.p50 / clean.p50).toFixed(1)}x |`,
      ),
    ];
    for (const l of lines) console.log(`# ${l}`);
  });
}
