/**
 * Node restarts: a peer process SIGKILLed (no FIN) and started again is recognised by
 * its new incarnation; both sides start its session over before reading a frame of the
 * new one; what the dead incarnation never acked is reported, nothing of the new session
 * is lost, duplicated or stalled. Runs for each transport (SCTP in user-mode-linux in CI).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startCluster, until } from '../helpers/cluster';
import { checkDirection, ProcCluster } from '../helpers/proc-cluster';
import { testTransports } from '../helpers/transports';

const RESTARTS = Number(process.env.LOWCOMMS_TEST_RESTARTS ?? 50);
const N = 1000;

for (const transport of testTransports()) {
  describe(`node restarts over ${transport}`, () => {
    test(`the sender restarts: the new incarnation's ${N} messages arrive, none taken for duplicates`, async (t) => {
      const cl = new ProcCluster(t, transport, 2);
      await cl.startAll();
      await Promise.all([cl.send(2, 1, N), cl.send(1, 2, N)]);
      await cl.until(() => (cl.read(1, 1).got.get('2:1')?.length ?? 0) === N && (cl.read(2, 1).got.get('1:1')?.length ?? 0) === N, 60_000, 'the first session');
      await cl.kill(2);
      await cl.start(2);
      await Promise.all([cl.send(2, 1, N), cl.send(1, 2, N)]);
      await cl.until(() => (cl.read(1, 1).got.get('2:2')?.length ?? 0) >= N, 60_000, "node 1 to deliver the new node 2's messages");
      await cl.until(() => (cl.read(2, 2).got.get('1:1')?.length ?? 0) >= N, 60_000, 'the new node 2 to get node 1\'s new messages');
      const one = cl.read(1, 1);
      assert.deepEqual(one.got.get('2:2'), Array.from({ length: N }, (_, i) => i), 'new session: 0..999 in order, once');
      assert.deepEqual(cl.read(2, 2).got.get('1:1'), Array.from({ length: N }, (_, i) => N + i), 'to the new node 2: 1000..1999');
      assert.equal(one.restarts.get(2), 1, "node 1 saw node 2's restart once");
      const s1 = await cl.stats(1);
      const n2 = s1.nodes.find((x) => x.nodeid === 2)!;
      assert.equal(n2.restarts, 1);
      assert.equal(n2.dupDropped, 0, 'nothing of the new session taken for a duplicate');
      for (const [s, d] of [[1, 2], [2, 1]] as const) assert.deepEqual(checkDirection(cl, s, d, true).errors, []);
    });

    test(`the receiver restarts: the survivor's next ${N} messages reach the new incarnation, none held as a gap`, async (t) => {
      const cl = new ProcCluster(t, transport, 2);
      await cl.startAll();
      await Promise.all([cl.send(2, 1, N), cl.send(1, 2, N)]);
      await cl.until(() => (cl.read(1, 1).got.get('2:1')?.length ?? 0) === N, 60_000, 'the first session');
      await cl.kill(1);
      await cl.start(1);
      await Promise.all([cl.send(2, 1, N), cl.send(1, 2, N)]);
      await cl.until(() => (cl.read(1, 2).got.get('2:1')?.length ?? 0) >= N, 60_000, 'the new node 1 to deliver node 2\'s new messages');
      assert.deepEqual(cl.read(1, 2).got.get('2:1'), Array.from({ length: N }, (_, i) => N + i), 'to the new node 1: 1000..1999 in order, once');
      await cl.until(() => (cl.read(2, 1).got.get('1:2')?.length ?? 0) >= N, 60_000, "node 2 to deliver the new node 1's messages");
      assert.deepEqual(cl.read(2, 1).got.get('1:2'), Array.from({ length: N }, (_, i) => i));
      const s2 = await cl.quiet(2, 10_000);
      const n1 = s2.nodes.find((x) => x.nodeid === 1)!;
      assert.equal(n1.restarts, 1);
      assert.equal(n1.unacked, 0, 'the new node 1 acked everything: nothing held unacked');
      assert.equal(n1.gapDropped + (await cl.stats(1)).nodes.find((x) => x.nodeid === 2)!.gapDropped, 0, 'no frame dropped as a gap');
      for (const [s, d] of [[1, 2], [2, 1]] as const) assert.deepEqual(checkDirection(cl, s, d, true).errors, []);
    });

    test('a restart in the middle of the FIN handshake, while the peer is frozen: the new session runs', async (t) => {
      const cl = new ProcCluster(t, transport, 2);
      await cl.startAll();
      await Promise.all([cl.send(2, 1, 100), cl.send(1, 2, 100)]);
      await cl.until(() => (cl.read(1, 1).got.get('2:1')?.length ?? 0) === 100 && (cl.read(2, 1).got.get('1:1')?.length ?? 0) === 100, 60_000, 'the first session');
      cl.signal(1, 'SIGSTOP');
      await cl.beginClose(2); // FIN_WAIT1: node 1 cannot answer
      await new Promise((r) => setTimeout(r, 300));
      await cl.kill(2);
      await cl.start(2); // it connects to the frozen node 1: the handshake waits
      cl.signal(1, 'SIGCONT'); // node 1 now reads the old FIN, then meets the new incarnation
      // Until node 1 meets the new incarnation, node 2 is a node that said FIN: what node 1
      // sends meanwhile is dropped and reported ('closing'). The new node 2's first messages
      // bring its connection, and with it the news; from then on, nothing is dropped.
      await cl.send(2, 1, N);
      await cl.until(() => (cl.read(1, 1).restarts.get(2) ?? 0) === 1, 30_000, "node 1 to see node 2's restart");
      await cl.send(1, 2, N);
      await cl.until(() => (cl.read(1, 1).got.get('2:2')?.length ?? 0) >= N, 60_000, "node 1 to deliver the new node 2's messages");
      await cl.until(() => (cl.read(2, 2).got.get('1:1')?.length ?? 0) >= N, 60_000, "the new node 2 to get node 1's messages");
      const n2 = (await cl.quiet(1, 10_000)).nodes.find((x) => x.nodeid === 2)!;
      assert.equal(n2.restarts, 1);
      assert.equal(n2.state, 'established', 'the old FIN handshake left nothing behind');
      assert.equal(n2.unacked, 0);
      for (const [s, d] of [[1, 2], [2, 1]] as const) assert.deepEqual(checkDirection(cl, s, d, true).errors, []);
    });

    test(`${RESTARTS} restarts on a 3-node cluster with traffic all ways (some two at once): exactly once, in order, losses reported`, async (t) => {
      const cl = new ProcCluster(t, transport, 3);
      await cl.startAll();
      for (const id of [1, 2, 3]) cl.stream(id, 8);
      let x = 4242;
      const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
      let restarts = 0;
      while (restarts < RESTARTS) {
        await new Promise((r) => setTimeout(r, 100 + (rnd() % 200)));
        const a = 1 + (rnd() % 3);
        const both = rnd() % 5 === 0 && restarts + 2 <= RESTARTS;
        const victims = both ? [a, 1 + (a % 3)] : [a];
        await Promise.all(victims.map((v) => cl.kill(v)));
        await Promise.all(victims.map((v) => cl.start(v)));
        for (const v of victims) cl.stream(v, 8);
        restarts += victims.length;
      }
      // Let every node catch up, then stop the traffic and wait for every ack.
      await new Promise((r) => setTimeout(r, 500));
      const stats = await Promise.all([1, 2, 3].map((id) => cl.quiet(id, 30_000)));
      for (const s of stats) for (const n of s.nodes) assert.equal(n.unacked, 0, `node ${s.nodeid}: ${n.unacked} unacked for ${n.nodeid} at the end (stalled)`);
      let delivered = 0;
      let holes = 0;
      let dropped = 0;
      const errors: string[] = [];
      for (const s of [1, 2, 3])
        for (const d of [1, 2, 3]) {
          if (s === d) continue;
          const r = checkDirection(cl, s, d, true);
          delivered += r.delivered;
          holes += r.holes;
          dropped += r.dropped;
          errors.push(...r.errors);
        }
      t.diagnostic(`${transport}: ${restarts} restarts, ${delivered} delivered, ${holes} lost with a dead incarnation, ${dropped} reported dropped`);
      assert.deepEqual(errors.slice(0, 20), []);
      assert.ok(delivered > restarts * 100, `traffic flowed (${delivered} delivered)`);
    });
  });
}

for (const transport of testTransports()) {
  test(`resetNode() on a live lowcomms peer (${transport}): the peer starts its side over too, and traffic goes on both ways`, async (t) => {
    const cl = await startCluster(t, { n: 2, transport });
    const got = new Map<number, string[]>([[1, []], [2, []]]);
    const restarts: number[] = [];
    for (const id of [1, 2]) cl.get(id).onMessage((m) => got.get(id)!.push(m.body.toString()));
    cl.get(2).on('restart', (e) => restarts.push(e.nodeid));
    for (let i = 0; i < 50; i++) {
      cl.get(1).send(2, { body: `a${i}` });
      cl.get(2).send(1, { body: `b${i}` });
    }
    await until(() => got.get(1)!.length === 50 && got.get(2)!.length === 50, 10_000, 'the first session');
    cl.get(1).resetNode(2);
    for (let i = 50; i < 100; i++) cl.get(1).send(2, { body: `a${i}` });
    await until(() => got.get(2)!.length === 100, 10_000, "node 1's messages after the reset");
    for (let i = 50; i < 100; i++) cl.get(2).send(1, { body: `b${i}` });
    await until(() => got.get(1)!.length === 100, 10_000, "node 2's messages after the reset");
    assert.deepEqual(got.get(2), Array.from({ length: 100 }, (_, i) => `a${i}`));
    assert.deepEqual(got.get(1), Array.from({ length: 100 }, (_, i) => `b${i}`));
    assert.deepEqual(restarts, [1], 'node 2 took the reset for a restart of node 1 and started over');
    const n2 = cl.get(2).stats().nodes.find((n) => n.nodeid === 1)!;
    assert.equal(n2.gapDropped, 0, 'nothing of the new session dropped as a gap');
  });
}

for (const transport of testTransports()) {
  test(`removeNode() + addNode() of a live lowcomms peer (${transport}): a new session on both sides, nothing delivered twice`, async (t) => {
    // Acks only after 256 consumed messages or 10 s: node 2 still holds the first 20 unacked.
    const cl = await startCluster(t, { n: 2, transport, options: { ackDelayMs: 10_000 } });
    const got = new Map<number, string[]>([[1, []], [2, []]]);
    const dropped: Array<{ count: number; reason: string }> = [];
    const restarts: number[] = [];
    for (const id of [1, 2]) cl.get(id).onMessage((m) => got.get(id)!.push(m.body.toString()));
    cl.get(1).on('dropped', (d) => dropped.push({ count: d.count, reason: d.reason }));
    cl.get(1).on('restart', (e) => restarts.push(e.nodeid));
    for (let i = 0; i < 20; i++) cl.get(1).send(2, { body: `a${i}` });
    await until(() => got.get(2)!.length === 20, 10_000, 'the first 20 messages');
    assert.equal(cl.get(1).stats().nodes.find((n) => n.nodeid === 2)!.unacked, 20, 'node 2 has not acked them yet');
    // Node 2's application drops node 1 (say, its membership saw it leave) and takes it back;
    // its first message brings node 1 the news.
    cl.get(2).removeNode(1);
    cl.get(2).addNode(cl.nodes.find((n) => n.nodeid === 1)!);
    cl.get(2).send(1, { body: 'b0' });
    await until(() => restarts.length > 0 && got.get(1)!.length === 1, 10_000, "node 1 to meet node 2's new session");
    for (let i = 20; i < 40; i++) cl.get(1).send(2, { body: `a${i}` });
    await until(() => got.get(2)!.length >= 40, 10_000, 'the next 20 messages');
    await new Promise((r) => setTimeout(r, 200)); // a duplicate would come with them
    assert.deepEqual(got.get(2), Array.from({ length: 40 }, (_, i) => `a${i}`), 'every message once, in order');
    // The 20 node 2's old session never acked are reported to node 1, not resent into the new one.
    assert.deepEqual(restarts, [2]);
    assert.deepEqual(dropped, [{ count: 20, reason: 'restart' }]);
  });
}
