// What a 64-byte stream costs the RECEIVING process (issue 12; docs/performance.md
// section 9). The parent sends in the bench's pattern (4096 send()s, flush(), a turn of
// the event loop); the child receives with a sink that, like the bench's, reads every
// message's sequence number and checks it. Prints msgs/s received and the receiving
// process's CPU (all threads) per message, measured inside the child over the window.
//   ROOT=/other/checkout SIZE=64 SECONDS=2 node scripts/perf/recv-cost.js
//   PERF=1 ...: the child runs with --perf-basic-prof and prints its pid on stderr, for
//   `perf record -p PID` while it runs.
//   TRACE_GC=1 ...: the child runs with --trace-gc (when its batches' Buffers are collected).
// It loads the compiled package (dist/; run `npm run build:ts` first) from ROOT.
'use strict';
const { fork } = require('node:child_process');
const path = require('node:path');

const root = process.env.ROOT || path.resolve(__dirname, '..', '..');
const { Lowcomms } = require(path.join(root, 'dist/lib'));
const size = Number(process.env.SIZE || 64);
const seconds = Number(process.env.SECONDS || 2);
const port = Number(process.env.PORT || 24000 + (process.pid % 1000));
const nodes = [{ nodeid: 1, addrs: ['127.0.0.1'] }, { nodeid: 2, addrs: ['127.0.0.2'] }];
const body = Buffer.alloc(size - 16);

async function main() {
  const execArgv = process.env.PERF ? ['--perf-basic-prof'] : process.env.TRACE_GC ? ['--trace-gc'] : [];
  const child = fork(__filename, ['sink'], { execArgv, env: { ...process.env, PORT: String(port) } });
  await new Promise((r) => child.once('message', r));
  const c = new Lowcomms({ nodeid: 1, nodes, transport: 'tcp', port });
  await c.start();
  c.send(2, { lockspace: 0, cmd: 1, body });
  c.flush();
  await new Promise((r) => setTimeout(r, 300));
  if (process.env.PERF) console.error(`sink pid ${child.pid}`);
  child.send('start');
  await new Promise((r) => child.once('message', r));
  const result = new Promise((r) => child.once('message', r));
  let seq = 1;
  const end = performance.now() + seconds * 1000 + 200;
  while (performance.now() < end) {
    for (let k = 0; k < 4096; k++) {
      if (!c.send(2, { lockspace: seq, cmd: 1, body })) break;
      seq++;
    }
    c.flush();
    await new Promise((r) => setImmediate(r));
  }
  const got = await result;
  console.log(JSON.stringify({ root, size, seconds, ...got }));
  child.send('close');
  await c.close({ timeoutMs: 1000 });
}

function sink() {
  const c = new Lowcomms({ nodeid: 2, nodes, transport: 'tcp', port });
  let n = 0;
  let want = 0;
  let errors = 0;
  let cpu0, t0, n0, b0;
  c.onBatch((b) => {
    const d = b.data;
    const idx = b.index;
    for (let i = 0; i < idx.length; i += 3) {
      const seq = d.readUInt32LE(idx[i + 1] + 4);
      if (seq !== want) errors++;
      want = seq + 1;
      n++;
    }
  });
  c.start().then(() => process.send('up'));
  process.on('message', async (m) => {
    if (m === 'start') {
      // Measure a window that starts once the stream runs.
      setTimeout(() => {
        cpu0 = process.cpuUsage();
        t0 = performance.now();
        n0 = n;
        b0 = c.stats().batches;
        setTimeout(() => {
          const cpu = process.cpuUsage(cpu0);
          const got = n - n0;
          const ms = performance.now() - t0;
          process.send({ received: got, msgsPerSec: Math.round((got * 1000) / ms), rxCpuNs: ((cpu.user + cpu.system) * 1000) / got, msgsPerBatch: Math.round(got / (c.stats().batches - b0)), errors });
        }, seconds * 1000 - 100);
      }, 100);
      process.send('started');
    }
    if (m === 'close') {
      await c.close({ timeoutMs: 1000 });
      process.exit(0);
    }
  });
}

if (process.argv[2] === 'sink') sink();
else main().catch((e) => {
  console.error(e);
  process.exit(1);
});
