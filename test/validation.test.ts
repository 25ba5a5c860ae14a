/**
 * The receive validation rules (docs/protocol.md "Receive rules") and our stricter checks, one test
 * per rule. lowcomms is node 1; nodes 2, 3 and 4 are raw peers (test/helpers/rawpeer.ts).
 * Node 2 sends the frames under test; node 3 streams valid frames meanwhile, so every
 * test also shows that another node's traffic is unaffected; node 4 speaks DLM 3.1.
 *
 * Each test shows one of two outcomes:
 *  - skipped: the frame is counted (badVersion, skipped, nodeidMismatch, ...), nothing
 *    is delivered, the connection stays open and the next valid frame, sent behind it
 *    on the same connection, arrives (a skipped frame consumes no sequence number);
 *  - closed: a length outside [16, 4096] makes the stream unparseable, so lowcomms
 *    closes that connection, counts badFrames and emits a PeerError; the peer
 *    reconnects and carries on with its next sequence number (seq belongs to the node,
 *    not to the connection, §8.3).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DLM_MSG, DLM_RCOM, Lowcomms, MessageSizeError, PeerError, type LowcommsError, type NodeStats } from '../lib';
import { startCluster, until } from './helpers/cluster';
import {
  CMD,
  RawPeer,
  V31,
  V32,
  ack,
  header,
  isAck,
  message,
  opts,
  rcom,
  seqMsg,
  type FeedConn,
} from './helpers/rawpeer';
import { testPort } from './helpers/transports';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
type Counter = keyof NodeStats;

interface Got {
  nodeid: number;
  cmd: number;
  version: number;
  body: string;
  raw: Buffer;
}

/** One lowcomms (node 1) and raw peers 2, 3 (3.2) and 4 (3.1), shared by a describe block. */
function harness(options: { kernelMinimums?: boolean } = {}) {
  const port = testPort();
  const nodes = [1, 2, 3, 4].map((i) => ({ nodeid: i, addrs: [`127.0.0.${i}`] }));
  const h = {
    port,
    comms: undefined as unknown as Lowcomms,
    p2: undefined as unknown as RawPeer,
    p3: undefined as unknown as RawPeer,
    p4: undefined as unknown as RawPeer,
    got: [] as Got[],
    errors: [] as LowcommsError[],
    /** Next sequence number node 2 / node 3 must send. */
    next2: 0,
    next3: 0,
    stats(id: number): NodeStats {
      return h.comms.stats().nodes.find((n) => n.nodeid === id)!;
    },
    /** Resolves once a message with this body arrived from `nodeid`. */
    async arrived(nodeid: number, body: string, ms = 5000): Promise<Got> {
      await until(() => h.got.some((g) => g.nodeid === nodeid && g.body === body), ms, `"${body}" from node ${nodeid}`);
      return h.got.find((g) => g.nodeid === nodeid && g.body === body)!;
    },
    /** The next in-order DLM_MSG from node 2. */
    good2(tag: string): Buffer {
      return seqMsg(h.next2++, 2, tag);
    },
    /** Node 3 sends one valid frame and it arrives: other nodes are unaffected. */
    async othersFine(tag: string): Promise<void> {
      // 72-byte body: an 88-byte DLM_MSG, valid with kernelMinimums too.
      const body = `n3 ${tag}`.padEnd(72, '.');
      await h.p3.send(seqMsg(h.next3++, 3, body));
      await h.arrived(3, body);
    },
  };

  before(async () => {
    h.p2 = await RawPeer.start({ nodeid: 2, addr: '127.0.0.2', port, target: '127.0.0.1' });
    h.p3 = await RawPeer.start({ nodeid: 3, addr: '127.0.0.3', port, target: '127.0.0.1' });
    h.p4 = await RawPeer.start({ nodeid: 4, addr: '127.0.0.4', port, target: '127.0.0.1' });
    // A long idle-ACK delay: every ACK seen in these tests is one the rules demand at once.
    h.comms = new Lowcomms({ nodeid: 1, nodes, port, ackDelayMs: 60_000, peers: 'kernel', ...options });
    h.comms.onMessage((m) =>
      h.got.push({ nodeid: m.nodeid, cmd: m.cmd, version: m.version, body: m.body.toString('latin1'), raw: Buffer.from(m.raw) }),
    );
    h.comms.on('error', (e) => h.errors.push(e));
    await h.comms.start();
    // One message to node 2 first: our connection to it exists before it speaks (so no
    // reconnect-time ACK muddles the captures) and there is one unacked frame (seq 0).
    // (padded to 88 bytes: a valid DLM_MSG in kernelMinimums mode too).
    h.comms.send(2, { lockspace: 1, body: 'hello 2'.padEnd(72, '\0') });
    await h.p2.waitCount(1, 'our first message');
  });
  after(async () => {
    await h.comms.close({ flush: false });
    await Promise.all([h.p2.close(), h.p3.close(), h.p4.close()]);
  });
  return h;
}

