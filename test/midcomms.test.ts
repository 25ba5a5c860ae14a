/**
 * midcomms 3.2 against a scripted raw peer (docs/protocol.md "midcomms 3.2"): the DLM_FIN handshake
 * (§3.6) in its active, simultaneous and passive forms, close() giving up on a silent
 * peer, and the ack thresholds (§3.3: an ACK at once past 256 in-order deliveries, and
 * one piggy-backed in front of our next send past 32).
 *
 * lowcomms is node 1; node 2 is a raw peer (test/helpers/rawpeer.ts). Each test has its
 * own instance with ackDelayMs far beyond the test, so every ACK on the wire is one the
 * protocol sends without waiting; the frame order on the wire is checked exactly.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Lowcomms, type LowcommsOptions } from '../lib';
import { until } from './helpers/cluster';
import { CMD, RawPeer, ack, describeFrame, fin, isAck, isFin, seqMsg, type Frame } from './helpers/rawpeer';
import { testPort } from './helpers/transports';

/** A compact text form of frames, to compare whole sequences. */
const show = (fs: Frame[]) => fs.map(describeFrame);
const MSG = (seq: number) => `3.2 OPTS seq ${seq} next ${CMD.MSG} len ${24 + 16 + 2}`; // 2-byte bodies
const FIN = (seq: number) => `3.2 OPTS seq ${seq} next ${CMD.FIN} len 40`;
const ACK = (seq: number) => `3.2 ACK ${seq}`;

async function setup(t: TestContext, options: Partial<LowcommsOptions> = {}) {
  const port = testPort();
  const p2 = await RawPeer.start({ nodeid: 2, addr: '127.0.0.2', port, target: '127.0.0.1' });
  const comms = new Lowcomms({
    nodeid: 1,
    nodes: [
      { nodeid: 1, addrs: ['127.0.0.1'] },
      { nodeid: 2, addrs: ['127.0.0.2'] },
    ],
    port,
    ackDelayMs: 600_000,
    peers: 'kernel', // the raw peer speaks DLM as a kernel node does
    ...options,
  });
  const got: string[] = [];
  const closed: number[] = [];
  const dropped: { nodeid: number; count: number; reason: string }[] = [];
  comms.onMessage((m) => got.push(m.body.toString()));
  comms.on('closed', (e) => closed.push(e.nodeid));
  comms.on('dropped', (e) => dropped.push(e));
  comms.on('error', () => undefined);
  await comms.start();
  t.after(async () => {
    await comms.close({ flush: false }).catch(() => undefined); // already closing/closed
    await p2.close();
  });
  const node = () => comms.stats().nodes.find((n) => n.nodeid === 2)!;
  // Our first message opens our connection to node 2 before it speaks (seq 0).
  comms.send(2, { lockspace: 1, body: 'm0' });
  await p2.waitCount(1, 'our first message');
  return { comms, p2, got, closed, dropped, node, port };
}

test('active close: FIN_WAIT1 -> FIN_WAIT2 -> CLOSED; close() resolves flushed', async (t) => {
  const { comms, p2, got, node } = await setup(t);
  await p2.send(seqMsg(0, 2, 'p0'));
  await until(() => got.length === 1, 5000, 'p0');
  const m = p2.mark();
  const closing = comms.close({ timeoutMs: 5000 });
  await p2.waitFor(isFin, 'our FIN', { from: m });
  // What we delivered is acked first, then the FIN (seq 1) follows.
  assert.deepEqual(show(p2.since(m)), [ACK(1), FIN(1)]);
  assert.equal(node().state, 'fin_wait1');
  await p2.send(ack(2, 2)); // acks m0 and the FIN
  await until(() => node().state === 'fin_wait2', 2000, 'fin_wait2');
  assert.equal(node().unacked, 0);
  await p2.send(fin(1, 2)); // the peer's own FIN (its seq 0 was p0)
  const res = await closing;
  assert.deepEqual(res, { flushed: true, unacked: {} });
  // Our last word: the ACK of the peer's FIN, on the wire before close() returned.
  assert.deepEqual(show(p2.since(m)), [ACK(1), FIN(1), ACK(2)]);
});

test('simultaneous close: the peer\'s FIN crosses ours (FIN_WAIT1 -> CLOSING -> CLOSED)', async (t) => {
  const { comms, p2, node } = await setup(t);
  const m = p2.mark();
  const closing = comms.close({ timeoutMs: 5000 });
  await p2.waitFor(isFin, 'our FIN', { from: m });
  assert.deepEqual(show(p2.since(m)), [FIN(1)]);
  await p2.send(fin(0, 2)); // before acking ours
  await until(() => node().state === 'closing', 2000, 'closing');
  await p2.waitFor(isAck(1), 'the ACK of the peer\'s FIN', { from: m });
  await p2.send(ack(2, 2));
  const res = await closing;
  assert.deepEqual(res, { flushed: true, unacked: {} });
  assert.deepEqual(show(p2.since(m)), [FIN(1), ACK(1)]);
});

