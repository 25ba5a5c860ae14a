/**
 * A small parser of corosync.conf: `section {`, `key: value`, `}`, `#` comments. It
 * returns the generic tree and, from it, the cluster's nodelist as DLM needs it
 * (nodeid + ring0_addr, ring1_addr, ... in ring order), like dlm_controld reads it.
 */
import { ConfigError } from './errors';

export interface CorosyncSection {
  name: string;
  line: number;
  values: Map<string, string>;
  sections: CorosyncSection[];
}

export interface CorosyncNode {
  nodeid: number;
  /** ring0_addr, ring1_addr, ... in ring order (addresses or host names). */
  addrs: string[];
  name?: string;
}

export interface CorosyncConf {
  clusterName?: string;
  transport?: string;
  /** totem.rrp_mode: dlm_controld's protocol=detect picks SCTP when it is not "none". */
  rrpMode?: string;
  /** totem.interface / link sections: more than one suggests redundant rings. */
  links: number;
  nodes: CorosyncNode[];
}

const MAX_RINGS = 8;

/** Parses the brace-structured format into a tree; syntax errors name their line. */
export function parseCorosyncTree(text: string): CorosyncSection {
  const root: CorosyncSection = { name: '', line: 0, values: new Map(), sections: [] };
  const stack: CorosyncSection[] = [root];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const top = stack[stack.length - 1]!;
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^([A-Za-z0-9_.-]+)\s*\{$/))) {
      const sec: CorosyncSection = { name: m[1]!, line: lineNo, values: new Map(), sections: [] };
      top.sections.push(sec);
      stack.push(sec);
    } else if (line === '}') {
      if (stack.length === 1) throw new ConfigError(`corosync.conf line ${lineNo}: '}' without an open section`);
      stack.pop();
    } else if ((m = line.match(/^([A-Za-z0-9_.-]+)\s*:\s*(.*)$/))) {
      let value = m[2]!.trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      top.values.set(m[1]!, value);
    } else {
      throw new ConfigError(`corosync.conf line ${lineNo}: cannot parse '${raw.trim()}'`);
    }
  });
  if (stack.length > 1) {
    const open = stack[stack.length - 1]!;
    throw new ConfigError(`corosync.conf: section '${open.name}' opened on line ${open.line} is never closed`);
  }
  return root;
}

/** The cluster settings and nodelist of a corosync.conf. */
export function parseCorosyncConf(text: string): CorosyncConf {
  const root = parseCorosyncTree(text);
  const totem = root.sections.find((s) => s.name === 'totem');
  const nodelist = root.sections.find((s) => s.name === 'nodelist');
  const nodes: CorosyncNode[] = [];
  for (const sec of nodelist?.sections ?? []) {
    if (sec.name !== 'node') continue;
    const idText = sec.values.get('nodeid');
    if (idText === undefined)
      throw new ConfigError(`corosync.conf line ${sec.line}: node without a nodeid (DLM needs one)`);
    const nodeid = Number(idText);
    if (!Number.isInteger(nodeid) || nodeid < 1 || nodeid > 0xffffffff)
      throw new ConfigError(`corosync.conf line ${sec.line}: bad nodeid '${idText}'`);
    const addrs: string[] = [];
    for (let r = 0; r < MAX_RINGS; r++) {
      const a = sec.values.get(`ring${r}_addr`);
      if (a) addrs.push(a);
    }
    if (addrs.length === 0)
      throw new ConfigError(`corosync.conf line ${sec.line}: node ${nodeid} has no ringN_addr`);
    const name = sec.values.get('name');
    nodes.push(name ? { nodeid, addrs, name } : { nodeid, addrs });
  }
  const conf: CorosyncConf = {
    links: totem?.sections.filter((s) => s.name === 'interface').length ?? 0,
    nodes,
  };
  const clusterName = totem?.values.get('cluster_name');
  if (clusterName !== undefined) conf.clusterName = clusterName;
  const transport = totem?.values.get('transport');
  if (transport !== undefined) conf.transport = transport;
  const rrpMode = totem?.values.get('rrp_mode');
  if (rrpMode !== undefined) conf.rrpMode = rrpMode;
  return conf;
}