describe('receive validation (§1.6), lowcomms default options', () => {
  const h = harness();

  /**
   * Sends `bad` frames then one valid in-order frame on node 2's connection; checks that
   * only the valid one is delivered, that `counter` grew by `n`, that the connection
   * stayed open and that node 3 is unaffected.
   */
  async function expectSkipped(what: string, bad: Buffer[], counter: Counter, n = bad.length): Promise<FeedConn> {
    const before = h.stats(2);
    const deliveredBefore = h.got.length;
    const tag = `after ${what}`;
    const conn = await h.p2.send([...bad, h.good2(tag)]);
    await h.arrived(2, tag);
    const after = h.stats(2);
    assert.equal(Number(after[counter]) - Number(before[counter]), n, `${counter} counted ${n} times`);
    assert.equal(h.got.length - deliveredBefore, 1, 'only the valid frame was delivered');
    assert.equal(after.badFrames, before.badFrames, 'no length failure');
    assert.equal(conn.isClosed, false, 'connection kept');
    await h.othersFine(what);
    return conn;
  }

  /** Sends `bytes` on a fresh connection from node 2 and expects lowcomms to close it. */
  async function expectClosed(what: string, bytes: Buffer): Promise<void> {
    const before = h.stats(2);
    const errorsBefore = h.errors.length;
    const deliveredBefore = h.got.length;
    const conn = await h.p2.connect();
    await conn.write(bytes);
    await Promise.race([conn.closed, sleep(5000).then(() => assert.fail(`${what}: connection not closed`))]);
    await until(() => h.stats(2).badFrames === before.badFrames + 1, 2000, 'badFrames counted');
    await until(() => h.errors.length > errorsBefore, 2000, 'an error event');
    const err = h.errors[h.errors.length - 1]!;
    assert.ok(err instanceof PeerError, `a PeerError, got ${err.name}`);
    assert.equal(err.code, 'ERR_LOWCOMMS_PEER');
    assert.equal((err as PeerError).nodeid, 2);
    assert.equal((err as PeerError).reason, 'bad_frame');
    assert.match(err.message, /malformed frame \(bad length\)/);
    assert.equal(h.got.length, deliveredBefore, 'nothing delivered');
    await h.othersFine(what);
    // The peer reconnects and goes on with its next sequence number.
    const tag = `reconnected after ${what}`;
    await h.p2.send(h.good2(tag));
    await h.arrived(2, tag);
  }

  test('baseline: in-order frames from node 2 and node 3 are delivered', async () => {
    await h.p2.send(h.good2('first'));
    await h.arrived(2, 'first');
    await h.othersFine('baseline');
    assert.equal(h.stats(2).version, '3.2');
  });

  for (const len of [0, 15, 4097, 0xffff]) {
    test(`rule 2: h_length ${len} (outside [16, 4096]) closes the connection, counted, PeerError`, async () => {
      const f = seqMsg(h.next2, 2, 'x'.repeat(40));
      f.writeUInt16LE(len, 12);
      await expectClosed(`h_length ${len}`, f);
    });
  }

  test('rule 2 boundaries: h_length exactly 16 (an ACK) and exactly 4096 (4072-byte inner) are accepted', async () => {
    const body = 'B'.repeat(4096 - 24 - 16);
    const big = seqMsg(h.next2++, 2, body);
    assert.equal(big.length, 4096);
    const before = h.stats(2);
    const conn = await h.p2.send([ack(0, 2), big]);
    await h.arrived(2, body);
    assert.equal(h.stats(2).acksRcvd, before.acksRcvd + 1);
    assert.equal(conn.isClosed, false);
  });

  test('garbage: an HTTP request (its "h_length" is 0x312e) closes the connection', async () => {
    await expectClosed('garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  });

  test('garbage whose length field happens to be in range is skipped as a bad version', async () => {
    const g = Buffer.from('0123456789ab\x10\x00zz', 'latin1'); // h_length 16, h_version "0123"
    await expectSkipped('16 bytes of garbage', [g], 'badVersion');
  });

  test('rule 3: a message written one byte at a time is reassembled (leftover kept across reads)', async () => {
    const frames = [h.good2('byte by byte 1'), h.good2('byte by byte 2')];
    await h.p2.send(frames, { chunks: 1, pauseMs: 1 });
    await h.arrived(2, 'byte by byte 2');
    const mine = h.got.filter((g) => g.body.startsWith('byte by byte')).map((g) => g.body);
    assert.deepEqual(mine, ['byte by byte 1', 'byte by byte 2']);
  });

  test('rule 3: three frames cut at awkward offsets (inside headers, at the OPTS/inner seam)', async () => {
    const frames = [h.good2('cut 1'), h.good2('cut 2'), h.good2('cut 3 ' + 'z'.repeat(3000))];
    const a = frames[0]!.length;
    await h.p2.send(frames, { chunks: [1, 12, 13, 15, 16, 23, 24, 25, a - 1, a + 3, a + 14, a + 40, a + 400, a + 2000], pauseMs: 3 });
    await h.arrived(2, 'cut 3 ' + 'z'.repeat(3000));
    assert.deepEqual(
      h.got.filter((g) => g.body.startsWith('cut')).map((g) => g.body.slice(0, 5)),
      ['cut 1', 'cut 2', 'cut 3'],
    );
  });

  test('rule 4: an unknown h_version skips that message only (badVersion), no seq consumed', async () => {
    const versions = [0x00040002, 0x00030003, 0x00030000, 0x00020002, 0, 0x02000300 /* 3.2 big-endian */];
    const bad = versions.map((v) => {
      const f = seqMsg(h.next2, 2, 'bad version');
      f.writeUInt32LE(v >>> 0, 0);
      return f;
    });
    await expectSkipped('unknown versions', bad, 'badVersion');
  });

  test('rule 6: a 3.2 unwrapped RCOM of a stateful type (LOOKUP, LOCK, replies, unknown) is skipped', async () => {
    const bad = [3, 4, 7, 8, 0, 9].map((t) => rcom({ nodeid: 2, rcType: t }));
    await expectSkipped('unwrapped stateful RCOMs', bad, 'skipped');
  });

  test('rule 6: the stateless RCOMs (STATUS, NAMES, STATUS_REPLY, NAMES_REPLY) are delivered unwrapped, no seq', async () => {
    const seqNext = h.stats(2).seqNext;
    const frames = [1, 2, 5, 6].map((t) => rcom({ nodeid: 2, rcType: t, lockspace: 0x5700 + t }));
    await h.p2.send(frames);
    await until(() => h.got.filter((g) => g.raw.readUInt32LE(4) >> 8 === 0x57).length === 4, 5000, 'four stateless RCOMs');
    const mine = h.got.filter((g) => g.raw.readUInt32LE(4) >> 8 === 0x57);
    assert.deepEqual(mine.map((g) => [g.cmd, g.raw.readUInt32LE(16)]), [[2, 1], [2, 2], [2, 5], [2, 6]]);
    assert.deepEqual(mine.map((g) => g.raw), frames);
    assert.equal(h.stats(2).seqNext, seqNext, 'no sequence number taken');
  });

  test('rule 6: an unwrapped stateless RCOM shorter than sizeof(dlm_rcom) = 48 is skipped', async () => {
    await expectSkipped('a 47-byte RCOM STATUS', [rcom({ nodeid: 2, rcType: 1, totalLength: 47 }), rcom({ nodeid: 2, rcType: 1, totalLength: 20 })], 'skipped');
  });

  test('rule 6: other 3.2 commands outside OPTS (DLM_MSG, DLM_FIN unwrapped; h_cmd 0, 6, 255) are skipped', async () => {
    const bad = [
      message({ nodeid: 2, cmd: CMD.MSG, body: 'unwrapped msg' }),
      header({ word: 0, nodeid: 2, length: 16, cmd: CMD.FIN }),
      message({ nodeid: 2, cmd: 0, body: 'cmd 0' }),
      message({ nodeid: 2, cmd: 6, body: 'cmd 6' }),
      message({ nodeid: 2, cmd: 255, body: 'cmd 255' }),
    ];
    await expectSkipped('unwrapped 3.2 commands', bad, 'skipped');
  });

  test('rule 6: DLM_OPTS shorter than its 24-byte wrapper is skipped', async () => {
    const short = (len: number) => {
      const f = Buffer.alloc(len);
      header({ word: h.next2, nodeid: 2, length: len, cmd: CMD.OPTS }).copy(f);
      if (len > 16) f[16] = CMD.MSG;
      return f;
    };
    await expectSkipped('OPTS of 16 and 23 bytes', [short(16), short(23)], 'skipped');
  });

  test('rule 6: o_optlen larger than the remainder is skipped', async () => {
    const inner = message({ nodeid: 2, body: 'optlen' });
    const bad = [
      opts({ seq: h.next2, nodeid: 2, inner, optlen: inner.length + 1 }),
      opts({ seq: h.next2, nodeid: 2, inner, optlen: 0xffff }),
    ];
    await expectSkipped('optlen too large', bad, 'skipped');
  });

  test('rule 6: options present (o_optlen 8, one TLV) are stepped over; the inner message is delivered', async () => {
    const tlv = Buffer.from([0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]); // t_type 1, t_length 4, t_pad
    const inner = message({ nodeid: 2, lockspace: 0x77, body: 'with options' });
    await h.p2.send(opts({ seq: h.next2++, nodeid: 2, inner, options: tlv }));
    const g = await h.arrived(2, 'with options');
    assert.deepEqual(g.raw, inner);
  });

  test('rule 6: o_nextcmd other than DLM_MSG, DLM_RCOM, DLM_FIN is skipped', async () => {
    const bad = [0, 3, 4, 6, 255].map((c) =>
      opts({ seq: h.next2, nodeid: 2, nextcmd: c, inner: message({ nodeid: 2, cmd: c, body: `nextcmd ${c}` }) }),
    );
    await expectSkipped('bad o_nextcmd', bad, 'skipped');
  });

  test('stricter than the kernel: inner h_length != outer h_length - 24 - optlen is dropped', async () => {
    const lie = (d: number) => {
      const inner = message({ nodeid: 2, body: 'inner length lies' });
      inner.writeUInt16LE(inner.length + d, 12);
      return opts({ seq: h.next2, nodeid: 2, inner });
    };
    const zero = opts({ seq: h.next2, nodeid: 2, inner: message({ nodeid: 2, body: 'inner length 0', length: 0 }) });
    await expectSkipped('inner/outer length mismatch', [lie(+1), lie(-1), lie(+100), zero], 'skipped');
  });

  test('stricter than the kernel: inner h_cmd != o_nextcmd is dropped', async () => {
    const bad = [
      opts({ seq: h.next2, nodeid: 2, nextcmd: CMD.MSG, inner: message({ nodeid: 2, cmd: CMD.RCOM, body: 'x'.repeat(32) }) }),
      opts({ seq: h.next2, nodeid: 2, nextcmd: CMD.RCOM, inner: message({ nodeid: 2, cmd: CMD.MSG, body: 'y' }) }),
      opts({ seq: h.next2, nodeid: 2, nextcmd: CMD.FIN, inner: message({ nodeid: 2, cmd: CMD.MSG }) }),
    ];
    await expectSkipped('inner cmd != nextcmd', bad, 'skipped');
  });

  test('h_nodeid of another node (configured, unknown, ours) on node 2\'s connection: nodeidMismatch', async () => {
    const bad = [
      seqMsg(h.next2, 3, 'claims node 3'),
      seqMsg(h.next2, 99, 'claims node 99'),
      seqMsg(h.next2, 1, 'claims node 1'),
      ack(1, 3),
      rcom({ nodeid: 3, rcType: 1 }),
    ];
    await expectSkipped('foreign h_nodeid', bad, 'nodeidMismatch');
    assert.equal(h.stats(3).rxMsgs, h.next3, 'nothing was credited to node 3');
  });

  test('§3.5: a 3.1 frame from a node detected as 3.2 is dropped (versionMismatch)', async () => {
    const bad = [
      message({ nodeid: 2, version: V31, body: '3.1 after 3.2' }),
      rcom({ nodeid: 2, version: V31, rcType: 1 }),
    ];
    await expectSkipped('3.1 after 3.2', bad, 'versionMismatch');
    assert.equal(h.stats(2).version, '3.2', 'the version is sticky');
  });

  test('§3.4: a future seq (a gap) is dropped silently, no out-of-order buffering; it must be resent', async () => {
    const m = h.p2.mark();
    const base = h.next2;
    const future1 = seqMsg(base + 1, 2, 'future +1');
    await expectSkipped('gap', [future1, seqMsg(base + 5, 2, 'future +5')], 'gapDropped');
    // expectSkipped sent `base` itself; seq base + 1 is now due: the frame we sent early.
    assert.equal(h.next2, base + 1);
    await h.p2.send(h.good2('future +1'));
    await h.arrived(2, 'future +1');
    assert.equal(h.got.filter((g) => g.body === 'future +1').length, 1, 'delivered once, when resent');
    assert.equal(h.got.filter((g) => g.body === 'future +5').length, 0);
    // A marker that must be answered at once: a duplicate, acked with seq_next. An ACK for
    // the gaps (at once, ackDelayMs is a minute here) would have been queued earlier and
    // so would be on the wire in front of it.
    const marker = seqMsg(h.next2 - 1, 2, 'dup marker');
    await h.p2.send(marker);
    await h.p2.waitFor(isAck(h.next2), 'the ACK for the duplicate marker', { from: m, ms: 2000 });
    assert.deepEqual(h.p2.since(m).filter(isAck()).map((f) => f.word), [h.next2], 'a gap is not acked');
  });

  test('§3.4: an old seq (a duplicate) is dropped and answered at once with ACK(seq_next)', async () => {
    const m = h.p2.mark();
    const expectNext = h.next2 + 1; // after expectSkipped's own valid frame
    await expectSkipped('duplicate', [seqMsg(h.next2 - 1, 2, 'dup'), seqMsg(0, 2, 'dup of seq 0')], 'dupDropped');
    const a = await h.p2.waitFor(isAck(), 'the ACK for the duplicate', { from: m, ms: 2000 });
    // The ACK went out when the duplicates were processed, before the valid frame behind them.
    assert.equal(a.word, expectNext - 1, 'ACK carries seq_next as it was at the duplicate');
    assert.equal(h.got.filter((g) => g.body.startsWith('dup')).length, 0);
  });

  test('§3.4 pitfall fixed: the duplicate test is wrap-safe (seq 2^32-1 while expecting N is old, not a gap)', async () => {
    const m = h.p2.mark();
    await expectSkipped('seq 0xffffffff', [seqMsg(0xffffffff, 2, 'wrapped')], 'dupDropped');
    await h.p2.waitFor(isAck(), 'the ACK for the wrapped duplicate', { from: m, ms: 2000 });
    // ... while seq N + 2^31 - 1 is in the future: a gap (as in TCP's before(), N + 2^31 is "old").
    await expectSkipped('seq N + 2^31 - 1', [seqMsg((h.next2 + 0x7fffffff) >>> 0, 2, 'far future')], 'gapDropped');
  });

  test('§3.3: an ACK for frames never sent is ignored, counted (badAcks) and reported; nothing is freed', async () => {
    const before = h.stats(2);
    assert.equal(before.seqSend, 1);
    assert.equal(before.unacked, 1, 'our "hello 2" (seq 0) is unacked');
    const errorsBefore = h.errors.length;
    await expectSkipped('ACK(1000)', [ack(1000, 2)], 'badAcks');
    await until(() => h.errors.length > errorsBefore, 2000, 'an error event');
    const err = h.errors[h.errors.length - 1]!;
    assert.ok(err instanceof PeerError);
    assert.equal((err as PeerError).nodeid, 2);
    assert.equal((err as PeerError).reason, 'peer_state', 'the connection stays up');
    assert.match(err.message, /acked messages never sent/);
    assert.equal(h.stats(2).unacked, 1, 'nothing freed');
    assert.equal(h.stats(2).badFrames, before.badFrames);
    // A correct ACK afterwards still works.
    await h.p2.send(ack(1, 2));
    await until(() => h.stats(2).unacked === 0, 2000, 'seq 0 released');
  });

  test('node 4 speaks 3.1: DLM_MSG and DLM_RCOM delivered; 3.1 OPTS/ACK/FIN/other commands skipped', async () => {
    await h.p4.send(message({ nodeid: 4, version: V31, body: 'n4 first' }));
    await h.arrived(4, 'n4 first');
    assert.equal(h.stats(4).version, '3.1');
    const before = h.stats(4);
    const bad = [
      opts({ seq: 0, nodeid: 4, version: V31, inner: message({ nodeid: 4, version: V31, body: '3.1 opts' }) }),
      header({ version: V31, word: 0, nodeid: 4, length: 16, cmd: CMD.ACK }),
      header({ version: V31, word: 0, nodeid: 4, length: 16, cmd: CMD.FIN }),
      message({ nodeid: 4, version: V31, cmd: 9, body: '3.1 cmd 9' }),
    ];
    const conn = await h.p4.send([...bad, rcom({ nodeid: 4, version: V31, rcType: 4, buf: Buffer.from('n4 rcom') })]);
    await until(() => h.got.some((g) => g.nodeid === 4 && g.cmd === DLM_RCOM), 5000, 'the 3.1 RCOM LOCK');
    assert.equal(h.stats(4).skipped - before.skipped, 4);
    assert.equal(h.got.filter((g) => g.nodeid === 4).length, 2);
    // ... and a 3.2 frame from it now is a version mismatch.
    await h.p4.send([seqMsg(0, 4, '3.2 after 3.1'), message({ nodeid: 4, version: V31, body: 'n4 last' })]);
    await h.arrived(4, 'n4 last');
    assert.equal(h.stats(4).versionMismatch - before.versionMismatch, 1);
    assert.equal(conn.isClosed, false);
  });

  test('lowcomms never wrote on a connection it accepted', () => {
    for (const p of [h.p2, h.p3, h.p4]) for (const f of p.feeds) assert.equal(f.received, 0);
    assert.equal(h.p2.badStream, false);
  });
});

/** A whole raw message of `len` bytes (header + zero body), as send() takes it. */
function rawMsg(len: number, cmd: number): Buffer {
  return Buffer.concat([header({ word: 1, nodeid: 1, length: len, cmd }), Buffer.alloc(len - 16)]);
}

describe('receive validation with kernelMinimums: true (sizeof(dlm_message) 88, sizeof(dlm_rcom) 48)', () => {
  const h = harness({ kernelMinimums: true });
  const pad = (total: number, tag: string) => tag + '.'.repeat(total - 16 - tag.length);

  test('wrapped DLM_MSG: 87 bytes skipped, 88 delivered (the skipped one took no seq)', async () => {
    const before = h.stats(2);
    const seq = h.next2++;
    const small = opts({ seq, nodeid: 2, inner: message({ nodeid: 2, body: pad(87, 'msg87') }) });
    const ok = opts({ seq, nodeid: 2, inner: message({ nodeid: 2, body: pad(88, 'msg88') }) });
    await h.p2.send([small, ok]);
    await h.arrived(2, pad(88, 'msg88'));
    assert.equal(h.stats(2).skipped - before.skipped, 1);
    assert.equal(h.got.filter((g) => g.body.startsWith('msg87')).length, 0);
    await h.othersFine('after msg87');
  });

  test('wrapped DLM_RCOM: 47 bytes skipped, 48 delivered', async () => {
    const before = h.stats(2);
    const seq = h.next2++;
    const r47 = rcom({ nodeid: 2, rcType: 3, totalLength: 47 });
    const r48 = rcom({ nodeid: 2, rcType: 3, lockspace: 0x48 });
    await h.p2.send([opts({ seq, nodeid: 2, inner: r47 }), opts({ seq, nodeid: 2, inner: r48 })]);
    await until(() => h.got.some((g) => g.nodeid === 2 && g.cmd === DLM_RCOM), 5000, 'the 48-byte RCOM');
    assert.deepEqual(h.got.find((g) => g.cmd === DLM_RCOM)!.raw, r48);
    assert.equal(h.stats(2).skipped - before.skipped, 1);
  });

  test('3.1 peer: DLM_MSG of 87 bytes skipped, 88 delivered', async () => {
    await h.p4.send([
      message({ nodeid: 4, version: V31, body: pad(87, 'v31 87') }),
      message({ nodeid: 4, version: V31, body: pad(88, 'v31 88') }),
    ]);
    await h.arrived(4, pad(88, 'v31 88'));
    assert.equal(h.stats(4).skipped, 1);
    assert.equal(h.got.filter((g) => g.nodeid === 4).length, 1);
  });

  test('send() refuses a DLM_MSG below 88 or a DLM_RCOM below 48 in this mode, and nothing goes on the wire', async () => {
    const m = h.p2.mark();
    for (const [what, msg, size, min] of [
      ['DLM_MSG parts', { lockspace: 1, cmd: DLM_MSG, body: 'tiny' }, 20, 88],
      ['DLM_RCOM parts', { lockspace: 1, cmd: DLM_RCOM, body: Buffer.alloc(31) }, 47, 48],
      ['raw DLM_MSG', rawMsg(87, DLM_MSG), 87, 88],
    ] as const) {
      assert.throws(
        () => h.comms.send(2, msg),
        (e: unknown) => e instanceof MessageSizeError && e.size === size && e.min === min && e.code === 'ERR_LOWCOMMS_MSG_SIZE',
        what,
      );
    }
    // The smallest valid ones pass, and are the next frames the peer sees.
    assert.equal(h.comms.send(2, { lockspace: 1, cmd: DLM_MSG, body: Buffer.alloc(72) }), true);
    assert.equal(h.comms.send(2, rawMsg(48, DLM_RCOM)), true);
    const frames = await h.p2.waitCount(2, 'the two valid messages', { from: m });
    assert.deepEqual(frames.map((f) => f.inner?.length ?? f.length), [88, 48]);
  });

  test('a DLM_MSG below 88 bytes never stalls a kernelMinimums receiver: send() refuses it, the next one arrives', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp', options: { kernelMinimums: true } });
    const got: string[] = [];
    cl.get(2).onMessage((m) => got.push(m.body.toString('latin1')));
    assert.throws(() => cl.get(1).send(2, { lockspace: 1, body: 'small' }), MessageSizeError);
    const big = 'big'.padEnd(88 - 16, '.');
    cl.get(1).send(2, { lockspace: 1, body: big });
    await until(() => got.includes(big), 3000, 'the valid 88-byte message behind the refused one');
    const rx = cl.get(2).stats().nodes.find((n) => n.nodeid === 1)!;
    assert.equal(rx.skipped + rx.gapDropped, 0, 'nothing skipped, no gap');
  });
});

describe('send side: frames every receiver would drop', () => {
  test('a stateless RCOM shorter than dlm_rcom (< 48 bytes) goes wrapped and sequenced, and is delivered', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    const got: number[] = [];
    cl.get(2).onMessage((m) => got.push(m.lockspace));
    // rc_type 1 (STATUS) in a 4-byte body: unwrapped, every receiver would skip it.
    cl.get(1).send(2, { lockspace: 5, cmd: DLM_RCOM, body: Buffer.from([1, 0, 0, 0]) });
    cl.get(1).send(2, { lockspace: 6, body: 'behind it' });
    await until(() => got.includes(6), 3000, 'the message behind it');
    const rx = cl.get(2).stats().nodes.find((n) => n.nodeid === 1)!;
    assert.deepEqual(got, [5, 6], `delivered in order; receiver skipped ${rx.skipped}`);
    assert.equal(rx.skipped, 0);
  });
});
