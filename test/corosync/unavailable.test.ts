/**
 * The addon on a host without corosync: it has no link-time dependency on corosync's
 * libraries, it loads and works when they are missing (hidden here by bind-mounting
 * /dev/null over libcpg.so.4 in a private mount namespace), and only membership fails,
 * with CorosyncUnavailableError naming the Debian packages. With the libraries but no
 * corosync running (a fresh network namespace), it is a CorosyncError (CS_ERR_LIBRARY).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { nodeEnv, toolEnv } from '../helpers/corosync-cluster';

const root = path.resolve(__dirname, '..', '..');
const probe = path.join(root, 'test', 'helpers', 'corosync-probe.ts');

function addonPath(): string {
  if (process.env.LOWCOMMS_ADDON_PATH) return path.resolve(process.env.LOWCOMMS_ADDON_PATH);
  const p = path.join(root, 'build', 'Release', 'lowcomms.node');
  assert.ok(fs.existsSync(p), `no addon build at ${p}`);
  return p;
}

function libPath(soname: string): string {
  const r = spawnSync('ldconfig', ['-p'], { encoding: 'utf8', env: toolEnv });
  const line = r.stdout.split('\n').find((l) => l.trim().startsWith(soname + ' ') && /x86-64|AArch64/.test(l));
  assert.ok(line, `${soname} is not installed (scripts/setup-system.sh installs corosync)`);
  return line.split('=> ')[1]!.trim();
}

function runProbe(wrap: string[]): Record<string, unknown> {
  const r = spawnSync(wrap[0]!, [...wrap.slice(1), ...nodeEnv, process.execPath, '--import', 'tsx', probe], { encoding: 'utf8', cwd: root, timeout: 60000, env: toolEnv });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  assert.ok(line.startsWith('{'), `probe printed nothing useful (exit ${r.status}): ${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(line) as Record<string, unknown>;
  assert.equal(out.fatal, undefined, String(out.fatal));
  return out;
}

test('the addon does not link corosync: it is opened at run time', () => {
  const r = spawnSync('readelf', ['-d', addonPath()], { encoding: 'utf8', env: toolEnv });
  assert.equal(r.status, 0, r.stderr);
  const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  assert.ok(needed.length > 0, 'readelf found no NEEDED entries at all');
  for (const n of needed) assert.doesNotMatch(n!, /cpg|cmap|quorum|corosync|libqb/, `the addon needs ${n}`);
});

test('without corosync libraries lowcomms works and membership says which package is missing', () => {
  assert.equal(process.getuid?.(), 0, 'needs root (a private mount namespace)');
  const lib = libPath('libcpg.so.4');
  const out = runProbe(['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount --bind /dev/null ${lib} && exec "$@"`, 'sh']);
  assert.equal(out.delivered, 'hello');
  assert.equal(out.available, false);
  for (const k of ['read', 'start'] as const) {
    const e = out[k] as { name: string; code: string; message: string };
    assert.equal(e.name, 'CorosyncUnavailableError', JSON.stringify(e));
    assert.equal(e.code, 'ERR_LOWCOMMS_COROSYNC_UNAVAILABLE');
    assert.match(e.message, /libcpg\.so\.4/);
    assert.match(e.message, /apt-get install libcpg4 libcmap4 libquorum5/);
  }
});

test('with the libraries but no corosync running: CorosyncError CS_ERR_LIBRARY', () => {
  assert.equal(process.getuid?.(), 0, 'needs root (a fresh network namespace)');
  // corosync's IPC sockets are abstract, per network namespace: a new one has no corosync.
  const out = runProbe(['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh']);
  assert.equal(out.available, true);
  for (const k of ['read', 'start'] as const) {
    const e = out[k] as { name: string; code: string; message: string; cs: number };
    assert.equal(e.name, 'CorosyncError', JSON.stringify(e));
    assert.equal(e.code, 'ERR_LOWCOMMS_COROSYNC');
    assert.equal(e.cs, 2);
    assert.match(e.message, /is corosync running/);
  }
});
