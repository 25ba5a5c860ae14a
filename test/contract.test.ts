/**
 * The API contract (issue 13): bad input from a JavaScript caller gets a typed error at
 * the call, and loses nothing else. docs/errors.md is the table these tests check.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, Lowcomms, MessageError, MessageSizeError, type DlmMessage } from '../lib';
import { nodeList, startCluster, until } from './helpers/cluster';
import { testPort } from './helpers/transports';

const isMessageError = (re: RegExp) => (e: unknown) => e instanceof MessageError && e.code === 'ERR_LOWCOMMS_MESSAGE' && re.test(e.message);

describe('send() input', () => {
  test('a body that is not bytes or a string throws, and other messages of the tick still arrive', async (t) => {
    const cl = await startCluster(t, { n: 3, transport: 'tcp' });
    const got: DlmMessage[] = [];
    cl.get(3).onMessage((m) => got.push({ ...m, body: Buffer.from(m.body) }));
    const to2: string[] = [];
    cl.get(2).onMessage((m) => to2.push(m.body.toString('hex')));
    const n1 = cl.get(1);
    assert.equal(n1.send(3, { body: 'before' }), true);
    for (const bad of [42, true, {}, new ArrayBuffer(4), null, [1, 2], () => 1])
      assert.throws(() => n1.send(2, { body: bad as never }), isMessageError(/body must be/), `body ${String(bad)}`);
    assert.equal(n1.send(3, { body: 'after' }), true);
    // A DataView or any typed array is the bytes it spans.
    assert.equal(n1.send(2, { body: new DataView(Uint8Array.of(1, 2, 3, 4).buffer, 1, 2) }), true);
    await until(() => got.length === 2 && to2.length === 1, 5000, 'the valid messages');
    assert.deepEqual(got.map((m) => m.body.toString()), ['before', 'after']);
    assert.deepEqual(to2, ['0203']);
  });

  test('typed arrays are their bytes; strings, numbers, arrays are refused; fields are u32', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    const got: DlmMessage[] = [];
    cl.get(2).onMessage((m) => got.push({ ...m, body: Buffer.from(m.body) }));
    const n1 = cl.get(1);
    const u16 = Uint16Array.of(0x1234, 0x5678);
    assert.equal(n1.send(2, { lockspace: 7, body: u16 }), true);
    const f64 = Float64Array.of(1.5);
    assert.equal(n1.send(2, { body: f64 }), true);
    for (const bad of ['hello', 42, [], null, undefined, true, new ArrayBuffer(16)])
      assert.throws(() => n1.send(2, bad as never), isMessageError(/send\(\) takes/), `message ${String(bad)}`);
    for (const ls of ['abc', NaN, -1, 2 ** 32 + 5, 1.5, 2n])
      assert.throws(() => n1.send(2, { lockspace: ls as never, body: 'x' }), isMessageError(/lockspace must be/), `lockspace ${String(ls)}`);
    for (const cmd of ['1', NaN, -1, 256 + 1, 1.5])
      assert.throws(() => n1.send(2, { cmd: cmd as never, body: 'x' }), isMessageError(/cmd must be/), `cmd ${String(cmd)}`);
    assert.throws(() => n1.send(2, { data: 'misspelt' } as never), isMessageError(/unknown message field 'data'/));
    await until(() => got.length === 2, 5000, 'two messages');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 2, 'nothing else was sent');
    assert.equal(got[0]!.lockspace, 7);
    assert.deepEqual([...got[0]!.body], [0x34, 0x12, 0x78, 0x56]);
    assert.deepEqual(Buffer.from(got[1]!.body), Buffer.from(f64.buffer));
  });
});

describe('send() input: { lockspace, cmd, body } with bytes (the path checked in place)', () => {
  test('the same rules as every other shape: bad fields refused, good ones sent as given', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    const got: DlmMessage[] = [];
    cl.get(2).onMessage((m) => got.push({ ...m, body: Buffer.from(m.body) }));
    const n1 = cl.get(1);
    const body = Buffer.from('0123456789abcdef0123456789abcdef0123456789'); // 42 bytes
    for (const ls of ['7', NaN, -1, 2 ** 32, 1.5, -0.5, Infinity, null, 2n])
      assert.throws(() => n1.send(2, { lockspace: ls as never, cmd: 1, body }), isMessageError(/lockspace must be/), `lockspace ${String(ls)}`);
    for (const cmd of ['1', NaN, -1, 256, 1.5, null])
      assert.throws(() => n1.send(2, { lockspace: 1, cmd: cmd as never, body }), isMessageError(/cmd must be/), `cmd ${String(cmd)}`);
    for (const cmd of [0, 3, 4, 5, 255])
      assert.throws(() => n1.send(2, { lockspace: 1, cmd, body }), isMessageError(/only DLM_MSG \(1\) and DLM_RCOM \(2\)/), `cmd ${cmd}`);
    assert.throws(
      () => n1.send(2, { lockspace: 1, cmd: 1, body: Buffer.alloc(4072 - 16 + 1) }),
      (e: unknown) => e instanceof MessageSizeError,
    );
    assert.equal(n1.send(2, { lockspace: 0, cmd: 1, body }), true);
    assert.equal(n1.send(2, { lockspace: 2 ** 32 - 1, cmd: 2, body }), true);
    assert.equal(n1.send(2, { lockspace: 5, cmd: 1, body: Buffer.alloc(4072 - 16, 7) }), true);
    assert.equal(n1.send(2, { lockspace: 6, cmd: 1, body: new Uint8Array(0) }), true);
    await until(() => got.length === 4, 5000, 'four messages');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 4, 'nothing else was sent');
    assert.deepEqual(got.map((m) => [m.lockspace, m.cmd, m.body.length]), [[0, 1, 42], [2 ** 32 - 1, 2, 42], [5, 1, 4056], [6, 1, 0]]);
    assert.deepEqual(got[0]!.body, body);
    assert.ok(got[2]!.body.every((b) => b === 7));
  });
});

describe('options', () => {
  const base = { nodeid: 1, nodes: nodeList(2) };
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['port 0', { port: 0 }, /port must be an integer in 1\.\.65535/],
    ['tcpUserTimeoutMs -1', { tcpUserTimeoutMs: -1 }, /tcpUserTimeoutMs/],
    ["tcpUserTimeoutMs 'x'", { tcpUserTimeoutMs: 'x' }, /tcpUserTimeoutMs/],
    ['ackDelayMs -5', { ackDelayMs: -5 }, /ackDelayMs/],
    ['connectRetryMaxMs 0', { connectRetryMaxMs: 0 }, /connectRetryMaxMs/],
    ['maxRxPendingBytes -1', { limits: { maxRxPendingBytes: -1 } }, /maxRxPendingBytes/],
    ['maxNodeBytes 0', { limits: { maxNodeBytes: 0 } }, /maxNodeBytes .*at least one whole frame/],
    ['maxNodeBytes 4095', { limits: { maxNodeBytes: 4095 } }, /maxNodeBytes/],
    ['limits a number', { limits: 5 }, /limits must be an object/],
    ['sctp.rtoMinMs -1', { sctp: { rtoMinMs: -1 } }, /sctp\.rtoMinMs/],
    ['nodes {}', { nodes: {} }, /nodes must be a NodeTable or an array/],
    ['nodes a string', { nodes: '127.0.0.1' }, /nodes must be/],
  ];
  for (const [name, o, re] of bad) {
    test(`${name} is a ConfigError`, () => {
      assert.throws(
        () => new Lowcomms({ ...base, ...o } as never),
        (e: unknown) => e instanceof ConfigError && e.code === 'ERR_LOWCOMMS_CONFIG' && re.test(e.message),
      );
    });
  }

  test('maxNodeBytes of one whole frame lets a largest message through', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp', options: { limits: { maxNodeBytes: 4096 } } });
    let n = 0;
    cl.get(2).onMessage(() => n++);
    assert.equal(cl.get(1).send(2, { body: Buffer.alloc(4072 - 16) }), true);
    await until(() => n === 1, 5000, 'the message');
  });
});

describe('handler exceptions', () => {
  const script = path.join(__dirname, 'helpers', 'throwing-handler.ts');
  const run = (mode: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', script, mode, String(testPort())], { encoding: 'utf8', timeout: 30_000 });

  test('a throwing handler surfaces as an uncaught exception and loses no message', () => {
    const r = run('catch');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { first: string[]; second: string[]; uncaught: string[]; rx: number };
    const all = Array.from({ length: 20 }, (_, i) => `m${i}`);
    assert.deepEqual(out.second, all, 'the other handler got every message');
    assert.deepEqual(out.first, all, 'the throwing handler got the rest of the batch too');
    assert.equal(out.rx, 20);
    assert.ok(out.uncaught.includes('message handler failed on m3'), JSON.stringify(out.uncaught));
    assert.ok(out.uncaught.includes('batch handler failed'), JSON.stringify(out.uncaught));
  });

  test('without an uncaughtException listener the process dies of the error', () => {
    const r = run('crash');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /handler failed/);
    assert.doesNotMatch(r.stderr, /DEP0168/);
  });
});
