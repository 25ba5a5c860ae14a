/**
 * CorosyncMembership against a real corosync 3: three corosync instances, each in its
 * own network namespace, linked by a bridge; three lowcomms services following them
 * (test/helpers/membership-node.ts), every message tagged "from:gen:epoch:seq". After
 * each fault the services pause, and the logs are checked: per sender incarnation and
 * destination session (epoch), what was delivered is 0..k-1 exactly once in order;
 * for a session that ended with the destination's leave, k >= sent - reported dropped
 * (everything not reported was delivered) and k <= sent; for a session still open,
 * everything sent was delivered and nothing reported. Once per transport of the run
 * (test/helpers/transports.ts); SCTP inside user-mode-linux, whose guest runs the host's
 * corosync. Needs root and corosync (scripts/setup-system.sh); it fails, never skips,
 * without them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TransportName } from '../../lib';
import { CorosyncCluster, nodeEnv, toolEnv, type LogEntry } from '../helpers/corosync-cluster';
import { testTransports } from '../helpers/transports';

const N = 3;
// The cluster of the suite that runs now (suites run one after the other).
let cluster: CorosyncCluster;

function startCluster(transport: TransportName) {
  return async () => {
    cluster = new CorosyncCluster(N, transport);
    assert.equal(process.getuid?.(), 0, 'the corosync tests need root (network namespaces, mounts)');
    cluster.setup();
    for (let i = 1; i <= N; i++) cluster.startCorosync(i);
    for (let i = 1; i <= N; i++) await cluster.waitCorosync(i);
    for (let i = 1; i <= N; i++) cluster.startService(i);
    for (let i = 1; i <= N; i++) await waitMembers(i, [1, 2, 3]);
  };
}

const events = (log: LogEntry[], t: string) => log.filter((e) => e.t === t);
const lastMembers = (log: LogEntry[]) => (events(log, 'change').at(-1)?.members as number[] | undefined) ?? [];

function waitMembers(i: number, members: number[], timeoutMs = 30000) {
  return cluster.waitFor(i, `members ${members.join(',')}`, (log) => JSON.stringify(lastMembers(log)) === JSON.stringify(members), timeoutMs);
}

function waitQuorate(i: number, quorate: boolean) {
  return cluster.waitFor(i, `quorate ${quorate}`, (log) => {
    const q = events(log, 'quorum').at(-1);
    return q !== undefined && q.quorate === quorate;
  });
}

/** Lets traffic flow for `ms`. */
const flow = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Session {
  sent: number;
  dropped: number;
  /** Of `dropped`: reported because the receiver started a new session with us ('restart'). */
  restartDropped: number;
}

/** The engine events (connect, assoc, restart, ...) both ends logged about each other, for a failure's message. */
function engineEvents(a: number, b: number): string {
  const lines: string[] = [];
  for (const [i, peer] of [[a, b], [b, a]] as const)
    for (const f of cluster.logs.get(i) ?? [])
      for (const e of cluster.read(f))
        if (typeof e.t === 'string' && e.t.startsWith('ev:') && e.nodeid === peer) lines.push(`node ${i}: ${JSON.stringify(e)}`);
  return lines.length ? `\n${lines.slice(-60).join('\n')}` : '';
}

/**
 * Pauses every running service (each waits until all it sent is acked), checks every
 * log so far, and resumes. `alive` are the services running now.
 */
