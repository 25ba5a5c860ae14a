/**
 * A process for the handler-exception test (test/contract.test.ts): node 2 receives 20
 * messages sent in one tick (one batch, usually) while its first onMessage handler and
 * its onBatch handler throw. Mode 'catch' installs an 'uncaughtException' listener and
 * prints one JSON line of what every handler saw; mode 'crash' installs none (the
 * process must die of the handler's error, as with a throwing node:net 'data' listener).
 */
import { Lowcomms } from '../../lib';
import { nodeList } from './cluster';

async function main(): Promise<void> {
  const [mode = 'catch', portText = '0'] = process.argv.slice(2);
  const port = Number(portText);
  const nodes = nodeList(2);
  const a = new Lowcomms({ nodeid: 1, nodes, port });
  const b = new Lowcomms({ nodeid: 2, nodes, port });
  const first: string[] = [];
  const second: string[] = [];
  const uncaught: string[] = [];
  let batchCalls = 0;
  b.onBatch(() => {
    batchCalls++;
    if (batchCalls === 1) throw new Error('batch handler failed');
  });
  b.onMessage((m) => {
    const s = m.body.toString();
    first.push(s);
    if (s === 'm3') throw new Error('message handler failed on m3');
  });
  b.onMessage((m) => second.push(m.body.toString()));
  if (mode === 'catch') process.on('uncaughtException', (err) => uncaught.push(err.message));
  await a.start();
  await b.start();
  for (let i = 0; i < 20; i++) a.send(2, { body: `m${i}` });
  const deadline = Date.now() + 10_000;
  while (second.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  const rx = b.stats().nodes.find((n) => n.nodeid === 1)!.rxMsgs;
  await a.close();
  await b.close();
  console.log(JSON.stringify({ first, second, uncaught, batchCalls, rx }));
}

void main();
