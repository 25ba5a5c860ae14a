/**
 * The wire, byte for byte, against golden frames written from the spec
 * (docs/protocol.md: the wire format, midcomms 3.2's send path, ACK, version and FIN,
 * and what a 6.1 kernel put on the wire). Every golden frame is
 * a hex literal with one comment per field; none is produced by our encoder.
 *
 * Encode: lowcomms (node 1 on 127.0.0.1) sends to node 2 and node 3, both played by
 * raw peers (test/helpers/rawpeer.ts) that capture what arrives on their address.
 * Decode: the raw peers write golden frames to lowcomms and we check what the
 * application gets. The receive validation rules are in validation.test.ts, the FIN
 * handshake and the ack thresholds in midcomms.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DLM_MSG, DLM_RCOM, Lowcomms, type DlmMessage } from '../lib';
import { startCluster, until } from './helpers/cluster';
import { CMD, RawPeer, hex, isAck, isFin, seqMsg, type Frame } from './helpers/rawpeer';
import { testPort } from './helpers/transports';

// ---------------------------------------------------------------------------------------
// Golden frames, node 1 -> node 2 (what lowcomms must send).

/** send(2, { lockspace: 0x11223344, cmd: DLM_MSG, body: 'ABCD' }) as the first sequenced frame. */
const G_MSG_SEQ0 = hex(`
  02 00 03 00   # h_version   0x00030002 (DLM 3.2)
  00 00 00 00   # h_seq       0 (first sequenced frame to this node)
  01 00 00 00   # h_nodeid    1 (the sender)
  2c 00         # h_length    44 = 24 + 20
  03            # h_cmd       DLM_OPTS
  00            # h_pad
  01            # o_nextcmd   DLM_MSG (copy of the inner h_cmd)
  00            # o_pad
  00 00         # o_optlen    0
  00 00 00 00   # o_pad2
  02 00 03 00   # inner h_version 3.2
  44 33 22 11   # inner h_lockspace 0x11223344
  01 00 00 00   # inner h_nodeid 1
  14 00         # inner h_length 20
  01            # inner h_cmd DLM_MSG
  00            # inner h_pad
  41 42 43 44   # body "ABCD"
`);

/**
 * A kernel-sized lock request (§8.1: a 92-byte DLM_MSG inside a 116-byte OPTS frame,
 * not 8-byte aligned), seq 1, lockspace 7. The body is struct dlm_message's 18 le32
 * fields (§1.3) plus a 4-byte m_extra; the comms layer carries it untouched.
 */
const G_KMSG_SEQ1 = hex(`
  02 00 03 00   # h_version 3.2
  01 00 00 00   # h_seq 1
  01 00 00 00   # h_nodeid 1
  74 00         # h_length 116
  03 00         # h_cmd DLM_OPTS, h_pad
  01 00 00 00 00 00 00 00  # o_nextcmd DLM_MSG, o_pad, o_optlen 0, o_pad2
  02 00 03 00   # inner h_version 3.2
  07 00 00 00   # inner h_lockspace 7
  01 00 00 00   # inner h_nodeid 1
  5c 00         # inner h_length 92 (= 88 + 4)
  01 00         # inner h_cmd DLM_MSG, h_pad
  01 00 00 00   # m_type DLM_MSG_REQUEST
  01 00 00 00   # m_nodeid 1
  34 12 00 00   # m_pid 0x1234
  01 00 01 00   # m_lkid 0x00010001
  00 00 00 00   # m_remid
  00 00 00 00   # m_parent_lkid
  00 00 00 00   # m_parent_remid
  00 00 00 00   # m_exflags
  00 00 00 00   # m_sbflags
  00 00 00 00   # m_flags
  00 00 00 00   # m_lvbseq
  ef be ad de   # m_hash 0xdeadbeef
  00 00 00 00   # m_status
  ff ff ff ff   # m_grmode -1 (IV)
  05 00 00 00   # m_rqmode 5 (EX)
  ff ff ff ff   # m_bastmode -1
  00 00 00 00   # m_asts
  00 00 00 00   # m_result
  72 65 73 31   # m_extra "res1" (the resource name)
`);

