/**
 * `lowcomms bench`: a local two-node cluster (node processes on 127.0.0.1 and .2) per
 * transport, measuring throughput into a JS handler, ping-pong latency and CPU per
 * message across sizes and batching policies, with the baselines measured in the same
 * run. SCTP runs natively when the kernel has it; otherwise the bench re-runs itself
 * inside user-mode-linux, with TCP measured in the same guest so the ratio is fair.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OPTION_DEFAULTS, sctpAvailable, type LowcommsOptions, type RecordProtection, type TransportName } from '../lib';
import { cPingpong, cRxthread, netbenchConcat, netPingpong, pingpongPath, rawtcp, rawtcpPath, rxthreadPath, type BaselineResult } from './baselines';
import type { NodeRequest, PingReport, SinkReport, StreamReport } from './bench-node';

export type Batching = 'default' | 'immediate';

export interface BenchOptions {
  sizes: number[];
  transports: TransportName[];
  batchings: Batching[];
  seconds: number;
  pings: number;
  nodes: number;
  uml: boolean;
  baselines: boolean;
  /** Inside the guest: no progress bar, results to a file. */
  inner: boolean;
  /** Measure peer authentication's cost: every run without and with it (each of authRecords), side by side. */
  auth: boolean;
  /** With auth: the record protections measured (default both). */
  authRecords: RecordProtection[];
  /** Every measurement this many times (baselines included, interleaved); figures are medians. */
  repeat: number;
}

/** The figures whose min..max over the repeats is kept beside the median. */
export type SpreadKey = 'msgsPerSec' | 'rttP50Us' | 'rttP99Us' | 'cpuNsPerMsg';
export type Spread = Partial<Record<SpreadKey, [number, number]>>;

export interface BenchRun {
  transport: TransportName;
  kernel: 'host' | 'uml';
  size: number;
  nodes: number;
  batching: Batching;
  /** Peer authentication on (--auth runs each configuration without and with it). */
  auth: boolean;
  /** With auth: how the records were protected. */
  records?: RecordProtection;
  /** The first ping on fresh nodes: connection setup (and handshake) plus one round trip. */
  firstMsgMs: number;
  msgsPerSec: number;
  mbPerSec: number;
  rttP50Us: number;
  rttP99Us: number;
  rttP999Us: number;
  cpuNsPerMsg: number;
  verified: boolean;
  messages: number;
  seconds: number;
  /** How many times this configuration was measured; every figure above is their median. */
  repeats: number;
  /** min..max over the repeats. */
  spread: Spread;
  error?: string;
}

export interface BenchBaseline {
  /** Throughput: netbench-concat, rawtcp. Round trip: net-pingpong, c-pingpong, c-pingpong-epoll, c-pingpong-rxthread. */
  name: 'netbench-concat' | 'rawtcp' | 'net-pingpong' | 'c-pingpong' | 'c-pingpong-epoll' | 'c-pingpong-rxthread';
  /** Frame size on the wire (the 4072-byte DLM message is compared with a 4096-byte frame). */
  size: number;
  msgsPerSec?: number;
  rttP50Us?: number;
  rttP99Us?: number;
  kernel: 'host' | 'uml';
  repeats: number;
  spread: Spread;
}

