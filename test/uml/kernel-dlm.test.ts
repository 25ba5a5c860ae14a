/**
 * The guest kernel's own DLM (dlm.ko, Linux 6.1) as a peer of a lowcomms node, over TCP
 * and SCTP: kernel = node 1 on 127.0.0.1, lowcomms = node 2 on 127.0.0.2. The kernel
 * joins a lockspace and runs recovery with node 2 (test/helpers/mini-dlm.ts answers
 * RCOM STATUS/NAMES and, as directory node, LOOKUPs), takes locks, leaves, and runs the
 * midcomms FIN handshake. Pass criteria come from the kernel's own log and from
 * lowcomms' stats. Then faults on purpose: a frame with a wrong seq (both), the link cut in
 * the middle of lock traffic, the connection reset (TCP), and a FIN that never comes
 * back (node 2 gone before the kernel leaves).
 *
 * Guest only (root, dlm.ko, configfs, netem): anywhere else it fails, it never skips.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { Lowcomms, type NodeStats, type TransportName } from '../../lib';
import { dmesg, requireGuest, sh, sleep, waitFor } from '../helpers/guest';
import { KernelDlm } from '../helpers/kernel-dlm';
import { cutBetween } from '../helpers/netem';
import { MiniDlm, kernelClusterNodes } from '../helpers/mini-dlm';
import { message, opts } from '../helpers/rawpeer';

const KERNEL = { nodeid: 1, addr: '127.0.0.1' };
const US = { nodeid: 2, addr: '127.0.0.2' };
const PORT = 21064; // the kernel's tcp_port; one port for both sides, as in a real cluster
/** Kernel log lines that must never appear in a clean run. */
const BAD = /seq mismatch|invalid|unsupported|version mismatch|received invalid length|error|timed out|timeout/i;

let kernel: KernelDlm | undefined;
let configured: TransportName | undefined;
let lsCounter = 0;

/** dlm.ko configured for `transport` (the protocol changes only while no lockspace exists). */
function kernelFor(transport: TransportName): KernelDlm {
  requireGuest('the kernel DLM interop test');
  if (!kernel) {
    sh('ip', 'addr', 'replace', `${US.addr}/8`, 'dev', 'lo');
    kernel = new KernelDlm();
  }
  if (configured !== transport) {
    kernel.unconfigure();
    kernel.configure({
      protocol: transport,
      port: PORT,
      nodes: [
        { ...KERNEL, local: true },
        { ...US, local: false },
      ],
    });
    configured = transport;
  }
  return kernel;
}

interface Session {
  k: KernelDlm;
  comms: Lowcomms;
  mini: MiniDlm;
  mark: number;
  lsName: string;
  log(): string[];
  peer(): NodeStats;
}

async function join(transport: TransportName): Promise<Session> {
  const k = kernelFor(transport);
  const mark = dmesg().length;
  const comms = new Lowcomms({
    nodeid: US.nodeid,
    nodes: kernelClusterNodes(KERNEL, US),
    transport,
    port: PORT,
    kernelMinimums: true,
  });
  const mini = new MiniDlm(comms);
  await comms.start();
  const lsName = `lc${transport}${++lsCounter}`;
  const s: Session = {
    k,
    comms,
    mini,
    mark,
    lsName,
    log: () => dmesg().slice(Math.max(0, mark - 1)).filter((l) => l.includes('dlm')),
    peer: () => {
      const n = comms.stats().nodes.find((x) => x.nodeid === KERNEL.nodeid);
      assert.ok(n, 'stats for the kernel node');
      return n;
    },
  };
  try {
    await k.createLockspace(lsName, 0x4c430000 + lsCounter, [KERNEL.nodeid, US.nodeid]);
  } catch (err) {
    console.log(s.log().join('\n'));
    await comms.close({ flush: false });
    throw err;
  }
  return s;
}

