/**
 * A small parser of corosync.conf (`name {`, `key: value`, `}`, `#` comments) into a
 * generic tree, and from it the cluster's nodelist as DLM needs it: nodeid plus
 * ring0_addr, ring1_addr, ... in ring order, which is what dlm_controld hands the
 * kernel (one configfs `addr` write per ring address).
 *
 * The grammar follows corosync's own line parser (exec/coroparse.c): one item per line,
 * the key ends at the first ':' (so IPv6 values need no quoting), later values of a key
 * override earlier ones. Deliberate differences, all stricter or more forgiving only
 * where corosync would misread the file: text after `{` or a stray brace in a value is
 * an error (corosync ignores or misparses it), and a `#` that follows whitespace starts
 * a comment (corosync would keep it in the value and then fail to resolve the address).
 */
import { ConfigError } from './errors';

/** One `key: value` line. */
export interface CorosyncEntry {
  /** The text before the first ':'. */
  readonly key: string;
  /** The text after it: trimmed, quotes and trailing comment removed. */
  readonly value: string;
  /** 1-based line number in the source text. */
  readonly line: number;
}

/** One `name { ... }` section; the root section has name '' and line 0. */
export interface CorosyncSection {
  /** The text before '{' ('totem', 'nodelist', 'node', ...). */
  readonly name: string;
  /** 1-based line of the `name {` line (0 for the root). */
  readonly line: number;
  /** Every `key: value` of this section in file order, duplicates included. */
  readonly entries: CorosyncEntry[];
  /** Sub-sections in file order. */
  readonly sections: CorosyncSection[];
}

/** A node of `nodelist { node { ... } }`. */
export interface CorosyncNode {
  /** The node's `nodeid`. */
  nodeid: number;
  /** ring0_addr, ring1_addr, ... in ring order, gaps skipped (IP literals or host names). */
  addrs: string[];
  /** The node's `name`, if given. */
  name?: string;
  /** Line of the node's `node {`, for error messages of later checks. */
  line: number;
}

/** What DLM needs from a corosync.conf. */
export interface CorosyncConf {
  /** totem.cluster_name. */
  clusterName?: string;
  /** totem.transport (knet, udpu, udp); corosync's default depends on its version. */
  transport?: string;
  /** totem.rrp_mode (corosync 2): dlm_controld's protocol=detect picks SCTP unless "none". */
  rrpMode?: string;
  /** totem.link_mode (corosync 3 knet's successor of rrp_mode). */
  linkMode?: string;
  /** totem.ip_version (ipv4, ipv6, ipv4-6, ipv6-4): how corosync resolves host names. */
  ipVersion?: string;
  /** Number of totem.interface sections, when there are any. */
  interfaces?: number;
  /** The nodelist, in file order. */
  nodes: CorosyncNode[];
}

/** knet has 8 links (KNET_MAX_LINK), which is also DLM_MAX_ADDR_COUNT: ring0..ring7. */
export const MAX_RINGS = 8;