/** Median of the values (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return 0;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function spreadOf<T extends Partial<Record<SpreadKey, number>>>(samples: T[]): Spread {
  const out: Spread = {};
  for (const k of ['msgsPerSec', 'rttP50Us', 'rttP99Us', 'cpuNsPerMsg'] as const) {
    const v = samples.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
    if (v.length === samples.length && v.length) out[k] = [Math.min(...v), Math.max(...v)];
  }
  return out;
}

/** One run per configuration out of the repeats: medians, their spread, verified by all. */
export function aggregateRuns(samples: BenchRun[]): BenchRun[] {
  const groups = new Map<string, BenchRun[]>();
  for (const r of samples) {
    const k = [r.transport, r.kernel, r.size, r.nodes, r.batching, r.auth, r.records ?? ''].join('/');
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const med = (f: (r: BenchRun) => number, digits = 0) => Number(median(g.map(f)).toFixed(digits));
    const run: BenchRun = {
      ...g[0]!,
      firstMsgMs: med((r) => r.firstMsgMs, 2),
      msgsPerSec: med((r) => r.msgsPerSec),
      mbPerSec: med((r) => r.mbPerSec, 1),
      rttP50Us: med((r) => r.rttP50Us),
      rttP99Us: med((r) => r.rttP99Us),
      rttP999Us: med((r) => r.rttP999Us),
      cpuNsPerMsg: med((r) => r.cpuNsPerMsg),
      messages: med((r) => r.messages),
      seconds: med((r) => r.seconds, 3),
      verified: g.every((r) => r.verified),
      repeats: g.length,
      spread: spreadOf(g),
    };
    const errors = g.filter((r) => r.error).map((r) => r.error);
    if (errors.length) run.error = errors.join('; ');
    else delete run.error;
    return run;
  });
}

export function aggregateBaselines(samples: BenchBaseline[]): BenchBaseline[] {
  const groups = new Map<string, BenchBaseline[]>();
  for (const b of samples) {
    const k = [b.name, b.kernel, b.size].join('/');
    groups.set(k, [...(groups.get(k) ?? []), b]);
  }
  return [...groups.values()].map((g) => {
    const b: BenchBaseline = { ...g[0]!, repeats: g.length, spread: spreadOf(g) };
    for (const k of ['msgsPerSec', 'rttP50Us', 'rttP99Us'] as const) {
      const v = g.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
      if (v.length) b[k] = k === 'msgsPerSec' ? Math.round(median(v)) : Number(median(v).toFixed(1));
    }
    return b;
  });
}

export interface BenchResult {
  host: Record<string, unknown>;
  settings: Record<string, unknown>;
  runs: BenchRun[];
  baselines: BenchBaseline[];
}

export interface Progress {
  start(total: number): void;
  step(label: string): void;
  stop(): void;
}

const D = OPTION_DEFAULTS;
/** The SCTP settings every run uses (the library's defaults), printed with the results. */
export const SCTP_SETTINGS =
  `SO_SNDBUF/SO_RCVBUF ${D.sctp.sndbuf / 2 ** 20}/${D.sctp.rcvbuf / 2 ** 20} MiB, SCTP_NODELAY on, ` +
  `delayed SACK: ${D.sctp.sackDelayMs ? `${D.sctp.sackDelayMs} ms` : 'kernel default'}, ` +
  `${D.entryBytesSctp / 1024} KiB write-queue entries (one SCTP message each), ` +
  `RTO ${D.sctp.rtoMinMs}..${D.sctp.rtoMaxMs} ms (initial ${D.sctp.rtoInitialMs})`;

export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'CMakeLists.txt')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('lowcomms package root not found');
}

const children = new Set<ChildProcess>();
export function killChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A bench node process and a request/reply channel to it. */
class NodeProc {
  private readonly proc: ChildProcess;
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(main: string) {
    // 'advanced': options carry bytes (the auth key), which JSON would turn into an object.
    this.proc = fork(main, ['__bench-node'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    children.add(this.proc);
    this.proc.on('message', (m: { id: number; body?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error) w.reject(new Error(m.error));
      else w.resolve(m.body);
    });
    this.proc.on('exit', (code) => {
      children.delete(this.proc);
      for (const w of this.waiting.values()) w.reject(new Error(`bench node exited (${code})`));
      this.waiting.clear();
    });
  }

  call<T>(req: DistributiveOmit<NodeRequest, 'id'>, timeoutMs = 120_000): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`bench node: ${req.cmd} timed out`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.proc.send({ ...req, id });
    });
  }

  async close(): Promise<void> {
    await this.call({ cmd: 'close' }, 10_000).catch(() => undefined);
    this.proc.kill('SIGKILL');
  }
}

