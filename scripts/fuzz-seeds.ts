/**
 * Writes the seed corpus of the fuzz targets (test/fuzz-corpus/): valid frames of every
 * kind, alone, concatenated and in both protocol versions. Run: npx tsx scripts/fuzz-seeds.ts
 */
import fs from 'node:fs';
import path from 'node:path';
import { DLM_ACK, DLM_FIN, DLM_MSG, DLM_OPTS, DLM_RCOM, DLM_VERSION_3_1, DLM_VERSION_3_2, encodeMessage, writeHeader } from '../lib/dlm';

const out = path.join(__dirname, '..', 'test', 'fuzz-corpus');

function opts(seq: number, inner: Buffer): Buffer {
  const o = Buffer.alloc(24);
  writeHeader(o, { version: DLM_VERSION_3_2, lockspace: seq, nodeid: 2, length: 24 + inner.length, cmd: DLM_OPTS });
  o[16] = inner[14]!;
  return Buffer.concat([o, inner]);
}
const msg = (n: number) => encodeMessage({ lockspace: 7, nodeid: 2, cmd: DLM_MSG }, Buffer.alloc(n, 0x5a));
const rcomStatus = () => {
  const body = Buffer.alloc(32);
  body.writeUInt32LE(1, 0); // RCOM_STATUS
  return encodeMessage({ lockspace: 7, nodeid: 2, cmd: DLM_RCOM }, body);
};
const ack = (v: number) => {
  const a = Buffer.alloc(16);
  writeHeader(a, { version: DLM_VERSION_3_2, lockspace: v, nodeid: 2, length: 16, cmd: DLM_ACK });
  return a;
};
const fin = () => opts(3, encodeMessage({ lockspace: 0, nodeid: 2, cmd: DLM_FIN }));

const stream: Record<string, Buffer> = {
  'opts-msg': opts(0, msg(72)),
  'opts-seq': Buffer.concat([opts(0, msg(0)), opts(1, msg(100)), opts(2, msg(4072 - 16))]),
  'opts-dup-gap': Buffer.concat([opts(0, msg(10)), opts(0, msg(10)), opts(5, msg(10))]),
  'rcom-status': rcomStatus(),
  'ack': ack(3),
  'fin': Buffer.concat([opts(0, msg(8)), opts(1, msg(8)), opts(2, msg(8)), fin()]),
  'v31-msg': Buffer.concat([encodeMessage({ lockspace: 1, nodeid: 2, cmd: DLM_MSG, version: DLM_VERSION_3_1 }, Buffer.alloc(72)), encodeMessage({ lockspace: 1, nodeid: 2, cmd: DLM_RCOM, version: DLM_VERSION_3_1 }, Buffer.alloc(32))]),
  'bad-length': Buffer.from('0200030000000000020000000800010000', 'hex'),
};
fs.mkdirSync(path.join(out, 'stream'), { recursive: true });
for (const [name, bytes] of Object.entries(stream)) {
  // Two leading bytes: the cut-point seed and the kernel-minimums flag.
  fs.writeFileSync(path.join(out, 'stream', `${name}.bin`), Buffer.concat([Buffer.from([name.length * 13, name.length & 1]), bytes]));
}
// Model mode (second byte bit 1): a script of frames and events from a session next to
// the 2^32 wrap (the first byte: how far before it). Frame op byte (bit 0x40 clear) % 8:
// 0/1 next in order, 2 duplicate, 3 gap, 4 foreign nodeid (each with a length byte, a u16
// when op & 0x80; then a distance byte for 2/3), 5 ACK (u16 value; op & 16 within what we
// sent, op & 8 an unknown version), 6 RCOM STATUS, 7 the peer's FIN (op & 8 a duplicate).
// Event op byte (bit 0x40 set) % 8: 0-2 the application consumes 1 + u8 deliveries, 3 all
// of them, 4 the idle-ACK timer, 5 our FIN acked, 6 active close, 7 a send.
// See native/fuzz/fuzz_stream.cc.
const consumeAll = 0x43, idleAck = 0x44, finAcked = 0x45, close = 0x46, send = 0x47;
const inOrder = (n: number) => Array.from({ length: n }, (_, i) => [i % 2, i & 31]).flat();
const model: Record<string, number[]> = {
  'model-wrap': [7, 0, 0, 1, 0, 0, 5, 2, 0, 3, 3, 0, 1, 4, 0, 0x15, 0x10, 0x00, 6, 0, 9, 1, 0, 0x82, 0x10, 0x00, 2, consumeAll, idleAck],
  'model-big': [0, 0x80, 0x00, 0x0f, 0x81, 0xe8, 0x03, 0x15, 0x20, 0x01, 0x88, 0x06, 0x00, 0x40, 0, idleAck, consumeAll, idleAck],
  // 300 in-order messages: no ACK for 256 consumed, the ACK at once for the 257th.
  'model-ack-threshold': [3, ...inOrder(300), 0x40, 255, 0x40, 0, consumeAll, 2, 0, 0, idleAck],
  // Passive close with messages unconsumed: the FIN's ACK and then the reset wait for them.
  'model-fin-deferred': [1, ...inOrder(3), 7, idleAck, finAcked, 0x40, 1, idleAck, consumeAll, 0, 0, 6, consumeAll, idleAck],
  // Active close: FIN_WAIT1, FIN_WAIT2, then the peer's FIN with messages unconsumed.
  'model-fin-active': [2, 0, 0, consumeAll, idleAck, close, send, 1, 0, finAcked, 0, 0, 7, 0, 0, consumeAll, idleAck, send],
  // Both close at once (CLOSING): our FIN acked before the peer's FIN could be.
  'model-fin-closing': [4, 0, 0, close, 1, 0, 0, 0, 7, 0x87, 0x40, 0, finAcked, idleAck, consumeAll, 0, 0, consumeAll],
  // ACKs forwards, backwards (ignored, counted), beyond what we sent (bad), forwards again.
  'model-acks': [9, 0x15, 0xf4, 0x01, 0x15, 0x90, 0x01, 0x05, 0xb0, 0x04, 0x15, 0x58, 0x02, 0x1d, 0x00, 0x00],
};
for (const [name, ops] of Object.entries(model))
  fs.writeFileSync(path.join(out, 'stream', `${name}.bin`), Buffer.from([name.length * 13, 2 | (name.length & 1), ...ops]));

