/**
 * The node table: nodeid <-> addresses, validated by the rules the kernel's configfs
 * applies to comms/<nodeid>/addr (at most DLM_MAX_ADDR_COUNT addresses, no address
 * twice, one address family for every socket), with a reverse index so that "which
 * node is this peer address?" is one map lookup rather than the kernel's linear scan.
 */
import dns from 'node:dns/promises';
import fs from 'node:fs/promises';
import net from 'node:net';
import { parseCorosyncConf } from './corosync';
import { ConfigError, UnknownNodeError } from './errors';

/** One cluster node as configured. */
export interface NodeConfig {
  /** The DLM nodeid, 1..0xFFFFFFFF. */
  nodeid: number;
  /** One or more IP addresses, in preference order (several: SCTP multihoming). */
  addrs: readonly string[];
  /** SO_MARK for this node's sockets (configfs comms/<nodeid>/mark). */
  mark?: number;
  /** A display name (corosync's nodelist `name`). */
  name?: string;
  /**
   * A kernel DLM node (fs/dlm), not a lowcomms one: it is spoken to in pure DLM, with no
   * lowcomms handshake, so its restarts cannot be seen by lowcomms; the membership
   * layer must call resetNode() when it rejoins. Default false.
   */
  kernel?: boolean;
}

/** DLM_MAX_ADDR_COUNT of recent kernels (it was 3 before). */
export const MAX_ADDRS_PER_NODE = 8;

const MAX_U32 = 0xffffffff;

/** A value as it should appear in an error message. */
function show(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : String(v);
}

