/**
 * Two network namespaces joined by one or more veth pairs (link i: 10.<base+i>.0.1 in
 * A, 10.<base+i>.0.2 in B), and lowcomms nodes (netem-node.ts) run inside them and
 * driven over stdin/stdout. Everything is removed when the test ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { LowcommsOptions, NodeConfig } from '../../lib';
import { sh, shQuiet } from './guest';

export interface Pair {
  a: string;
  b: string;
  /** Interface names per link: [in A, in B]. */
  links: Array<[string, string]>;
  addrA: string[];
  addrB: string[];
}

export function makePair(t: TestContext, tag: string, nLinks: number, base: number): Pair {
  const a = `lc${tag}a${process.pid % 10000}`;
  const b = `lc${tag}b${process.pid % 10000}`;
  for (const ns of [a, b]) {
    shQuiet('ip', 'netns', 'del', ns);
    sh('ip', 'netns', 'add', ns);
  }
  t.after(() => {
    shQuiet('ip', 'netns', 'del', a);
    shQuiet('ip', 'netns', 'del', b);
  });
  const links: Array<[string, string]> = [];
  const addrA: string[] = [];
  const addrB: string[] = [];
  for (let i = 0; i < nLinks; i++) {
    const la = `${tag}${i}a`;
    const lb = `${tag}${i}b`;
    sh('ip', 'link', 'add', la, 'netns', a, 'type', 'veth', 'peer', 'name', lb, 'netns', b);
    const net = `10.${base + i}.0`;
    sh('ip', '-n', a, 'addr', 'add', `${net}.1/24`, 'dev', la);
    sh('ip', '-n', b, 'addr', 'add', `${net}.2/24`, 'dev', lb);
    sh('ip', '-n', a, 'link', 'set', la, 'up');
    sh('ip', '-n', b, 'link', 'set', lb, 'up');
    links.push([la, lb]);
    addrA.push(`${net}.1`);
    addrB.push(`${net}.2`);
  }
  for (const ns of [a, b]) sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  return { a, b, links, addrA, addrB };
}

/** Bytes sent out of an interface (its tx counter). */
export function txBytes(ns: string, dev: string): number {
  return Number(sh('ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/statistics/tx_bytes`).trim());
}

export interface NodeProc {
  /** Sends a command, resolves with the node's JSON reply. */
  cmd<T = Record<string, unknown>>(c: { cmd: string; timeoutMs?: number; [k: string]: unknown }): Promise<T>;
  proc: ChildProcess;
}

export async function startNode(
  t: TestContext,
  ns: string,
  args: { nodeid: number; peer: number; nodes: NodeConfig[]; transport: 'tcp' | 'sctp'; port: number; options?: Partial<LowcommsOptions> },
): Promise<NodeProc> {
  const script = path.join(__dirname, 'netem-node.ts');
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', script, JSON.stringify(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const watchdog = setTimeout(() => proc.kill('SIGKILL'), 600_000);
  t.after(() => {
    clearTimeout(watchdog);
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        console.log(`# node ${args.nodeid}: ${line}`);
        continue;
      }
      waiting.shift()?.resolve(v);
    }
  });
  // 'close', not 'exit': stdout may still hold the last answer when the process exits.
  proc.on('close', (code, sig) => {
    clearTimeout(watchdog);
    for (const w of waiting.splice(0)) w.reject(new Error(`node ${args.nodeid} in ${ns} exited (${code ?? sig})`));
  });
  // Every answer is awaited with a deadline: a node that hangs fails the test, not the guest's timeout.
  const next = (ms: number, what: string) =>
    new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`node ${args.nodeid} in ${ns}: no answer to ${what} within ${ms} ms`));
      }, ms);
      waiting.push({
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  const ready = (await next(60_000, 'start')) as { ready?: boolean };
  if (!ready.ready) throw new Error(`node ${args.nodeid} did not start: ${JSON.stringify(ready)}`);
  return {
    proc,
    cmd<T>(c: { cmd: string; timeoutMs?: number; [k: string]: unknown }): Promise<T> {
      const p = next((c.timeoutMs ?? 120_000) * 2 + 30_000, JSON.stringify(c)) as Promise<T>;
      proc.stdin!.write(JSON.stringify(c) + '\n');
      return p;
    },
  };
}
