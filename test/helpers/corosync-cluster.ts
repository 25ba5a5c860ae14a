/**
 * A real corosync cluster on one host for test/corosync: N corosync 3 instances, each
 * in its own network namespace (corosync's IPC is libqb abstract unix sockets, which
 * belong to a network namespace, so each service talks to its own node's corosync) and
 * with its own mount namespace for its lock file (/run) and state (/var/lib/corosync),
 * linked by veth pairs to a bridge in one more namespace. A lowcomms node
 * (membership-node.ts) runs beside each corosync. Everything is torn down by close(),
 * which the test registers first, and again on process exit.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TransportName } from '../../lib';
import { loadModules } from './guest';

const nodeScript = path.join(__dirname, 'membership-node.ts');
const root = path.resolve(__dirname, '..', '..');

/**
 * The environment of system tools (ip, corosync, mount): without a sanitizer runtime
 * preloaded for node (scripts/test-asan.sh), which would report the tools' own leaks.
 * `nodeEnv` puts it back for the node processes started through them.
 */
export const toolEnv: NodeJS.ProcessEnv = { ...process.env };
delete toolEnv.LD_PRELOAD;
export const nodeEnv: string[] = process.env.LD_PRELOAD ? ['env', `LD_PRELOAD=${process.env.LD_PRELOAD}`] : [];

function sh(...args: string[]): string {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', env: toolEnv });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error}`);
  return r.stdout;
}
const shQuiet = (...args: string[]) => spawnSync(args[0]!, args.slice(1), { stdio: 'ignore', env: toolEnv });

export interface LogEntry {
  t: string;
  [k: string]: unknown;
}

interface Child {
  proc: ChildProcess;
  exited: Promise<number | null>;
}

function track(proc: ChildProcess): Child {
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited };
}

export class CorosyncCluster {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-corosync-'));
  readonly tag = `lcs${process.pid % 100000}`;
  readonly bridgeNs = `${this.tag}br`;
  readonly group = `lowcomms-test-${process.pid}`;
  readonly port = 21064;
  private readonly corosyncs = new Map<number, Child>();
  private readonly services = new Map<number, Child>();
  /** Log files per node, one per service run, oldest first. */
  readonly logs = new Map<number, string[]>();
  private closed = false;
  private readonly onExit = () => this.teardownSync();

  /** `transport`: what the lowcomms services speak (corosync itself always uses knet over UDP). */
  constructor(
    readonly n: number,
    readonly transport: TransportName,
  ) {
    process.on('exit', this.onExit);
  }

  ns(i: number): string {
    return `${this.tag}n${i}`;
  }
  addr(i: number): string {
    return `10.216.0.${i}`;
  }

  /** Namespaces, bridge, veths and one corosync.conf per node. */
  setup(): void {
    const br = this.bridgeNs;
    // The guest's kernel has the bridge as a module; on a host it is there or built in.
    if (process.env.LOWCOMMS_UML === '1') loadModules(['bridge']);
    shQuiet('ip', 'netns', 'del', br);
    sh('ip', 'netns', 'add', br);
    sh('ip', '-n', br, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', br, 'link', 'add', 'br0', 'type', 'bridge');
    sh('ip', '-n', br, 'link', 'set', 'br0', 'up');
    const nodelist = Array.from({ length: this.n }, (_, k) => k + 1)
      .map((i) => `  node {\n    nodeid: ${i}\n    name: n${i}\n    ring0_addr: ${this.addr(i)}\n  }`)
      .join('\n');
    for (let i = 1; i <= this.n; i++) {
      const ns = this.ns(i);
      shQuiet('ip', 'netns', 'del', ns);
      sh('ip', 'netns', 'add', ns);
      sh('ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', br);
      sh('ip', '-n', br, 'link', 'set', `p${i}`, 'master', 'br0');
      sh('ip', '-n', br, 'link', 'set', `p${i}`, 'up');
      sh('ip', '-n', ns, 'addr', 'add', `${this.addr(i)}/24`, 'dev', 'eth0');
      sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
      sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      const d = path.join(this.dir, `n${i}`);
      fs.mkdirSync(path.join(d, 'lib'), { recursive: true });
      // token 1000 ms: a failure is seen in about 2 s instead of corosync's default 3+ s.
      fs.writeFileSync(
        path.join(d, 'corosync.conf'),
        `totem {\n  version: 2\n  cluster_name: lowcomms-test\n  transport: knet\n  crypto_cipher: none\n  crypto_hash: none\n  token: 1000\n}\n` +
          `logging {\n  to_stderr: yes\n  to_logfile: no\n  to_syslog: no\n  timestamp: on\n}\n` +
          `quorum {\n  provider: corosync_votequorum\n}\n` +
          `nodelist {\n${nodelist}\n}\n`,
      );
    }
  }

  startCorosync(i: number): void {
    const d = path.join(this.dir, `n${i}`);
    const out = fs.openSync(path.join(d, 'corosync.log'), 'a');
    // `ip netns exec` gives the command a mount namespace of its own: /run (the lock file
    // /run/corosync.pid) and /var/lib/corosync are this node's alone.
    const proc = spawn(
      'ip',
      ['netns', 'exec', this.ns(i), 'sh', '-c', `mount -t tmpfs tmpfs /run && mount --bind ${d}/lib /var/lib/corosync && exec corosync -f -c ${d}/corosync.conf`],
      { stdio: ['ignore', out, out], env: toolEnv },
    );
    fs.closeSync(out);
    this.corosyncs.set(i, track(proc));
  }

  /** Stops corosync on node i with `signal` (SIGTERM: an orderly leave; SIGKILL: a crash). */
  async stopCorosync(i: number, signal: NodeJS.Signals): Promise<void> {
    const c = this.corosyncs.get(i);
    if (!c) return;
    c.proc.kill(signal);
    await withTimeout(c.exited, 15000, `corosync ${i} to exit`);
    this.corosyncs.delete(i);
  }

  /** Waits until corosync on node i answers (its cmap is up). */
  async waitCorosync(i: number, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = spawnSync('ip', ['netns', 'exec', this.ns(i), 'corosync-cmapctl', 'runtime.votequorum.this_node_id'], { encoding: 'utf8', env: toolEnv });
      if (r.status === 0) return;
      if (Date.now() > deadline) throw new Error(`corosync ${i} did not come up: ${r.stderr}`);
      await sleep(100);
    }
  }

