/**
 * CorosyncMembership's bookkeeping, driven by scripted CPG configuration changes through
 * a stand-in for the addon's Membership class (the real one is exercised against three
 * real corosync instances in test/corosync): which nodes the table holds, when a node
 * is removed, added or reset, and the order of the events.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadBinding, type NativeMembershipEvent } from '../binding';
import { CorosyncMembership, Lowcomms, corosyncNodeTable } from '../lib';

type Emit = (ev: NativeMembershipEvent) => void;

/** Replaces the addon's corosync entry points for one test; returns the event pump. */
function fakeCorosync(
  t: import('node:test').TestContext,
  local: number,
  nodelist: Array<{ nodeid: number; addrs: string[] }>,
  totem: { ipVersion?: string; transport?: string } = {},
) {
  const b = loadBinding() as unknown as Record<string, unknown>;
  const saved = { Membership: b.Membership, corosyncNodelist: b.corosyncNodelist };
  const state: { emit?: Emit; stopped: boolean; quorate: boolean } = { stopped: false, quorate: false };
  b.corosyncNodelist = () => ({ localNodeid: local, clusterName: 'fake', ...totem, nodes: nodelist.map((n) => ({ ...n, name: '' })) });
  b.Membership = class {
    constructor(group: string, onEvent: Emit) {
      assert.equal(group, 'app');
      state.emit = onEvent;
    }
    start() {
      return local;
    }
    stop() {
      state.stopped = true;
    }
    quorate() {
      return state.quorate;
    }
    ref() {}
    unref() {}
  };
  t.after(() => Object.assign(b, saved));
  return state;
}

const m = (nodeid: number, reason = 1, pid = 100) => ({ nodeid, pid, reason });
const tick = () => new Promise((r) => setImmediate(r));

test('CPG changes become removeNode/addNode/resetNode, in corosync order', async (t) => {
  const all = [1, 2, 3, 4].map((i) => ({ nodeid: i, addrs: [`127.0.0.${i}`] }));
  const fake = fakeCorosync(t, 1, all);
  const comms = new Lowcomms({ nodeid: 1, nodes: all, port: 21064 });
  const mem = new CorosyncMembership(comms, { group: 'app' });
  const log: string[] = [];
  mem.on('join', (j) => log.push(`+${j.nodeid}${j.reset ? 'r' : ''}${j.initial ? 'i' : ''}`));
  mem.on('leave', (l) => log.push(`-${l.nodeid}:${l.reason}`));
  mem.on('change', (c) => log.push(`[${c.members.join(',')}]`));
  mem.on('quorum', (q) => log.push(`q${q.quorate ? 1 : 0}`));
  const started = mem.start();
  // First change: we joined; 2 was already there, 3 and 4 are not running the app.
  fake.emit!({ type: 'confchg', members: [m(1), m(2)], left: [], joined: [m(1)] });
  await started;
  assert.deepEqual(comms.nodes.nodeids().sort(), [1, 2]);
  assert.deepEqual(log, ['+2i', '[1,2]']);

  fake.emit!({ type: 'quorum', quorate: true, ringSeq: 8, view: [1, 2, 3, 4] });
  // 3 joins; a second process of node 2 joins (not a new node).
  fake.emit!({ type: 'confchg', members: [m(1), m(2), m(2, 1, 101), m(3)], left: [], joined: [m(2, 1, 101), m(3)] });
  // 2's first process leaves: node 2 stays (its other process is a member); then 3 goes down.
  fake.emit!({ type: 'confchg', members: [m(1), m(2, 1, 101), m(3)], left: [m(2, 5)], joined: [] });
  fake.emit!({ type: 'confchg', members: [m(1), m(2, 1, 101)], left: [m(3, 3)], joined: [] });
  await tick();
  await tick();
  assert.deepEqual(comms.nodes.nodeids().sort(), [1, 2]);
  assert.equal(mem.quorate, false, 'the getter asks the native side');
  fake.quorate = true;
  assert.equal(mem.quorate, true);
  assert.deepEqual(log, ['+2i', '[1,2]', 'q1', '+3', '[1,2,3]', '[1,2,3]', '-3:nodedown', '[1,2]']);

  // 4 joins and leaves and 3 comes back in one change, in CPG's order: leaves first.
  log.length = 0;
  fake.emit!({ type: 'confchg', members: [m(1), m(2, 1, 101), m(3, 1, 200), m(4, 1, 300)], left: [], joined: [m(4, 1, 300), m(3, 1, 200)] });
  fake.emit!({ type: 'confchg', members: [m(1), m(3, 1, 200)], left: [m(4, 2, 300), m(2, 5, 101)], joined: [] });
  await tick();
  await tick();
  assert.deepEqual(log, ['+4', '+3', '[1,2,3,4]', '-4:leave', '-2:procdown', '[1,3]']);
  assert.deepEqual(comms.nodes.nodeids().sort(), [1, 3]);

  // A node that joins while still in the table (its leave was never applied) is reset.
  log.length = 0;
  comms.addNode({ nodeid: 2, addrs: ['127.0.0.2'] });
  fake.emit!({ type: 'confchg', members: [m(1), m(2, 1, 102), m(3, 1, 200)], left: [], joined: [m(2, 1, 102)] });
  await tick();
  assert.deepEqual(log, ['+2r', '[1,2,3]']);

  // A node unknown to corosync's nodelist cannot be added: an 'error', the table unchanged.
  log.length = 0;
  const errors: string[] = [];
  mem.on('error', (e) => errors.push(e.message));
  fake.emit!({ type: 'confchg', members: [m(1), m(2, 1, 102), m(3, 1, 200), m(9)], left: [], joined: [m(9)] });
  await tick();
  assert.deepEqual(log, ['[1,2,3,9]']);
  assert.match(errors[0] ?? '', /node 9 joined group 'app' but has no address/);
  assert.equal(comms.nodes.has(9), false);

  // Our corosync goes away: 'lost', and the native side is stopped.
  const lost = new Promise<string>((r) => mem.once('lost', (e) => r(`${e.code} ${e.message}`)));
  fake.emit!({ type: 'lost', error: 'cpg_dispatch: CS_ERR_LIBRARY' });
  assert.match(await lost, /ERR_LOWCOMMS_COROSYNC lost the connection to corosync: cpg_dispatch: CS_ERR_LIBRARY/);
  assert.equal(fake.stopped, true);
  await mem.stop();
});