async function pauseAndCheck(alive: number[]): Promise<{ sessions: number; delivered: number; dropped: number; restartDropped: number }> {
  for (const i of alive) {
    const r = await cluster.command(i, 'pause');
    assert.equal(r.ok, true, `node ${i} could not get every message acked: ${JSON.stringify(r)}`);
  }
  // Delivered, per "from:gen:epoch" -> the seqs in delivery order, over every run of the receiver.
  const got = new Map<string, number[]>();
  const runs: Array<{ nodeid: number; log: LogEntry[]; current: boolean }> = [];
  for (let i = 1; i <= N; i++) {
    const files = cluster.logs.get(i) ?? [];
    files.forEach((f, k) => runs.push({ nodeid: i, log: cluster.read(f), current: k === files.length - 1 && alive.includes(i) }));
  }
  for (const r of runs)
    for (const e of events(r.log, 'got')) {
      const key = `${String(e.from)}>${r.nodeid}:${String(e.g)}:${String(e.e)}`;
      let l = got.get(key);
      if (!l) got.set(key, (l = []));
      l.push(e.s as number);
    }
  let sessions = 0;
  let delivered = 0;
  let droppedTotal = 0;
  let restartDroppedTotal = 0;
  for (const r of runs) {
    const gen = events(r.log, 'ready')[0]?.gen as string;
    assert.ok(gen, `node ${r.nodeid}: a run without 'ready'`);
    const sess = new Map<string, Session>();
    const at = (to: number, e: number) => {
      const k = `${to}:${e}`;
      let s = sess.get(k);
      if (!s) sess.set(k, (s = { sent: 0, dropped: 0, restartDropped: 0 }));
      return s;
    };
    for (const e of r.log) {
      if (e.t === 'sent') {
        const s = at(e.to as number, e.e as number);
        assert.equal(e.s, s.sent, `node ${r.nodeid}: sent seqs to ${String(e.to)} not consecutive`);
        s.sent++;
      } else if (e.t === 'dropped') {
        assert.notEqual(e.e, undefined, `node ${r.nodeid}: a drop for ${String(e.to)} outside any session: ${JSON.stringify(e)}`);
        const s = at(e.to as number, e.e as number);
        s.dropped += e.count as number;
        if (e.reason === 'restart') s.restartDropped += e.count as number;
      }
    }
    // The session each destination is in now (the last join not followed by a leave).
    const open = new Map<number, number>();
    for (const e of r.log) {
      if (e.t === 'join') open.set(e.nodeid as number, e.e as number);
      if (e.t === 'leave') open.delete(e.nodeid as number);
    }
    for (const [k, s] of sess) {
      const [to, ep] = k.split(':').map(Number) as [number, number];
      const seqs = got.get(`${r.nodeid}>${to}:${gen}:${ep}`) ?? [];
      const where = `node ${r.nodeid} (gen ${gen}) -> node ${to}, session ${ep}: sent ${s.sent}, dropped ${s.dropped}, delivered ${seqs.length}`;
      // Without drops: 0, 1, 2, ... exactly. A drop may leave a gap (reported messages the
      // receiver never got), never a duplicate or a reorder.
      if (s.dropped === 0)
        seqs.forEach((v, idx) => assert.equal(v, idx, `${where}: delivery ${idx} was seq ${v} (duplicate, gap or reorder)${engineEvents(r.nodeid, to)}`));
      else
        seqs.forEach((v, idx) => assert.ok(idx === 0 || v > seqs[idx - 1]!, `${where}: delivery ${idx} was seq ${v} after ${seqs[idx - 1]} (duplicate or reorder)${engineEvents(r.nodeid, to)}`));
      sessions++;
      delivered += seqs.length;
      droppedTotal += s.dropped;
      restartDroppedTotal += s.restartDropped;
      if (!r.current) {
        // A run that is gone: whatever it logged as sent (a kill may cut the last log line).
        assert.ok(seqs.length <= s.sent + 1, `${where}: more delivered than sent`);
      } else if (open.get(to) === ep && alive.includes(to)) {
        // Only the receiver starting a new session with us may drop in an open one: its
        // membership can drop us for a moment (its first view, taken before we joined,
        // came to it after our first messages) and take us back: what its old session
        // never acked is reported, and what follows goes on.
        assert.equal(s.dropped, s.restartDropped, `${where}: drops other than 'restart' in a session that is still open`);
        assert.ok(seqs.length >= s.sent - s.dropped && seqs.length <= s.sent, `${where}: an open session must deliver everything acked, once`);
      } else {
        assert.ok(s.dropped <= s.sent, `${where}: more dropped than sent`);
        assert.ok(seqs.length >= s.sent - s.dropped, `${where}: lost messages that were not reported as dropped`);
        assert.ok(seqs.length <= s.sent, `${where}: more delivered than sent`);
      }
    }
  }
  for (const i of alive) cluster.send(i, 'resume');
  return { sessions, delivered, dropped: droppedTotal, restartDropped: restartDroppedTotal };
}

/** Where each node's current log ends now: a scenario looks at what follows. */
function mark(): Map<number, number> {
  return new Map(Array.from({ length: N }, (_, k) => [k + 1, cluster.current(k + 1).length]));
}

