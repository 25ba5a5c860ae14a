/**
 * Drives the guest kernel's own DLM (dlm.ko) the way dlm_controld and libdlm would,
 * without either: the cluster and its members through configfs, a lockspace and locks
 * through the misc devices /dev/dlm-control and /dev/dlm_<name>, and the lockspace
 * uevents answered through sysfs. Layouts follow the 6.1 uapi headers
 * (linux/dlm_device.h) for x86_64; see ../shared/kernel-interop.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModules, waitFor } from './guest';

const CONFIG = '/sys/kernel/config';
const CLUSTER = `${CONFIG}/dlm/cluster`;

/** struct dlm_write_request: version {6,0,2}, cmd, is64bit; the union starts at 16. */
const DEVICE_VERSION = [6, 0, 2] as const;
const WRITE_REQUEST_MIN = 120; // sizeof(struct dlm_write_request) on x86_64
const USER_LOCK = 1;
const USER_UNLOCK = 2;
const USER_CREATE_LOCKSPACE = 4;
const USER_REMOVE_LOCKSPACE = 5;
const LSFLG_FORCEFREE = 2;
export const LOCK_EX = 5;
const LKF_NOQUEUE = 1;

export interface KernelNode {
  nodeid: number;
  addr: string; // IPv4
  local: boolean;
}

function writeAttr(file: string, value: string | Buffer): void {
  fs.writeFileSync(file, value);
}

/** struct sockaddr_storage (128 bytes) holding AF_INET, port 0 and `addr`. */
function sockaddrStorage(addr: string): Buffer {
  const b = Buffer.alloc(128);
  b.writeUInt16LE(2, 0); // AF_INET
  addr.split('.').forEach((o, i) => (b[4 + i] = Number(o)));
  return b;
}

function requestHeader(cmd: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, WRITE_REQUEST_MIN));
  b.writeUInt32LE(DEVICE_VERSION[0], 0);
  b.writeUInt32LE(DEVICE_VERSION[1], 4);
  b.writeUInt32LE(DEVICE_VERSION[2], 8);
  b[12] = cmd;
  b[13] = 1; // is64bit
  return b;
}

/** A misc device's node in our devtmpfs mount (it appears a moment after registration). */
function miscDevice(dir: string, name: string): string {
  const dev = path.join(dir, name);
  if (!fs.existsSync(dev)) throw new Error(`${dev} does not exist (misc device ${name} not registered?)`);
  return dev;
}

let helperPath: string | undefined;

/** Compiles dlmdev.c once per process (cc is there: the addon's build needs it). */
function dlmdevHelper(): string {
  if (helperPath) return helperPath;
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lc-dlmdev-bin-')), 'dlmdev');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, path.join(__dirname, 'dlmdev.c')]);
  helperPath = out;
  return out;
}

/**
 * One open DLM device, served by a dlmdev process: each write() and read() is exactly
 * one system call (see dlmdev.c for why not fs.write). Requests are answered in order.
 */
class Device {
  private readonly proc: ChildProcess;
  private readonly waiting: Array<{ resolve: (line: string) => void; reject: (e: Error) => void }> = [];
  private buf = '';
  private dead: Error | undefined;

  constructor(readonly dev: string) {
    this.proc = spawn(dlmdevHelper(), [dev], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiting.shift()?.resolve(line);
      }
    });
    this.proc.on('exit', (code) => {
      this.dead = new Error(`dlmdev on ${dev} exited (${code})`);
      for (const w of this.waiting.splice(0)) w.reject(this.dead);
    });
  }

  private next(timeoutMs: number, what: string): Promise<string> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} on ${this.dev}: no answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        resolve: (l) => (clearTimeout(t), resolve(l)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
    });
  }

  async opened(): Promise<void> {
    const l = await this.next(5000, 'open');
    if (l !== 'o') throw new Error(`open ${this.dev}: ${l}`);
  }

  /** write(2) once; resolves with its return value, rejects with the errno. */
  async write(req: Buffer, timeoutMs: number, what: string): Promise<number> {
    const p = this.next(timeoutMs, what);
    this.proc.stdin!.write(`w ${req.toString('hex')}\n`);
    const l = await p;
    if (!l.startsWith('r ')) throw new Error(`${what}: ${l.startsWith('e ') ? `errno ${l.slice(2)}` : l}`);
    return Number(l.slice(2));
  }

  /** read(2) once (it blocks until the kernel has a result). */
  async read(timeoutMs: number, what: string): Promise<Buffer> {
    const p = this.next(timeoutMs, what);
    this.proc.stdin!.write('r\n');
    const l = await p;
    if (!l.startsWith('d ')) throw new Error(`${what}: ${l.startsWith('e ') ? `errno ${l.slice(2)}` : l}`);
    return Buffer.from(l.slice(2), 'hex');
  }

  /** Closes the device (dlmdev exits at end of input); resolves once it has. */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.stdin!.end();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(t);
  }
}

