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
// Model mode (second byte bit 1): a script of frames from a session next to the 2^32 wrap.
// Op byte % 7: 0/1 next in order, 2 duplicate, 3 gap, 4 foreign nodeid, 5 ACK/bad version,
// 6 RCOM STATUS; then a length byte (u16 when op & 0x80), then a distance byte for 2/3,
// or an ACK value (u16) for 5. See native/fuzz/fuzz_stream.cc.
const model: Record<string, number[]> = {
  'model-wrap': [7, 0, 0, 1, 0, 0, 5, 2, 0, 3, 3, 0, 1, 4, 0, 5, 0, 1, 0, 6, 0, 0, 9, 1, 0, 0x82, 0x10, 0x00, 2],
  'model-big': [0x80, 0x00, 0x0f, 0x81, 0xe8, 0x03, 0x85, 0x20, 0x01, 0x00, 0x88, 0x06, 0x00],
  // 300 in-order messages: the ACK at once past 256 deliveries.
  'model-ack-threshold': [3, ...Array.from({ length: 300 }, (_, i) => [i % 2, i & 31]).flat(), 2, 0, 0],
};
for (const [name, ops] of Object.entries(model))
  fs.writeFileSync(path.join(out, 'stream', `${name}.bin`), Buffer.from([name.length * 13, 2 | (name.length & 1), ...ops]));

fs.mkdirSync(path.join(out, 'writequeue'), { recursive: true });
// First byte: entry size; then 4 bytes: the first sequence number (inverted, low byte
// flipped: zeros start at 0xffffff00, next to the wrap). Op byte % 8: 0 message (u16
// length), 1 FIN, 2 ACK frame (u16 value), 3 send (u8 iovecs, u16 max bytes/16, u16
// bytes), 4 ack (u8 how; u32 value or s8 offset), 5 forget_unacked, 6 rewind (u8 with
// ack, u32 ack value), 7 clear. See native/fuzz/fuzz_writequeue.cc.
const wq: Record<string, number[]> = {
  'send-ack-rewind': [0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0xff, 0x0f, 1, 3, 4, 0x30, 0x00, 0x30, 0x00, 4, 0, 1, 6, 1, 0, 0, 0, 0, 0, 0x01, 0x00, 3, 64, 0xff, 0xff, 0xff, 0xff, 6, 0, 0, 0, 0, 0],
  'fin-acked': [1, 0, 0, 0, 0, 0, 0x20, 0, 1, 3, 64, 0xff, 0xff, 0xff, 0xff, 4, 0, 2, 6, 1, 9, 0, 0, 0],
  'forget-then-rewind': [0, 0, 0, 0, 0, 0, 8, 0, 0, 9, 0, 2, 7, 0, 3, 2, 0x10, 0, 0x20, 0, 5, 6, 1, 0, 0, 0, 0, 0, 5, 0],
  'ack-anywhere': [2, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 4, 1, 0xff, 0xff, 0xff, 0x7f, 4, 1, 0, 0, 0, 0x80, 6, 0, 0, 0, 0, 0],
  'many': Array.from({ length: 96 }, (_, i) => [0, 1, 2, 3, 4, 5, 6, 0, 1, 3][i % 10]!),
};
for (const f of fs.readdirSync(path.join(out, 'writequeue'))) fs.rmSync(path.join(out, 'writequeue', f));
for (const [name, ops] of Object.entries(wq)) fs.writeFileSync(path.join(out, 'writequeue', `${name}.bin`), Buffer.from(ops));

// auth::consume: cut seed, flags (1 bad HELLO magic, 2 another nodeid, 4 bad PROOF magic,
// 0x80 the peer stops early), the read the answer arrives after, the MAC flip (0: the
// right key); then 32 nonce bytes, 32 MAC bytes and what follows the PROOF. See
// native/fuzz/fuzz_auth.cc.
fs.mkdirSync(path.join(out, 'auth'), { recursive: true });
const nonceMac = Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
const after = [...opts(0, msg(40))];
const auth: Record<string, number[]> = {
  'right-key': [5, 0, 0, 0, ...nonceMac, ...after],
  'right-key-late-answer': [77, 0, 7, 0, ...nonceMac, ...after],
  'wrong-key': [5, 0, 1, 0x41, ...nonceMac, ...after],
  'another-node': [9, 2, 0, 0, ...nonceMac],
  'bad-hello-magic': [9, 1, 0, 0, ...nonceMac],
  'bad-proof-magic': [200, 4, 0, 0, ...nonceMac, ...after],
  'stops-early': [50, 0x80, 0, 0, ...nonceMac],
  'no-answer': [3, 0, 255, 0, ...nonceMac, ...Array.from({ length: 5000 }, (_, i) => i & 0xff)],
};
for (const [name, bytes] of Object.entries(auth)) fs.writeFileSync(path.join(out, 'auth', `${name}.bin`), Buffer.from(bytes));
console.log(`seeds written to ${out}`);