/** A DLM_RCOM of a stateful type (rc_type LOOKUP = 3): wrapped and sequenced, seq 2. */
const G_RCOM_LOOKUP_SEQ2 = hex(`
  02 00 03 00   # h_version 3.2
  02 00 00 00   # h_seq 2
  01 00 00 00   # h_nodeid 1
  4c 00         # h_length 76 = 24 + 52
  03 00         # h_cmd DLM_OPTS, h_pad
  02            # o_nextcmd DLM_RCOM
  00 00 00 00 00 00 00     # o_pad, o_optlen 0, o_pad2
  02 00 03 00   # inner h_version 3.2
  07 00 00 00   # inner h_lockspace 7
  01 00 00 00   # inner h_nodeid 1
  34 00         # inner h_length 52 (= 48 + 4)
  02 00         # inner h_cmd DLM_RCOM, h_pad
  03 00 00 00   # rc_type DLM_RCOM_LOOKUP
  00 00 00 00   # rc_result
  08 07 06 05 04 03 02 01  # rc_id 0x0102030405060708
  01 00 00 00 00 00 00 00  # rc_seq 1
  00 00 00 00 00 00 00 00  # rc_seq_reply 0
  6e 61 6d 65   # rc_buf "name"
`);

/** RCOM STATUS (rc_type 1), 64 bytes as §8.1 saw it: unwrapped, no sequence number (§3.2 rule 3). */
const G_RCOM_STATUS = hex(`
  02 00 03 00   # h_version 3.2
  07 00 00 00   # h_lockspace 7 (not a seq: this frame is not wrapped)
  01 00 00 00   # h_nodeid 1
  40 00         # h_length 64
  02 00         # h_cmd DLM_RCOM, h_pad
  01 00 00 00   # rc_type DLM_RCOM_STATUS
  00 00 00 00   # rc_result
  01 00 00 00 00 00 00 00  # rc_id 1
  00 00 00 00 00 00 00 00  # rc_seq
  00 00 00 00 00 00 00 00  # rc_seq_reply
  20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # rc_buf (16 bytes, opaque to the comms layer)
`);

/** DLM_ACK from node 1 after two in-order frames from node 2: h_seq = next expected = 2. */
const G_ACK2 = hex(`
  02 00 03 00   # h_version 3.2
  02 00 00 00   # h_seq 2: "I have everything below 2"
  01 00 00 00   # h_nodeid 1
  10 00         # h_length 16
  04 00         # h_cmd DLM_ACK, h_pad
`);

/** A whole message for send(Uint8Array): lockspace 0x55, DLM_MSG, body "raw!". */
const G_RAW_INNER = hex(`
  02 00 03 00   # h_version 3.2
  55 00 00 00   # h_lockspace 0x55
  01 00 00 00   # h_nodeid 1
  14 00         # h_length 20
  01 00         # h_cmd DLM_MSG, h_pad
  72 61 77 21   # body "raw!"
`);

/** DLM_FIN from node 1 at close(): 40 bytes, OPTS-wrapped, sequenced (seq 5 here). */
const G_FIN_SEQ5 = hex(`
  02 00 03 00   # h_version 3.2
  05 00 00 00   # h_seq 5
  01 00 00 00   # h_nodeid 1
  28 00         # h_length 40
  03 00         # h_cmd DLM_OPTS, h_pad
  05            # o_nextcmd DLM_FIN
  00 00 00 00 00 00 00     # o_pad, o_optlen 0, o_pad2
  02 00 03 00   # inner h_version 3.2
  00 00 00 00   # inner h_lockspace 0
  01 00 00 00   # inner h_nodeid 1
  10 00         # inner h_length 16 (a bare header)
  05 00         # inner h_cmd DLM_FIN, h_pad
`);

// ---------------------------------------------------------------------------------------
// Golden frames, node 2 / node 3 -> node 1 (what lowcomms must accept).

/** A kernel-sized DLM_MSG from node 2, seq 0, lockspace 7 (116 bytes). */
const G_IN_KMSG_SEQ0 = hex(`
  02 00 03 00  00 00 00 00  02 00 00 00  74 00  03 00   # 3.2, seq 0, nodeid 2, len 116, DLM_OPTS
  01 00 00 00 00 00 00 00                               # o_nextcmd DLM_MSG, optlen 0
  02 00 03 00  07 00 00 00  02 00 00 00  5c 00  01 00   # inner: 3.2, lockspace 7, nodeid 2, len 92, DLM_MSG
  02 00 00 00   # m_type DLM_MSG_REPLY
  02 00 00 00   # m_nodeid 2
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00       # m_pid, m_lkid, m_remid, m_parent_lkid
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00       # m_parent_remid, m_exflags, m_sbflags, m_flags
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00       # m_lvbseq, m_hash, m_status, m_grmode
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00       # m_rqmode, m_bastmode, m_asts, m_result
  6b 65 79 21   # m_extra "key!"
`);