export interface LockResult {
  lkid: number;
  status: number;
}

/** The kernel DLM of this (guest) kernel, configured as one node of a cluster. */
export class KernelDlm {
  readonly devDir: string;
  private lsName = '';
  private ls: Device | undefined;
  private minor = 0;

  constructor() {
    loadModules(['configfs', 'dlm']);
    if (!fs.existsSync(`${CONFIG}/dlm`)) execFileSync('mount', ['-t', 'configfs', 'none', CONFIG]);
    // The guest's /dev is the host's directory (hostfs): mount a devtmpfs of our own.
    this.devDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lc-dlmdev-'));
    execFileSync('mount', ['-t', 'devtmpfs', 'none', this.devDir]);
  }

  /** A lockspace is joined (created and not yet removed). */
  get joined(): boolean {
    return this.ls !== undefined;
  }

  /** Unmounts the devtmpfs (call last). */
  dispose(): void {
    try {
      execFileSync('umount', [this.devDir]);
      fs.rmdirSync(this.devDir);
    } catch {
      // a device still open: the guest powers off anyway
    }
  }

  /** Writes the cluster and its nodes to configfs (dlm_controld's job). */
  configure(opts: { protocol: 'tcp' | 'sctp'; port: number; nodes: KernelNode[]; clusterName?: string }): void {
    if (!fs.existsSync(CLUSTER)) fs.mkdirSync(CLUSTER);
    writeAttr(`${CLUSTER}/cluster_name`, opts.clusterName ?? 'lowcomms');
    writeAttr(`${CLUSTER}/protocol`, opts.protocol === 'sctp' ? '1' : '0');
    writeAttr(`${CLUSTER}/tcp_port`, String(opts.port));
    writeAttr(`${CLUSTER}/log_debug`, '1');
    writeAttr(`${CLUSTER}/recover_timer`, '2');
    for (const n of opts.nodes) {
      const dir = `${CLUSTER}/comms/${n.nodeid}`;
      if (!fs.existsSync(dir)) fs.mkdirSync(dir);
      writeAttr(`${dir}/nodeid`, String(n.nodeid));
      writeAttr(`${dir}/local`, n.local ? '1' : '0');
      writeAttr(`${dir}/addr`, sockaddrStorage(n.addr));
    }
  }

  /** Removes what configure() and the lockspaces left in configfs (the module stays). */
  unconfigure(): void {
    if (!fs.existsSync(CLUSTER)) return;
    for (const sub of ['spaces', 'comms']) {
      const d = `${CLUSTER}/${sub}`;
      if (!fs.existsSync(d)) continue;
      for (const e of fs.readdirSync(d)) {
        if (sub === 'spaces') {
          const nodes = `${d}/${e}/nodes`;
          if (fs.existsSync(nodes)) for (const n of fs.readdirSync(nodes)) fs.rmdirSync(`${nodes}/${n}`);
        }
        fs.rmdirSync(`${d}/${e}`);
      }
    }
    fs.rmdirSync(CLUSTER);
  }

  /**
   * Creates lockspace `name` with these members and joins it: the create write blocks
   * inside the kernel until recovery with every member has succeeded, while we answer
   * the join uevent through sysfs (global id, start, event done) as dlm_controld does.
   */
  async createLockspace(name: string, globalId: number, members: number[], timeoutMs = 30_000): Promise<void> {
    for (const id of members) {
      const dir = `${CLUSTER}/spaces/${name}/nodes/${id}`;
      fs.mkdirSync(dir, { recursive: true });
      writeAttr(`${dir}/nodeid`, String(id));
      writeAttr(`${dir}/weight`, '1');
    }
    const ctl = new Device(miscDevice(this.devDir, 'dlm-control'));
    try {
      await ctl.opened();
      const req = requestHeader(USER_CREATE_LOCKSPACE, 24 + name.length + 1);
      req.write(name, 24, 'latin1'); // lspace: flags 0, minor 0, name
      const created = ctl.write(req, timeoutMs, `create lockspace ${name}`);
      let failed: unknown;
      created.catch((e: unknown) => (failed = e));
      const sys = `/sys/kernel/dlm/${name}`;
      if (!(await waitFor(() => fs.existsSync(`${sys}/event_done`) || failed !== undefined, timeoutMs)))
        throw new Error(`lockspace ${name} never appeared in sysfs`);
      if (failed) throw failed;
      writeAttr(`${sys}/id`, String(globalId));
      writeAttr(`${sys}/control`, '1');
      writeAttr(`${sys}/event_done`, '0');
      this.minor = await created;
    } finally {
      await ctl.close();
    }
    this.lsName = name;
    const dev = path.join(this.devDir, `dlm_${name}`);
    await waitFor(() => fs.existsSync(dev), 2000);
    this.ls = new Device(miscDevice(this.devDir, `dlm_${name}`));
    await this.ls.opened();
  }

