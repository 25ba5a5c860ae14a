/**
 * batching.directWrite (TCP, 'immediate' flush): when a node's queue is empty and its
 * socket writable, flush() writes the message on the caller's thread, so the bytes are
 * in the kernel when flush() returns (no wake-up of the send thread on the latency path).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, Lowcomms } from '../lib';
import { startCluster, until } from './helpers/cluster';

const txBytes = (c: Lowcomms, to: number) => c.stats().nodes.find((n) => n.nodeid === to)?.txBytes ?? -1;

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
  let synchronous = 0;
  for (let i = 1; i <= rounds; i++) {
    body.writeUInt32LE(i, 0);
    const before = txBytes(a, 2);
    a.send(2, { body });
    a.flush();
    if (txBytes(a, 2) > before) synchronous++;
    await until(() => got.length === i + 1, 10_000, `echo ${i}`);
  }
  assert.deepEqual(got, Array.from({ length: rounds + 1 }, (_, i) => i), 'every echo once, in order');
  return synchronous;
}

test('directWrite (default): a message to an idle connected node is in the kernel when flush() returns', async (t) => {
  const rounds = 50;
  // Had the send thread written it, the count would lag flush() by a thread wake-up. A
  // round may still go to the send thread when it is busy with the connection at that
  // moment (a delayed ACK going out): the try-lock fails and the caller does not wait.
  const synchronous = await pingPong(t, true, rounds);
  assert.ok(synchronous >= rounds - 5, `${synchronous} of ${rounds} written before flush() returned`);
});

test('directWrite false: the send thread writes every message, and all arrive in order', async (t) => {
  const rounds = 50;
  const synchronous = await pingPong(t, false, rounds);
  // The send thread races flush() after a wake-up; it may win now and then, not often.
  assert.ok(synchronous < rounds / 2, `${synchronous} of ${rounds} written before flush() returned`);
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
