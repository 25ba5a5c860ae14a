/**
 * SCTP multihoming on real kernel SCTP (inside user-mode-linux in CI, or as root on a
 * host with SCTP): two nodes in two network namespaces joined by two veth pairs on two
 * subnets, each bound to both of its addresses. One link goes down mid-stream: the
 * association must stay up, every message arrive once and in order, and the path event
 * be reported; the link comes back. Prints the failover gap measured.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { sctpAvailable } from '../helpers/transports';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'inherit' });
}

interface Report {
  role: string;
  received: number;
  errors: string[];
  maxGapMs: number;
  maxGapAtMs: number;
  events: Array<{ t: number; type: string; detail: { state: string; address: string }; metrics?: string[] }>;
  flushed: boolean;
  disconnects: number;
}

function runNode(ns: string, args: object): { ready: Promise<void>; done: Promise<Report> } {
  const script = path.join(__dirname, '..', 'helpers', 'mh-node.ts');
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', script, JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((r) => (readyResolve = r));
  p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('ready\n')) readyResolve();
  });
  const timer = setTimeout(() => p.kill('SIGKILL'), 90_000);
  const done = new Promise<Report>((resolve, reject) => {
    p.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${ns} exited ${code}: ${out}`));
      resolve(JSON.parse(line) as Report);
    });
  });
  return { ready, done };
}

test('SCTP multihoming: a link goes down mid-stream, the association survives, nothing lost', async (t) => {
  assert.ok(sctpAvailable(), 'this kernel has no SCTP: run this test through scripts/uml-run.sh');
  assert.equal(process.getuid?.(), 0, 'needs root for network namespaces (user-mode-linux guest runs as root)');
  const tag = String(process.pid % 10000);
  const na = `lca${tag}`;
  const nb = `lcb${tag}`;
  ip('netns', 'add', na);
  ip('netns', 'add', nb);
  t.after(() => {
    for (const ns of [na, nb]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
  });
  for (const [i, link] of [[1, 'v1'], [2, 'v2']] as const) {
    ip('link', 'add', `${link}a${tag}`, 'netns', na, 'type', 'veth', 'peer', 'name', `${link}b${tag}`, 'netns', nb);
    ip('-n', na, 'addr', 'add', `10.${i}.0.1/24`, 'dev', `${link}a${tag}`);
    ip('-n', nb, 'addr', 'add', `10.${i}.0.2/24`, 'dev', `${link}b${tag}`);
    ip('-n', na, 'link', 'set', `${link}a${tag}`, 'up');
    ip('-n', nb, 'link', 'set', `${link}b${tag}`, 'up');
  }
  for (const ns of [na, nb]) ip('-n', ns, 'link', 'set', 'lo', 'up');

  const port = 21064;
  const count = 1500;
  const rate = 250; // messages per second: a 6 s stream
  const b = runNode(nb, { role: 'b', port, count, rate });
  await b.ready;
  const a = runNode(na, { role: 'a', port, count, rate });
  await a.ready;
  await new Promise((r) => setTimeout(r, 1500));
  const downAt = Date.now();
  ip('-n', na, 'link', 'set', `v1a${tag}`, 'down'); // the primary path's link
  await new Promise((r) => setTimeout(r, 3000));
  ip('-n', na, 'link', 'set', `v1a${tag}`, 'up');
  const upAfterMs = Date.now() - downAt;
  const [ra, rb] = await Promise.all([a.done, b.done]);

  assert.deepEqual(rb.errors, [], 'order kept');
  assert.equal(rb.received, count, 'every message arrived exactly once');
  assert.equal(ra.disconnects, 0, 'the association stayed up');
  const pathEvents = ra.events.filter((e) => e.type === 'path');
  assert.ok(
    pathEvents.some((e) => ['unreachable', 'potentially_failed'].includes(e.detail.state) && e.detail.address === '10.1.0.2'),
    `path event for 10.1.0.2 reported: ${JSON.stringify(ra.events)}`,
  );
  // metrics() followed every path event: the path's series at 1 is its new state.
  const folded = (st: string) => (st === 'unreachable' || st === 'potentially_failed' ? st : 'active');
  for (const e of pathEvents) {
    if (e.detail.state === 'removed') continue;
    const want = `nodeid="2",address="${e.detail.address}",state="${folded(e.detail.state)}"} 1`;
    assert.ok(e.metrics?.some((l) => l.endsWith(want)), `metrics after ${JSON.stringify(e.detail)}: ${JSON.stringify(e.metrics)}`);
    assert.equal(e.metrics?.filter((l) => l.includes(`address="${e.detail.address}"`)).length, 1, 'one state per path');
  }
  const msg =
    `multihoming: link down for ${upAfterMs} ms; longest gap between messages ${rb.maxGapMs} ms ` +
    `(normal spacing ${Math.round(1000 / rate)} ms); path events at A: ` +
    pathEvents.map((e) => `${e.t}ms ${e.detail.address} ${e.detail.state}`).join(', ');
  t.diagnostic(msg);
  console.log(`# ${msg}`);
  assert.ok(rb.maxGapMs < 3000, `failover within 3 s with the tuned defaults (gap ${rb.maxGapMs} ms)`);
});
