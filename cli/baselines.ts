/**
 * What lowcomms is measured against, in the same run:
 * - netbench-concat: what a Node user would write instead: node:net, one connection, the
 *   application batching 256 messages per write with Buffer.concat, framed by the same
 *   16-byte header, NODELAY (the logic of the team's baseline/netbench.mjs);
 * - rawtcp: a C program close to the loopback limit (cli/rawtcp.c), when a C
 *   compiler is present;
 * - net-pingpong: the round trip a Node user gets from node:net: this process writes one
 *   framed message, an echo server in a child process (`lowcomms __net-echo`) writes it
 *   back, NODELAY on both sides;
 * - c-pingpong: the same between two C processes with blocking read/write
 *   (cli/pingpong.c, compiled on the spot like rawtcp).
 * - c-pingpong-epoll / c-pingpong-rxthread: the same in epoll, the socket waking the thread
 *   that answers, or a receive thread handing each message over through an eventfd
 *   (cli/rxthread.c): what the design's receive thread alone adds to a round trip.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface BaselineResult {
  name: 'netbench-concat' | 'rawtcp';
  size: number;
  msgsPerSec: number;
  seconds: number;
  messages: number;
}

const HDR = 16;

/**
 * Calls `frame` with every whole framed message (16-byte header, h_length at byte 12)
 * the socket delivers, carrying a partial one over to the next read: the framing code
 * a node:net user writes.
 */
function onFrames(sock: net.Socket, frame: (f: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= HDR) {
      const len = buf.readUInt16LE(off + 12);
      if (buf.length - off < len) break;
      frame(buf.subarray(off, off + len));
      off += len;
    }
    pending = buf.subarray(off);
  });
}

/** node:net with hand batching, in this process: a server counts framed messages. */
export function netbenchConcat(size: number, count: number): Promise<BaselineResult> {
  return new Promise((resolve, reject) => {
    let t0 = 0;
    const server = net.createServer((sock) => {
      let seen = 0;
      onFrames(sock, () => {
        if (++seen === count) {
          const seconds = (performance.now() - t0) / 1000;
          sock.end();
          server.close();
          resolve({ name: 'netbench-concat', size, msgsPerSec: count / seconds, seconds, messages: count });
        }
      });
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address() as net.AddressInfo;
      const client = net.connect(addr.port, '127.0.0.1', () => {
        client.setNoDelay(true);
        const template = Buffer.alloc(size);
        template.writeUInt16LE(size, 12);
        let i = 0;
        t0 = performance.now();
        const pump = (): void => {
          while (i < count) {
            const k = Math.min(256, count - i);
            const batch: Buffer[] = [];
            for (let j = 0; j < k; j++) batch.push(Buffer.from(template));
            i += k;
            if (!client.write(Buffer.concat(batch))) {
              client.once('drain', pump);
              return;
            }
          }
        };
        pump();
      });
      client.on('error', reject);
      client.on('end', () => client.destroy());
    });
  });
}

const compiled = new Map<string, string | null>();

/** Compiles cli/NAME.c once per process (null when there is no C compiler). */
function compileC(packageRoot: string, name: string): string | null {
  if (compiled.has(name)) return compiled.get(name)!;
  const src = path.join(packageRoot, 'cli', `${name}.c`);
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), `lowcomms-${name}-`)), name);
  let bin: string | null = null;
  try {
    execFileSync('cc', ['-O2', '-pthread', '-o', out, src], { stdio: 'ignore' });
    bin = out;
  } catch {
    bin = null;
  }
  compiled.set(name, bin);
  return bin;
}

export const rawtcpPath = (packageRoot: string): string | null => compileC(packageRoot, 'rawtcp');
export const pingpongPath = (packageRoot: string): string | null => compileC(packageRoot, 'pingpong');
export const rxthreadPath = (packageRoot: string): string | null => compileC(packageRoot, 'rxthread');

export interface PingBaselineResult {
  name: 'net-pingpong' | 'c-pingpong' | 'c-pingpong-epoll' | 'c-pingpong-rxthread';
  size: number;
  count: number;
  rttP50Us: number;
  rttP99Us: number;
}

const pctOf = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : 0;

/** Runs one of the C baselines and parses its one line of output. */
function runC(binary: string, size: number, count: number, line: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const p = spawn(binary, [String(size), String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      const m = out.match(line);
      if (code !== 0 || !m) return reject(new Error(`${path.basename(binary)} exited ${code}: ${out}`));
      resolve(m);
    });
  });
}

/** Two C processes, blocking read/write: the loopback round-trip floor. */
export async function cPingpong(binary: string, size: number, count: number): Promise<PingBaselineResult> {
  const m = await runC(binary, size, count, /p50=([\d.]+) p99=([\d.]+)/);
  return { name: 'c-pingpong', size, count, rttP50Us: Number(m[1]), rttP99Us: Number(m[2]) };
}

/**
 * Two C processes in epoll, once woken by the socket itself and once through a receive
 * thread and an eventfd (cli/rxthread.c): the difference is what the design's receive
 * thread costs a round trip.
 */
export async function cRxthread(binary: string, size: number, count: number): Promise<[PingBaselineResult, PingBaselineResult]> {
  const m = await runC(binary, size, count, /direct p50 ([\d.]+) p99 ([\d.]+)\nhop p50 ([\d.]+) p99 ([\d.]+)/);
  return [
    { name: 'c-pingpong-epoll', size, count, rttP50Us: Number(m[1]), rttP99Us: Number(m[2]) },
    { name: 'c-pingpong-rxthread', size, count, rttP50Us: Number(m[3]), rttP99Us: Number(m[4]) },
  ];
}

/** The echo side of net-pingpong, in its own process: every whole frame goes straight back. */
export function netEchoMain(): void {
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    onFrames(sock, (f) => sock.write(f));
    sock.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as net.AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

/** node:net ping-pong against an echo server in a child process (`main __net-echo`). */
export function netPingpong(main: string, size: number, count: number): Promise<PingBaselineResult> {
  return new Promise((resolve, reject) => {
    const child = fork(main, ['__net-echo'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const done = (err: Error | null, r?: PingBaselineResult) => {
      child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(r!);
    };
    child.on('error', (e) => done(e));
    child.once('message', (m: { port: number }) => {
      const sock = net.connect(m.port, '127.0.0.1', () => {
        sock.setNoDelay(true);
        const msg = Buffer.alloc(size);
        msg.writeUInt16LE(size, 12);
        const rtts: number[] = [];
        let got = 0;
        let t0 = 0;
        const ping = () => {
          got = 0;
          t0 = performance.now();
          sock.write(msg);
        };
        sock.on('data', (chunk: Buffer) => {
          got += chunk.length;
          if (got < size) return;
          rtts.push((performance.now() - t0) * 1000);
          if (rtts.length < count) return ping();
          sock.destroy();
          rtts.sort((a, b) => a - b);
          done(null, { name: 'net-pingpong', size, count, rttP50Us: pctOf(rtts, 50), rttP99Us: pctOf(rtts, 99) });
        });
        ping();
      });
      sock.on('error', (e) => done(e));
    });
  });
}

export async function rawtcp(binary: string, size: number, count: number): Promise<BaselineResult> {
  const m = await runC(binary, size, count, /msgs_per_s=(\d+) seconds=([\d.]+)/);
  return { name: 'rawtcp', size, msgsPerSec: Number(m[1]), seconds: Number(m[2]), messages: count };
}
