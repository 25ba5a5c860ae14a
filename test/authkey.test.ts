/**
 * The cluster key (LowcommsOptions.auth): 32 or more random bytes, or a passphrase
 * stretched with scrypt and a salt; anything weaker is a ConfigError before anything is
 * opened. `lowcomms keygen` makes a key. (The handshake itself: test/net/auth.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes, scryptSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AUTH_SCRYPT, ConfigError, deriveAuthKey, Lowcomms, StateError, type LowcommsOptions } from '../lib';
import { nodeList, until } from './helpers/cluster';
import { testPort } from './helpers/transports';

const make = (auth: unknown, nodeid = 1, port = testPort()) =>
  new Lowcomms({ nodeid, nodes: nodeList(2), port, auth: auth as LowcommsOptions['auth'] });

test('auth.key must be at least 32 random bytes: strings, short or constant keys are ConfigErrors', () => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['a passphrase as the key (what the tests used to do)', { key: 'correct horse battery staple 42' }, /not a string.*keygen/],
    ['a 64-character string', { key: 'x'.repeat(64) }, /not a string/],
    ['16 random bytes (the old minimum)', { key: randomBytes(16) }, /at least 32 random bytes, got 16/],
    ['31 random bytes', { key: randomBytes(31) }, /got 31/],
    ['32 zero bytes', { key: Buffer.alloc(32) }, /equal bytes/],
    ['a number', { key: 42 }, /Buffer or Uint8Array/],
    ['no key at all', {}, /auth.key is required/],
    ['not an object', 'secret', /auth must be/],
    ['both a key and a passphrase', { key: randomBytes(32), passphrase: 'long enough phrase', salt: 'cluster-alpha.example' }, /not both/],
    ['a passphrase without a salt', { passphrase: 'long enough phrase' }, /auth.salt must be/],
    ['a salt under 16 bytes', { passphrase: 'long enough phrase', salt: 'short' }, /at least 16 bytes, got 5/],
    ['a passphrase under 8 bytes', { passphrase: 'abc', salt: 'cluster-alpha.example' }, /passphrase must be/],
  ];
  for (const [what, auth, msg] of refused)
    assert.throws(() => make(auth), (e: unknown) => e instanceof ConfigError && e.code === 'ERR_LOWCOMMS_CONFIG' && msg.test(e.message), what);
  // Accepted: 32 random bytes (Buffer or a plain Uint8Array), more, or a passphrase + salt.
  make({ key: randomBytes(32) });
  make({ key: new Uint8Array(randomBytes(48)) });
  make({ passphrase: 'long enough phrase', salt: 'cluster-alpha.example' });
  make({ passphrase: 'long enough phrase', salt: randomBytes(16) });
});

test('a passphrase is stretched with scrypt (N=2^17, r=8, p=1) over "lowcomms-auth-v1:" + salt', async () => {
  assert.deepEqual(AUTH_SCRYPT, { N: 2 ** 17, r: 8, p: 1 });
  const key = await deriveAuthKey('long enough phrase', 'cluster-alpha.example');
  const want = scryptSync('long enough phrase', 'lowcomms-auth-v1:cluster-alpha.example', 32, { N: 2 ** 17, r: 8, p: 1, maxmem: 256 << 20 });
  assert.deepEqual(key, want);
});

test('nodes with the same passphrase and salt talk (the stretched key is the one used); another salt is refused', async (t) => {
  const port = testPort();
  const pass = { passphrase: 'long enough phrase', salt: 'cluster-alpha.example' };
  // Node 1 holds the derived bytes, node 2 the passphrase: they agree only if start()
  // stretches it exactly as deriveAuthKey() does.
  const derived = await deriveAuthKey(pass.passphrase, pass.salt);
  const a = make({ key: derived }, 1, port);
  const b = make(pass, 2, port);
  t.after(() => Promise.all([a.close({ flush: false }), b.close({ flush: false })]));
  const got: string[] = [];
  b.onMessage((m) => got.push(m.body.toString()));
  await a.start();
  await b.start();
  a.send(2, { body: 'same key' });
  await until(() => got.length === 1, 10_000, 'the message between nodes of one passphrase');
  assert.deepEqual(got, ['same key']);
  assert.equal(a.stats().authFailures + b.stats().authFailures, 0);

  const port2 = testPort();
  const c = make({ key: derived }, 1, port2);
  const d = make({ ...pass, salt: 'cluster-bravo.example' }, 2, port2);
  t.after(() => Promise.all([c.close({ flush: false }), d.close({ flush: false })]));
  const got2: string[] = [];
  d.onMessage((m) => got2.push(m.body.toString()));
  await c.start();
  await d.start();
  c.send(2, { body: 'other salt' });
  await until(() => c.stats().authFailures + d.stats().authFailures >= 1, 10_000, 'an authentication failure');
  assert.deepEqual(got2, []);
});

test('close() while start() stretches the passphrase: start() rejects with StateError and nothing runs', async () => {
  const c = make({ passphrase: 'long enough phrase', salt: 'cluster-alpha.example' });
  const starting = c.start();
  await c.close({ flush: false });
  await assert.rejects(starting, StateError);
  assert.throws(() => c.send(2, { body: 'x' }), StateError);
});

test('lowcomms keygen FILE writes 32 random bytes, mode 0600, never over an existing file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-keygen-'));
  try {
    const main = path.join(__dirname, '..', 'cli', 'main.ts');
    // Without the sanitizer preload of the ASan run: the CLI is plain JS.
    const env = { ...process.env, LD_PRELOAD: '' };
    const run = (file: string) => spawnSync(process.execPath, ['--import', 'tsx', main, 'keygen', file], { encoding: 'utf8', env });
    const f1 = path.join(dir, 'k1');
    const f2 = path.join(dir, 'k2');
    const r = run(f1);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(run(f2).status, 0);
    const k1 = fs.readFileSync(f1);
    assert.equal(k1.length, 32);
    assert.equal(fs.statSync(f1).mode & 0o777, 0o600);
    assert.notDeepEqual(k1, fs.readFileSync(f2), 'two keys differ');
    make({ key: k1 }); // accepted as auth.key
    const again = run(f1);
    assert.notEqual(again.status, 0, 'an existing key file is not overwritten');
    assert.deepEqual(fs.readFileSync(f1), k1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