test('passive close: peer FIN -> ACK at once + our FIN (LAST_ACK) -> peer ACK -> closed event, seqs reset to 0', async (t) => {
  const { comms, p2, got, closed, dropped, node } = await setup(t);
  await p2.send(seqMsg(0, 2, 'p0'));
  await until(() => got.length === 1, 5000, 'p0');
  const m = p2.mark();
  await p2.send(fin(1, 2));
  await p2.waitFor(isFin, 'our FIN', { from: m });
  // The FIN is acked without waiting (ackDelayMs is 10 minutes here), then ours (seq 1) follows.
  assert.deepEqual(show(p2.since(m)), [ACK(2), FIN(1)]);
  assert.equal(node().state, 'last_ack');
  assert.equal(node().finsRcvd, 1);

  // In LAST_ACK we may not send: a send() is dropped and reported, nothing goes out.
  comms.send(2, { lockspace: 1, body: 'too late' });
  await until(() => dropped.length === 1, 2000, "a 'dropped' event");
  assert.deepEqual(dropped[0], { nodeid: 2, count: 1, reason: 'closing' });
  // ... nor receive: a frame from the peer after its FIN is not delivered. It is counted
  // as skipped when processed (a delivery would not be): wait for that, then look.
  const skipped0 = node().skipped;
  await p2.send(seqMsg(2, 2, 'after fin'));
  await until(() => node().skipped === skipped0 + 1, 2000, 'the frame after the FIN, skipped');
  assert.deepEqual(got, ['p0']);
  assert.equal(node().seqNext, 2, 'it took no sequence number');

  await p2.send(ack(2, 2)); // acks m0 and our FIN
  await until(() => closed.includes(2), 2000, "the 'closed' event");
  const s = node();
  assert.equal(s.state, 'closed');
  assert.equal(s.seqSend, 0);
  assert.equal(s.seqNext, 0);
  assert.equal(s.unacked, 0);
  assert.equal(s.version, 'unknown', 'the version is detected again');
  assert.deepEqual(show(p2.since(m)), [ACK(2), FIN(1)], 'nothing after our FIN (no "too late")');

  // A new session starts from seq 0 both ways, on the same connection.
  const m2 = p2.mark();
  comms.send(2, { lockspace: 1, body: 'n0' });
  const [f] = await p2.waitCount(1, 'the first frame of the new session', { from: m2 });
  assert.deepEqual(show([f!]), [MSG(0)]);
  await p2.send(seqMsg(0, 2, 'q0'));
  await until(() => got.includes('q0'), 2000, 'q0 (seq 0 again)');
  assert.equal(node().state, 'established');
  assert.equal(p2.inbound.length, 1, 'one connection throughout');
});

test('close() against a peer that never answers times out: flushed false, unacked reported', async (t) => {
  const { comms, p2 } = await setup(t);
  const m = p2.mark();
  const t0 = Date.now();
  const res = await comms.close({ timeoutMs: 300 });
  const took = Date.now() - t0;
  assert.deepEqual(res, { flushed: false, unacked: { 2: 2 } }, 'm0 and the FIN');
  assert.ok(took >= 290 && took < 2000, `took ${took} ms`);
  assert.deepEqual(show(p2.since(m)), [FIN(1)]);
});

test('close() against a peer that acks our FIN but never sends its own: stuck in FIN_WAIT2, flushed false', async (t) => {
  const { comms, p2, node } = await setup(t);
  const m = p2.mark();
  const closing = comms.close({ timeoutMs: 400 });
  await p2.waitFor(isFin, 'our FIN', { from: m });
  await p2.send(ack(2, 2));
  await until(() => node().state === 'fin_wait2', 2000, 'fin_wait2');
  const res = await closing;
  assert.deepEqual(res, { flushed: false, unacked: {} });
});

test('ack threshold: receive-only traffic is acked at once after the 257th in-order message (> 256)', async (t) => {
  const { p2, got, node } = await setup(t);
  const frames = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => seqMsg(from + i, 2, `r${from + i}`));
  const m = p2.mark();
  await p2.send(frames(0, 256));
  await until(() => got.length === 256, 5000, '256 messages');
  await p2.send(frames(256, 1));
  // The first ACK on the wire since the mark: one queued at 256 would be ACK(256) and
  // would come first (one write queue, in order), so ACK(257) here means none at 256.
  const a = await p2.waitFor(isAck(), 'the ACK after 257', { from: m, ms: 2000 });
  assert.equal(a.word, 257, 'no ACK at 256, one at 257');
  // The count starts again from that ACK.
  const m2 = p2.mark();
  await p2.send(frames(257, 256));
  await until(() => got.length === 513, 5000, '513 messages');
  await p2.send(frames(513, 1));
  const b = await p2.waitFor(isAck(), 'the second ACK', { from: m2, ms: 2000 });
  assert.equal(b.word, 514, 'no ACK at 256 more, one at 257 more');
  assert.deepEqual(show(p2.since(m).filter(isAck())), [ACK(257), ACK(514)]);
  assert.equal(node().acksSent, 2);
});