fs.mkdirSync(path.join(out, 'writequeue'), { recursive: true });
// First byte: entry size; then 4 bytes: the first sequence number (inverted, low byte
// flipped: zeros start at 0xffffff00, next to the wrap). Op byte % 8: 0 message (u16
// length), 1 FIN, 2 ACK frame (u16 value; op & 8: a plain message instead, u16 length,
// op & 16 DLM_MSG else DLM_RCOM), 3 send (u8 iovecs, u16 max bytes/16, u16 bytes), 4 ack
// (u8 how; u32 value or s8 offset), 5 forget_unacked, 6 rewind (u8 with ack, u32 ack
// value), 7 clear, or with op & 8 new_session (op & 32: u32 first seq, else 0); op & 16
// a send gathered before it (u16: how much it then advances). See
// native/fuzz/fuzz_writequeue.cc.
const wq: Record<string, number[]> = {
  'send-ack-rewind': [0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0xff, 0x0f, 1, 3, 4, 0x30, 0x00, 0x30, 0x00, 4, 0, 1, 6, 1, 0, 0, 0, 0, 0, 0x01, 0x00, 3, 64, 0xff, 0xff, 0xff, 0xff, 6, 0, 0, 0, 0, 0],
  'fin-acked': [1, 0, 0, 0, 0, 0, 0x20, 0, 1, 3, 64, 0xff, 0xff, 0xff, 0xff, 4, 0, 2, 6, 1, 9, 0, 0, 0],
  'forget-then-rewind': [0, 0, 0, 0, 0, 0, 8, 0, 0, 9, 0, 2, 7, 0, 3, 2, 0x10, 0, 0x20, 0, 5, 6, 1, 0, 0, 0, 0, 0, 5, 0],
  'ack-anywhere': [2, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 4, 1, 0xff, 0xff, 0xff, 0x7f, 4, 1, 0, 0, 0, 0x80, 6, 0, 0, 0, 0, 0],
  'many': Array.from({ length: 96 }, (_, i) => [0, 1, 2, 3, 4, 5, 6, 0, 1, 3][i % 10]!),
  // A frame cut by a send, rewound (resent: a socket took it), then the peer restarts: it is
  // dropped, the rest renumbered from 0 around a plain message; the ACK and FIN dropped.
  'new-session-after-rewind': [0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0x20, 0x00, 3, 64, 0xff, 0xff, 0x30, 0x00, 6, 1, 5, 0, 0, 0, 0, 0x08, 0x00, 0x0a, 0x20, 0x00, 2, 0x07, 0x00, 1, 0x0f, 0, 0x04, 0x00, 3, 64, 0xff, 0xff, 0x40, 0x00, 0x3f, 0x09, 0, 0, 0, 0x10, 0x00, 4, 1, 0x0b, 0, 0, 0, 6, 0, 0, 0, 0, 0],
  // Frames acked before they were sent, forgotten ones, then a new session with a send in flight.
  'new-session-acked-unsent': [1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x10, 0, 0x1a, 0x40, 0, 4, 0, 1, 0, 0x20, 0, 5, 0, 0x30, 0, 0x1f, 0x20, 0, 0x2f, 0xfe, 0xff, 0xff, 0xff],
};
for (const f of fs.readdirSync(path.join(out, 'writequeue'))) fs.rmSync(path.join(out, 'writequeue', f));
for (const [name, ops] of Object.entries(wq)) fs.writeFileSync(path.join(out, 'writequeue', `${name}.bin`), Buffer.from(ops));

