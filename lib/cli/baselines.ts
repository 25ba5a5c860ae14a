/**
 * What lowcomms is measured against, in the same run:
 * - netbench-concat: what a Node user would write instead: node:net, one connection, the
 *   application batching 256 messages per write with Buffer.concat, framed by the same
 *   16-byte header, NODELAY (the logic of the team's baseline/netbench.mjs);
 * - rawtcp: a C program close to the loopback limit (lib/cli/rawtcp.c), when a C
 *   compiler is present.
 */
import { execFileSync, spawn } from 'node:child_process';
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

/** node:net with hand batching, in this process: a server counts framed messages. */
export function netbenchConcat(size: number, count: number): Promise<BaselineResult> {
  const HDR = 16;
  return new Promise((resolve, reject) => {
    let t0 = 0;
    const server = net.createServer((sock) => {
      let pending: Buffer = Buffer.alloc(0);
      let seen = 0;
      sock.on('data', (chunk: Buffer) => {
        const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        let off = 0;
        while (buf.length - off >= HDR) {
          const len = buf.readUInt16LE(off + 12);
          if (buf.length - off < len) break;
          off += len;
          seen++;
        }
        pending = buf.subarray(off);
        if (seen === count) {
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

let rawtcpBinary: string | null | undefined;

/** Compiles lib/cli/rawtcp.c once (null when there is no C compiler). */
export function rawtcpPath(packageRoot: string): string | null {
  if (rawtcpBinary !== undefined) return rawtcpBinary;
  const src = path.join(packageRoot, 'lib', 'cli', 'rawtcp.c');
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-rawtcp-')), 'rawtcp');
  try {
    execFileSync('cc', ['-O2', '-pthread', '-o', out, src], { stdio: 'ignore' });
    rawtcpBinary = out;
  } catch {
    rawtcpBinary = null;
  }
  return rawtcpBinary;
}

export function rawtcp(binary: string, size: number, count: number): Promise<BaselineResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(binary, [String(size), String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      const m = out.match(/msgs_per_s=(\d+) seconds=([\d.]+)/);
      if (code !== 0 || !m) return reject(new Error(`rawtcp exited ${code}: ${out}`));
      resolve({ name: 'rawtcp', size, msgsPerSec: Number(m[1]), seconds: Number(m[2]), messages: count });
    });
  });
}