test('a nodeid that is not the one corosync has for this host is a ConfigError', async (t) => {
  fakeCorosync(t, 2, [{ nodeid: 1, addrs: ['127.0.0.1'] }, { nodeid: 2, addrs: ['127.0.0.2'] }]);
  const comms = new Lowcomms({ nodeid: 1, nodes: [{ nodeid: 1, addrs: ['127.0.0.1'] }], port: 21064 });
  await assert.rejects(new CorosyncMembership(comms, { group: 'app' }).start(), { code: 'ERR_LOWCOMMS_CONFIG', message: /corosync says this host is node 2/ });
});

test('bad group names are ConfigErrors', () => {
  const comms = new Lowcomms({ nodeid: 1, nodes: [{ nodeid: 1, addrs: ['127.0.0.1'] }], port: 21064 });
  for (const group of ['', 'x'.repeat(129), undefined as unknown as string])
    assert.throws(() => new CorosyncMembership(comms, { group }), { code: 'ERR_LOWCOMMS_CONFIG' });
});

test('corosyncNodeTable resolves host names as corosync 3 does by default (knet: IPv6 first)', async (t) => {
  const lookup = async () => [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ];
  fakeCorosync(t, 1, [{ nodeid: 1, addrs: ['node1'] }], { transport: 'knet' });
  assert.deepEqual((await corosyncNodeTable({ lookup })).nodes.require(1).addrs, ['::1'], 'knet default: IPv6 first');
});

test('corosyncNodeTable follows totem.ip_version', async (t) => {
  const lookup = async () => [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ];
  fakeCorosync(t, 1, [{ nodeid: 1, addrs: ['node1'] }], { transport: 'knet', ipVersion: 'ipv4' });
  const r = await corosyncNodeTable({ lookup });
  assert.deepEqual(r.nodes.require(1).addrs, ['127.0.0.1']);
  assert.equal(r.nodeid, 1);
  assert.equal(r.clusterName, 'fake');
});