/** Locks `names` one after another (each granted before the next); returns the statuses. */
async function lockAll(s: Session, names: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const n of names) out.push((await s.k.lock(n)).status);
  return out;
}

/** Leaves, waits for our side of the FIN handshake, closes lowcomms; returns the leave time. */
async function leave(s: Session): Promise<number> {
  const ms = await s.k.removeLockspace();
  await waitFor(() => s.peer().state === 'closed', 3000);
  return ms;
}

/**
 * The end of every test, passed or failed: a lockspace still joined (the test failed
 * before its leave) is left while lowcomms still answers, so that the next test can
 * reconfigure the kernel (configfs refuses while a lockspace exists) and the guest can
 * shut down; then lowcomms closes.
 */
async function finish(s: Session): Promise<void> {
  if (s.k.joined) {
    try {
      await s.k.removeLockspace(20_000);
    } catch (err) {
      console.log(`# cleanup: leaving ${s.lsName} failed: ${String(err)}`);
    }
  }
  await s.comms.close({ timeoutMs: 2000 });
}

function report(s: Session, what: string): void {
  const p = s.peer();
  console.log(
    `# ${what}: mini-dlm ${JSON.stringify(s.mini.counts)}; lowcomms node 1: rx ${p.rxMsgs} tx ${p.txMsgs} ` +
      `connects ${p.connects} disconnects ${p.disconnects} resent ${p.resent} dupDropped ${p.dupDropped} ` +
      `finsRcvd ${p.finsRcvd} state ${p.state}`,
  );
}

function assertCleanLog(lines: string[], allow?: RegExp): void {
  const bad = lines.filter((l) => BAD.test(l) && !(allow && allow.test(l)));
  assert.deepEqual(bad, [], `kernel log:\n${lines.join('\n')}`);
}

after(() => {
  kernel?.unconfigure();
  kernel?.dispose();
});

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

for (const transport of ['tcp', 'sctp'] as const) {
  test(`kernel DLM peer over ${transport}: join with recovery, LOOKUPs answered by lowcomms, leave with FIN`, async () => {
    const s = await join(transport);
    try {
      const res = names('res', 16);
      const statuses = await lockAll(s, res);
      assert.deepEqual(statuses, res.map(() => 0), 'every lock granted');
      const looked = [...s.mini.looked];
      const leaveMs = await leave(s);
      report(s, `${transport} clean (leave ${leaveMs} ms)`);
      const log = s.log();
      assert.ok(log.some((l) => l.includes('version 0x00030002 for node 2 detected')), log.join('\n'));
      assert.ok(log.some((l) => l.includes(`${s.lsName}: join complete`)), log.join('\n'));
      assert.ok(log.some((l) => l.includes(`${s.lsName}: release_lockspace final free`)), log.join('\n'));
      assertCleanLog(log);
      // Recovery went through node 2, and the names it is directory for came to it once each.
      assert.ok(s.mini.counts.status >= 1 && s.mini.counts.names >= 1, 'recovery asked node 2');
      assert.ok(looked.length > 0, 'some resources have node 2 as directory node');
      assert.ok(looked.length < res.length, 'and some have the kernel');
      assert.equal(new Set(looked).size, looked.length, 'one LOOKUP per resource');
      assert.ok(looked.every((n) => res.includes(n)));
      assert.deepEqual(s.mini.counts.bad, []);
      const p = s.peer();
      assert.equal(p.version === 'unknown' || p.version === '3.2', true);
      assert.ok(p.finsRcvd >= 1, 'the kernel sent its FIN');
      assert.equal(p.state, 'closed', 'the FIN handshake closed the node');
      for (const k of ['badFrames', 'gapDropped', 'versionMismatch', 'nodeidMismatch', 'badVersion', 'skipped', 'badAcks', 'unacked'] as const)
        assert.equal(p[k], 0, `lowcomms ${k}`);
      assert.equal(p.rxMsgs, s.mini.counts.status + s.mini.counts.names + s.mini.counts.lookups + s.mini.counts.removes);
    } finally {
      await finish(s);
    }
  });

  test(`kernel DLM peer over ${transport}: the link cut for 3 s in the middle of lock traffic`, async () => {
    const s = await join(transport);
    let heal: (() => void) | undefined;
    try {
      const before = await lockAll(s, names('pre', 6));
      const traffic = lockAll(s, names('cut', 12)); // LOOKUPs to node 2 stall while cut
      await sleep(100);
      heal = cutBetween(KERNEL.addr, US.addr);
      await sleep(3000);
      heal();
      heal = undefined;
      const during = await traffic;
      const after = await lockAll(s, names('post', 6));
      assert.deepEqual([...before, ...during, ...after], Array(24).fill(0), 'every lock granted');
      const leaveMs = await leave(s);
      report(s, `${transport} link cut 3 s (leave ${leaveMs} ms)`);
      const log = s.log();
      assert.ok(log.some((l) => l.includes(`${s.lsName}: release_lockspace final free`)), log.join('\n'));
      // A resend after a reconnect is dropped as "seq mismatch" by design (docs/protocol.md, "Kernel behaviour lowcomms relies on").
      assertCleanLog(log, /ignore dlm msg because seq mismatch|socket error|got EOF|reset by peer/);
      assert.deepEqual(s.mini.counts.bad, []);
      assert.equal(new Set(s.mini.looked).size, s.mini.looked.length, 'no LOOKUP seen twice by the directory');
      assert.equal(s.peer().state, 'closed');
    } finally {
      heal?.();
      await finish(s);
    }
  });
}

