/**
 * batching.directWrite (TCP, 'immediate' flush): when a node's queue is empty and its
 * socket writable, flush() writes the message on the caller's thread, so the bytes are
 * in the kernel when flush() returns (no wake-up of the send thread on the latency path).
 * stats().nodes[].txDirect counts those writes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, Lowcomms } from '../lib';
import { startCluster, until } from './helpers/cluster';

const nodeStats = (c: Lowcomms, to: number) => {
  const n = c.stats().nodes.find((x) => x.nodeid === to);
  assert.ok(n, `stats of node ${to}`);
  return n;
};

/** A ping-pong of `rounds`; returns how many of node 1's sends were written by flush() itself. */
async function pingPong(t: Parameters<typeof startCluster>[0], directWrite: boolean, rounds: number) {
  const cl = await startCluster(t, { n: 2, transport: 'tcp', options: { batching: { directWrite } } });
  const a = cl.get(1);
  const b = cl.get(2);
  const got: number[] = [];
  b.onMessage((m) => b.send(1, { body: m.body }));
  a.onMessage((m) => got.push(m.body.readUInt32LE(0)));
  // The first message connects: from then on the connection is up and idle between rounds.
  const body = Buffer.alloc(48);
  body.writeUInt32LE(0, 0);
  a.send(2, { body });
  await until(() => got.length === 1, 10_000, 'the first echo');
  let direct = 0;
  for (let i = 1; i <= rounds; i++) {
    body.writeUInt32LE(i, 0);
    const before = nodeStats(a, 2);
    a.send(2, { body });
    a.flush();
    const after = nodeStats(a, 2);
    // Written here: the bytes were in the kernel when flush() returned.
    if (after.txDirect > before.txDirect) {
      assert.ok(after.txBytes > before.txBytes, `round ${i}: a direct write sends before flush() returns`);
      direct++;
    }
    await until(() => got.length === i + 1, 10_000, `echo ${i}`);
  }
  assert.deepEqual(got, Array.from({ length: rounds + 1 }, (_, i) => i), 'every echo once, in order');
  return direct;
}

test('directWrite (default): a message to an idle connected node is written by flush() itself', async (t) => {
  const rounds = 50;
  // A round may still go to the send thread when that thread is busy with the connection
  // at that moment (a delayed ACK going out): the try-lock fails and flush() does not wait.
  const direct = await pingPong(t, true, rounds);
  assert.ok(direct >= rounds - 5, `${direct} of ${rounds} written by flush()`);
});

test('directWrite false: the send thread writes every message, and all arrive in order', async (t) => {
  assert.equal(await pingPong(t, false, 50), 0);
});

test('directWrite must be a boolean', () => {
  assert.throws(
    () =>
      new Lowcomms({
        nodeid: 1,
        nodes: [{ nodeid: 1, addrs: ['127.0.0.1'] }],
        batching: { directWrite: 'yes' as unknown as boolean },
      }),
    ConfigError,
  );
});
