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

test('hostile peers are refused or closed, counted, and never disturb other nodes', async (t) => {
  // Node 1 and 2 are lowcomms; 127.0.0.3 is a configured node played by raw sockets.
  const cl = await startCluster(t, { n: 3, transport: 'tcp', local: [1, 2] });
  const n1 = cl.get(1);
  const ck = new Checker();
  n1.onMessage((m) => ck.check(m));
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

  // 3. A valid header with a lying length (claims 4000 bytes, sends 100, stalls): it waits
  //    as a partial message on its own connection only.
  const liar = await connectFrom('127.0.0.3', cl.port);
  sockets.push(liar);
  const hdr = Buffer.alloc(100);
  hdr.writeUInt32LE(0x00030001, 0);
  hdr.writeUInt32LE(3, 8);
  hdr.writeUInt16LE(4000, 12);
  hdr[14] = 1;
  liar.write(hdr);

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
  assert.equal(liar.destroyed, false, 'a partial message just waits (bounded: at most 4095 bytes)');
});