/** Node i's leaves (-n) and joins (+n) after `since`, in the order it saw them. */
function leaveJoinOrder(i: number, since: Map<number, number>): string[] {
  return cluster.current(i).slice(since.get(i) ?? 0).flatMap((e) => (e.t === 'leave' ? [`-${String(e.nodeid)}`] : e.t === 'join' && !e.initial ? [`+${String(e.nodeid)}`] : []));
}

/** The leaves and joins of other nodes as CPG's changes listed them after `since`. */
function cpgOrder(i: number, since: Map<number, number>): string[] {
  return events(cluster.current(i).slice(since.get(i) ?? 0), 'change').flatMap((c) => [
    ...(c.left as number[]).filter((n) => n !== i).map((n) => `-${n}`),
    ...(c.joined as number[]).filter((n) => n !== i).map((n) => `+${n}`),
  ]);
}

function suite(transport: TransportName): void {
  before(startCluster(transport));
  after(() => cluster.close());

  test('every node starts with all three members, quorate, and delivers everything', async (t) => {
    for (let i = 1; i <= N; i++) await waitQuorate(i, true);
    await flow(1000);
    const r = await pauseAndCheck([1, 2, 3]);
    t.diagnostic(`sessions ${r.sessions}, delivered ${r.delivered}, dropped ${r.dropped} (restart ${r.restartDropped})`);
    // A node whose first view of the group came before another's join drops that node
    // and takes it back: a new session, its unacked messages reported ('restart').
    assert.equal(r.dropped, r.restartDropped);
    assert.ok(r.delivered > 6 * 20, `too little traffic: ${r.delivered}`);
  });

  test('a node leaves (corosync stopped) and rejoins', async (t) => {
    const t0 = Date.now();
    const since = mark();
    await cluster.stopCorosync(3, 'SIGTERM');
    // The service lost its corosync: it says so and stops.
    const code = await cluster.reapService(3);
    assert.equal(code, 3, 'the service on node 3 should stop on losing corosync');
    assert.ok(events(cluster.current(3), 'lost').length === 1, "node 3 logged no 'lost'");
    await waitMembers(1, [1, 2]);
    await waitMembers(2, [1, 2]);
    t.diagnostic(`leave seen after ${Date.now() - t0} ms`);
    for (const i of [1, 2]) assert.equal(events(cluster.current(i), 'leave').at(-1)?.nodeid, 3);
    await flow(500);
    cluster.startCorosync(3);
    await cluster.waitCorosync(3);
    cluster.startService(3);
    for (let i = 1; i <= N; i++) await waitMembers(i, [1, 2, 3]);
    await flow(1000);
    const r = await pauseAndCheck([1, 2, 3]);
    t.diagnostic(`rejoined after ${Date.now() - t0} ms; sessions ${r.sessions}, delivered ${r.delivered}, dropped ${r.dropped}`);
    for (const i of [1, 2]) assert.deepEqual(leaveJoinOrder(i, since), ['-3', '+3']);
    for (const i of [1, 2]) assert.deepEqual(leaveJoinOrder(i, since), cpgOrder(i, since));
  });

  test('a node crashes (corosync and service SIGKILLed) and rejoins', async (t) => {
    const t0 = Date.now();
    const since = mark();
    await Promise.all([cluster.stopCorosync(2, 'SIGKILL'), cluster.killService(2)]);
    await waitMembers(1, [1, 3]);
    await waitMembers(3, [1, 3]);
    t.diagnostic(`crash seen after ${Date.now() - t0} ms`);
    for (const i of [1, 3]) assert.equal(events(cluster.current(i), 'leave').at(-1)?.nodeid, 2);
    await flow(500);
    cluster.startCorosync(2);
    await cluster.waitCorosync(2);
    cluster.startService(2);
    for (let i = 1; i <= N; i++) await waitMembers(i, [1, 2, 3]);
    await flow(1000);
    const r = await pauseAndCheck([1, 2, 3]);
    t.diagnostic(`rejoined after ${Date.now() - t0} ms; sessions ${r.sessions}, delivered ${r.delivered}, dropped ${r.dropped}`);
    for (const i of [1, 3]) assert.deepEqual(leaveJoinOrder(i, since), ['-2', '+2']);
    for (const i of [1, 3]) assert.deepEqual(leaveJoinOrder(i, since), cpgOrder(i, since));
  });

  test('only the service crashes (SIGKILL), corosync stays: procdown, then it rejoins', async (t) => {
    const t0 = Date.now();
    const since = mark();
    await cluster.killService(1);
    await waitMembers(2, [2, 3]);
    await waitMembers(3, [2, 3]);
    t.diagnostic(`leave seen after ${Date.now() - t0} ms`);
    for (const i of [2, 3]) {
      const l = events(cluster.current(i), 'leave').at(-1);
      assert.equal(l?.nodeid, 1);
      assert.equal(l?.reason, 'procdown');
    }
    await flow(500);
    cluster.startService(1);
    for (let i = 1; i <= N; i++) await waitMembers(i, [1, 2, 3]);
    await flow(1000);
    const r = await pauseAndCheck([1, 2, 3]);
    t.diagnostic(`rejoined after ${Date.now() - t0} ms; sessions ${r.sessions}, delivered ${r.delivered}, dropped ${r.dropped}`);
    for (const i of [2, 3]) assert.deepEqual(leaveJoinOrder(i, since), ['-1', '+1']);
    for (const i of [2, 3]) assert.deepEqual(leaveJoinOrder(i, since), cpgOrder(i, since));
  });

  test('a 2/1 partition: both sides remove the other, the minority loses quorum, and it heals', async (t) => {
    const t0 = Date.now();
    const since = mark();
    cluster.link(3, false);
    await waitMembers(1, [1, 2]);
    await waitMembers(2, [1, 2]);
    await waitMembers(3, [3]);
    await waitQuorate(3, false);
    for (const i of [1, 2]) assert.equal(events(cluster.current(i), 'quorum').at(-1)?.quorate, true);
    t.diagnostic(`partition seen after ${Date.now() - t0} ms`);
    await flow(1000);
    cluster.link(3, true);
    for (let i = 1; i <= N; i++) await waitMembers(i, [1, 2, 3], 45000);
    await waitQuorate(3, true);
    await flow(1000);
    const r = await pauseAndCheck([1, 2, 3]);
    t.diagnostic(`healed after ${Date.now() - t0} ms; sessions ${r.sessions}, delivered ${r.delivered}, dropped ${r.dropped}`);
    // Both others left, then both joined, in the order CPG listed them in its changes.
    assert.deepEqual(leaveJoinOrder(3, since), cpgOrder(3, since));
    assert.deepEqual(leaveJoinOrder(3, since).map((x) => x[0]), ['-', '-', '+', '+']);
    for (const i of [1, 2]) assert.deepEqual(leaveJoinOrder(i, since), ['-3', '+3']);
    for (const i of [1, 2]) assert.deepEqual(leaveJoinOrder(i, since), cpgOrder(i, since));
  });

  test('lowcomms status --corosync reads the node list from the running corosync', async () => {
    const main = path.join(__dirname, '..', '..', 'cli', 'main.ts');
    const run = (ns: string) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn('ip', ['netns', 'exec', ns, ...nodeEnv, process.execPath, '--import', 'tsx', main, 'status', '--corosync', '--json', '--port', String(cluster.port)], { env: toolEnv });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('exit', (status) => resolve({ status, stdout, stderr }));
      });
    const r = await run(cluster.ns(2));
    assert.equal(r.status, transport === 'tcp' ? 0 : 1, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout) as { config: string; nodes: Array<{ nodeid: number; name?: string; reachable: boolean; addrs: Array<{ addr: string }> }> };
    assert.match(rep.config, /corosync cluster 'lowcomms-test' \(cmap\), this node 2/);
    // status probes the port with a TCP connect (cli/status.ts): services on SCTP have no
    // TCP listener, and it must say they refuse rather than claim them reachable.
    const reachable = transport === 'tcp';
    assert.deepEqual(
      rep.nodes.map((n) => [n.nodeid, n.name, n.addrs.map((a) => a.addr), n.reachable]),
      [1, 2, 3].map((i) => [i, `n${i}`, [cluster.addr(i)], reachable]),
    );
  });
}

for (const transport of testTransports()) describe(`membership over ${transport}`, () => suite(transport));
