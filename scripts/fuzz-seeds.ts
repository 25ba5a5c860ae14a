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
fs.mkdirSync(path.join(out, 'writequeue'), { recursive: true });
// Op codes (native/fuzz/fuzz_writequeue.cc): 0 reserve, 1 ack frame, 2 send, 3 ack, 4 rewind, 5 clear.
fs.writeFileSync(path.join(out, 'writequeue', 'send-ack-rewind.bin'), Buffer.from([0, 0, 0x10, 0x00, 0, 0xff, 0x0f, 2, 0x30, 0x00, 3, 1, 4, 1, 0, 0x01, 0x00, 2, 0xff, 0xff, 4, 0]));
fs.writeFileSync(path.join(out, 'writequeue', 'many.bin'), Buffer.from(Array.from({ length: 64 }, (_, i) => [0, 1, 2, 3, 4][i % 5]!)));
console.log(`seeds written to ${out}`);