const pct = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : 0;

async function benchTransport(
  main: string,
  transport: TransportName,
  kernel: 'host' | 'uml',
  o: BenchOptions,
  progress: Progress,
  records: RecordProtection | undefined,
): Promise<BenchRun[]> {
  const auth = records !== undefined;
  const port = 20000 + Math.floor(Math.random() * 20000);
  // Node i on 127.0.0.i. Two nodes: 1 streams to 2 (what the baselines do). More: each
  // streams to the next one round a ring, so every node both sends and receives.
  const n = o.nodes;
  const nodes = Array.from({ length: n }, (_, i) => ({ nodeid: i + 1, addrs: [`127.0.0.${i + 1}`] }));
  const base: Omit<LowcommsOptions, 'nodeid'> = {
    nodes,
    transport,
    port,
    ...(records ? { auth: { key: randomBytes(32), records } } : {}),
  };
  const label = `${transport} (${kernel})${records ? ` auth ${records}` : ''}`;
  const procs = nodes.map(() => new NodeProc(main));
  const runs: BenchRun[] = [];
  try {
    for (let i = n - 1; i >= 0; i--) await procs[i]!.call({ cmd: 'init', options: { ...base, nodeid: i + 1 } });
    // No connection exists yet: this ping pays for setting them up (and authenticating).
    const first = await procs[0]!.call<PingReport>({ cmd: 'ping', size: 64, count: 1, seconds: 30 });
    const firstMsgMs = Number(((first.rttUs[0] ?? 0) / 1000).toFixed(2));
    for (const size of o.sizes) {
      progress.step(`${label} ${size} B ping-pong`);
      const ping = await procs[0]!.call<PingReport>({ cmd: 'ping', size, count: o.pings, seconds: Math.max(1, o.seconds) });
      for (const batching of o.batchings) {
        progress.step(`${label} ${size} B ${batching}`);
        await Promise.all(procs.map((p) => p.call({ cmd: 'expect' })));
        const senders = n === 2 ? procs.slice(0, 1) : procs;
        const streams = await Promise.all(
          senders.map((p, i) =>
            p.call<StreamReport>({ cmd: 'stream', to: ((i + 1) % n) + 1, size, seconds: o.seconds, immediate: batching === 'immediate' }),
          ),
        );
        const sent = streams.reduce((a, st) => a + st.sent, 0);
        // Wait for the tails to land (bounded).
        const reports = async () => Promise.all(procs.map((p) => p.call<SinkReport>({ cmd: 'report' })));
        let reps = await reports();
        const deadline = Date.now() + 60_000;
        while (reps.reduce((a, r) => a + r.received, 0) < sent && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          reps = await reports();
        }
        const received = reps.reduce((a, r) => a + r.received, 0);
        const errors = reps.reduce((a, r) => a + r.errors, 0);
        const verified = received === sent && errors === 0;
        const secs = Math.max(...reps.map((r) => r.seconds)) || o.seconds;
        const cpuUs = streams.reduce((a, st) => a + st.cpuUs, 0) + reps.reduce((a, r) => a + r.cpuUs, 0);
        const run: BenchRun = {
          transport,
          kernel,
          size,
          nodes: n,
          batching,
          auth,
          ...(records ? { records } : {}),
          firstMsgMs,
          msgsPerSec: Math.round(received / secs),
          mbPerSec: Number(((received * size) / secs / 1e6).toFixed(1)),
          rttP50Us: Math.round(pct(ping.rttUs, 50)),
          rttP99Us: Math.round(pct(ping.rttUs, 99)),
          rttP999Us: Math.round(pct(ping.rttUs, 99.9)),
          cpuNsPerMsg: received ? Math.round((cpuUs * 1000) / received) : 0,
          verified,
          messages: received,
          seconds: Number(secs.toFixed(3)),
          repeats: 1,
          spread: {},
        };
        if (!verified) {
          const first = reps.find((r) => r.firstError)?.firstError;
          run.error = `sent ${sent}, received ${received}, order errors ${errors}${first ? ` (${first})` : ''}`;
        }
        runs.push(run);
      }
    }
  } finally {
    await Promise.all(procs.map((p) => p.close()));
  }
  return runs;
}