// auth::consume: cut seed, flags (1 bad HELLO magic, 2 another nodeid, 4 bad PROOF magic,
// 0x80 the peer stops early), the read the answer arrives after, the MAC flip (0: the
// right key), mode (1 keyed, 2 the peer's key flag flipped, 4 incarnation 0, 8 a PROOF
// after a keyless HELLO anyway, 0xf0 other flag bits); then 32 nonce bytes, 32 MAC bytes,
// 8 incarnation bytes and what follows the handshake. See native/fuzz/fuzz_auth.cc.
fs.mkdirSync(path.join(out, 'auth'), { recursive: true });
for (const f of fs.readdirSync(path.join(out, 'auth'))) fs.rmSync(path.join(out, 'auth', f));
const nonceMac = Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
const inc = [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11];
const after = [...opts(0, msg(40))];
const body = [...nonceMac, ...inc, ...after];
const auth: Record<string, number[]> = {
  'right-key': [5, 0, 0, 0, 1, ...body],
  'right-key-late-answer': [77, 0, 7, 0, 1, ...body],
  'wrong-key': [5, 0, 1, 0x41, 1, ...body],
  'another-node': [9, 2, 0, 0, 1, ...nonceMac],
  'bad-hello-magic': [9, 1, 0, 0, 1, ...nonceMac],
  'not-handshake-at-once': [1, 0x61, 0, 0, 0, ...body],
  'bad-proof-magic': [200, 4, 0, 0, 1, ...body],
  'stops-early': [50, 0x80, 0, 0, 1, ...nonceMac],
  'no-answer': [3, 0, 255, 0, 1, ...nonceMac, ...inc, ...Array.from({ length: 5000 }, (_, i) => i & 0xff)],
  'keyless': [5, 0, 0, 0, 0, ...body],
  'keyless-proof-follows': [11, 0, 0, 0, 8, ...body],
  'keyless-peer-keyed': [5, 0, 0, 0, 2, ...body],
  'keyed-peer-keyless': [5, 0, 0, 0, 3, ...body],
  'incarnation-zero': [5, 0, 0, 0, 4, ...body],
  'other-flag-bits': [5, 0, 0, 0, 0xf1, ...body],
};
for (const [name, bytes] of Object.entries(auth)) fs.writeFileSync(path.join(out, 'auth', `${name}.bin`), Buffer.from(bytes));

// session_crypto's records: mode (bit 0 encrypt), key byte; then records of [len/8, len%8,
// cuts, plaintext...] and one fate byte per record (1 flip, 2 drop, 3 swap, 4 replay, else
// as sent). See native/fuzz/fuzz_record.cc.
fs.mkdirSync(path.join(out, 'record'), { recursive: true });
for (const f of fs.readdirSync(path.join(out, 'record'))) fs.rmSync(path.join(out, 'record', f));
const rec = (len: number, cuts: number) => [len >> 3, len & 7, cuts, ...Array.from({ length: len }, (_, i) => (i * 13 + len) & 0xff)];
const records = [...rec(40, 0x1b), ...rec(0, 0), ...rec(300, 0x27), ...rec(17, 0x3f)];
const recordSeeds: Record<string, number[]> = {
  'encrypt-in-order': [1, 7, ...records, 0, 0, 0, 0],
  'integrity-in-order': [0, 7, ...records, 0, 0, 0, 0],
  'flip': [1, 9, ...records, 0, 0x21, 0, 0],
  'drop': [1, 9, ...records, 0, 2, 0, 0],
  'swap': [0, 9, ...records, 3, 0, 0, 0],
  'replay': [1, 9, ...records, 0, 4, 0, 0],
};
for (const [name, bytes] of Object.entries(recordSeeds)) fs.writeFileSync(path.join(out, 'record', `${name}.bin`), Buffer.from(bytes));
console.log(`seeds written to ${out}`);
