/**
 * The lowcomms handshake against hosts that do not complete it (TCP, raw sockets from a
 * configured node's address): they can neither push a node's good connection out nor
 * hold a socket of ours for longer than the handshake deadline.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startCluster, until } from './helpers/cluster';

function rawConnect(port: number, from: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    s.once('connect', () => resolve(s));
    s.resume(); // read, so that our close is seen
    s.once('error', reject);
  });
}

test('connects from a node\'s address that never complete the handshake neither evict its connection nor live past 5 s', async (t) => {
  const cl = await startCluster(t, { n: 2, transport: 'tcp' });
  const one = cl.get(1);
  const two = cl.get(2);
  let got = 0;
  one.onMessage(() => got++);
  for (let i = 0; i < 100; i++) two.send(1, { body: `a${i}` });
  await until(() => got === 100, 5000, 'the first messages');
  // Six connects from node 2's address that send nothing: more than the 4 accepted
  // sockets a node may hold.
  const raws = await Promise.all(Array.from({ length: 6 }, () => rawConnect(cl.port, '127.0.0.2')));
  const closed = raws.map((s) => new Promise<number>((r) => s.once('close', () => r(Date.now()))));
  for (const s of raws) s.on('error', () => undefined);
  const t0 = Date.now();
  for (let i = 0; i < 100; i++) two.send(1, { body: `b${i}` });
  await until(() => got === 200, 5000, 'the messages after the strangers connected');
  const n1 = two.stats().nodes.find((n) => n.nodeid === 1)!;
  assert.equal(n1.disconnects, 0, "node 2's connection to node 1 was never dropped");
  const when = await Promise.race([
    Promise.all(closed),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error('silent sockets still open after 8 s')), 8000)),
  ]);
  const latest = Math.max(...when) - t0;
  assert.ok(latest < 7000, `every silent socket closed within the deadline (${latest} ms)`);
  assert.ok(one.stats().authFailures >= 2, 'the ones that timed out are counted');
  for (let i = 0; i < 10; i++) two.send(1, { body: `c${i}` });
  await until(() => got === 210, 5000, 'traffic after the deadline');
});
