/**
 * midcomms under fire: connections aborted from outside mid-stream, again and again,
 * while three nodes stream to each other. Every message sent must arrive exactly once,
 * in order per sender. Runs for each transport (SCTP inside user-mode-linux in CI).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startCluster, until } from '../helpers/cluster';
import { Checker, pump } from '../helpers/traffic';
import { testTransports } from '../helpers/transports';

const KILLS = Number(process.env.LOWCOMMS_TEST_KILLS ?? 100);
const COUNT = Number(process.env.LOWCOMMS_TEST_FAULT_MESSAGES ?? 30_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const transport of testTransports()) {
  describe(`faults over ${transport}`, () => {
    test(`connections aborted ${KILLS} times mid-stream: nothing lost, nothing duplicated, order kept`, async (t) => {
      const cl = await startCluster(t, { n: 3, transport, options: { connectRetryMaxMs: 50 } });
      const checkers = new Map<number, Checker>();
      for (const [id, c] of cl.comms) {
        const ck = new Checker();
        checkers.set(id, ck);
        c.onMessage((m) => ck.check(m));
      }
      const pumps: Promise<number>[] = [];
      for (const a of [1, 2, 3]) for (const b of [1, 2, 3]) if (a !== b) pumps.push(pump(cl.get(a), b, COUNT, { yieldEvery: 200 }));
      let kills = 0;
      const killer = (async () => {
        let x = 12345;
        while (kills < KILLS) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          const a = 1 + (x % 3);
          const b = 1 + ((a + (x >>> 8) % 2) % 3);
          cl.get(a).killConnections(b);
          kills++;
          await sleep(5 + ((x >>> 16) % 20));
        }
      })();
      await Promise.all([...pumps, killer]);
      await until(
        () => [...checkers.values()].every((ck) => ck.received >= 2 * COUNT),
        180_000,
        'every message delivered after the faults',
      );
      let resent = 0;
      let dups = 0;
      let gaps = 0;
      let disconnects = 0;
      for (const c of cl.comms.values()) {
        for (const n of c.stats().nodes) {
          resent += n.resent;
          dups += n.dupDropped;
          gaps += n.gapDropped;
          disconnects += n.disconnects;
        }
      }
      for (const [id, ck] of checkers) {
        assert.deepEqual(ck.errors, [], `node ${id}`);
        assert.equal(ck.received, 2 * COUNT, `node ${id}: exactly once`);
      }
      const sent = 6 * COUNT;
      const delivered = [...checkers.values()].reduce((a, ck) => a + ck.received, 0);
      t.diagnostic(
        `${transport}: kills=${kills} sent=${sent} delivered=${delivered} resent=${resent} ` +
          `duplicates_dropped=${dups} gaps_dropped=${gaps} disconnects=${disconnects}`,
      );
      console.log(
        `# faults ${transport}: kills=${kills} sent=${sent} delivered=${delivered} resent=${resent} duplicates_dropped=${dups} gaps_dropped=${gaps} disconnects=${disconnects}`,
      );
      assert.ok(disconnects > 0, 'the faults took effect');
      assert.equal(delivered, sent);
    });
  });
}