async function runBaselines(
  o: BenchOptions,
  kernel: 'host' | 'uml',
  progress: Progress,
  counts: Map<number, number>,
  main: string,
): Promise<BenchBaseline[]> {
  const out: BenchBaseline[] = [];
  const root = packageRoot();
  const bin = rawtcpPath(root);
  const pp = pingpongPath(root);
  const rx = rxthreadPath(root);
  const one = { kernel, repeats: 1, spread: {} };
  for (const appSize of o.sizes) {
    // As many messages as lowcomms moved in its run, within reason.
    const count = Math.max(20_000, Math.min(counts.get(appSize) ?? 200_000, 5_000_000));
    // The largest DLM message (4072 + the 24-byte wrapper) is a 4096-byte frame: "4 KiB".
    const size = appSize === 4072 ? 4096 : appSize;
    progress.step(`baseline netbench-concat ${size} B`);
    const nb: BaselineResult = await netbenchConcat(size, count);
    out.push({ name: nb.name, size, msgsPerSec: Math.round(nb.msgsPerSec), ...one });
    if (bin) {
      progress.step(`baseline rawtcp ${size} B`);
      const rt = await rawtcp(bin, size, count);
      out.push({ name: rt.name, size, msgsPerSec: Math.round(rt.msgsPerSec), ...one });
    }
    // Round trips: as many as lowcomms' own ping-pong makes.
    progress.step(`baseline net-pingpong ${size} B`);
    const np = await netPingpong(main, size, o.pings);
    out.push({ name: np.name, size, rttP50Us: np.rttP50Us, rttP99Us: np.rttP99Us, ...one });
    if (pp) {
      progress.step(`baseline c-pingpong ${size} B`);
      const cp = await cPingpong(pp, size, o.pings);
      out.push({ name: cp.name, size, rttP50Us: cp.rttP50Us, rttP99Us: cp.rttP99Us, ...one });
    }
    if (rx) {
      progress.step(`baseline c-pingpong-rxthread ${size} B`);
      for (const b of await cRxthread(rx, size, o.pings)) out.push({ name: b.name, size, rttP50Us: b.rttP50Us, rttP99Us: b.rttP99Us, ...one });
    }
  }
  return out;
}

