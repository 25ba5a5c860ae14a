/**
 * The API contract (issue 13) for files and the command line: a corosync.conf that
 * cannot give a node table is an error with its line, and `lowcomms status` never claims
 * success on it; bench says what it did not measure; bad usage prints the usage.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { ConfigError, NodeTable, SctpUnavailableError } from '../lib';
import { sctpAvailable } from './helpers/transports';

const main = path.join(__dirname, '..', 'cli', 'main.ts');
// tsx by absolute URL: the uml test runs the command from a directory without node_modules.
const tsx = pathToFileURL(require.resolve('tsx')).href;
const cli = (args: string[], cwd?: string) =>
  spawnSync(process.execPath, ['--import', tsx, main, ...args], { encoding: 'utf8', timeout: 120_000, ...(cwd ? { cwd } : {}) });

function tmpFile(name: string, text: string): { file: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-contract-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return { file, dir };
}

const withNames = `totem {
  version: 2
}

nodelist {
  node {
    nodeid: 1
    ring0_addr: 127.0.0.1
  }
  node {
    nodeid: 2
    ring0_addr: no-such-host.invalid
  }
}
`;

describe('corosync.conf', () => {
  test('an unresolvable host name is a ConfigError with the line of its node', async () => {
    const { file, dir } = tmpFile('corosync.conf', withNames);
    try {
      const lookup = async (name: string) => {
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      };
      await assert.rejects(NodeTable.load(file, { lookup }), (e: unknown) => {
        return e instanceof ConfigError && e.message.includes(`${file} line 10: cannot resolve 'no-such-host.invalid'`);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file without a nodelist is a ConfigError, and status on it fails', async () => {
    const { file, dir } = tmpFile('corosync.conf', 'totem {\n  version: 2\n  cluster_name: c\n}\n');
    try {
      await assert.rejects(NodeTable.load(file), (e: unknown) => e instanceof ConfigError && /no nodelist/.test(e.message));
      const r = cli(['status', file, '--timeout', '200']);
      assert.notEqual(r.status, 0, r.stdout);
      assert.doesNotMatch(r.stdout, /every node is reachable/);
      assert.match(r.stderr, /no nodelist/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('command line', () => {
  test('bench --bogus prints the usage and exits 2', () => {
    const r = cli(['bench', '--bogus']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--bogus/);
    assert.match(r.stderr, /usage: lowcomms <command>/);
  });

  test('bench --no-uml on a kernel without SCTP says SCTP was skipped and prints no SCTP settings', { skip: sctpAvailable() ? 'this kernel has SCTP: nothing is skipped' : false }, () => {
    const r = cli(['bench', '--no-uml', '--no-baselines', '--sizes', '64', '--batching', 'default', '--duration', '0.2', '--pings', '50']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /64 B x tcp x default/);
    assert.doesNotMatch(r.stderr, /tcp\+sctp/);
    assert.match(r.stdout, /SCTP skipped: this kernel has no SCTP and --no-uml was given/);
    assert.doesNotMatch(r.stdout, /SCTP settings/);
  });

  test("SctpUnavailableError names a command that works from the user's project, and it does", { skip: sctpAvailable() ? 'this kernel has SCTP' : false }, () => {
    const e = new SctpUnavailableError('socket() failed');
    assert.match(e.message, /npx lowcomms uml -- node app\.js/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-uml-'));
    try {
      const r = cli(['uml', '--timeout', '120', '--', 'sh', '-c', 'test -e /proc/sys/net/sctp && pwd && exit 3'], dir);
      assert.equal(r.status, 3, r.stderr);
      assert.equal(r.stdout.trim().split('\n').pop(), fs.realpathSync(dir));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
