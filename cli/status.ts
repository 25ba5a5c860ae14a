/**
 * `lowcomms status CONFIG` and `lowcomms ping CONFIG`: for people on real cluster hosts.
 * For every node and address of a corosync.conf nodelist or a JSON node table: can this
 * host reach the cluster port (TCP connect: ok with its time, refused, timeout, or the
 * error), which transport the cluster would use, and whether this kernel has SCTP.
 * With --corosync the node list is the running corosync's (cmap nodelist.node.*), as
 * CorosyncMembership sees it. This is a reachability check, not a DLM handshake; exit
 * status 0 only when every node answers on at least one address.
 */
import net from 'node:net';
import { DLM_DEFAULT_PORT, NodeTable, corosyncNodeTable, sctpAvailable } from '../lib';
import { renderTable, type Cell } from './table';

export interface StatusOptions {
  /** A corosync.conf or JSON node table; ignored with `corosync`. */
  config: string;
  /** Read the node list from the running corosync (cmap) instead of a file. */
  corosync?: boolean;
  port: number;
  timeoutMs: number;
  count: number;
  json: boolean;
}

export interface AddrStatus {
  addr: string;
  state: 'ok' | 'refused' | 'timeout' | 'unreachable' | 'error';
  rttMs?: number[];
  detail?: string;
}

function probe(addr: string, port: number, timeoutMs: number): Promise<{ state: AddrStatus['state']; ms?: number; detail?: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host: addr, port });
    const done = (r: { state: AddrStatus['state']; ms?: number; detail?: string }) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ state: 'timeout' }), timeoutMs);
    s.once('connect', () => done({ state: 'ok', ms: performance.now() - t0 }));
    s.once('error', (e: NodeJS.ErrnoException) =>
      done({
        state: e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' ? 'unreachable' : 'error',
        detail: e.code ?? e.message,
      }),
    );
  });
}

export async function runStatus(o: StatusOptions): Promise<number> {
  let table: NodeTable;
  let source = o.config;
  if (o.corosync) {
    const c = await corosyncNodeTable();
    table = c.nodes;
    source = `corosync cluster '${c.clusterName}' (cmap), this node ${c.nodeid}`;
  } else {
    table = await NodeTable.load(o.config);
  }
  const sctp = sctpAvailable(table.family ?? 4);
  const multihomed = [...table].some((n) => n.addrs.length > 1);
  const transport = sctp.ok && multihomed ? 'sctp' : 'tcp';
  const nodes: Array<{ nodeid: number; name?: string; reachable: boolean; addrs: AddrStatus[] }> = [];
  for (const n of table) {
    const addrs: AddrStatus[] = [];
    for (const a of n.addrs) {
      const st: AddrStatus = { addr: a, state: 'ok', rttMs: [] };
      for (let i = 0; i < o.count; i++) {
        const r = await probe(a, o.port, o.timeoutMs);
        st.state = r.state;
        if (r.detail) st.detail = r.detail;
        if (r.ms === undefined) break;
        st.rttMs!.push(Number(r.ms.toFixed(3)));
      }
      addrs.push(st);
    }
    const entry: { nodeid: number; name?: string; reachable: boolean; addrs: AddrStatus[] } = {
      nodeid: n.nodeid,
      reachable: addrs.some((x) => x.state === 'ok'),
      addrs,
    };
    if (n.name) entry.name = n.name;
    nodes.push(entry);
  }
  const all = nodes.every((n) => n.reachable);
  if (o.json) {
    console.log(JSON.stringify({ config: source, port: o.port, transport, sctp: sctp.ok, nodes, reachable: all }, null, 2));
  } else {
    console.log(`cluster ${source}: ${table.size} nodes, port ${o.port}`);
    console.log(
      `transport (detect): ${transport}` +
        (transport === 'tcp' && multihomed ? ' (nodes are multihomed but this kernel has no SCTP)' : '') +
        `; SCTP in this kernel: ${sctp.ok ? 'yes' : `no (errno ${sctp.errno}; run SCTP services with: npx lowcomms uml -- node app.js)`}`,
    );
    const rows: Cell[][] = [];
    for (const n of nodes)
      for (const a of n.addrs)
        rows.push([
          n.nodeid,
          n.name ?? '',
          a.addr,
          a.state + (a.detail && a.state !== 'ok' ? ` (${a.detail})` : ''),
          a.rttMs?.length ? a.rttMs.map((x) => x.toFixed(2)).join(' ') : '-',
        ]);
    console.log(renderTable(['nodeid', 'name', 'address', 'state', 'connect ms'], rows));
    console.log(all ? 'every node is reachable' : `unreachable: ${nodes.filter((n) => !n.reachable).map((n) => n.nodeid).join(', ')}`);
  }
  return all ? 0 : 1;
}

export const STATUS_DEFAULT_PORT = DLM_DEFAULT_PORT;