test('piggy-back: past 32 delivered, our next send carries ACK(seq_next) right in front of it', async (t) => {
  const { comms, p2, got } = await setup(t);
  const frames = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => seqMsg(from + i, 2, `r${from + i}`));
  await p2.send(frames(0, 32));
  await until(() => got.length === 32, 5000, '32 messages');
  // A piggy-backed ACK goes on the wire in front of the message it rides with, so once
  // our message has arrived, everything in front of it has too.
  const ours = (seq: number) => (f: Frame) => f.cmd === CMD.OPTS && f.word === seq;
  let m = p2.mark();
  comms.send(2, { lockspace: 1, body: 's1' });
  await p2.waitFor(ours(1), 's1', { from: m });
  assert.deepEqual(show(p2.since(m)), [MSG(1)], '32 delivered: no ACK yet');

  await p2.send(frames(32, 1));
  await until(() => got.length === 33, 5000, '33 messages');
  comms.send(2, { lockspace: 1, body: 's2' });
  await p2.waitFor(ours(2), 's2', { from: m });
  // Receiving alone (33 < 257) sent no ACK: one would sit between s1 and s2 and, having
  // reset the count, there would be no piggy-backed ACK(33) in front of s2.
  assert.deepEqual(show(p2.since(m)), [MSG(1), ACK(33), MSG(2)]);

  m = p2.mark();
  comms.send(2, { lockspace: 1, body: 's3' });
  await p2.waitFor(ours(3), 's3', { from: m });
  assert.deepEqual(show(p2.since(m)), [MSG(3)], 'the ACK reset the count');
});

test('a kernel peer that restarted unseen: its frames dropped as duplicates for 2 s raise a desync event naming resetNode', async (t) => {
  const { comms, p2, got } = await setup(t);
  const desync: { nodeid: number; reason: string; message: string }[] = [];
  comms.on('desync', (e) => desync.push(e));
  for (let i = 0; i < 5; i++) await p2.send(seqMsg(i, 2, `old${i}`));
  await until(() => got.length === 5, 5000, 'the first session');
  // The peer "restarted" without anyone calling resetNode(): it numbers from 0 again.
  const start = Date.now();
  for (let i = 0; Date.now() - start < 2600; i++) {
    await p2.send(seqMsg(i % 5, 2, `new${i}`));
    await new Promise((r) => setTimeout(r, 100));
  }
  await until(() => desync.length > 0, 3000, 'a desync event');
  assert.equal(desync.length, 1, 'rate-limited: one event');
  assert.equal(desync[0]!.nodeid, 2);
  assert.equal(desync[0]!.reason, 'duplicates');
  assert.match(desync[0]!.message, /resetNode\(2\)/);
  assert.equal(got.length, 5, 'nothing of the unseen new session was delivered');
});

test('acks going backwards (a peer acking from 0 again) raise a desync event at once', async (t) => {
  const { comms, p2 } = await setup(t);
  const desync: { reason: string }[] = [];
  comms.on('desync', (e) => desync.push(e));
  comms.send(2, { lockspace: 1, body: 'm1' });
  comms.send(2, { lockspace: 1, body: 'm2' });
  await p2.waitCount(3, 'our three messages');
  await p2.send(ack(3, 2));
  await until(() => comms.stats().nodes.find((n) => n.nodeid === 2)!.unacked === 0, 2000, 'the ack');
  await p2.send(ack(1, 2)); // backwards
  await until(() => desync.length > 0, 2000, 'a desync event');
  assert.equal(desync[0]!.reason, 'acks_backwards');
  assert.equal(comms.stats().nodes.find((n) => n.nodeid === 2)!.acksBackwards, 1);
});

test('a message is acked only once the application consumed it: an unread batch holds the ACK back', async (t) => {
  const { comms, p2 } = await setup(t, { ackDelayMs: 10 });
  const it = comms.messages();
  const m = p2.mark();
  await p2.send([seqMsg(0, 2, 'a'), seqMsg(1, 2, 'b'), seqMsg(2, 2, 'c')]);
  const first = await it.next(); // the batch is here, two of its messages are not read yet
  assert.equal(first.value?.body.toString(), 'a');
  await new Promise((r) => setTimeout(r, 200)); // 20 idle-ack periods in which no ACK may go out
  assert.deepEqual(p2.since(m).filter(isAck()).map(describeFrame), [], 'nothing acked while the batch is unread');
  await it.next();
  const last = await it.next(); // the whole batch is consumed now
  assert.equal(last.value?.body.toString(), 'c');
  const ackFrame = await p2.waitFor(isAck(), 'the ACK after consumption', { from: m });
  assert.equal(ackFrame.word, 3, 'the ACK covers the three consumed messages');
  await it.return?.();
});
