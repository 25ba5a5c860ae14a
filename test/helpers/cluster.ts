/**
 * A local cluster for tests: node i on 127.0.0.i (or the addresses given), one port
 * for all, every instance closed when the test ends.
 */
import type { TestContext } from 'node:test';
import { Lowcomms, type LowcommsOptions, type NodeConfig, type TransportName } from '../../lib';
import { testPort } from './transports';

export interface ClusterOptions {
  n: number;
  transport: TransportName;
  port?: number;
  /** Addresses of node i (1-based); default ['127.0.0.<i>']. */
  addrs?: (i: number) => string[];
  /** Only these nodeids get a Lowcomms instance here (the others are raw peers, marked `kernel`). */
  local?: number[];
  options?: Partial<LowcommsOptions>;
}

export interface Cluster {
  port: number;
  nodes: NodeConfig[];
  comms: Map<number, Lowcomms>;
  get(nodeid: number): Lowcomms;
  /** A fresh instance for `nodeid` (after the old one was closed): a restart. */
  restart(nodeid: number): Promise<Lowcomms>;
  closeAll(): Promise<void>;
}

export function nodeList(n: number, addrs?: (i: number) => string[]): NodeConfig[] {
  const out: NodeConfig[] = [];
  for (let i = 1; i <= n; i++) out.push({ nodeid: i, addrs: addrs ? addrs(i) : [`127.0.0.${i}`] });
  return out;
}

export async function startCluster(t: TestContext | undefined, o: ClusterOptions): Promise<Cluster> {
  const port = o.port ?? testPort();
  // Nodes without a local instance are raw peers: they speak DLM like a kernel node.
  const nodes = nodeList(o.n, o.addrs).map((n) => (o.local && !o.local.includes(n.nodeid) ? { ...n, kernel: true } : n));
  const comms = new Map<number, Lowcomms>();
  const make = (nodeid: number) =>
    new Lowcomms({ nodeid, nodes, transport: o.transport, port, ...o.options });
  const cluster: Cluster = {
    port,
    nodes,
    comms,
    get(nodeid) {
      const c = comms.get(nodeid);
      if (!c) throw new Error(`no local instance for node ${nodeid}`);
      return c;
    },
    async restart(nodeid) {
      const c = make(nodeid);
      await c.start();
      comms.set(nodeid, c);
      return c;
    },
    async closeAll() {
      await Promise.all([...comms.values()].map((c) => c.close({ flush: false })));
    },
  };
  for (const n of o.local ?? nodes.map((x) => x.nodeid)) {
    const c = make(n);
    await c.start();
    comms.set(n, c);
  }
  t?.after(() => cluster.closeAll());
  return cluster;
}

/** Resolves when `cond()` holds, polling; rejects with `what` after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