/** The 8 groups of a textual IPv6 address that net.isIP() accepted (no zone id). */
function ipv6Groups(addr: string): number[] {
  let text = addr;
  let tail: number[] = [];
  // A dotted IPv4 tail (::ffff:1.2.3.4, ::1.2.3.4) stands for the last two groups.
  if (text.includes('.')) {
    const colon = text.lastIndexOf(':');
    const b = text.slice(colon + 1).split('.').map(Number);
    tail = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    text = text.slice(0, colon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = text.indexOf('::');
  let groups: number[];
  if (gap < 0) {
    groups = parse(text);
  } else {
    const head = parse(text.slice(0, gap));
    const rest = parse(text.slice(gap + 2));
    groups = [...head, ...new Array<number>(8 - tail.length - head.length - rest.length).fill(0), ...rest];
  }
  return [...groups, ...tail];
}

/** RFC 5952 text: lower case, no leading zeros, the first longest run (>= 2) of zero groups as '::'. */
function formatIpv6(groups: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: readonly number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

/**
 * The canonical text and family of an IP literal, so that two spellings of one address
 * compare equal: IPv4 as dotted quad; IPv6 compressed and lower case (RFC 5952); an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it stands for, since a
 * dual-stack socket reports IPv4 peers that way.
 * @throws ConfigError if `addr` is not an IP literal, or carries a zone id (%eth0)
 */
export function normalizeAddress(addr: string): { addr: string; family: 4 | 6 } {
  if (typeof addr !== 'string') throw new ConfigError(`address must be a string, got ${show(addr)}`);
  const family = net.isIP(addr);
  if (family === 4) return { addr, family: 4 }; // net.isIP refuses leading zeros: already canonical
  if (family === 6) {
    // configfs addresses are bare sockaddrs compared without scope, so a link-local
    // address with a zone cannot name a node reliably.
    if (addr.includes('%'))
      throw new ConfigError(`address ${show(addr)}: zone ids are not supported; use a global or unique-local address`);
    const g = ipv6Groups(addr);
    if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff)
      return { addr: `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`, family: 4 };
    return { addr: formatIpv6(g), family: 6 };
  }
  throw new ConfigError(`${show(addr)} is not an IP address (host names are resolved only by NodeTable.load())`);
}

/** A resolver for NodeTable.load(): dns.lookup(name, { all: true }) by default. */
export type HostLookup = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/** Options of NodeTable.load(). */
export interface LoadOptions {
  /** Resolve host names (default true); when false every address must be an IP literal. */
  resolve?: boolean;
  /** The resolver; replace it to test, or to use something other than getaddrinfo. */
  lookup?: HostLookup;
}

const defaultLookup: HostLookup = (name) => dns.lookup(name, { all: true });

/** Address families to try, in order, for host names (the table takes one family). */
export function familyPreference(ipVersion: string | undefined, transport: string | undefined, source: string): Array<4 | 6> {
  switch (ipVersion) {
    case 'ipv4':
      return [4];
    case 'ipv6':
      return [6];
    case 'ipv4-6':
      return [4, 6];
    case 'ipv6-4':
      return [6, 4];
    case undefined:
      // corosync's defaults: ipv4 for udp/udpu, ipv6-4 for knet (corosync 3's default transport).
      return transport === 'udp' || transport === 'udpu' ? [4] : [6, 4];
    default:
      throw new ConfigError(`${source}: totem.ip_version ${show(ipVersion)} is not ipv4, ipv6, ipv4-6 or ipv6-4`);
  }
}

/**
 * Replaces host names by their addresses. The whole table gets one family: the family
 * of its IP literals if it has any, else the first of `prefer` that every name has.
 */
export async function resolveNames(
  nodes: Array<NodeConfig & { line?: number }>,
  prefer: Array<4 | 6>,
  lookup: HostLookup,
  source: string,
): Promise<NodeConfig[]> {
  const isName = (a: unknown): a is string => typeof a === 'string' && net.isIP(a) === 0;
  const names = new Set<string>();
  // Where each name is first used: "file line N" (corosync.conf) or the node, for errors.
  const where = new Map<string, string>();
  let literal: { family: 4 | 6; addr: string; nodeid: number } | undefined;
  for (const n of nodes) {
    for (const a of Array.isArray(n.addrs) ? n.addrs : []) {
      if (isName(a) && !where.has(a))
        where.set(a, n.line !== undefined ? `${source} line ${n.line}` : `${source}: node ${show(n.nodeid)}`);
      if (isName(a)) names.add(a);
      else if (!literal && typeof a === 'string' && !a.includes('%'))
        literal = { family: normalizeAddress(a).family, addr: a, nodeid: n.nodeid };
    }
  }
  if (names.size === 0) return nodes;
  const found = new Map<string, ReadonlyArray<{ address: string; family: number }>>();
  await Promise.all(
    [...names].map(async (name) => {
      try {
        found.set(name, await lookup(name));
      } catch (err) {
        throw new ConfigError(`${where.get(name)}: cannot resolve ${show(name)}: ${(err as Error).message}`, { cause: err });
      }
    }),
  );
  const has = (name: string, f: 4 | 6) => (found.get(name) ?? []).some((r) => r.family === f);
  let candidates = prefer;
  if (literal) {
    if (!prefer.includes(literal.family))
      throw new ConfigError(
        `${source}: node ${literal.nodeid} has IPv${literal.family} address ${show(literal.addr)}, but host names are to resolve to IPv${prefer.join('/IPv')} only`,
      );
    candidates = [literal.family];
  }
  const family = candidates.find((f) => [...names].every((name) => has(name, f)));
  if (family === undefined) {
    const f = candidates[0]!;
    const name = [...names].find((x) => !has(x, f))!;
    const got = (found.get(name) ?? []).map((r) => r.address).join(', ') || 'nothing';
    throw new ConfigError(`${where.get(name)}: ${show(name)} has no IPv${f} address (got ${got}); a table has one address family`);
  }
  return nodes.map((n) => {
    if (!Array.isArray(n.addrs)) return n;
    const addrs: string[] = [];
    for (const a of n.addrs) {
      if (!isName(a)) {
        addrs.push(a);
        continue;
      }
      // One name may have several addresses (/etc/hosts lists); each is one more path.
      const mine = (found.get(a) ?? []).filter((r) => r.family === family).map((r) => normalizeAddress(r.address).addr);
      for (const x of new Set(mine)) addrs.push(x);
    }
    return { ...n, addrs };
  });
}

/** The node list of a JSON node table, unvalidated (add() validates). */
function parseJsonNodes(text: string, source: string): NodeConfig[] {
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new ConfigError(`${source}: ${(err as Error).message}`, { cause: err });
  }
  const list: unknown =
    Array.isArray(data) ? data : data !== null && typeof data === 'object' ? (data as { nodes?: unknown }).nodes : undefined;
  if (!Array.isArray(list)) throw new ConfigError(`${source}: expected [ {nodeid, addrs}, ... ] or { "nodes": [ ... ] }`);
  list.forEach((n: unknown, i) => {
    if (n === null || typeof n !== 'object' || Array.isArray(n))
      throw new ConfigError(`${source}: nodes[${i}] is not an object: ${JSON.stringify(n)}`);
  });
  return list as NodeConfig[];
}

/** Adds `nodes` to a new table; errors of a corosync node get its line number. */
function buildTable(nodes: Iterable<NodeConfig & { line?: number }>, source: string): NodeTable {
  const table = new NodeTable();
  for (const n of nodes) {
    try {
      table.add(n);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const where = n.line !== undefined ? `${source} line ${n.line}` : source;
      throw new ConfigError(`${where}: ${err.message}`, { cause: err });
    }
  }
  return table;
}

/**
 * The cluster's nodes by nodeid and by address. Every node added is validated and
 * stored as a normalised, frozen copy; a refused node leaves the table unchanged.
 * Iteration yields the nodes in the order they were added.
 */
export class NodeTable implements Iterable<Readonly<NodeConfig>> {
  private readonly byId = new Map<number, Readonly<NodeConfig>>();
  /** Canonical address -> nodeid: the reverse index behind nodeidOf(). */
  private readonly byAddr = new Map<string, number>();
  private fam: 4 | 6 | undefined;
  private changes = 0;

  /**
   * @param nodes initial nodes, each added with add()
   * @throws ConfigError on the first node add() refuses
   */
  constructor(nodes?: Iterable<NodeConfig>) {
    for (const n of nodes ?? []) this.add(n);
  }

  /**
   * A table from the nodelist of a corosync.conf (nodeid, ring0_addr, ring1_addr, ...).
   * Addresses must be IP literals here; use load() for host names.
   * @throws ConfigError with the line number of the offending node
   */
  static fromCorosyncConf(text: string): NodeTable {
    return buildTable(parseCorosyncConf(text).nodes, 'corosync.conf');
  }

  /**
   * A table from JSON: `[{ "nodeid": 1, "addrs": ["10.0.0.1"] }, ...]` or
   * `{ "nodes": [...] }` (the shape toJSON() writes). `mark` and `name` are optional.
   * @throws ConfigError on bad JSON, a bad shape or a node add() refuses
   */
  static fromJson(text: string): NodeTable {
    return buildTable(parseJsonNodes(text, 'node table JSON'), 'node table JSON');
  }

  /**
   * Reads a node table file: JSON if the name ends in .json or the text starts with
   * `[` or `{`, else a corosync.conf. Host names are resolved unless `resolve` is
   * false, and all of a name's addresses of the table's family are taken. The family is
   * that of the file's IP literals if it has any; else, for a corosync.conf, what its
   * totem.ip_version says (corosync's default: ipv4 for udp/udpu, else IPv6 first); for
   * JSON IPv4 first, then IPv6.
   * @throws ConfigError (rejected promise) if the file cannot be read or parsed, a name
   *   does not resolve, or a node is invalid
   */
  static async load(path: string, opts: LoadOptions = {}): Promise<NodeTable> {
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read node table ${path}: ${(err as Error).message}`, { cause: err });
    }
    const json = path.endsWith('.json') || /^\uFEFF?\s*[[{]/.test(text);
    let nodes: Array<NodeConfig & { line?: number }>;
    let prefer = (): Array<4 | 6> => [4, 6];
    if (json) {
      nodes = parseJsonNodes(text, path);
    } else {
      const conf = parseCorosyncConf(text, path);
      nodes = conf.nodes;
      // corosync.conf without a nodelist (udp multicast, or the wrong file): nothing to connect to.
      if (nodes.length === 0)
        throw new ConfigError(`${path}: no nodelist { node { nodeid: N  ring0_addr: ADDR } } section: DLM needs every node's nodeid and address`);
      prefer = () => familyPreference(conf.ipVersion, conf.transport, path);
    }
    if (opts.resolve !== false) nodes = await resolveNames(nodes, prefer(), opts.lookup ?? defaultLookup, path);
    if (nodes.length === 0) throw new ConfigError(`${path}: the node table has no nodes`);
    return buildTable(nodes, path);
  }

  /**
   * Validates and adds a node. Rules: nodeid an integer 1..0xFFFFFFFF not yet in the
   * table; 1..8 addresses, each an IP literal without zone id, none twice in the node
   * nor owned by another node, all of the table's one family; mark an integer
   * 0..0xFFFFFFFF; name a non-empty string.
   * @returns the stored copy: addresses normalised (see normalizeAddress), frozen
   * @throws ConfigError naming the node and the bad value; the table is unchanged
   */
  add(node: NodeConfig): Readonly<NodeConfig> {
    if (node === null || typeof node !== 'object') throw new ConfigError(`a node must be an object, got ${show(node)}`);
    const { nodeid, addrs: given, mark, name, kernel } = node;
    if (typeof nodeid !== 'number' || !Number.isInteger(nodeid) || nodeid < 1 || nodeid > MAX_U32)
      throw new ConfigError(`node ${show(nodeid)}: nodeid must be an integer in 1..${MAX_U32}`);
    if (this.byId.has(nodeid)) throw new ConfigError(`node ${nodeid}: nodeid ${nodeid} is already in the table`);
    if (!Array.isArray(given)) throw new ConfigError(`node ${nodeid}: addrs must be an array of addresses, got ${show(given)}`);
    if (given.length === 0) throw new ConfigError(`node ${nodeid}: needs at least one address`);
    if (given.length > MAX_ADDRS_PER_NODE)
      throw new ConfigError(`node ${nodeid}: ${given.length} addresses, at most ${MAX_ADDRS_PER_NODE} (DLM_MAX_ADDR_COUNT)`);
    if (mark !== undefined && (typeof mark !== 'number' || !Number.isInteger(mark) || mark < 0 || mark > MAX_U32))
      throw new ConfigError(`node ${nodeid}: mark ${show(mark)} is not an integer in 0..${MAX_U32}`);
    if (name !== undefined && (typeof name !== 'string' || name === ''))
      throw new ConfigError(`node ${nodeid}: name ${show(name)} is not a non-empty string`);
    if (kernel !== undefined && typeof kernel !== 'boolean')
      throw new ConfigError(`node ${nodeid}: kernel ${show(kernel)} is not a boolean`);
    const addrs: string[] = [];
    let fam = this.fam;
    for (const a of given as readonly unknown[]) {
      let n: { addr: string; family: 4 | 6 };
      try {
        n = normalizeAddress(a as string);
      } catch (err) {
        throw new ConfigError(`node ${nodeid}: ${(err as Error).message}`, { cause: err });
      }
      const spelled = n.addr === a ? show(a) : `${show(a)} (${n.addr})`;
      // The kernel takes every socket's family from the local node's first address.
      if (fam !== undefined && n.family !== fam)
        throw new ConfigError(`node ${nodeid}: address ${spelled} is IPv${n.family}, the table is IPv${fam} (one family only)`);
      fam = n.family;
      if (addrs.includes(n.addr)) throw new ConfigError(`node ${nodeid}: address ${spelled} given twice`);
      const owner = this.byAddr.get(n.addr);
      if (owner !== undefined) throw new ConfigError(`node ${nodeid}: address ${spelled} already belongs to node ${owner}`);
      addrs.push(n.addr);
    }
    const copy: NodeConfig = { nodeid, addrs: Object.freeze(addrs) };
    if (mark !== undefined) copy.mark = mark;
    if (name !== undefined) copy.name = name;
    if (kernel) copy.kernel = true;
    const frozen = Object.freeze(copy);
    this.byId.set(nodeid, frozen);
    for (const a of addrs) this.byAddr.set(a, nodeid);
    this.fam = fam;
    this.changes++;
    return frozen;
  }

  /**
   * Removes a node and its addresses; the table's family is forgotten once it is empty.
   * @returns false if the node was not in the table
   */
  remove(nodeid: number): boolean {
    const n = this.byId.get(nodeid);
    if (!n) return false;
    for (const a of n.addrs) this.byAddr.delete(a);
    this.byId.delete(nodeid);
    if (this.byId.size === 0) this.fam = undefined;
    this.changes++;
    return true;
  }

  /** The node with this nodeid, or undefined. */
  get(nodeid: number): Readonly<NodeConfig> | undefined {
    return this.byId.get(nodeid);
  }

  /**
   * The node with this nodeid.
   * @throws UnknownNodeError if there is none
   */
  require(nodeid: number): Readonly<NodeConfig> {
    const n = this.byId.get(nodeid);
    if (!n) throw new UnknownNodeError(nodeid);
    return n;
  }

  /**
   * Counts every add() and remove(): a caller that remembers "nodeid N is in the table"
   * (Lowcomms.send() does, to skip a Map lookup per message) knows when to look again.
   */
  get revision(): number {
    return this.changes;
  }

  /** Whether a node with this nodeid is in the table. */
  has(nodeid: number): boolean {
    return this.byId.has(nodeid);
  }

  /**
   * The nodeid an address belongs to, in any textual form (IPv6 compressed or not, any
   * case; an IPv4-mapped IPv6 address finds the IPv4 node), or undefined if no node
   * has it or it is not an IP address.
   */
  nodeidOf(addr: string): number | undefined {
    const hit = this.byAddr.get(addr); // canonical text, the common case: no parsing
    if (hit !== undefined) return hit;
    try {
      return this.byAddr.get(normalizeAddress(addr).addr);
    } catch {
      return undefined;
    }
  }

  /** The number of nodes. */
  get size(): number {
    return this.byId.size;
  }

  /** The address family every address of the table shares; undefined while empty. */
  get family(): 4 | 6 | undefined {
    return this.fam;
  }

  /** All nodeids, ascending. */
  nodeids(): number[] {
    return [...this.byId.keys()].sort((a, b) => a - b);
  }

  /** `{ nodes }` sorted by nodeid, as fromJson() reads it; plain mutable copies. */
  toJSON(): { nodes: NodeConfig[] } {
    const nodes: NodeConfig[] = [];
    for (const id of this.nodeids()) {
      const n = this.byId.get(id);
      if (n) nodes.push({ ...n, addrs: [...n.addrs] });
    }
    return { nodes };
  }

  /** The nodes in the order they were added. */
  [Symbol.iterator](): Iterator<Readonly<NodeConfig>> {
    return this.byId.values();
  }
}
