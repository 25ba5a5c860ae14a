/**
 * With auth every send unit after the handshake is one record sealed under the
 * connection's (SCTP: association's) keys. The sender is made to misbehave as an attacker
 * on the path would (engine.tamperRecords, a fault-injection hook: one record altered, a
 * forged one injected, one replayed, dropped or swapped with the next): the receiver
 * closes that connection or aborts that association and counts it, delivers nothing of
 * the bad record, and on the next one (a new handshake, new keys, counters from 0) every
 * message arrives exactly once, in order. On TCP the same faults are also made on the
 * wire by a relay (auth-records.test.ts); on SCTP, which node:net cannot relay, this is
 * the test (user-mode-linux in CI).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { NativeEngine } from '../../binding';
import type { Lowcomms } from '../../lib';
import { startCluster, until } from '../helpers/cluster';
import { Checker, pump } from '../helpers/traffic';
import { testTransports } from '../helpers/transports';

const KEY = randomBytes(32);
const engineOf = (c: Lowcomms) => (c as unknown as { engine: NativeEngine }).engine;

for (const transport of testTransports())
  describe(`auth records over ${transport}: a record altered, injected, replayed, dropped or reordered`, () => {
    for (const records of ['encrypt', 'integrity'] as const)
      for (const tamper of ['flip', 'inject', 'replay', 'drop', 'reorder'] as const) {
        test(`${records}: ${tamper} -> connection closed and counted, nothing lost or duplicated`, async (t) => {
          const cl = await startCluster(t, { n: 2, transport, options: { connectRetryMaxMs: 100, auth: { key: KEY, records } } });
          const a = cl.get(1);
          const b = cl.get(2);
          const ck = new Checker();
          b.onMessage((m) => ck.check(m));
          const rejects: string[] = [];
          b.on('reject', (r) => rejects.push(`${r.nodeid}: ${r.reason}`));
          // A first half on a session that is up, then the fault on the next record sent,
          // and a second half behind it (a dropped record is noticed by the one after it).
          const HALF = 2000;
          const COUNT = 2 * HALF;
          await pump(a, 2, HALF, { yieldEvery: 20 });
          await until(() => ck.received === HALF, 20_000, `the first ${HALF} messages`);
          assert.equal(engineOf(a).tamperRecords(2, tamper), true);
          await pump(a, 2, HALF, { start: HALF, yieldEvery: 20 });
          await until(() => ck.received >= COUNT, 30_000, `all ${COUNT} messages (received ${ck.received})`);
          await until(() => b.stats().recordFailures >= 1, 10_000, 'the bad record counted');
          assert.deepEqual(ck.errors, [], 'in order, none lost, none duplicated, none altered');
          assert.equal(ck.received, COUNT);
          const s = b.stats();
          assert.ok(s.nodes.find((n) => n.nodeid === 1)!.badRecords >= 1, 'per node too');
          assert.equal(s.authFailures, 0, 'the handshakes themselves all passed');
          await until(() => rejects.some((r) => r.startsWith('1: record')), 5000, `a reject event (got: ${rejects.join('; ')})`);
        });
      }
  });
