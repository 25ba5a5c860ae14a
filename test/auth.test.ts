/**
 * Peer authentication with a shared cluster key (off by default): nodes with the key talk;
 * a node with the wrong key, or without auth (as a kernel DLM peer), is refused and
 * counted, and never gets a message in; the handshake's cost is measured.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, Lowcomms, type DlmMessage } from '../lib';
import { nodeList, until } from './helpers/cluster';
import { Checker, pump } from './helpers/traffic';
import { testPort } from './helpers/transports';

const KEY = 'correct horse battery staple 42';

// TCP: SCTP associations are not authenticated yet (see the last test).
const transport = 'tcp' as const;

describe(`peer authentication over ${transport}`, () => {
  test('nodes holding the key exchange messages as usual, across kills and reconnects', async (t) => {
    const port = testPort();
    const a = new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport, port, auth: { key: KEY } });
    const b = new Lowcomms({ nodeid: 2, nodes: nodeList(2), transport, port, auth: { key: KEY } });
    t.after(() => Promise.all([a.close({ flush: false }), b.close({ flush: false })]));
    const ck = new Checker();
    b.onMessage((m) => ck.check(m));
    await a.start();
    await b.start();
    const sending = pump(a, 2, 20_000, { yieldEvery: 500 });
    // Once traffic flows (the first handshake is done), abort the connection repeatedly:
    // every reconnect authenticates again.
    await until(() => ck.received > 0, 20_000, 'the first delivery');
    for (let i = 0; i < 10; i++) {
      a.killConnections(2);
      const before = ck.received;
      await until(() => ck.received > before || ck.received === 20_000, 20_000, 'traffic after the reconnect');
    }
    await sending;
    await until(() => ck.received === 20_000, 20_000, 'all delivered');
    assert.deepEqual(ck.errors, []);
    assert.equal(a.stats().authFailures + b.stats().authFailures, 0);
    assert.ok(a.stats().nodes[0]!.connects > 1, 'the kills forced reconnects, each authenticated again');
  });

  for (const [what, intruderAuth] of [
    ['a wrong key', { key: 'not the cluster key, not at all' }],
    ['no authentication (a kernel DLM peer)', undefined],
  ] as const) {
    test(`a node with ${what} is refused and counted, and gets nothing in`, async (t) => {
      const port = testPort();
      const a = new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport, port, auth: { key: KEY } });
      const intruder = new Lowcomms({ nodeid: 2, nodes: nodeList(2), transport, port, connectRetryMaxMs: 100, ...(intruderAuth ? { auth: intruderAuth } : {}) });
      t.after(() => Promise.all([a.close({ flush: false }), intruder.close({ flush: false })]));
      const got: DlmMessage[] = [];
      a.onMessage((m) => got.push(m));
      const rejects: string[] = [];
      a.on('reject', (r) => rejects.push(r.reason ?? r.address));
      await a.start();
      await intruder.start();
      intruder.send(1, { body: 'let me in' });
      await until(() => a.stats().authFailures >= 1, 10_000, 'an authentication failure');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(got.length, 0, 'nothing from the intruder was delivered');
      assert.ok(rejects.length >= 1, 'reported');
    });
  }

  test('options: a key shorter than 16 bytes, or auth with SCTP, is a ConfigError', () => {
    assert.throws(() => new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport, auth: { key: 'short' } }), ConfigError);
    assert.throws(() => new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport: 'sctp', auth: { key: KEY } }), /TCP only/);
  });

  test('cost: time to the first message on a new connection, with and without the handshake', async (t) => {
    const times: Record<string, number[]> = { off: [], on: [] };
    for (let round = 0; round < 5; round++) {
      for (const mode of ['off', 'on'] as const) {
        const port = testPort();
        const opts = mode === 'on' ? { auth: { key: KEY } } : {};
        const a = new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport, port, ...opts });
        const b = new Lowcomms({ nodeid: 2, nodes: nodeList(2), transport, port, ...opts });
        let got = 0;
        b.onMessage(() => got++);
        await a.start();
        await b.start();
        const t0 = performance.now();
        a.send(2, { body: 'first' });
        await until(() => got === 1, 5000, 'first message');
        times[mode]!.push(performance.now() - t0);
        await Promise.all([a.close({ flush: false }), b.close({ flush: false })]);
      }
    }
    const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const line = `auth cost (${transport}): first message on a new connection ${med(times.off!).toFixed(2)} ms without auth, ${med(times.on!).toFixed(2)} ms with (median of 5)`;
    t.diagnostic(line);
    console.log(`# ${line}`);
  });
});
