/**
 * The public API, a test per call: typed errors, lifecycle (no fd or thread survives
 * close()), worker_threads, node table changes while running, the three hand-offs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  AddressInUseError,
  ConfigError,
  Lowcomms,
  MessageError,
  MessageSizeError,
  NodeTable,
  SctpUnavailableError,
  StateError,
  UnknownNodeError,
  type DlmMessage,
} from '../lib';
import { loadBinding } from '../binding';
import { nodeList, startCluster, until } from './helpers/cluster';
import { sctpAvailable, testPort } from './helpers/transports';

const fds = () => fs.readdirSync('/proc/self/fd').length;
const threads = () => fs.readdirSync('/proc/self/task').length;

describe('errors are typed', () => {
  test('bad options are ConfigError', () => {
    assert.throws(() => new Lowcomms({ nodeid: 1.5, nodes: nodeList(2) }), ConfigError);
    assert.throws(() => new Lowcomms({ nodeid: 7, nodes: nodeList(2) }), ConfigError);
    assert.throws(() => new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: 70000 }), ConfigError);
    assert.throws(
      () => new Lowcomms({ nodeid: 1, nodes: nodeList(2), transport: 'udp' as 'tcp' }),
      (e: unknown) => e instanceof ConfigError && e.code === 'ERR_LOWCOMMS_CONFIG',
    );
    assert.throws(
      () => new Lowcomms({ nodeid: 1, nodes: [{ nodeid: 1, addrs: ['127.0.0.1', '127.0.1.1'] }], transport: 'tcp' }),
      /multi-homed/,
    );
    assert.throws(() => new Lowcomms({ nodeid: 1, nodes: nodeList(2), batching: { entryBytes: 100 } }), ConfigError);
  });

  test('send() before start() and after close() is StateError; start() twice too', async () => {
    const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: testPort() });
    assert.throws(() => c.send(2, { body: 'x' }), StateError);
    await c.start();
    await assert.rejects(c.start(), StateError);
    await c.close();
    assert.throws(() => c.send(2, { body: 'x' }), StateError);
    assert.deepEqual(await c.close(), { flushed: true, unacked: {} }, 'close() twice is harmless');
  });

  test('unknown node, own node and over-size messages are refused at send()', async (t) => {
    const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: testPort() });
    t.after(() => c.close({ flush: false }));
    await c.start();
    assert.throws(() => c.send(9, { body: 'x' }), (e: unknown) => e instanceof UnknownNodeError && e.nodeid === 9);
    assert.throws(() => c.send(1, { body: 'x' }), ConfigError);
    assert.throws(() => c.send(2, { body: Buffer.alloc(4072 - 16 + 1) }), MessageSizeError);
    assert.ok(c.send(2, { body: Buffer.alloc(4072 - 16) }), 'exactly 4072 bytes is fine');
    assert.throws(() => c.send(2, Buffer.alloc(8)), MessageSizeError);
    const lying = Buffer.alloc(32);
    lying.writeUInt16LE(40, 12);
    assert.throws(() => c.send(2, lying), (e: unknown) => e instanceof MessageError && /h_length/.test(e.message));
    assert.throws(() => c.send(2, { cmd: 7, body: 'x' }), MessageError, 'a receiver would drop cmd 7');
  });

  test('the cluster port in use is AddressInUseError', async (t) => {
    const port = testPort();
    const squatter = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => squatter.once('listening', r));
    t.after(() => squatter.close());
    const fd0 = fds();
    const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port });
    await assert.rejects(c.start(), AddressInUseError);
    assert.equal(fds(), fd0, 'a failed start holds no fd');
    await assert.rejects(c.start(), AddressInUseError, 'a failed start can be retried');
  });

  test("transport 'sctp' without kernel SCTP is SctpUnavailableError naming the fix", async (t) => {
    // On every host: where the kernel has SCTP, its probe is made to answer as a kernel
    // without it does (ESOCKTNOSUPPORT), so this path is tested everywhere.
    const binding = loadBinding();
    const probe = binding.sctpAvailable;
    if (sctpAvailable()) {
      binding.sctpAvailable = () => ({ ok: false, errno: 94 });
      t.after(() => (binding.sctpAvailable = probe));
    }
    const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: testPort(), transport: 'sctp' });
    t.after(() => c.close({ flush: false }));
    await assert.rejects(
      c.start(),
      (e: unknown) => e instanceof SctpUnavailableError && /npx lowcomms uml -- /.test(e.message) && /errno 94/.test(e.message),
    );
  });

  test("transport 'detect' picks TCP for single-homed nodes", async (t) => {
    const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: testPort(), transport: 'detect' });
    t.after(() => c.close({ flush: false }));
    await c.start();
    assert.equal(c.transport, 'tcp');
  });
});

describe('lifecycle', () => {
  test('100 instances opened and closed leave no fd and no thread behind', async () => {
    // Warm up: the first instance loads the addon and starts libuv's pools.
    const w = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port: testPort() });
    await w.start();
    await w.close();
    const fd0 = fds();
    const th0 = threads();
    const port = testPort();
    for (let i = 0; i < 100; i++) {
      const c = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port });
      await c.start();
      c.send(2, { body: 'to nobody' }); // makes the send thread try to connect
      await c.close({ flush: false });
    }
    await new Promise((r) => setTimeout(r, 50));
    // Other tests' sockets may still be closing: nothing may be added, fewer is fine.
    assert.ok(fds() <= fd0, `fds ${fds()} <= ${fd0}`);
    assert.ok(threads() <= th0, `threads ${threads()} <= ${th0}`);
  });

  test('works inside worker_threads, and a worker that exits without close() is cleaned up', async () => {
    const port = testPort();
    const main = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port });
    const got: DlmMessage[] = [];
    main.onMessage((m) => got.push(m));
    await main.start();
    const th0 = threads();
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      require('tsx/cjs');
      const { Lowcomms } = require(workerData.lib);
      (async () => {
        const c = new Lowcomms({ nodeid: 2, nodes: workerData.nodes, port: workerData.port });
        await c.start();
        for (let i = 0; i < 100; i++) c.send(1, { lockspace: i, body: 'from a worker' });
        parentPort.postMessage('sent');
        if (workerData.close) await c.close();
        parentPort.postMessage('done');
      })();`;
    for (const close of [true, false]) {
      got.length = 0;
      const w = new Worker(src, {
        eval: true,
        workerData: { lib: require.resolve('../lib'), nodes: nodeList(2), port, close },
      });
      await new Promise<void>((resolve, reject) => {
        w.on('message', (m) => m === 'done' && resolve());
        w.on('error', reject);
      });
      await until(() => got.length === 100, 10_000, `100 messages from the worker (close=${close})`);
      await w.terminate(); // without close(): the env cleanup hook stops the threads
      main.resetNode(2);
    }
    await main.close({ flush: false });
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(threads() <= th0, `threads ${threads()} <= ${th0}`);
  });
});

describe('node table changes while running', () => {
  test('addNode(): a node added at run time gets traffic', async (t) => {
    const port = testPort();
    const a = new Lowcomms({ nodeid: 1, nodes: nodeList(1), port });
    const b = new Lowcomms({ nodeid: 2, nodes: nodeList(2), port });
    t.after(() => Promise.all([a.close({ flush: false }), b.close({ flush: false })]));
    const got: DlmMessage[] = [];
    b.onMessage((m) => got.push(m));
    await a.start();
    await b.start();
    assert.throws(() => a.send(2, { body: 'x' }), UnknownNodeError);
    a.addNode({ nodeid: 2, addrs: ['127.0.0.2'] });
    assert.ok(a.send(2, { body: 'hello' }));
    await until(() => got.length === 1, 5000, 'delivery to the added node');
    assert.equal(got[0]!.body.toString(), 'hello');
  });

  test("removeNode(): queued messages are dropped and reported by 'dropped'", async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp', local: [1] });
    const n1 = cl.get(1);
    const dropped: number[] = [];
    n1.on('dropped', (d) => dropped.push(d.count));
    for (let i = 0; i < 10; i++) n1.send(2, { body: 'nobody home' });
    assert.equal(n1.removeNode(2), true);
    await until(() => dropped.length > 0, 2000, 'dropped event');
    assert.equal(dropped[0], 10);
    assert.throws(() => n1.send(2, { body: 'x' }), UnknownNodeError);
    assert.throws(() => n1.removeNode(1), ConfigError);
  });

  test('a NodeTable changed behind our back: send() sees the removal at once', async (t) => {
    const table = new NodeTable(nodeList(3));
    const a = new Lowcomms({ nodeid: 1, nodes: table, port: testPort() });
    t.after(() => a.close({ flush: false }));
    await a.start();
    assert.equal(a.send(2, { lockspace: 1, cmd: 1, body: Buffer.from('queued') }), true);
    table.remove(2);
    assert.throws(() => a.send(2, { lockspace: 1, cmd: 1, body: Buffer.from('x') }), UnknownNodeError);
    assert.equal(a.send(3, { lockspace: 1, cmd: 1, body: Buffer.from('x') }), true);
    assert.throws(() => a.send(1, { lockspace: 1, cmd: 1, body: Buffer.from('x') }), ConfigError);
  });
});

describe('closing one node', () => {
  test('closeNode(): FIN handshake with that node, everything acked, then it is removed', async (t) => {
    const cl = await startCluster(t, { n: 3, transport: 'tcp' });
    let got = 0;
    cl.get(2).onMessage(() => got++);
    const closed: number[] = [];
    cl.get(2).on('closed', (e) => closed.push(e.nodeid));
    for (let i = 0; i < 1000; i++) cl.get(1).send(2, { lockspace: i, body: 'bye soon' });
    const res = await cl.get(1).closeNode(2);
    assert.deepEqual(res, { flushed: true, unacked: {} });
    // Acked means handed to node 2's application queue; its handler runs on its next turn.
    await until(() => got === 1000, 2000, 'everything sent before closeNode() delivered');
    await until(() => closed.includes(1), 2000, "node 2 saw node 1's FIN handshake complete");
    assert.equal(cl.get(1).nodes.has(2), false);
    assert.throws(() => cl.get(1).send(2, { body: 'x' }), UnknownNodeError);
    assert.ok(cl.get(1).send(3, { body: 'others unaffected' }));
  });

  test('closeNode() of a dead node times out and reports what was unacked', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp', local: [1] });
    for (let i = 0; i < 20; i++) cl.get(1).send(2, { body: 'lost cause' });
    const res = await cl.get(1).closeNode(2, { timeoutMs: 300 });
    assert.equal(res.flushed, false);
    assert.equal(res.unacked[2], 21, '20 messages and the FIN');
  });
});

describe('protocol 3.1', () => {
  test("protocol '3.1' peers talk without the midcomms wrapper", async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp', options: { protocol: '3.1' } });
    const got: DlmMessage[] = [];
    cl.get(2).onMessage((m) => got.push(m));
    for (let i = 0; i < 100; i++) cl.get(1).send(2, { lockspace: i, body: 'old school' });
    await until(() => got.length === 100, 5000, '100 messages');
    assert.equal(got[0]!.version, 0x00030001);
    const s = cl.get(1).stats().nodes[0]!;
    assert.equal(s.version, '3.1');
    assert.equal(s.seqSend, 0, 'no sequence numbers');
    assert.equal(s.unacked, 0, 'nothing kept for resend');
  });
});

describe('hand-offs', () => {
  test('onMessage, onBatch and messages() see the same messages; unsubscribe works', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    const perMsg: number[] = [];
    const perBatch: number[] = [];
    const unsub = cl.get(2).onMessage((m) => perMsg.push(m.lockspace));
    cl.get(2).onBatch((b) => {
      for (let i = 0; i < b.length; i++) perBatch.push(b.message(i).lockspace);
    });
    const it = cl.get(2).messages();
    for (let i = 0; i < 1000; i++) cl.get(1).send(2, { lockspace: i, cmd: 1, body: `m${i}` });
    const viaIter: number[] = [];
    for await (const m of it) {
      viaIter.push(m.lockspace);
      assert.equal(m.nodeid, 1);
      assert.equal(m.cmd, 1);
      assert.equal(m.body.toString(), `m${m.lockspace}`);
      if (viaIter.length === 1000) break;
    }
    const want = Array.from({ length: 1000 }, (_, i) => i);
    assert.deepEqual(viaIter, want);
    assert.deepEqual(perMsg, want);
    assert.deepEqual(perBatch, want);
    unsub();
    cl.get(1).send(2, { lockspace: 5000 });
    await until(() => perBatch.length === 1001, 5000, 'one more');
    assert.equal(perMsg.length, 1000, 'unsubscribed handler not called');
  });

  test('stats() reports per-node counters and the batching of the hand-off', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    let got = 0;
    cl.get(2).onBatch((b) => (got += b.length));
    for (let i = 0; i < 5000; i++) cl.get(1).send(2, { lockspace: i, body: 'x' });
    await until(() => got === 5000, 5000, 'all');
    // Node 1 learns node 2's version from the first frame node 2 sends it: its ACK, which
    // follows the deliveries by up to ackDelayMs.
    await until(() => cl.get(1).stats().nodes[0]!.version === '3.2', 2000, "node 2's ACK");
    const s1 = cl.get(1).stats();
    const s2 = cl.get(2).stats();
    assert.equal(s1.nodes.length, 1);
    assert.equal(s1.nodes[0]!.nodeid, 2);
    assert.equal(s1.nodes[0]!.txMsgs, 5000);
    assert.equal(s2.nodes[0]!.rxMsgs, 5000);
    assert.equal(s1.nodes[0]!.version, '3.2');
    // Every frame on the wire: 24-byte OPTS wrapper + 16-byte header + the 1-byte body.
    assert.equal(s1.nodes[0]!.txBytes, 5000 * 41);
    // Coalesced: at least a page (a whole writequeue entry) per syscall on average; the
    // 5000 sends ran in one tick, so measured: 1 syscall.
    const pages = Math.floor((5000 * 41) / 4096);
    assert.ok(s1.nodes[0]!.txSyscalls <= pages, `coalesced sends: ${s1.nodes[0]!.txSyscalls} syscalls for ${5000 * 41} bytes (at most ${pages})`);
    // One crossing per read (up to 64 KiB), not per message: at least 50 messages per
    // crossing on average (measured: 2 crossings).
    assert.ok(s2.batches <= 5000 / 50, `one crossing per batch, not per message: ${s2.batches} batches for 5000 messages`);
  });
});
