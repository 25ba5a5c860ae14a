/**
 * Hostile peers (TCP, raw sockets): connect floods from unknown addresses, half-open
 * connections, a valid header with a lying length, garbage. Each is refused or closed
 * and counted, and a legitimate node streaming meanwhile is not disturbed.
 * (SCTP associations from unknown addresses: test/net/transport.test.ts.)
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startCluster, until } from './helpers/cluster';
import { Checker, pump } from './helpers/traffic';

function connectFrom(localAddress: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const closed = (s: net.Socket) =>
  new Promise<void>((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve();
    s.once('close', () => resolve());
    s.resume();
  });

test('hostile peers are refused or closed, counted, and never disturb other nodes; a partial message of 4095 bytes waits and completes', async (t) => {
  // Node 1 and 2 are lowcomms; 127.0.0.3 is a configured node played by raw sockets.
  const cl = await startCluster(t, { n: 3, transport: 'tcp', local: [1, 2] });
  const n1 = cl.get(1);
  const ck = new Checker();
  const fromLiar: Buffer[] = [];
  n1.onMessage((m) => (m.nodeid === 2 ? ck.check(m) : fromLiar.push(Buffer.from(m.raw))));
  const errors: string[] = [];
  n1.on('error', (e) => errors.push(e.code));
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  const streaming = pump(cl.get(2), 1, 30_000, { yieldEvery: 500 });

  // 1. A flood of connects from an address of no node.
  const flood = await Promise.all(
    Array.from({ length: 200 }, () => connectFrom('127.0.0.66', cl.port).catch(() => undefined)),
  );
  for (const s of flood) if (s) sockets.push(s);
  await Promise.all(flood.map((s) => (s ? closed(s) : Promise.resolve())));

  // 2. Half-open connections from a known address that never send: at most a few are
  //    kept per node (the oldest go), so they cannot pile up.
  const idle: net.Socket[] = [];
  for (let i = 0; i < 50; i++) idle.push(await connectFrom('127.0.0.3', cl.port));
  sockets.push(...idle);
  await until(() => idle.filter((s) => s.destroyed || s.readableEnded).length >= 44, 5000, 'stale half-open connections closed');
  for (const s of idle) s.resume();

  // 3. A valid 3.1 header claiming the largest frame, 4096 bytes, of which it sends 4095
  //    (the most a partial message can hold) and stalls: it waits on its own connection
  //    only, and completes when the last byte comes (below).
  const liar = await connectFrom('127.0.0.3', cl.port);
  sockets.push(liar);
  const big = Buffer.alloc(4096);
  big.writeUInt32LE(0x00030001, 0);
  big.writeUInt32LE(3, 8);
  big.writeUInt16LE(4096, 12);
  big[14] = 1;
  for (let i = 16; i < big.length; i++) big[i] = (i * 13) & 0xff;
  liar.write(big.subarray(0, 4095));

  // 4. Garbage: a length outside [16, 4096] closes that connection and is counted.
  const junk = await connectFrom('127.0.0.3', cl.port);
  sockets.push(junk);
  junk.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await closed(junk);

  await streaming;
  await until(() => ck.received === 30_000, 30_000, 'the legitimate stream delivered');
  assert.deepEqual(ck.errors, []);
  assert.equal(ck.count(2), 30_000);
  const s = n1.stats();
  assert.ok(s.rejected >= 200, `rejected ${s.rejected}`);
  const node3 = s.nodes.find((n) => n.nodeid === 3)!;
  assert.ok(node3.badFrames >= 1, `bad frames counted: ${node3.badFrames}`);
  assert.equal(node3.rxMsgs, 0, 'nothing from the liar or the junk was delivered');
  assert.ok(errors.includes('ERR_LOWCOMMS_PEER'), `a PeerError was emitted: ${errors.join(',')}`);
  // The 4095-byte partial message waited through all of that; its last byte completes it
  // and the whole 4096-byte frame is delivered byte for byte: nothing was dropped or
  // re-parsed, and the connection was never closed.
  assert.equal(liar.destroyed, false, 'the partial message waited on an open connection');
  assert.deepEqual(fromLiar, []);
  liar.write(big.subarray(4095));
  await until(() => fromLiar.length === 1, 5000, "the liar's completed 4096-byte message");
  assert.deepEqual(fromLiar[0], big);
  assert.equal(n1.stats().nodes.find((n) => n.nodeid === 3)!.rxMsgs, 1);
});
