/**
 * One cluster node in its own process, for the cross-process tests and the benchmark:
 * streams `count` checkable messages to every other node, verifies what it receives,
 * closes with the FIN handshake, and prints one JSON line of results.
 */
import { Lowcomms } from '../../lib';
import { nodeList } from './cluster';
import { Checker, pump } from './traffic';

interface Args {
  nodeid: number;
  n: number;
  port: number;
  transport: 'tcp' | 'sctp';
  count: number;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args;
  const comms = new Lowcomms({ nodeid: a.nodeid, nodes: nodeList(a.n), transport: a.transport, port: a.port });
  const ck = new Checker();
  comms.onMessage((m) => ck.check(m));
  await comms.start();
  const peers = nodeList(a.n).map((x) => x.nodeid).filter((id) => id !== a.nodeid);
  await Promise.all(peers.map((p) => pump(comms, p, a.count)));
  const want = peers.length * a.count;
  const deadline = Date.now() + 100_000;
  while (ck.received < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  // Everyone must have everything before anyone closes: wait until our peers acked us.
  while (Date.now() < deadline && comms.stats().nodes.some((s) => s.unacked > 0))
    await new Promise((r) => setTimeout(r, 10));
  if (comms.stats().nodes.some((s) => s.unacked > 0))
    console.error(`node ${a.nodeid}: still unacked at the deadline: ${JSON.stringify(comms.stats())}`);
  const res = await comms.close();
  process.stdout.write(
    JSON.stringify({ nodeid: a.nodeid, received: ck.received, errors: ck.errors, flushed: res.flushed }) + '\n',
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