/** Runs in user-mode-linux: this same bench, inner mode, results through a file. */
function runInUml(o: BenchOptions, transports: TransportName[], progress: Progress, main: string): Promise<BenchResult> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-bench-uml-')), 'result.json');
  const args = [
    'scripts/uml-run.sh',
    '--timeout',
    String(600 + 60 * o.sizes.length * o.batchings.length * transports.length * (o.auth ? 1 + o.authRecords.length : 1) * Math.max(1, o.seconds)),
    '--',
    process.execPath,
    ...process.execArgv,
    main,
    'bench',
    '--inner',
    '--json',
    out,
    '--transports',
    transports.join(','),
    '--sizes',
    o.sizes.join(','),
    '--batching',
    o.batchings.join(','),
    '--duration',
    String(o.seconds),
    '--pings',
    String(Math.max(50, Math.floor(o.pings / 4))),
    '--repeat',
    String(o.repeat),
    ...(o.baselines ? [] : ['--no-baselines']),
    ...(o.auth ? ['--auth', '--auth-records', o.authRecords.join(',')] : []),
  ];
  progress.step(`user-mode-linux: ${transports.join(' + ')} (boots a guest; SCTP and TCP in the same kernel)`);
  return new Promise((resolve, reject) => {
    const p = spawn('bash', args, { cwd: packageRoot(), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let log = '';
    p.stdout.on('data', (d: Buffer) => (log += d.toString()));
    p.stderr.on('data', (d: Buffer) => (log += d.toString()));
    p.on('exit', (code) => {
      children.delete(p);
      if (code !== 0 || !fs.existsSync(out)) return reject(new Error(`bench in user-mode-linux failed (exit ${code}):\n${log.slice(-2000)}`));
      resolve(JSON.parse(fs.readFileSync(out, 'utf8')) as BenchResult);
    });
  });
}

export async function runBench(o: BenchOptions, progress: Progress, main: string): Promise<BenchResult> {
  const kernel: 'host' | 'uml' = process.env.LOWCOMMS_UML === '1' ? 'uml' : 'host';
  const hostSctp = sctpAvailable(4).ok;
  const local = o.transports.filter((t) => t === 'tcp' || hostSctp);
  const wantUml = !o.inner && o.uml && !hostSctp && o.transports.includes('sctp');
  const modes: (RecordProtection | undefined)[] = o.auth ? [undefined, ...o.authRecords] : [undefined];
  const perTransport = o.sizes.length * (o.batchings.length + 1) * modes.length;
  progress.start(o.repeat * (local.length * perTransport + (o.baselines ? o.sizes.length * 4 : 0)) + (wantUml ? 1 : 0));

  const result: BenchResult = {
    host: {
      kernel: os.release(),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? '?',
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      sctp: hostSctp ? 'native' : wantUml ? 'user-mode-linux' : 'unavailable',
      date: new Date().toISOString(),
    },
    settings: {
      seconds: o.seconds,
      pings: o.pings,
      repeat: o.repeat,
      figures: `median of ${o.repeat} repeat(s), each of every run and baseline in turn; spread = min..max`,
      pingpong:
        'lowcomms: send()+flush() of one message, awaiting the echo from node 2 (a JS handler); ' +
        'net-pingpong: node:net client here, echo server in a child process; c-pingpong: two C processes, blocking read/write; ' +
        'c-pingpong-epoll / -rxthread: two C processes in epoll, the socket waking the answering thread or a receive thread handing over through an eventfd; ' +
        'floor/net: (net-pingpong + rxthread - epoll) / net-pingpong, the rtt/net of a design with a receive thread whose JS side costs what node:net\'s does; all TCP NODELAY on loopback',
      sctp: SCTP_SETTINGS,
      batching: {
        default: "library default: flush 'immediate' after each tick's send() run (staged, coalesced)",
        immediate: 'flush() after every send(): one native submit per message',
      },
      midcomms: '3.2 (sequence numbers, acks) on',
      auth: o.auth
        ? `each configuration without and with peer authentication (HMAC-SHA256 handshake per connection, then every record ` +
          `sealed with AES-256-GCM under per-connection keys): records ${o.authRecords.join(', ')}`
        : 'off',
    },
    runs: [],
    baselines: [],
  };
  // Repeats interleave lowcomms and the baselines, so a noisy minute hits every figure alike.
  const runs: BenchRun[] = [];
  const baselines: BenchBaseline[] = [];
  const counts = new Map<number, number>();
  for (let rep = 0; rep < o.repeat; rep++) {
    const these: BenchRun[] = [];
    for (const t of local) for (const auth of modes) these.push(...(await benchTransport(main, t, kernel, o, progress, auth)));
    runs.push(...these);
    if (o.baselines) {
      if (rep === 0) for (const r of these) counts.set(r.size, Math.max(counts.get(r.size) ?? 0, r.messages));
      baselines.push(...(await runBaselines(o, kernel, progress, counts, main)));
    }
  }
  result.runs.push(...aggregateRuns(runs));
  result.baselines.push(...aggregateBaselines(baselines));
  if (wantUml) {
    const inner = await runInUml(o, ['tcp', 'sctp'], progress, main);
    result.runs.push(...inner.runs);
    result.baselines.push(...inner.baselines);
    result.host.uml = inner.host;
  }
  progress.stop();
  return result;
}
