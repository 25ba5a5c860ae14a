/**
 * One source of truth across the JS/native boundary: the option defaults live in lib
 * alone (the native engine refuses an options object with any key missing), and the
 * stats schema the addon returns is exactly the one binding/index.ts declares and lib
 * passes on. binding/ throws plain errors; lib turns them into its own classes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadBinding, NATIVE_NODE_STATS_KEYS, NATIVE_STATS_KEYS, type NativeOptions } from '../binding';
import { Lowcomms, OPTION_DEFAULTS as D } from '../lib';
import { nodeList } from './helpers/cluster';
import { testPort } from './helpers/transports';

const full = (): NativeOptions => ({
  nodeid: 1,
  transport: 'tcp',
  port: D.port,
  entryBytes: D.entryBytesTcp,
  flush: { immediate: true, delayUs: 0, minBytes: 0, direct: D.directWrite },
  maxNodeBytes: D.maxNodeBytes,
  maxRxPendingBytes: D.maxRxPendingBytes,
  kernelMinimums: false,
  protocol: D.protocol,
  auth: false,
  records: D.records,
  tcpUserTimeoutMs: D.tcpUserTimeoutMs,
  connectRetryMaxMs: D.connectRetryMaxMs,
  ackDelayMs: D.ackDelayMs,
  sctp: { ...D.sctp },
});

test('the native engine takes a complete options object and refuses one with any key missing', () => {
  const { Engine } = loadBinding();
  const noop = () => undefined;
  // Complete: made (not started), then stopped.
  new Engine(full(), noop, noop).stop();
  const paths: string[][] = [];
  for (const [k, v] of Object.entries(full())) {
    paths.push([k]);
    if (v && typeof v === 'object') for (const sub of Object.keys(v)) paths.push([k, sub]);
  }
  assert.ok(paths.length > 20);
  for (const p of paths) {
    const o = full() as unknown as Record<string, Record<string, unknown>>;
    if (p.length === 1) delete o[p[0]!];
    else delete o[p[0]!]![p[1]!];
    assert.throws(
      () => new Engine(o as unknown as NativeOptions, noop, noop),
      (e: Error) => e instanceof TypeError && e.message.includes(`${p.join('.')} missing`),
      `without ${p.join('.')}`,
    );
  }
});

test('the defaults are frozen: no caller can change what every instance gets', () => {
  assert.ok(Object.isFrozen(D) && Object.isFrozen(D.sctp));
});

test('stats(): the addon returns exactly the keys binding/index.ts declares, and lib passes them on', async (t) => {
  const port = testPort();
  const comms = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port });
  t.after(() => comms.close({ flush: false }));
  const before = comms.stats();
  const sorted = (xs: Iterable<string>) => [...xs].sort();
  const lib = ['nodeid', 'transport', 'paths'];
  assert.deepEqual(sorted(Object.keys(before)), sorted([...NATIVE_STATS_KEYS, ...lib]), 'before start()');
  await comms.start();
  const s = comms.stats();
  assert.deepEqual(sorted(Object.keys(s)), sorted([...NATIVE_STATS_KEYS, ...lib]));
  assert.equal(s.nodes.length, 1);
  assert.deepEqual(sorted(Object.keys(s.nodes[0]!)), sorted(NATIVE_NODE_STATS_KEYS));
  // And the types the interfaces promise.
  for (const [k, v] of Object.entries(s.nodes[0]!)) {
    const want = k === 'connected' || k === 'kernel' ? 'boolean' : ['version', 'state', 'peerIncarnation'].includes(k) ? 'string' : 'number';
    assert.equal(typeof v, want, `nodes[].${k}`);
  }
  assert.match(s.incarnation, /^[0-9a-f]{16}$/);
});

test('an addon that will not load is a LoadError from lib (binding/ itself throws a plain Error)', () => {
  const lib = path.join(__dirname, '..', 'lib', 'index.ts');
  const code = `
    const { sctpAvailable, Lowcomms, LoadError } = require(${JSON.stringify(lib)});
    let a; try { sctpAvailable(4); } catch (e) { a = e; }
    const c = new Lowcomms({ nodeid: 1, nodes: [{ nodeid: 1, addrs: ['127.0.0.1'] }], port: 1 });
    c.start().then(() => process.exit(3), (b) => {
      console.log(JSON.stringify([a instanceof LoadError, a.code, b instanceof LoadError, /not built/.test(b.message), a.cause instanceof Error]));
    });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], {
    encoding: 'utf8',
    env: { ...process.env, LOWCOMMS_ADDON_PATH: '/nonexistent/lowcomms.node' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [true, 'ERR_LOWCOMMS_LOAD', true, true, true]);
});

test("README's option defaults are OPTION_DEFAULTS", () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const row = (opt: string) => readme.match(new RegExp('^\\| `' + opt.replace('.', '\\.') + '` \\| ([^|]+) \\|', 'm'))?.[1]?.trim();
  const mib = (n: number) => `${n / 2 ** 20} MiB`;
  assert.equal(row('port'), String(D.port));
  assert.equal(row('batching.entryBytes'), `${D.entryBytesTcp} (TCP), ${D.entryBytesSctp} (SCTP)`);
  assert.equal(row('limits.maxNodeBytes'), mib(D.maxNodeBytes));
  assert.equal(row('limits.maxRxPendingBytes'), mib(D.maxRxPendingBytes));
  assert.equal(row('tcpUserTimeoutMs'), String(D.tcpUserTimeoutMs));
  assert.equal(row('connectRetryMaxMs'), String(D.connectRetryMaxMs));
  assert.equal(row('ackDelayMs'), String(D.ackDelayMs));
  assert.equal(row('protocol'), `\`'${D.protocol}'\``);
  const sctp = readme.slice(readme.indexOf('SCTP defaults fail over'), readme.indexOf('`SCTP_NODELAY` on.'));
  for (const k of ['rtoInitialMs', 'rtoMinMs', 'rtoMaxMs', 'heartbeatMs', 'pathMaxRetrans', 'pfRetrans', 'assocMaxRetrans'] as const)
    assert.match(sctp, new RegExp('`' + k + '` ' + D.sctp[k] + '\\b'), `README: sctp.${k}`);
  assert.match(sctp, new RegExp('`sndbuf`/`rcvbuf` ' + mib(D.sctp.sndbuf)));
  assert.equal(D.sctp.sndbuf, D.sctp.rcvbuf);
});