test('kernel DLM peer over tcp: connections reset mid-lock-traffic, midcomms resends, nothing lost or doubled', async () => {
  const s = await join('tcp');
  try {
    const res = names('rst', 24);
    const statuses: number[] = [];
    for (let i = 0; i < res.length; i++) {
      if (i % 6 === 3) s.comms.killConnections(KERNEL.nodeid);
      statuses.push((await s.k.lock(res[i]!)).status);
    }
    assert.deepEqual(statuses, res.map(() => 0), 'every lock granted');
    const leaveMs = await leave(s);
    report(s, `tcp resets (leave ${leaveMs} ms)`);
    const p = s.peer();
    assert.ok(p.disconnects >= 1 && p.connects >= 2, `connections were reset and came back: ${JSON.stringify(p)}`);
    const log = s.log();
    assert.ok(log.some((l) => l.includes(`${s.lsName}: release_lockspace final free`)), log.join('\n'));
    assertCleanLog(log, /ignore dlm msg because seq mismatch|socket error|got EOF|reset by peer/);
    assert.deepEqual(s.mini.counts.bad, []);
    assert.equal(new Set(s.mini.looked).size, s.mini.looked.length, 'no LOOKUP delivered twice');
  } finally {
    await finish(s);
  }
});

/**
 * Sends `frame` to the kernel on a connection of its own from node 2's address (the
 * kernel takes it as a second connection of node 2). SCTP through python3 (installed
 * by setup-system.sh): Node has no SCTP socket.
 */
async function inject(transport: TransportName, frame: Buffer): Promise<void> {
  if (transport === 'tcp') {
    const sock = net.connect({ host: KERNEL.addr, port: PORT, localAddress: US.addr });
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    await new Promise<void>((r) => sock.write(frame, () => r()));
    await sleep(500);
    sock.end();
    return;
  }
  const py = [
    'import socket, sys, time',
    's = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)',
    `s.bind(('${US.addr}', 0))`,
    `s.connect(('${KERNEL.addr}', ${PORT}))`,
    's.send(bytes.fromhex(sys.argv[1]))',
    'time.sleep(0.5)',
    's.close()',
  ].join('\n');
  sh('python3', '-c', py, frame.toString('hex'));
}

