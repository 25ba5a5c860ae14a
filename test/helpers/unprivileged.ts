/**
 * Run as an unprivileged user by test/contract-native.test.ts (setpriv to nobody when
 * the tests run as root): what start() and addNode() give for what needs a capability.
 * Prints one JSON line: per case the error's class name and code, or 'ok'.
 */
import { Lowcomms } from '../../lib';

async function attempt(f: () => Promise<unknown> | unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string };
    return `${e.name} ${e.code}: ${e.message}`;
  }
}

async function main(): Promise<void> {
  const port = Number(process.argv[2]);
  const privileged = Number(process.argv[3]);
  const out: Record<string, string> = {};
  const nodes = [
    { nodeid: 1, addrs: ['127.0.0.1'] },
    { nodeid: 2, addrs: ['127.0.0.2'], mark: 7 },
  ];
  const a = new Lowcomms({ nodeid: 1, nodes, port });
  out.nodeMark = await attempt(() => a.start());
  await a.close();
  const b = new Lowcomms({ nodeid: 1, nodes: [nodes[0]!], port, mark: 7 });
  out.clusterMark = await attempt(() => b.start());
  await b.close();
  const c = new Lowcomms({ nodeid: 1, nodes: [nodes[0]!], port });
  await c.start();
  out.addNodeMark = await attempt(() => c.addNode({ nodeid: 3, addrs: ['127.0.0.3'], mark: 9 }));
  out.tableAfter = String(c.nodes.has(3));
  await c.close();
  const d = new Lowcomms({ nodeid: 1, nodes: [nodes[0]!], port: privileged });
  out.privilegedPort = await attempt(() => d.start());
  await d.close();
  console.log(JSON.stringify(out));
}

void main();
