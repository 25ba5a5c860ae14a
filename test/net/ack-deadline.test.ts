/**
 * The delayed ACK has a deadline: a node that receives a steady stream from one peer
 * still acks another peer's last message within about ackDelayMs. (It used to wait for
 * the receive thread to be idle for ackDelayMs, so traffic from node 3 held node 1's ACK
 * back for as long as it lasted: found by test/corosync, where a paused sender waited
 * 15 s for an ACK.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startCluster, until } from '../helpers/cluster';
import { testTransports } from '../helpers/transports';

for (const transport of testTransports()) {
  describe(`ack deadline over ${transport}`, () => {
    test('a busy receiver acks a quiet sender within ackDelayMs, not when its traffic stops', async (t) => {
      const cl = await startCluster(t, { n: 3, transport, options: { ackDelayMs: 20 } });
      t.after(() => cl.closeAll());
      let got = 0;
      cl.get(2).onMessage(() => got++);
      // Node 3 streams to node 2 faster than ackDelayMs, for the whole test.
      let streaming = true;
      const stream = (async () => {
        while (streaming) {
          cl.get(3).send(2, { cmd: 1, body: 'busy' });
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      await until(() => got > 20, 5000, 'node 3 streaming to node 2');
      // A few messages from node 1: fewer than the count that acks at once.
      for (let i = 0; i < 3; i++) cl.get(1).send(2, { cmd: 1, body: `quiet ${i}` });
      const t0 = Date.now();
      const unacked = () => cl.get(1).stats().nodes.find((n) => n.nodeid === 2)?.unacked ?? -1;
      await until(() => unacked() === 0 && (cl.get(1).stats().nodes.find((n) => n.nodeid === 2)?.txMsgs ?? 0) >= 3, 3000, 'node 1 acked while node 3 streams');
      const ms = Date.now() - t0;
      streaming = false;
      await stream;
      t.diagnostic(`node 1's messages acked after ${ms} ms while node 2 received ${got} messages`);
    });
  });
}
