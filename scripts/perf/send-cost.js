// What send() costs the sending process's JS thread, in the bench's pattern (4096 send()s
// of { lockspace, cmd: 1, body }, then flush(), then a turn of the event loop). Two modes:
//   stream (default): node 2 is a child process that counts what arrives; prints msgs/s
//     sent, ns per message spent in the send() loop and in flush() (the native submit),
//     and the sending process's CPU (all threads) per message.
//   solo: node 2 never answers, so nothing else competes: the messages pile up in the
//     write queue (limit raised) and removeNode/addNode empties it after each round of
//     PER messages; prints the median of ROUNDS rounds.
// It loads the compiled package (dist/; run `npm run build:ts` first) from ROOT, default
// this checkout, so two builds can be alternated:
//   ROOT=/path/to/other/checkout node scripts/perf/send-cost.js
//   SIZE=64 SECONDS=2 node scripts/perf/send-cost.js      MODE=solo PER=65536 ROUNDS=21 ...
'use strict';
const { fork } = require('node:child_process');
const path = require('node:path');

const root = process.env.ROOT || path.resolve(__dirname, '..', '..');
const { Lowcomms } = require(path.join(root, 'dist/lib'));
const size = Number(process.env.SIZE || 64);
const seconds = Number(process.env.SECONDS || 3);
const port = Number(process.env.PORT || 23000 + (process.pid % 1000));
const node2 = { nodeid: 2, addrs: ['127.0.0.2'] };
const nodes = [{ nodeid: 1, addrs: ['127.0.0.1'] }, node2];
const body = Buffer.alloc(size - 16);

async function stream() {
  const child = fork(__filename, ['sink'], { env: { ...process.env, PORT: String(port) } });
  await new Promise((r) => child.once('message', r));
  const c = new Lowcomms({ nodeid: 1, nodes, transport: 'tcp', port });
  await c.start();
  c.send(2, { lockspace: 0, cmd: 1, body });
  c.flush();
  await new Promise((r) => setTimeout(r, 300)); // connected
  let seq = 1;
  let tSend = 0n;
  let tFlush = 0n;
  const cpu0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  const t0 = seq;
  while (performance.now() < end) {
    const a = process.hrtime.bigint();
    for (let k = 0; k < 4096; k++) {
      if (!c.send(2, { lockspace: seq, cmd: 1, body })) break;
      seq++;
    }
    const b = process.hrtime.bigint();
    c.flush();
    tFlush += process.hrtime.bigint() - b;
    tSend += b - a;
    await new Promise((r) => setImmediate(r));
  }
  const cpu = process.cpuUsage(cpu0);
  const sent = seq - t0;
  await new Promise((r) => setTimeout(r, 500));
  child.send('count');
  const got = await new Promise((r) => child.once('message', r));
  console.log(JSON.stringify({
    root, mode: 'stream', size, sent, received: got - 1, msgsPerSec: Math.round(sent / seconds),
    sendNs: Number(tSend) / sent, flushNs: Number(tFlush) / sent, cpuNs: ((cpu.user + cpu.system) * 1000) / sent,
  }));
  child.send('close');
  await c.close({ timeoutMs: 1000 });
}

function sink() {
  const c = new Lowcomms({ nodeid: 2, nodes, transport: 'tcp', port });
  let n = 0;
  c.onBatch((b) => {
    n += b.index.length / 3;
  });
  c.start().then(() => process.send('up'));
  process.on('message', async (m) => {
    if (m === 'count') process.send(n);
    if (m === 'close') {
      await c.close({ timeoutMs: 1000 });
      process.exit(0);
    }
  });
}

async function solo() {
  const rounds = Number(process.env.ROUNDS || 21);
  const per = Number(process.env.PER || 65536);
  const c = new Lowcomms({ nodeid: 1, nodes, transport: 'tcp', port, limits: { maxNodeBytes: 2 ** 40 } });
  await c.start();
  const res = [];
  let seq = 0;
  for (let r = 0; r <= rounds; r++) {
    let tSend = 0n;
    let tFlush = 0n;
    for (let i = 0; i < per; i += 4096) {
      const a = process.hrtime.bigint();
      for (let k = 0; k < 4096; k++) if (!c.send(2, { lockspace: seq++, cmd: 1, body })) throw new Error('refused');
      const b = process.hrtime.bigint();
      c.flush();
      tFlush += process.hrtime.bigint() - b;
      tSend += b - a;
    }
    c.removeNode(2);
    c.addNode(node2);
    if (r > 0) res.push([Number(tSend) / per, Number(tFlush) / per]); // round 0 warms up
  }
  const med = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  console.log(JSON.stringify({ root, mode: 'solo', size, rounds, per, sendNs: med(res.map((x) => x[0])), flushNs: med(res.map((x) => x[1])) }));
  await c.close({ flush: false });
}

if (process.argv[2] === 'sink') sink();
else (process.env.MODE === 'solo' ? solo() : stream()).catch((e) => {
  console.error(e);
  process.exit(1);
});