  startService(i: number): string {
    const runs = this.logs.get(i) ?? [];
    const log = path.join(this.dir, `n${i}-run${runs.length}.log`);
    fs.writeFileSync(log, '');
    runs.push(log);
    this.logs.set(i, runs);
    const err = fs.openSync(path.join(this.dir, `n${i}-run${runs.length - 1}.stderr`), 'a');
    const proc = spawn(
      'ip',
      ['netns', 'exec', this.ns(i), ...nodeEnv, process.execPath, '--import', 'tsx', nodeScript, String(i), this.group, String(this.port), log, this.transport],
      { stdio: ['pipe', 'pipe', err], cwd: root, env: toolEnv },
    );
    fs.closeSync(err);
    this.services.set(i, track(proc));
    return log;
  }

  serviceExited(i: number): Promise<number | null> | undefined {
    return this.services.get(i)?.exited;
  }

  async killService(i: number): Promise<void> {
    const s = this.services.get(i);
    if (!s) return;
    s.proc.kill('SIGKILL');
    await withTimeout(s.exited, 10000, `service ${i} to exit`);
    this.services.delete(i);
  }

  /** Service i has exited by itself: forget it. */
  async reapService(i: number, timeoutMs = 10000): Promise<number | null> {
    const s = this.services.get(i);
    if (!s) return null;
    const code = await withTimeout(s.exited, timeoutMs, `service ${i} to exit`);
    this.services.delete(i);
    return code;
  }

  /** Sends a command line to service i; resolves with its next JSON reply on stdout. */
  command(i: number, cmd: string, timeoutMs = 20000): Promise<Record<string, unknown>> {
    const s = this.services.get(i);
    if (!s) throw new Error(`service ${i} is not running`);
    const p = new Promise<Record<string, unknown>>((resolve) => {
      let buf = '';
      const on = (chunk: Buffer) => {
        buf += chunk.toString();
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        s.proc.stdout!.off('data', on);
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      };
      s.proc.stdout!.on('data', on);
    });
    s.proc.stdin!.write(cmd + '\n');
    return withTimeout(p, timeoutMs, `service ${i} to answer ${cmd}`);
  }

  send(i: number, cmd: string): void {
    this.services.get(i)?.proc.stdin!.write(cmd + '\n');
  }

  /** Link of node i to the bridge: down cuts it off from the others (a partition). */
  link(i: number, up: boolean): void {
    sh('ip', '-n', this.bridgeNs, 'link', 'set', `p${i}`, up ? 'up' : 'down');
  }

  /** Every whole line of a log: the last one may be half written (read while appended, or cut by SIGKILL). */
  read(file: string): LogEntry[] {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.pop(); // '' after the last newline, or a line not finished yet
    return lines.filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
  }

  /** The current run's log of node i. */
  current(i: number): LogEntry[] {
    return this.read(this.logs.get(i)!.at(-1)!);
  }

  /** Waits until `pred` holds for node i's current log. */
  async waitFor(i: number, what: string, pred: (log: LogEntry[]) => boolean, timeoutMs = 30000): Promise<LogEntry[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = this.current(i);
      const fatal = log.find((e) => e.t === 'fatal');
      if (fatal) throw new Error(`node ${i} failed: ${String(fatal.message)}`);
      if (pred(log)) return log;
      if (Date.now() > deadline) {
        const runs = this.logs.get(i)!;
        const errFile = path.join(this.dir, `n${i}-run${runs.length - 1}.stderr`);
        const stderr = fs.existsSync(errFile) ? fs.readFileSync(errFile, 'utf8').slice(-800) : '';
        throw new Error(
          `timed out waiting for node ${i}: ${what}; last lines: ${JSON.stringify(log.filter((e) => e.t !== 'sent' && e.t !== 'got').slice(-8))}; stderr: ${stderr}`,
        );
      }
      await sleep(50);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const s of this.services.values()) s.proc.kill('SIGKILL');
    for (const c of this.corosyncs.values()) c.proc.kill('SIGKILL');
    await Promise.all([...this.services.values(), ...this.corosyncs.values()].map((c) => withTimeout(c.exited, 10000, 'exit').catch(() => undefined)));
    this.teardownSync();
  }

  private teardownSync(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.onExit);
    for (const s of this.services.values()) s.proc.kill('SIGKILL');
    for (const c of this.corosyncs.values()) c.proc.kill('SIGKILL');
    for (let i = 1; i <= this.n; i++) shQuiet('ip', 'netns', 'del', this.ns(i));
    shQuiet('ip', 'netns', 'del', this.bridgeNs);
    if (process.env.LOWCOMMS_TEST_KEEP_LOGS) console.error(`corosync test logs kept in ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
  ]);
}
