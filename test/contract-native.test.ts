/**
 * The API contract (issue 13), native side: frames whose inner header names another
 * node, heldBytes after everything is acked, capabilities as PermissionError. The
 * connection events are in test/net/contract-events.test.ts (every transport).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Lowcomms } from '../lib';
import { nodeList, startCluster, until } from './helpers/cluster';
import { RawPeer, V31, message, opts, seqMsg } from './helpers/rawpeer';
import { testPort } from './helpers/transports';

describe('wire: the inner header of a DLM_OPTS frame', () => {
  test("an inner h_nodeid of another node is dropped and counted; its seq is used; inner h_version is not checked (as the kernel)", async (t) => {
    const port = testPort();
    const nodes = nodeList(3);
    const p2 = await RawPeer.start({ nodeid: 2, addr: '127.0.0.2', port, target: '127.0.0.1' });
    const comms = new Lowcomms({ nodeid: 1, nodes, port, peers: 'kernel' }); // the raw peer speaks DLM as a kernel node
    t.after(async () => {
      await comms.close({ flush: false });
      await p2.close();
    });
    const got: Array<{ nodeid: number; version: number; body: string }> = [];
    comms.onMessage((m) => got.push({ nodeid: m.nodeid, version: m.version, body: m.body.toString() }));
    await comms.start();
    await p2.send([
      seqMsg(0, 2, 'first'),
      opts({ seq: 1, nodeid: 2, inner: message({ nodeid: 3, body: 'claims to be node 3' }) }),
      opts({ seq: 2, nodeid: 2, inner: message({ nodeid: 2, version: V31, body: 'inner version 3.1' }) }),
      seqMsg(3, 2, 'last'),
    ]);
    await until(() => got.some((g) => g.body === 'last'), 5000, 'the last frame');
    assert.deepEqual(got.map((g) => g.body), ['first', 'inner version 3.1', 'last']);
    assert.equal(got[1]!.version, V31, 'the application sees the inner h_version');
    const s = comms.stats().nodes.find((n) => n.nodeid === 2)!;
    assert.equal(s.innerNodeidMismatch, 1);
    assert.equal(s.nodeidMismatch, 0);
    assert.equal(s.seqNext, 4, 'the dropped frame used its sequence number');
  });
});

test('heldBytes is 0 once everything sent is acked (no acked bytes of the last entry)', async (t) => {
  const cl = await startCluster(t, { n: 2, transport: 'tcp', options: { ackDelayMs: 5 } });
  let n = 0;
  cl.get(2).onMessage(() => n++);
  for (let i = 0; i < 10; i++) cl.get(1).send(2, { body: `m${i}`.padEnd(100, '.') });
  await until(() => n === 10, 5000, 'ten messages');
  const node2 = () => cl.get(1).stats().nodes.find((s) => s.nodeid === 2)!;
  await until(() => node2().unacked === 0, 5000, 'every message acked');
  assert.equal(node2().heldBytes, 0);
  assert.equal(node2().queuedBytes, 0);
  // And it counts again, from zero, for what follows.
  for (let i = 0; i < 3; i++) cl.get(1).send(2, { body: 'more' });
  await until(() => n === 13, 5000, 'three more');
  await until(() => node2().unacked === 0, 5000, 'acked');
  assert.equal(node2().heldBytes, 0);
});

describe('capabilities', () => {
  const privileged = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()) - 1;
  const asRoot = process.getuid?.() === 0;
  test(
    'without CAP_NET_ADMIN a per-node mark is a PermissionError (start and addNode), as the cluster mark; a privileged port too',
    { skip: privileged < 1 ? 'every port is unprivileged on this host (ip_unprivileged_port_start 0)' : false },
    () => {
      const script = path.join(__dirname, 'helpers', 'unprivileged.ts');
      const tsx = require.resolve('tsx');
      const cmd = [process.execPath, '--import', tsx, script, String(testPort()), String(privileged)];
      // As root, the child keeps uid 0 but loses every capability (a checkout under a 0700
      // directory stays readable to it, as it would not be to nobody).
      const argv = asRoot ? ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', ...cmd] : cmd;
      const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOME: '/tmp' } });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
      assert.match(out.nodeMark!, /^PermissionError ERR_LOWCOMMS_PERMISSION: mark 7 of node 2: SO_MARK needs the CAP_NET_ADMIN/);
      assert.match(out.clusterMark!, /^PermissionError ERR_LOWCOMMS_PERMISSION/);
      assert.match(out.addNodeMark!, /^PermissionError ERR_LOWCOMMS_PERMISSION: mark 9 of node 3/);
      assert.equal(out.tableAfter, 'false', 'the refused node is not left in the table');
      assert.match(out.privilegedPort!, /^PermissionError ERR_LOWCOMMS_PERMISSION: .*Permission denied.*CAP_NET_BIND_SERVICE/);
    },
  );
});