  /** Requests lock `resource` in `mode` and waits for its completion AST (NOQUEUE). */
  async lock(resource: string, mode = LOCK_EX, timeoutMs = 15_000): Promise<LockResult> {
    const req = requestHeader(USER_LOCK, 120 + resource.length);
    const p = 16;
    req[p] = mode;
    req[p + 1] = resource.length;
    req.writeUInt32LE(LKF_NOQUEUE, p + 4);
    // castparam, castaddr, lksb must be non-NULL: they are only echoed back in the result.
    req.writeBigUInt64LE(1n, p + 32);
    req.writeBigUInt64LE(0x1000n, p + 40);
    req.writeBigUInt64LE(0x2000n, p + 64);
    req.write(resource, p + 104, 'latin1');
    const lkid = await this.lsDevice().write(req, timeoutMs, `lock ${resource}`);
    return { lkid, status: await this.readResult(timeoutMs) };
  }

  /** Unlocks a lock taken by lock() and waits for the unlock AST. */
  async unlock(lkid: number, timeoutMs = 15_000): Promise<number> {
    const req = requestHeader(USER_UNLOCK, 120);
    const p = 16;
    req.writeUInt32LE(lkid, p + 8);
    req.writeBigUInt64LE(1n, p + 32);
    req.writeBigUInt64LE(0x1000n, p + 40);
    req.writeBigUInt64LE(0x2000n, p + 64);
    await this.lsDevice().write(req, timeoutMs, `unlock ${lkid}`);
    return this.readResult(timeoutMs);
  }

  /** struct dlm_lock_result: lksb.sb_status at 40 (0 granted, -65538 DLM_EUNLOCK). */
  private async readResult(timeoutMs: number): Promise<number> {
    const buf = await this.lsDevice().read(timeoutMs, 'lock result');
    if (buf.length < 72) throw new Error(`short dlm_lock_result: ${buf.length} bytes`);
    return buf.readInt32LE(40);
  }

  private lsDevice(): Device {
    if (!this.ls) throw new Error('no lockspace joined');
    return this.ls;
  }

  /**
   * Leaves the lockspace: closes its device, then REMOVE_LOCKSPACE (FORCEFREE); the
   * leave uevent is answered at once (the kernel waits for it). For the last lockspace
   * the kernel runs the FIN handshake with every node before the write returns.
   */
  async removeLockspace(timeoutMs = 30_000): Promise<number> {
    await this.ls?.close();
    this.ls = undefined;
    const ctl = new Device(miscDevice(this.devDir, 'dlm-control'));
    const t0 = Date.now();
    try {
      await ctl.opened();
      const req = requestHeader(USER_REMOVE_LOCKSPACE, 24);
      req.writeUInt32LE(LSFLG_FORCEFREE, 16);
      req.writeUInt32LE(this.minor, 20);
      const sys = `/sys/kernel/dlm/${this.lsName}/event_done`;
      // The kernel waits on a flag that this write sets: writing it first is safe.
      writeAttr(sys, '0');
      await ctl.write(req, timeoutMs, `leave lockspace ${this.lsName}`);
    } finally {
      await ctl.close();
    }
    const dir = `${CLUSTER}/spaces/${this.lsName}`;
    if (fs.existsSync(`${dir}/nodes`)) for (const n of fs.readdirSync(`${dir}/nodes`)) fs.rmdirSync(`${dir}/nodes/${n}`);
    if (fs.existsSync(dir)) fs.rmdirSync(dir);
    return Date.now() - t0;
  }
}
