/**
 * The node table: nodeid <-> addresses, validated as the kernel's configfs does (at
 * most 8 addresses per node, no duplicates, one address family for the cluster), with
 * a reverse index so that "which node is this address?" is one lookup.
 */
import dns from 'node:dns/promises';
import fs from 'node:fs/promises';
import net from 'node:net';
import { parseCorosyncConf } from './corosync';
import { ConfigError, UnknownNodeError } from './errors';

export interface NodeConfig {
  nodeid: number;
  /** One or more IP addresses (several: SCTP multihoming). */
  addrs: readonly string[];
  /** SO_MARK for this node's sockets. */
  mark?: number;
  name?: string;
}

/** DLM_MAX_ADDR_COUNT of recent kernels. */
export const MAX_ADDRS_PER_NODE = 8;

/** Canonical text of an IP literal (IPv6 compressed, lower case); ConfigError if not one. */
export function normalizeAddress(addr: string): { addr: string; family: 4 | 6 } {
  if (typeof addr !== 'string') throw new ConfigError(`address must be a string, got ${typeof addr}`);
  if (addr.includes('%')) throw new ConfigError(`address ${addr}: zone ids are not supported`);
  const family = net.isIP(addr);
  if (family === 4) return { addr, family: 4 };
  if (family === 6) {
    // The URL parser prints IPv6 in canonical form (RFC 5952).
    const canon = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
    const mapped = canon.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/);
    if (mapped) {
      // An IPv4-mapped address is the IPv4 node.
      const hi = parseInt(mapped[1]!, 16);
      const lo = parseInt(mapped[2]!, 16);
      return { addr: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 4 };
    }
    return { addr: canon, family: 6 };
  }
  throw new ConfigError(`'${addr}' is not an IP address`);
}

export class NodeTable implements Iterable<Readonly<NodeConfig>> {
  private readonly byId = new Map<number, Readonly<NodeConfig>>();
  private readonly byAddr = new Map<string, number>();
  private fam: 4 | 6 | undefined;

  constructor(nodes?: Iterable<NodeConfig>) {
    for (const n of nodes ?? []) this.add(n);
  }

  /** From a corosync.conf's nodelist; addresses must be IP literals (see load()). */
  static fromCorosyncConf(text: string): NodeTable {
    return new NodeTable(parseCorosyncConf(text).nodes);
  }

