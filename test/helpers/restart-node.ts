/**
 * One cluster node in its own process, to be SIGKILLed and started again (the restart
 * tests). Every message it sends carries (sender, generation, index); every send,
 * delivery, 'restart' and 'dropped' is appended to its log file with a synchronous
 * write before anything else happens, so what the process did survives its SIGKILL.
 * Log lines: `s TO GEN IDX`, `r FROM GEN IDX`, `R FROM DROPPED`, `D NODE COUNT REASON`.
 * The parent drives it over IPC: {cmd:'send', to, count} sends the next `count`
 * messages to `to` (waiting on backpressure) and answers {type:'sent'}; {cmd:'stream'}
 * starts sending to every peer in a loop, {cmd:'quiet'} stops it and answers when every
 * peer acked everything; {cmd:'stats'} answers stats(); {cmd:'close'} starts close().
 */
import fs from 'node:fs';
import { Lowcomms, type TransportName } from '../../lib';
import { nodeList } from './cluster';

interface Args {
  nodeid: number;
  n: number;
  port: number;
  transport: TransportName;
  gen: number;
  log: string;
}

type Command =
  | { cmd: 'send'; to: number; count: number }
  | { cmd: 'stream'; perTick: number }
  | { cmd: 'quiet'; timeoutMs: number }
  | { cmd: 'stats' }
  | { cmd: 'close' };

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const fd = fs.openSync(a.log, 'a');
const line = (s: string) => fs.writeSync(fd, s + '\n');
const reply = (m: object) => process.send?.(m);

const comms = new Lowcomms({
  nodeid: a.nodeid,
  nodes: nodeList(a.n),
  transport: a.transport,
  port: a.port,
  connectRetryMaxMs: 200,
});
comms.onMessage((m) => line(`r ${m.nodeid} ${m.body.readUInt32LE(0)} ${m.body.readUInt32LE(4)}`));
comms.on('restart', (e) => line(`R ${e.nodeid} ${e.dropped}`));
comms.on('dropped', (e) => line(`D ${e.nodeid} ${e.count} ${e.reason}`));

const next = new Map<number, number>();
const peers = nodeList(a.n).map((x) => x.nodeid).filter((id) => id !== a.nodeid);

/** Sends the next message to `to`; false on backpressure (nothing sent). */
function sendOne(to: number): boolean {
  const idx = next.get(to) ?? 0;
  const body = Buffer.alloc(24);
  body.writeUInt32LE(a.gen, 0);
  body.writeUInt32LE(idx, 4);
  body.writeUInt32LE(a.nodeid, 8);
  if (!comms.send(to, { lockspace: idx, body })) return false;
  line(`s ${to} ${a.gen} ${idx}`);
  next.set(to, idx + 1);
  return true;
}

const tick = () => new Promise((r) => setTimeout(r, 2));

async function sendMany(to: number, count: number): Promise<void> {
  for (let i = 0; i < count; ) {
    if (sendOne(to)) i++;
    else await tick();
    if (i % 64 === 0) await new Promise((r) => setImmediate(r));
  }
}

let streaming = false;
async function stream(perTick: number): Promise<void> {
  streaming = true;
  while (streaming) {
    for (const p of peers) for (let i = 0; i < perTick && sendOne(p); i++);
    await tick();
  }
}

process.on('message', (m: Command) => {
  void (async () => {
    switch (m.cmd) {
      case 'send':
        await sendMany(m.to, m.count);
        reply({ type: 'sent', to: m.to });
        return;
      case 'stream':
        void stream(m.perTick);
        return;
      case 'quiet': {
        streaming = false;
        const deadline = Date.now() + m.timeoutMs;
        while (Date.now() < deadline && comms.stats().nodes.some((s) => s.unacked > 0 || s.queuedBytes > 0)) await tick();
        const st = comms.stats();
        line(`Q ${JSON.stringify(st)}`);
        reply({ type: 'quiet', stats: st });
        return;
      }
      case 'stats':
        reply({ type: 'stats', stats: comms.stats() });
        return;
      case 'close':
        // Starts the FIN handshake with every node and answers at once (the test kills us mid-way).
        void comms.close({ timeoutMs: 60_000 }).catch(() => undefined);
        reply({ type: 'closing' });
        return;
    }
  })();
});

comms
  .start()
  .then(() => reply({ type: 'ready', incarnation: comms.stats().incarnation }))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