const NAME = /^[A-Za-z0-9_.-]+$/;
const SECTION = /^([^\s{}:#"']+)\s*\{\s*(#.*)?$/;
const ITEM = /^([^\s{}:#"']+)\s*:\s*(.*)$/;
const CLOSE = /^\}\s*(#.*)?$/;
const RING_KEY = /^ring(\d+)_addr$/;

function fail(source: string, line: number, msg: string): never {
  throw new ConfigError(line > 0 ? `${source} line ${line}: ${msg}` : `${source}: ${msg}`);
}

/** The value part of a `key: value` line: quotes stripped, trailing comment removed. */
function parseValue(rest: string, source: string, line: number): string {
  const q = rest[0];
  if (q === '"' || q === "'") {
    const end = rest.indexOf(q, 1);
    if (end < 0) fail(source, line, `unterminated ${q} quote`);
    const after = rest.slice(end + 1);
    if (!/^\s*(#.*)?$/.test(after)) fail(source, line, `unexpected text after the closing quote: '${after.trim()}'`);
    return rest.slice(1, end);
  }
  const value = rest.replace(/(^|\s+)#.*$/, '').trim();
  // corosync reads any line with '{' as a section; a brace here is a missing newline.
  if (/[{}]/.test(value)) fail(source, line, `unexpected brace in value '${value}' (one item per line)`);
  return value;
}

/**
 * Parses corosync.conf text into a tree of sections. Blank lines and `#` comments are
 * skipped; CRLF line ends are accepted.
 * @param source name used in error messages (a file path, say)
 * @throws ConfigError naming the line of the first syntax error
 */
export function parseCorosyncTree(text: string, source = 'corosync.conf'): CorosyncSection {
  const root: CorosyncSection = { name: '', line: 0, entries: [], sections: [] };
  const stack: CorosyncSection[] = [root];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const top = stack[stack.length - 1]!;
    let m: RegExpMatchArray | null;
    if ((m = line.match(SECTION))) {
      const name = m[1]!;
      if (!NAME.test(name)) fail(source, lineNo, `bad section name '${name}'`);
      const sec: CorosyncSection = { name, line: lineNo, entries: [], sections: [] };
      top.sections.push(sec);
      stack.push(sec);
    } else if (CLOSE.test(line)) {
      if (stack.length === 1) fail(source, lineNo, `'}' without an open section`);
      stack.pop();
    } else if ((m = line.match(ITEM))) {
      const key = m[1]!;
      if (!NAME.test(key)) fail(source, lineNo, `bad key '${key}'`);
      top.entries.push({ key, value: parseValue(m[2]!, source, lineNo), line: lineNo });
    } else {
      fail(source, lineNo, `expected 'name {', 'key: value' or '}', got '${line}'`);
    }
  }
  if (stack.length > 1) {
    const open = stack[stack.length - 1]!;
    fail(source, 0, `section '${open.name}' opened on line ${open.line} is never closed`);
  }
  return root;
}

/** The last `key:` of a section (later values override earlier ones, as in corosync). */
export function sectionValue(section: CorosyncSection, key: string): CorosyncEntry | undefined {
  for (let i = section.entries.length - 1; i >= 0; i--) if (section.entries[i]!.key === key) return section.entries[i];
  return undefined;
}

/** All sub-sections of `parent` named `name`, in file order. */
function subsections(parent: CorosyncSection, name: string): CorosyncSection[] {
  return parent.sections.filter((s) => s.name === name);
}

function nodeFromSection(sec: CorosyncSection, source: string): CorosyncNode {
  // A key given twice in a node is almost surely a copy-paste slip; refuse to guess.
  const seen = new Map<string, number>();
  const rings = new Map<number, string>();
  for (const e of sec.entries) {
    const before = seen.get(e.key);
    if (before !== undefined) fail(source, e.line, `'${e.key}' given twice in this node (also on line ${before})`);
    seen.set(e.key, e.line);
    const r = e.key.match(RING_KEY);
    if (!r) continue;
    const ring = Number(r[1]);
    if (ring >= MAX_RINGS) fail(source, e.line, `${e.key}: rings are numbered 0..${MAX_RINGS - 1}`);
    if (e.value === '') fail(source, e.line, `${e.key} is empty`);
    rings.set(ring, e.value);
  }
  const id = sectionValue(sec, 'nodeid');
  if (id === undefined) fail(source, sec.line, 'node without a nodeid (DLM identifies nodes by nodeid)');
  const nodeid = /^[0-9]+$/.test(id.value) ? Number(id.value) : NaN;
  if (!Number.isInteger(nodeid) || nodeid < 1 || nodeid > 0xffffffff)
    fail(source, id.line, `nodeid '${id.value}' is not an integer in 1..4294967295`);
  if (rings.size === 0) fail(source, sec.line, `node ${nodeid} has no ring0_addr..ring${MAX_RINGS - 1}_addr`);
  const addrs = [...rings.entries()].sort((a, b) => a[0] - b[0]).map(([, a]) => a);
  const node: CorosyncNode = { nodeid, addrs, line: sec.line };
  const name = sectionValue(sec, 'name');
  if (name !== undefined && name.value !== '') node.name = name.value;
  return node;
}

function nodesOf(root: CorosyncSection, source: string): CorosyncNode[] {
  const nodes: CorosyncNode[] = [];
  const lineOf = new Map<number, number>();
  for (const list of subsections(root, 'nodelist')) {
    for (const sec of subsections(list, 'node')) {
      const node = nodeFromSection(sec, source);
      const other = lineOf.get(node.nodeid);
      if (other !== undefined) fail(source, sec.line, `nodeid ${node.nodeid} already used by the node on line ${other}`);
      lineOf.set(node.nodeid, sec.line);
      nodes.push(node);
    }
  }
  return nodes;
}

/**
 * The nodes of `nodelist { node { ... } }`: nodeid, ring addresses in ring order (N =
 * 0..7), name. Addresses are returned as written (IP literals or host names).
 * @param source name used in error messages
 * @throws ConfigError (with the line) on a syntax error, a node without a valid nodeid
 *   or without any ringN_addr, ring numbers beyond 7, a repeated key or nodeid
 */
export function parseCorosyncNodelist(text: string, source = 'corosync.conf'): CorosyncNode[] {
  return nodesOf(parseCorosyncTree(text, source), source);
}

/**
 * The cluster settings DLM cares about (totem.cluster_name, transport, rrp_mode,
 * link_mode, ip_version, the number of interface sections) and the nodelist.
 * Several `totem` sections merge, later values winning, as corosync's key map does.
 * @param source name used in error messages
 * @throws ConfigError as parseCorosyncNodelist()
 */
export function parseCorosyncConf(text: string, source = 'corosync.conf'): CorosyncConf {
  const root = parseCorosyncTree(text, source);
  const conf: CorosyncConf = { nodes: nodesOf(root, source) };
  let interfaces = 0;
  const settings = new Map<string, string>();
  for (const totem of subsections(root, 'totem')) {
    interfaces += subsections(totem, 'interface').length;
    for (const e of totem.entries) settings.set(e.key, e.value);
  }
  // Settings the file leaves out stay absent, not present-but-undefined.
  const copy = (key: string, to: 'clusterName' | 'transport' | 'rrpMode' | 'linkMode' | 'ipVersion') => {
    const v = settings.get(key);
    if (v !== undefined) conf[to] = v;
  };
  copy('cluster_name', 'clusterName');
  copy('transport', 'transport');
  copy('rrp_mode', 'rrpMode');
  copy('link_mode', 'linkMode');
  copy('ip_version', 'ipVersion');
  if (interfaces > 0) conf.interfaces = interfaces;
  return conf;
}