  /** From JSON: `[{ nodeid, addrs }]` or `{ nodes: [...] }`. */
  static fromJson(text: string): NodeTable {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`node table JSON: ${(err as Error).message}`, { cause: err });
    }
    const list = Array.isArray(data) ? data : (data as { nodes?: unknown })?.nodes;
    if (!Array.isArray(list)) throw new ConfigError('node table JSON: expected [...] or { "nodes": [...] }');
    return new NodeTable(list as NodeConfig[]);
  }

  /**
   * Reads a JSON node table or a corosync.conf (by content). Host names are resolved
   * (all addresses of the table's family) unless `resolve` is false.
   */
  static async load(path: string, opts: { resolve?: boolean } = {}): Promise<NodeTable> {
    const text = await fs.readFile(path, 'utf8');
    const trimmed = text.trimStart();
    const raw: NodeConfig[] =
      trimmed.startsWith('{') || trimmed.startsWith('[')
        ? (NodeTable.fromJson(text).toJSON().nodes as NodeConfig[])
        : parseCorosyncConf(text).nodes;
    if (opts.resolve === false) return new NodeTable(raw);
    const resolved: NodeConfig[] = [];
    for (const n of raw) {
      const addrs: string[] = [];
      for (const a of n.addrs) {
        if (net.isIP(a)) addrs.push(a);
        else {
          const found = await dns.lookup(a, { all: true }).catch((err: unknown) => {
            throw new ConfigError(`node ${n.nodeid}: cannot resolve '${a}'`, { cause: err });
          });
          // One family for the cluster: prefer IPv4 like corosync's default ip_version.
          const v4 = found.filter((f) => f.family === 4);
          addrs.push(...(v4.length ? v4 : found).map((f) => f.address));
        }
      }
      resolved.push({ ...n, addrs: [...new Set(addrs.map((x) => normalizeAddress(x).addr))] });
    }
    return new NodeTable(resolved);
  }

  /** Adds a node; returns its validated, normalised, frozen copy. */
  add(node: NodeConfig): Readonly<NodeConfig> {
    if (!node || typeof node !== 'object') throw new ConfigError('node must be an object');
    const { nodeid } = node;
    if (!Number.isInteger(nodeid) || nodeid < 1 || nodeid > 0xffffffff)
      throw new ConfigError(`nodeid must be an integer in 1..4294967295, got ${String(nodeid)}`);
    if (this.byId.has(nodeid)) throw new ConfigError(`node ${nodeid} is already in the table`);
    if (!Array.isArray(node.addrs) || node.addrs.length === 0)
      throw new ConfigError(`node ${nodeid}: needs at least one address`);
    if (node.addrs.length > MAX_ADDRS_PER_NODE)
      throw new ConfigError(`node ${nodeid}: ${node.addrs.length} addresses, at most ${MAX_ADDRS_PER_NODE}`);
    if (node.mark !== undefined && (!Number.isInteger(node.mark) || node.mark < 0 || node.mark > 0xffffffff))
      throw new ConfigError(`node ${nodeid}: mark must be an integer in 0..4294967295`);
    const addrs: string[] = [];
    let fam = this.fam;
    for (const a of node.addrs) {
      let n: { addr: string; family: 4 | 6 };
      try {
        n = normalizeAddress(a);
      } catch (err) {
        throw new ConfigError(`node ${nodeid}: ${(err as Error).message}`, { cause: err });
      }
      if (fam !== undefined && n.family !== fam)
        throw new ConfigError(`node ${nodeid}: ${a} is IPv${n.family}, the cluster is IPv${fam} (one family only)`);
      fam = n.family;
      if (addrs.includes(n.addr)) throw new ConfigError(`node ${nodeid}: address ${a} given twice`);
      const owner = this.byAddr.get(n.addr);
      if (owner !== undefined) throw new ConfigError(`node ${nodeid}: address ${a} already belongs to node ${owner}`);
      addrs.push(n.addr);
    }
    const copy: NodeConfig = { nodeid, addrs: Object.freeze(addrs) };
    if (node.mark !== undefined) copy.mark = node.mark;
    if (node.name !== undefined) copy.name = String(node.name);
    const frozen = Object.freeze(copy);
    this.byId.set(nodeid, frozen);
    for (const a of addrs) this.byAddr.set(a, nodeid);
    this.fam = fam;
    return frozen;
  }

  remove(nodeid: number): boolean {
    const n = this.byId.get(nodeid);
    if (!n) return false;
    for (const a of n.addrs) this.byAddr.delete(a);
    this.byId.delete(nodeid);
    if (this.byId.size === 0) this.fam = undefined;
    return true;
  }

  get(nodeid: number): Readonly<NodeConfig> | undefined {
    return this.byId.get(nodeid);
  }

  /** Like get(), but an unknown nodeid is an UnknownNodeError. */
  require(nodeid: number): Readonly<NodeConfig> {
    const n = this.byId.get(nodeid);
    if (!n) throw new UnknownNodeError(nodeid);
    return n;
  }

  has(nodeid: number): boolean {
    return this.byId.has(nodeid);
  }

  /** The node an address belongs to (any textual form), or undefined. */
  nodeidOf(addr: string): number | undefined {
    try {
      return this.byAddr.get(normalizeAddress(addr).addr);
    } catch {
      return undefined;
    }
  }

  get size(): number {
    return this.byId.size;
  }

  /** The address family of the whole table (undefined while empty). */
  get family(): 4 | 6 | undefined {
    return this.fam;
  }

  nodeids(): number[] {
    return [...this.byId.keys()].sort((a, b) => a - b);
  }

  toJSON(): { nodes: NodeConfig[] } {
    return { nodes: this.nodeids().map((id) => ({ ...this.byId.get(id)!, addrs: [...this.byId.get(id)!.addrs] })) };
  }

  [Symbol.iterator](): Iterator<Readonly<NodeConfig>> {
    return this.byId.values();
  }
}
