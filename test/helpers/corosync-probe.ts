/**
 * Run by test/corosync/unavailable.test.ts in a process where corosync is absent (its
 * client libraries hidden, or no corosync in this network namespace): prints one JSON
 * line saying what lowcomms did.
 */
import { CorosyncMembership, Lowcomms, corosyncAvailable, readCorosyncCluster } from '../../lib';

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};
  // Everything but membership works as before.
  const port = 20000 + Math.floor(Math.random() * 10000);
  const nodes = [{ nodeid: 1, addrs: ['127.0.0.1'] }, { nodeid: 2, addrs: ['127.0.0.2'] }];
  const a2 = new Lowcomms({ nodeid: 1, nodes, port });
  const b2 = new Lowcomms({ nodeid: 2, nodes, port });
  const got = new Promise<string>((r) => b2.onMessage((m) => r(Buffer.from(m.body).toString())));
  await a2.start();
  await b2.start();
  a2.send(2, { cmd: 1, body: 'hello' });
  out.delivered = await got;
  await a2.close();
  await b2.close();

  out.available = corosyncAvailable();
  const err = (e: unknown) => ({ name: (e as Error).name, code: (e as { code?: string }).code, message: (e as Error).message, cs: (e as { cs?: number }).cs });
  try {
    readCorosyncCluster();
    out.read = 'no error';
  } catch (e) {
    out.read = err(e);
  }
  const c = new Lowcomms({ nodeid: 1, nodes: [{ nodeid: 1, addrs: ['127.0.0.1'] }], port });
  try {
    await new CorosyncMembership(c, { group: 'probe' }).start();
    out.start = 'no error';
  } catch (e) {
    out.start = err(e);
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ fatal: String((e as Error)?.stack ?? e) }));
  process.exit(1);
});