/** A DLM_RCOM LOCK (rc_type 4) from node 2, seq 1, lockspace 9, no rc_buf (48 bytes inner). */
const G_IN_RCOM_SEQ1 = hex(`
  02 00 03 00  01 00 00 00  02 00 00 00  48 00  03 00   # 3.2, seq 1, nodeid 2, len 72, DLM_OPTS
  02 00 00 00 00 00 00 00                               # o_nextcmd DLM_RCOM, optlen 0
  02 00 03 00  09 00 00 00  02 00 00 00  30 00  02 00   # inner: 3.2, lockspace 9, nodeid 2, len 48, DLM_RCOM
  04 00 00 00   # rc_type DLM_RCOM_LOCK
  00 00 00 00   # rc_result
  2a 00 00 00 00 00 00 00  # rc_id 42
  00 00 00 00 00 00 00 00  # rc_seq
  00 00 00 00 00 00 00 00  # rc_seq_reply
`);

/** An unwrapped RCOM NAMES (rc_type 2) from node 2: stateless, takes no seq (48 bytes). */
const G_IN_RCOM_NAMES = hex(`
  02 00 03 00  09 00 00 00  02 00 00 00  30 00  02 00   # 3.2, lockspace 9, nodeid 2, len 48, DLM_RCOM
  02 00 00 00   # rc_type DLM_RCOM_NAMES
  00 00 00 00   # rc_result
  2b 00 00 00 00 00 00 00  # rc_id 43
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00       # rc_seq, rc_seq_reply
`);

/** DLM_ACK from node 2 covering our seq 0..3: h_seq = 4. */
const G_IN_ACK4 = hex('02 00 03 00  04 00 00 00  02 00 00 00  10 00  04 00  # 3.2, h_seq 4, nodeid 2, len 16, DLM_ACK');

/** A 3.1 DLM_MSG from node 3 (no wrapper, no seq), lockspace 9, body "v3.1". */
const G_IN_31_MSG = hex(`
  01 00 03 00   # h_version 0x00030001 (DLM 3.1)
  09 00 00 00   # h_lockspace 9
  03 00 00 00   # h_nodeid 3
  14 00         # h_length 20
  01 00         # h_cmd DLM_MSG, h_pad
  76 33 2e 31   # body "v3.1"
`);

/** Our answer to that 3.1 peer: send(3, { lockspace: 9, body: 'hi' }), unwrapped, h_version 3.1. */
const G_31_ANSWER = hex(`
  01 00 03 00   # h_version 3.1
  09 00 00 00   # h_lockspace 9
  01 00 00 00   # h_nodeid 1
  12 00         # h_length 18
  01 00         # h_cmd DLM_MSG, h_pad
  68 69         # body "hi"
`);

/** An RCOM LOOKUP to the 3.1 peer: also unwrapped (3.1 has no DLM_OPTS). */
const G_31_RCOM = hex(`
  01 00 03 00  09 00 00 00  01 00 00 00  30 00  02 00   # 3.1, lockspace 9, nodeid 1, len 48, DLM_RCOM
  03 00 00 00  00 00 00 00                              # rc_type LOOKUP, rc_result
  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  # rc_id, rc_seq, rc_seq_reply
`);

const copy = (m: DlmMessage) => ({
  nodeid: m.nodeid,
  lockspace: m.lockspace,
  cmd: m.cmd,
  version: m.version,
  body: Buffer.from(m.body),
  raw: Buffer.from(m.raw),
});