for (const transport of ['tcp', 'sctp'] as const) {
  test(`kernel DLM peer over ${transport}: a frame with a wrong seq is dropped by the kernel, the session goes on`, async () => {
    const s = await join(transport);
    try {
      assert.deepEqual(await lockAll(s, names('ws', 6)), Array(6).fill(0));
      // A lock message with a seq far ahead of what the kernel expects from node 2.
      const seq = (s.peer().seqSend + 1000) >>> 0;
      const inner = message({ nodeid: US.nodeid, lockspace: 0x4c430000 + lsCounter, cmd: 1, body: Buffer.alloc(72) });
      // The kernel takes the injected connection as node 2's second one; while it is still
      // tearing down an earlier one it may drop the new one unread (seen in CI under a
      // slow build), so the frame goes again on a fresh connection, at most 3 times.
      let logged = false;
      for (let attempt = 0; attempt < 3 && !logged; attempt++) {
        await inject(transport, opts({ seq, nodeid: US.nodeid, inner }));
        logged = await waitFor(() => s.log().some((l) => l.includes('seq mismatch')), 5000);
      }
      assert.ok(logged, 'the kernel logged the wrong seq');
      assert.deepEqual(await lockAll(s, names('ws2', 6)), Array(6).fill(0), 'locks still granted after the bad frame');
      const leaveMs = await leave(s);
      report(s, `${transport} wrong seq (leave ${leaveMs} ms)`);
      const log = s.log();
      assert.ok(log.some((l) => l.includes(`${s.lsName}: release_lockspace final free`)), log.join('\n'));
      assertCleanLog(log, /ignore dlm msg because seq mismatch|got EOF/);
      assert.deepEqual(s.mini.counts.bad, []);
      assert.equal(s.peer().state, 'closed');
    } finally {
      await finish(s);
    }
  });
}

for (const transport of ['tcp', 'sctp'] as const) {
  // A FIN lost for good (node 2 gone before the kernel leaves) costs 6.1 its whole
  // DLM_SHUTDOWN_TIMEOUT: the leave blocked for about 180 s in our run (see README), too
  // long for CI. Here the FIN is lost in flight instead: kernel -> node 2 is cut while
  // the kernel leaves; over TCP the connection is also reset, so that midcomms (not
  // TCP) has to send the FIN again once the kernel has reconnected.
  test(`kernel DLM peer over ${transport}: the kernel's FIN lost in flight, the handshake still completes`, async () => {
    const s = await join(transport);
    let heal: (() => void) | undefined;
    try {
      assert.deepEqual(await lockAll(s, names('fin', 6)), Array(6).fill(0));
      heal = cutBetween(KERNEL.addr, US.addr, { oneWay: true });
      const t0 = Date.now();
      const leaving = s.k.removeLockspace(30_000);
      await sleep(1000);
      const finsBefore = s.peer().finsRcvd;
      if (transport === 'tcp') s.comms.killConnections(KERNEL.nodeid);
      await sleep(1000);
      heal();
      heal = undefined;
      await leaving;
      const leaveMs = Date.now() - t0;
      await waitFor(() => s.peer().state === 'closed', 5000);
      report(s, `${transport} FIN lost in flight (leave ${leaveMs} ms, link cut for the first 2000 ms)`);
      assert.equal(finsBefore, 0, 'the FIN did not get through the cut');
      const p = s.peer();
      assert.ok(p.finsRcvd >= 1, 'the FIN arrived after the heal');
      assert.equal(p.state, 'closed', 'the handshake completed on our side');
      const log = s.log();
      assert.ok(log.some((l) => l.includes(`${s.lsName}: release_lockspace final free`)), log.join('\n'));
      assertCleanLog(log, /ignore dlm msg because seq mismatch|socket error|got EOF|reset by peer/);
      assert.ok(leaveMs < 15_000, `the leave finished well inside the kernel's shutdown timeout (${leaveMs} ms)`);
    } finally {
      heal?.();
      await finish(s);
    }
  });
}
