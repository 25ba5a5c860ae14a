/**
 * One node of the multihoming test, run inside its own network namespace:
 * role 'a' streams `count` messages to node 2 at `rate` per second and reports the
 * path events it saw; role 'b' receives, verifies order, and reports the longest
 * silence between two consecutive messages (the failover gap).
 */
import { Lowcomms, type LowcommsEvents } from '../../lib';

interface Args {
  role: 'a' | 'b';
  port: number;
  count: number;
  rate: number;
}

const nodes = [
  { nodeid: 1, addrs: ['10.1.0.1', '10.2.0.1'] },
  { nodeid: 2, addrs: ['10.1.0.2', '10.2.0.2'] },
];

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args;
  const comms = new Lowcomms({ nodeid: a.role === 'a' ? 1 : 2, nodes, transport: 'sctp', port: a.port });
  const events: Array<{
    t: number;
    type: string;
    detail: LowcommsEvents['path'][0] | LowcommsEvents['assoc'][0];
    /** The sctp_path_state series at 1 in metrics() right after the event. */
    metrics?: string[];
  }> = [];
  const t0 = Date.now();
  const pathMetrics = () =>
    comms.metrics().split('\n').filter((l) => l.startsWith('lowcomms_sctp_path_state{') && l.endsWith('} 1'));
  comms.on('path', (e) => events.push({ t: Date.now() - t0, type: 'path', detail: e, metrics: pathMetrics() }));
  comms.on('assoc', (e) => events.push({ t: Date.now() - t0, type: 'assoc', detail: e }));
  let received = 0;
  let next = 0;
  const errors: string[] = [];
  let last = 0;
  let maxGap = 0;
  let maxGapAt = 0;
  comms.onMessage((m) => {
    const now = Date.now();
    if (last && now - last > maxGap) {
      maxGap = now - last;
      maxGapAt = now - t0;
    }
    last = now;
    if (m.lockspace !== next && errors.length < 10) errors.push(`got ${m.lockspace}, expected ${next}`);
    next = m.lockspace + 1;
    received++;
  });
  await comms.start();
  process.stdout.write('ready\n');
  if (a.role === 'a') {
    const body = Buffer.alloc(200);
    const interval = 1000 / a.rate;
    for (let i = 0; i < a.count; i++) {
      while (!comms.send(2, { lockspace: i, body })) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, interval));
    }
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && comms.stats().nodes.some((s) => s.unacked > 0))
      await new Promise((r) => setTimeout(r, 20));
  } else {
    const deadline = Date.now() + 60_000;
    while (received < a.count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300)); // let the last ACK out
  }
  const res = await comms.close({ timeoutMs: 3000 });
  const s = comms.stats();
  process.stdout.write(
    JSON.stringify({ role: a.role, received, errors, maxGapMs: maxGap, maxGapAtMs: maxGapAt, events, flushed: res.flushed, disconnects: s.nodes[0]?.disconnects ?? 0 }) + '\n',
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