describe('wire format, golden frames both ways (one lowcomms, raw peers as nodes 2 and 3)', () => {
  const port = testPort();
  const nodes = [
    { nodeid: 1, addrs: ['127.0.0.1'] },
    { nodeid: 2, addrs: ['127.0.0.2'] },
    { nodeid: 3, addrs: ['127.0.0.3'] },
  ];
  let comms: Lowcomms;
  let p2: RawPeer;
  let p3: RawPeer;
  const got: ReturnType<typeof copy>[] = [];
  const stats = (id: number) => comms.stats().nodes.find((n) => n.nodeid === id)!;
  const sequenced = (p: RawPeer) => p.frames.filter((f) => f.cmd === CMD.OPTS);

  before(async () => {
    p2 = await RawPeer.start({ nodeid: 2, addr: '127.0.0.2', port, target: '127.0.0.1' });
    p3 = await RawPeer.start({ nodeid: 3, addr: '127.0.0.3', port, target: '127.0.0.1' });
    comms = new Lowcomms({ nodeid: 1, nodes, port, ackDelayMs: 10, peers: 'kernel' });
    comms.onMessage((m) => got.push(copy(m)));
    await comms.start();
  });
  after(async () => {
    await comms.close({ flush: false });
    await p2.close();
    await p3.close();
  });

  test('encode: DLM_MSG wrapped in DLM_OPTS, seq 0 then 1 (a kernel-sized 116-byte frame)', async () => {
    comms.send(2, { lockspace: 0x11223344, cmd: DLM_MSG, body: 'ABCD' });
    comms.send(2, { lockspace: 7, cmd: DLM_MSG, body: G_KMSG_SEQ1.subarray(40) });
    const [a, b] = await p2.waitCount(2, 'two frames');
    assert.deepEqual(a!.bytes, G_MSG_SEQ0);
    assert.deepEqual(b!.bytes, G_KMSG_SEQ1);
    assert.equal(stats(2).seqSend, 2);
  });

  test('encode: DLM_RCOM of a stateful type (LOOKUP) is wrapped too, seq 2', async () => {
    const m = p2.mark();
    comms.send(2, { lockspace: 7, cmd: DLM_RCOM, body: G_RCOM_LOOKUP_SEQ2.subarray(40) });
    const [f] = await p2.waitCount(1, 'the RCOM', { from: m });
    assert.deepEqual(f!.bytes, G_RCOM_LOOKUP_SEQ2);
  });

  test('encode: RCOM STATUS travels unwrapped and takes no sequence number; the next DLM_MSG gets seq 3', async () => {
    const m = p2.mark();
    comms.send(2, { lockspace: 7, cmd: DLM_RCOM, body: G_RCOM_STATUS.subarray(16) });
    comms.send(2, { lockspace: 0x11223344, cmd: DLM_MSG, body: 'ABCD' });
    const [status, msg] = await p2.waitCount(2, 'the STATUS and the next message', { from: m });
    assert.deepEqual(status!.bytes, G_RCOM_STATUS);
    const seq3 = Buffer.from(G_MSG_SEQ0);
    seq3[4] = 3; // h_seq 3: the STATUS consumed none
    assert.deepEqual(msg!.bytes, seq3);
    assert.equal(stats(2).seqSend, 4);
    assert.equal(stats(2).unacked, 4, 'the unwrapped STATUS is not kept for resend');
  });

  test('decode: golden frames from node 2 (OPTS MSG, OPTS RCOM, unwrapped RCOM NAMES) reach the application', async () => {
    await p2.send([G_IN_KMSG_SEQ0, G_IN_RCOM_SEQ1, G_IN_RCOM_NAMES]);
    await until(() => got.length === 3, 5000, 'three messages');
    assert.deepEqual(
      got.map((m) => [m.nodeid, m.lockspace, m.cmd, m.version]),
      [
        [2, 7, DLM_MSG, 0x00030002],
        [2, 9, DLM_RCOM, 0x00030002],
        [2, 9, DLM_RCOM, 0x00030002],
      ],
    );
    // raw = the inner message exactly; body = what follows its 16-byte header.
    assert.deepEqual(got[0]!.raw, G_IN_KMSG_SEQ0.subarray(24));
    assert.deepEqual(got[0]!.body, G_IN_KMSG_SEQ0.subarray(40));
    assert.deepEqual(got[1]!.raw, G_IN_RCOM_SEQ1.subarray(24));
    assert.deepEqual(got[2]!.raw, G_IN_RCOM_NAMES);
    const s = stats(2);
    assert.equal(s.version, '3.2');
    assert.equal(s.seqNext, 2, 'the unwrapped NAMES took no sequence number');
  });

  test('encode: DLM_ACK (16 bytes, h_seq = our next expected) after the idle delay', async () => {
    // The two sequenced frames of the previous test are acked by the idle ACK (ackDelayMs 10).
    const f = await p2.waitFor(isAck(), 'an ACK');
    assert.deepEqual(f.bytes, G_ACK2);
  });

  test('decode: an ACK from node 2 releases what it covers', async () => {
    assert.equal(stats(2).unacked, 4);
    await p2.send(G_IN_ACK4);
    await until(() => stats(2).unacked === 0, 5000, 'seq 0..3 released');
    assert.equal(stats(2).acksRcvd, 1);
    assert.equal(stats(2).badAcks, 0);
  });

  test('decode + encode: a peer that speaks 3.1 first gets unwrapped 3.1 frames, no seq, no ACK', async () => {
    await p3.send(G_IN_31_MSG);
    await until(() => got.some((g) => g.nodeid === 3), 5000, 'the 3.1 message');
    const m = got.find((g) => g.nodeid === 3)!;
    assert.deepEqual([m.lockspace, m.cmd, m.version], [9, DLM_MSG, 0x00030001]);
    assert.deepEqual(m.raw, G_IN_31_MSG);
    assert.equal(stats(3).version, '3.1');
    comms.send(3, { lockspace: 9, body: 'hi' });
    comms.send(3, { lockspace: 9, cmd: DLM_RCOM, body: G_31_RCOM.subarray(16) });
    const [a, b] = await p3.waitCount(2, 'our two 3.1 frames');
    assert.deepEqual(a!.bytes, G_31_ANSWER);
    assert.deepEqual(b!.bytes, G_31_RCOM);
    assert.equal(stats(3).seqSend, 0, '3.1: no sequence numbers');
    // No ACK to a 3.1 peer, shown by markers rather than by waiting: node 2 (3.2) sends a
    // message, and its idle ACK (ackDelayMs 10) comes from the same pass over all nodes
    // that would ack node 3; then a duplicate, acked at once by the receive thread after
    // that pass has finished. ACKs are counted when queued, so by then node 3 has none.
    const m2 = p2.mark();
    await p2.send(seqMsg(2, 2, 'idle-ack marker'));
    await p2.waitFor(isAck(3), "node 2's idle ACK", { from: m2 });
    await p2.send(seqMsg(2, 2, 'duplicate marker'));
    await until(() => p2.since(m2).filter(isAck(3)).length === 2, 2000, 'the ACK of the duplicate');
    assert.equal(stats(3).acksSent, 0, 'a 3.1 peer is never acked');
    assert.equal(p3.frames.filter((f) => f.cmd === CMD.ACK).length, 0, 'no ACK on the wire to node 3');
    assert.equal(stats(2).dupDropped, 1);
  });

  test('encode: send(Uint8Array) of a whole message: wrapped, the inner bytes are the message verbatim', async () => {
    const m = p2.mark();
    assert.equal(comms.send(2, G_RAW_INNER), true);
    const [f] = await p2.waitCount(1, 'the raw message', { from: m });
    assert.equal(f!.cmd, CMD.OPTS);
    assert.equal(f!.word, 4, 'seq 4');
    assert.equal(f!.length, 24 + G_RAW_INNER.length);
    assert.equal(f!.nextcmd, CMD.MSG);
    assert.deepEqual(f!.inner, G_RAW_INNER);
  });

  test('encode: close() sends DLM_FIN (40 bytes, seq 5) to the 3.2 peer only; unanswered, it times out', async () => {
    const m2 = p2.mark();
    const m3 = p3.mark();
    const res = await comms.close({ timeoutMs: 300 });
    const fin = await p2.waitFor(isFin, 'the FIN', { from: m2 });
    assert.deepEqual(fin.bytes, G_FIN_SEQ5);
    assert.equal(p3.since(m3).length, 0, 'no FIN to a 3.1 peer');
    assert.equal(res.flushed, false);
    assert.deepEqual(res.unacked, { 2: 2 }, 'the raw message (seq 4) and the FIN were never acked');
  });

  test('lowcomms never wrote on the connections it accepted, and its stream always framed', () => {
    for (const p of [p2, p3]) {
      assert.equal(p.badStream, false);
      for (const f of p.feeds) assert.equal(f.received, 0, `node ${p.nodeid}: bytes on an accepted connection`);
      assert.ok(p.inbound.length >= 1);
    }
    // Every sequenced frame to node 2, in order: seq 0, 1, 2, 3, 4 and the FIN's 5.
    assert.deepEqual(sequenced(p2).map((f: Frame) => f.word), [0, 1, 2, 3, 4, 5]);
  });
});

describe('send(Uint8Array) round-trips between two lowcomms instances', () => {
  test('the receiver gets the same whole message back (raw), with its fields', async (t) => {
    const cl = await startCluster(t, { n: 2, transport: 'tcp' });
    const got: ReturnType<typeof copy>[] = [];
    cl.get(2).onMessage((m) => got.push(copy(m)));
    assert.equal(cl.get(1).send(2, G_RAW_INNER), true);
    assert.equal(cl.get(1).send(2, G_KMSG_SEQ1.subarray(24)), true);
    await until(() => got.length === 2, 5000, 'two messages');
    assert.deepEqual(got[0]!.raw, G_RAW_INNER);
    assert.deepEqual([got[0]!.nodeid, got[0]!.lockspace, got[0]!.cmd, got[0]!.version], [1, 0x55, DLM_MSG, 0x00030002]);
    assert.deepEqual(got[1]!.raw, G_KMSG_SEQ1.subarray(24));
  });
});
