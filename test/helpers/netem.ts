/**
 * Link impairments with tc (sch_netem, sch_tbf) inside the guest: whole-interface
 * qdiscs for veth links between namespaces, and an address-filtered cut on lo for
 * the kernel DLM test (prio qdisc, u32 filters steering only the chosen traffic into
 * a netem band).
 */
import { loadModules, sh, shQuiet } from './guest';

let loaded = false;
export function loadNetemModules(): void {
  if (loaded) return;
  loadModules(['sch_netem', 'sch_tbf', 'sch_prio', 'cls_u32']);
  loaded = true;
}

/** `tc` inside namespace `ns` (or the current one when ns is empty). */
export function tc(ns: string, ...args: string[]): string {
  return ns ? sh('ip', 'netns', 'exec', ns, 'tc', ...args) : sh('tc', ...args);
}

/** Replaces the root qdisc of `dev` with netem `params` (e.g. ['loss', '1%', 'delay', '2ms', '1ms']). */
export function setNetem(ns: string, dev: string, params: string[]): void {
  loadNetemModules();
  tc(ns, 'qdisc', 'replace', 'dev', dev, 'root', 'handle', '1:', 'netem', ...params);
}

export function clearQdisc(ns: string, dev: string): void {
  if (ns) shQuiet('ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root');
  else shQuiet('tc', 'qdisc', 'del', 'dev', dev, 'root');
}

/**
 * On `dev` (lo, by default), packets between the two addresses (both directions, or
 * only from -> to) go through a netem band that drops them all; everything else
 * passes. Returns a function that heals the link.
 */
export function cutBetween(a: string, b: string, opts: { dev?: string; oneWay?: boolean } = {}): () => void {
  loadNetemModules();
  const dev = opts.dev ?? 'lo';
  tc('', 'qdisc', 'replace', 'dev', dev, 'root', 'handle', '1:', 'prio', 'bands', '3', 'priomap', ...Array(16).fill('1'));
  tc('', 'qdisc', 'add', 'dev', dev, 'parent', '1:3', 'handle', '30:', 'netem', 'loss', '100%');
  const pairs = opts.oneWay ? [[a, b]] : [[a, b], [b, a]];
  for (const [src, dst] of pairs)
    tc('', 'filter', 'add', 'dev', dev, 'parent', '1:0', 'protocol', 'ip', 'prio', '1', 'u32',
      'match', 'ip', 'src', `${src}/32`, 'match', 'ip', 'dst', `${dst}/32`, 'flowid', '1:3');
  return () => clearQdisc('', dev);
}
