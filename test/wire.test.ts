/**
 * The wire, byte for byte, against frames written from the spec (kernel-dlm.md §1, §3):
 * what lowcomms sends (captured by a raw peer playing node 2) and what it accepts
 * (fed by a raw peer), plus one test per receive validation rule (§1.6) and the
 * inner/outer length cross-check the kernel lacks.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Lowcomms, type DlmMessage } from '../lib';
import { until } from './helpers/cluster';
import { testPort } from './helpers/transports';

/** Hex with spaces and `#` comments. */
const hex = (s: string) => Buffer.from(s.replace(/#.*$/gm, '').replace(/[^0-9a-f]/gi, ''), 'hex');

// An OPTS-wrapped DLM_MSG from node 1, seq 0: lockspace 0x11223344, body "ABCD".
const GOLDEN_OPTS_MSG = hex(`
  02 00 03 00  00 00 00 00  01 00 00 00  2c 00  03  00   # outer: v3.2, seq 0, nodeid 1, len 44, DLM_OPTS
  01  00  00 00  00 00 00 00                               # o_nextcmd DLM_MSG, pad, optlen 0, pad2
  02 00 03 00  44 33 22 11  01 00 00 00  14 00  01  00   # inner: v3.2, lockspace, nodeid 1, len 20, DLM_MSG
  41 42 43 44                                              # body
`);
// The same from node 2 (what a peer sends us), seq 0 and 1.
const fromNode2 = (seq: number, body = 'ABCD', lockspace = 0x11223344) => {
  const b = Buffer.from(body);
  const f = Buffer.alloc(24 + 16 + b.length);
  f.writeUInt32LE(0x00030002, 0);
  f.writeUInt32LE(seq, 4);
  f.writeUInt32LE(2, 8);
  f.writeUInt16LE(f.length, 12);
  f[14] = 3;
  f[16] = 1;
  f.writeUInt32LE(0x00030002, 24);
  f.writeUInt32LE(lockspace, 28);
  f.writeUInt32LE(2, 32);
  f.writeUInt16LE(16 + b.length, 36);
  f[38] = 1;
  b.copy(f, 40);
  return f;
};
// An unwrapped RCOM STATUS (rc_type 1), 48 bytes: stateless, no sequence number.
const GOLDEN_RCOM_STATUS = hex(`
  02 00 03 00  05 00 00 00  01 00 00 00  30 00  02  00   # v3.2, lockspace 5, nodeid 1, len 48, DLM_RCOM
  01 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00     # rc_type STATUS, rc_result, rc_id
  00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00     # rc_seq, rc_seq_reply
`);
// DLM_ACK from node 1 acking seq 0..2: h_seq = next expected = 3.
const GOLDEN_ACK_3 = hex('02 00 03 00  03 00 00 00  01 00 00 00  10 00  04  00');
// The inner header of DLM_FIN from node 1.
const GOLDEN_FIN_INNER = hex('02 00 03 00  00 00 00 00  01 00 00 00  10 00  05  00');

/** Splits a captured stream into frames by h_length. */
function frames(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 16) {
    const len = buf.readUInt16LE(off + 12);
    if (buf.length - off < len) break;
    out.push(buf.subarray(off, off + len));
    off += len;
  }
  return out;
}

describe('wire format', () => {
  const port = testPort();
  const nodes = [
    { nodeid: 1, addrs: ['127.0.0.1'] },
    { nodeid: 2, addrs: ['127.0.0.2'] },
    { nodeid: 3, addrs: ['127.0.0.3'] },
  ];
  let captured = Buffer.alloc(0);
  let server: net.Server;
  let comms: Lowcomms;
  const got: DlmMessage[] = [];
  const errors: string[] = [];
  const peers: net.Socket[] = [];

  before(async () => {
    // Node 2 is played by raw sockets: a server that records what lowcomms sends it.
    server = net.createServer((s) => {
      peers.push(s);
      s.on('data', (d: Buffer) => (captured = Buffer.concat([captured, d])));
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.2', r));
    comms = new Lowcomms({ nodeid: 1, nodes, port, ackDelayMs: 10 });
    comms.onMessage((m) => got.push(m));
    comms.on('error', (e) => errors.push(e.code));
    await comms.start();
  });
  after(async () => {
    await comms.close({ flush: false });
    for (const p of peers) p.destroy();
    server.close();
  });

  const connectAs = async (addr: string) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr });
    await new Promise((r) => s.once('connect', r));
    peers.push(s);
    return s;
  };
  const stats = (id: number) => comms.stats().nodes.find((n) => n.nodeid === id)!;

  test('encode: an OPTS-wrapped DLM_MSG, byte for byte; the next one takes seq 1', async () => {
    comms.send(2, { lockspace: 0x11223344, cmd: 1, body: 'ABCD' });
    comms.send(2, { lockspace: 0x11223344, cmd: 1, body: 'ABCD' });
    await until(() => frames(captured).length >= 2, 5000, 'two frames');
    const [a, b] = frames(captured);
    assert.deepEqual(a, GOLDEN_OPTS_MSG);
    const second = Buffer.from(GOLDEN_OPTS_MSG);
    second.writeUInt32LE(1, 4);
    assert.deepEqual(b, second);
  });

  test('encode: RCOM STATUS travels unwrapped and takes no sequence number', async () => {
    const before = frames(captured).length;
    comms.send(2, { lockspace: 5, cmd: 2, body: GOLDEN_RCOM_STATUS.subarray(16) });
    await until(() => frames(captured).length > before, 5000, 'the RCOM');
    assert.deepEqual(frames(captured)[before], GOLDEN_RCOM_STATUS);
    assert.equal(stats(2).seqSend, 2, 'still 2 sequenced frames');
  });

  test('decode: golden frames from node 2 are delivered with their fields; ACK(3) goes back', async () => {
    const s = await connectAs('127.0.0.2');
    const before = frames(captured).length;
    s.write(Buffer.concat([fromNode2(0), fromNode2(1, 'second'), fromNode2(2, 'third', 7)]));
    await until(() => got.length === 3, 5000, 'three messages');
    assert.deepEqual(
      got.map((m) => [m.nodeid, m.lockspace, m.cmd, m.version, m.body.toString()]),
      [
        [2, 0x11223344, 1, 0x00030002, 'ABCD'],
        [2, 0x11223344, 1, 0x00030002, 'second'],
        [2, 7, 1, 0x00030002, 'third'],
      ],
    );
    // The idle ACK (ackDelayMs 10) on our own connection to node 2.
    await until(() => frames(captured).slice(before).some((f) => f[14] === 4), 5000, 'an ACK');
    const ack = frames(captured).slice(before).find((f) => f[14] === 4)!;
    assert.deepEqual(ack, GOLDEN_ACK_3);
    s.destroy();
  });

  test('our ACK from node 2 frees what it covers', async () => {
    const s = await connectAs('127.0.0.2');
    const ack = Buffer.alloc(16);
    ack.writeUInt32LE(0x00030002, 0);
    ack.writeUInt32LE(2, 4); // node 2 has seq 0 and 1 from us
    ack.writeUInt32LE(2, 8);
    ack.writeUInt16LE(16, 12);
    ack[14] = 4;
    s.write(ack);
    await until(() => stats(2).unacked === 0, 5000, 'unacked released');
    s.destroy();
  });

  test('validation: a split frame (1-byte writes) is reassembled', async () => {
    const s = await connectAs('127.0.0.2');
    const f = fromNode2(3, 'slowly');
    for (const byte of f) {
      s.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => got.length === 4, 5000, 'the split frame');
    assert.equal(got[3]!.body.toString(), 'slowly');
    s.destroy();
  });

  test('validation: skipped frames are counted, the connection lives on', async () => {
    const s = await connectAs('127.0.0.2');
    const base = stats(2);
    const badVersion = fromNode2(4);
    badVersion.writeUInt32LE(0x00040002, 0);
    const badNext = fromNode2(4);
    badNext[16] = 7;
    const innerMismatch = fromNode2(4);
    innerMismatch.writeUInt16LE(innerMismatch.readUInt16LE(36) + 1, 36); // inner h_length lies
    const wrongNode = fromNode2(4);
    wrongNode.writeUInt32LE(3, 8);
    const gap = fromNode2(9);
    const dup = fromNode2(1);
    s.write(Buffer.concat([badVersion, badNext, innerMismatch, wrongNode, gap, dup, fromNode2(4, 'after all that')]));
    await until(() => got.length === 5, 5000, 'the valid frame after the bad ones');
    assert.equal(got[4]!.body.toString(), 'after all that');
    const n = stats(2);
    assert.equal(n.badVersion - base.badVersion, 1, 'bad version');
    assert.equal(n.skipped - base.skipped, 2, 'bad o_nextcmd, inner/outer length mismatch');
    assert.equal(n.nodeidMismatch - base.nodeidMismatch, 1, 'h_nodeid of another node');
    assert.equal(n.gapDropped - base.gapDropped, 1, 'future seq');
    assert.equal(n.dupDropped - base.dupDropped, 1, 'old seq');
    assert.equal(n.badFrames, base.badFrames, 'none of these closes the connection');
    assert.equal(s.destroyed, false);
    s.destroy();
  });

  test('validation: an ACK for frames never sent is ignored and reported', async () => {
    const s = await connectAs('127.0.0.2');
    const ack = Buffer.alloc(16);
    ack.writeUInt32LE(0x00030002, 0);
    ack.writeUInt32LE(1000, 4);
    ack.writeUInt32LE(2, 8);
    ack.writeUInt16LE(16, 12);
    ack[14] = 4;
    s.write(ack);
    await until(() => stats(2).badAcks === 1, 5000, 'bad ack counted');
    await until(() => errors.includes('ERR_LOWCOMMS_PEER'), 5000, 'PeerError emitted');
    s.destroy();
  });

  for (const [what, len] of [
    ['h_length below 16', 8],
    ['h_length above 4096', 5000],
  ] as const) {
    test(`validation: ${what} closes that connection and is counted`, async () => {
      const s = await connectAs('127.0.0.3');
      const f = Buffer.alloc(16);
      f.writeUInt32LE(0x00030001, 0);
      f.writeUInt32LE(3, 8);
      f.writeUInt16LE(len, 12);
      f[14] = 1;
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.on('error', () => undefined);
      s.resume();
      s.write(f);
      await closed;
      assert.ok(stats(3).badFrames >= 1);
    });
  }

  test('3.1 peer: delivered unwrapped, and answered without the wrapper', async () => {
    const s = await connectAs('127.0.0.3');
    const m = Buffer.alloc(20);
    m.writeUInt32LE(0x00030001, 0);
    m.writeUInt32LE(9, 4);
    m.writeUInt32LE(3, 8);
    m.writeUInt16LE(20, 12);
    m[14] = 1;
    m.write('v3.1', 16);
    s.write(m);
    await until(() => got.some((g) => g.nodeid === 3), 5000, 'the 3.1 message');
    assert.equal(stats(3).version, '3.1');
    // Our answer to node 3 goes out as 3.1: recorded by a server on 127.0.0.3.
    let cap = Buffer.alloc(0);
    const srv3 = net.createServer((c) => c.on('data', (d: Buffer) => (cap = Buffer.concat([cap, d]))));
    await new Promise<void>((r) => srv3.listen(port, '127.0.0.3', r));
    comms.send(3, { lockspace: 9, body: 'hi' });
    await until(() => frames(cap).length >= 1, 5000, 'our 3.1 answer');
    assert.deepEqual(frames(cap)[0], hex('01 00 03 00  09 00 00 00  01 00 00 00  12 00  01  00  68 69'));
    srv3.close();
    s.destroy();
  });

  test('encode: close() sends an OPTS-wrapped DLM_FIN (40 bytes)', async () => {
    const before = frames(captured).length;
    const res = await comms.close({ timeoutMs: 300 }); // the raw peer never answers
    assert.equal(res.flushed, false);
    const fin = frames(captured).slice(before).find((f) => f[14] === 3 && f[16] === 5);
    assert.ok(fin, 'a FIN frame');
    assert.equal(fin.length, 40);
    assert.deepEqual(fin.subarray(24), GOLDEN_FIN_INNER);
  });
});
