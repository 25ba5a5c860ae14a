/**
 * A cluster of lowcomms nodes, each in its own process (test/helpers/restart-node.ts),
 * that can be SIGKILLed and started again; and the checks of what their logs say.
 */
import { type ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { LowcommsStats, TransportName } from '../../lib';
import { testPort } from './transports';

const script = path.join(__dirname, 'restart-node.ts');

interface Proc {
  nodeid: number;
  gen: number;
  child: ChildProcess;
  exited: Promise<void>;
  waiters: Array<(m: { type: string; stats?: LowcommsStats }) => void>;
}

/** What one incarnation's log says. */
export interface NodeLog {
  /** sent[to] = how many messages it sent to `to` (indexes 0..n-1). */
  sent: Map<number, number>;
  /** got["from:gen"] = the indexes delivered from that sender incarnation, in order. */
  got: Map<string, number[]>;
  /** restarts[from] = restart events about `from`. */
  restarts: Map<number, number>;
  /** dropped[to] = messages reported dropped for `to` with reason 'restart'. */
  dropped: Map<number, number>;
}

export class ProcCluster {
  readonly port = testPort();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-restart-'));
  private readonly procs = new Map<number, Proc>();
  private readonly gens = new Map<number, number>();

  constructor(
    t: TestContext,
    readonly transport: TransportName,
    readonly n: number,
  ) {
    t.after(async () => {
      for (const p of this.procs.values()) p.child.kill('SIGKILL');
      await Promise.all([...this.procs.values()].map((p) => p.exited));
      if (process.env.LOWCOMMS_TEST_KEEP_LOGS) t.diagnostic(`logs kept in ${this.dir}`);
      else fs.rmSync(this.dir, { recursive: true, force: true });
    });
  }

  logPath(nodeid: number, gen: number): string {
    return path.join(this.dir, `n${nodeid}-g${gen}.log`);
  }

  /** The generations node `nodeid` has had, oldest first. */
  generations(nodeid: number): number[] {
    const last = this.gens.get(nodeid) ?? 0;
    return Array.from({ length: last }, (_, i) => i + 1);
  }

  currentGen(nodeid: number): number {
    return this.gens.get(nodeid) ?? 0;
  }

  /** Starts (or restarts) a node as a new process; resolves when it listens. */
  async start(nodeid: number): Promise<void> {
    const gen = (this.gens.get(nodeid) ?? 0) + 1;
    this.gens.set(nodeid, gen);
    const args = { nodeid, n: this.n, port: this.port, transport: this.transport, gen, log: this.logPath(nodeid, gen) };
    const child = fork(script, [JSON.stringify(args)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const p: Proc = { nodeid, gen, child, waiters: [], exited: new Promise((r) => child.once('exit', () => r())) };
    child.on('message', (m: { type: string }) => p.waiters.shift()?.(m));
    this.procs.set(nodeid, p);
    const ready = await this.next(p, 30_000);
    if (ready.type !== 'ready') throw new Error(`node ${nodeid}: ${JSON.stringify(ready)}`);
  }

  async startAll(): Promise<void> {
    await Promise.all(Array.from({ length: this.n }, (_, i) => this.start(i + 1)));
  }

  /** SIGKILL: no FIN, no close(); the kernel closes its sockets. */
  async kill(nodeid: number): Promise<void> {
    const p = this.proc(nodeid);
    p.child.kill('SIGKILL');
    await p.exited;
    this.procs.delete(nodeid);
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) a node: it neither reads nor answers meanwhile. */
  signal(nodeid: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
    this.proc(nodeid).child.kill(sig);
  }

  /** Starts the node's close() (FIN handshake with every peer) without waiting for it. */
  async beginClose(nodeid: number): Promise<void> {
    const p = this.proc(nodeid);
    p.child.send({ cmd: 'close' });
    await this.next(p, 30_000);
  }

  async send(from: number, to: number, count: number): Promise<void> {
    const p = this.proc(from);
    p.child.send({ cmd: 'send', to, count });
    await this.next(p, 120_000);
  }

  stream(from: number, perTick: number): void {
    this.proc(from).child.send({ cmd: 'stream', perTick });
  }

  /** Stops streaming; resolves with its stats once every peer acked it (or the timeout). */
  async quiet(from: number, timeoutMs: number): Promise<LowcommsStats> {
    const p = this.proc(from);
    p.child.send({ cmd: 'quiet', timeoutMs });
    return (await this.next(p, timeoutMs + 30_000)).stats!;
  }

  async stats(nodeid: number): Promise<LowcommsStats> {
    const p = this.proc(nodeid);
    p.child.send({ cmd: 'stats' });
    return (await this.next(p, 30_000)).stats!;
  }

  read(nodeid: number, gen: number): NodeLog {
    const log: NodeLog = { sent: new Map(), got: new Map(), restarts: new Map(), dropped: new Map() };
    const f = this.logPath(nodeid, gen);
    const text = fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '';
    for (const l of text.split('\n')) {
      const w = l.split(' ');
      if (w[0] === 's') log.sent.set(+w[1]!, Math.max(log.sent.get(+w[1]!) ?? 0, +w[3]! + 1));
      else if (w[0] === 'r') {
        const k = `${w[1]}:${w[2]}`;
        let list = log.got.get(k);
        if (!list) log.got.set(k, (list = []));
        list.push(+w[3]!);
      } else if (w[0] === 'R') log.restarts.set(+w[1]!, (log.restarts.get(+w[1]!) ?? 0) + 1);
      else if (w[0] === 'D' && w[3] === 'restart') log.dropped.set(+w[1]!, (log.dropped.get(+w[1]!) ?? 0) + +w[2]!);
    }
    return log;
  }

  /** Polls the logs until `cond` holds; throws with `what` after `ms`. */
  async until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private proc(nodeid: number): Proc {
    const p = this.procs.get(nodeid);
    if (!p) throw new Error(`node ${nodeid} is not running`);
    return p;
  }

  private next(p: Proc, ms: number): Promise<{ type: string; stats?: LowcommsStats }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${p.nodeid}: no answer in ${ms} ms`)), ms);
      p.waiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
      void p.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`node ${p.nodeid} exited`));
      });
    });
  }
}

/**
 * Checks one direction (messages from `s` to `d`) across every incarnation of both:
 * each incarnation of d received a run of consecutive indexes from each incarnation of
 * s, later incarnations of d later indexes (nothing twice, order kept); for the live
 * (final) incarnation of s, the holes (sent, delivered by no incarnation of d, yet
 * followed by a delivery) are at most what it reported dropped for d at restarts, and
 * everything it sent reached the final d. Returns the totals.
 */
export function checkDirection(
  cl: ProcCluster,
  s: number,
  d: number,
  finalAlive: boolean,
): { delivered: number; holes: number; dropped: number; errors: string[] } {
  const errors: string[] = [];
  let delivered = 0;
  let holes = 0;
  let dropped = 0;
  const dLogs = cl.generations(d).map((g) => cl.read(d, g));
  for (const sg of cl.generations(s)) {
    const sLog = cl.read(s, sg);
    const sent = sLog.sent.get(d) ?? 0;
    dropped += sLog.dropped.get(d) ?? 0;
    let last = -1;
    let count = 0;
    for (const [i, dl] of dLogs.entries()) {
      const list = dl.got.get(`${s}:${sg}`) ?? [];
      for (const [k, idx] of list.entries()) {
        if (k > 0 && idx !== list[k - 1]! + 1)
          errors.push(`${s}g${sg} -> ${d}g${i + 1}: index ${idx} after ${list[k - 1]} (gap or duplicate within a session)`);
        if (k === 0 && idx <= last) errors.push(`${s}g${sg} -> ${d}g${i + 1}: index ${idx} again (delivered by an earlier incarnation)`);
      }
      if (list.length) last = list[list.length - 1]!;
      count += list.length;
      if (list.some((idx) => idx >= sent)) errors.push(`${s}g${sg} -> ${d}: delivered an index never sent`);
    }
    delivered += count;
    const genHoles = last + 1 - count;
    holes += genHoles;
    const isFinal = sg === cl.currentGen(s);
    if (isFinal && finalAlive && last + 1 !== sent)
      errors.push(`${s}g${sg} -> ${d}: sent ${sent}, the last delivered is ${last} (stalled or lost)`);
    // A live sender must have been told of every loss. A killed one may have died before
    // its application saw the report (the report went with it, like the application).
    const genDropped = sLog.dropped.get(d) ?? 0;
    if (isFinal && finalAlive && genHoles > genDropped)
      errors.push(`${s}g${sg} -> ${d}: ${genHoles} messages lost but only ${genDropped} reported dropped`);
  }
  return { delivered, holes, dropped, errors };
}
