/**
 * Raw peers for wire-level tests: a configured node played by plain TCP sockets.
 *
 * lowcomms sends only on the connection it opens to a node's address and only reads
 * the connections it accepts (docs/protocol.md, "Kernel behaviour lowcomms relies on"), and it accepts only from addresses
 * in its node table. So a raw peer for node N (address A) is two things:
 *  - a capture server listening on A and the cluster port: everything lowcomms sends
 *    to N arrives there and is split into frames by h_length (`frames`);
 *  - feed connections bound to A (`localAddress`) connecting to lowcomms: what is
 *    written there, lowcomms reads as coming from N, in whatever chunks we choose.
 *
 * The frame builders below write the spec's layout (§1.2, §1.4, §3.3) field by field;
 * they deliberately do not use lib/dlm.ts, so that tests do not check our encoder
 * against itself. Golden frames in the tests are hex literals written from the spec.
 */
import net from 'node:net';

export const V31 = 0x00030001;
export const V32 = 0x00030002;
export const CMD = { MSG: 1, RCOM: 2, OPTS: 3, ACK: 4, FIN: 5 } as const;

/** Hex with any whitespace and `#` comments to the end of the line. */
export function hex(s: string): Buffer {
  const digits = s.replace(/#.*$/gm, '').replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(digits)) throw new Error(`bad hex literal: ${digits}`);
  return Buffer.from(digits, 'hex');
}

/** A bare 16-byte header (§1.2), every field given. */
export function header(h: {
  version?: number;
  /** h_lockspace, or h_seq for DLM_OPTS / DLM_ACK. */
  word: number;
  nodeid: number;
  length: number;
  cmd: number;
  pad?: number;
}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE((h.version ?? V32) >>> 0, 0);
  b.writeUInt32LE(h.word >>> 0, 4);
  b.writeUInt32LE(h.nodeid >>> 0, 8);
  b.writeUInt16LE(h.length & 0xffff, 12);
  b[14] = h.cmd;
  b[15] = h.pad ?? 0;
  return b;
}

/** A whole application message (header + body), as it travels inside OPTS or unwrapped. */
export function message(m: {
  nodeid: number;
  lockspace?: number;
  cmd?: number;
  version?: number;
  body?: Uint8Array | string;
  /** Override h_length (to build lying frames). */
  length?: number;
}): Buffer {
  const body = typeof m.body === 'string' ? Buffer.from(m.body) : Buffer.from(m.body ?? []);
  const h = header({
    version: m.version ?? V32,
    word: m.lockspace ?? 0,
    nodeid: m.nodeid,
    length: m.length ?? 16 + body.length,
    cmd: m.cmd ?? CMD.MSG,
  });
  return Buffer.concat([h, body]);
}

/** A DLM_RCOM: rc_type, rc_result, rc_id, rc_seq, rc_seq_reply (48 bytes) + rc_buf. */
export function rcom(r: { nodeid: number; lockspace?: number; rcType: number; version?: number; buf?: Uint8Array; totalLength?: number }): Buffer {
  const fixed = Buffer.alloc(32);
  fixed.writeUInt32LE(r.rcType, 0);
  const body = Buffer.concat([fixed, Buffer.from(r.buf ?? [])]);
  const whole = message({ nodeid: r.nodeid, lockspace: r.lockspace, cmd: CMD.RCOM, version: r.version, body });
  if (r.totalLength === undefined) return whole;
  const cut = Buffer.alloc(r.totalLength);
  whole.copy(cut, 0, 0, Math.min(whole.length, r.totalLength));
  cut.writeUInt16LE(r.totalLength, 12);
  return cut;
}

/** The 24-byte DLM_OPTS wrapper + options + inner message (§1.4). */
export function opts(o: {
  seq: number;
  nodeid: number;
  inner: Uint8Array;
  /** Defaults to the inner message's h_cmd. */
  nextcmd?: number;
  /** TLV option bytes between the wrapper and the inner message. */
  options?: Uint8Array;
  /** Override o_optlen (defaults to options.length). */
  optlen?: number;
  version?: number;
  /** Override the outer h_length. */
  length?: number;
}): Buffer {
  const options = Buffer.from(o.options ?? []);
  const w = Buffer.alloc(24);
  const total = 24 + options.length + o.inner.length;
  header({ version: o.version ?? V32, word: o.seq, nodeid: o.nodeid, length: o.length ?? total, cmd: CMD.OPTS }).copy(w);
  w[16] = o.nextcmd ?? o.inner[14] ?? 0;
  w[17] = 0;
  w.writeUInt16LE(o.optlen ?? options.length, 18);
  w.writeUInt32LE(0, 20);
  return Buffer.concat([w, options, o.inner]);
}

/** An OPTS-wrapped DLM_MSG in one go. */
export function seqMsg(seq: number, nodeid: number, body: Uint8Array | string = '', lockspace = 0): Buffer {
  return opts({ seq, nodeid, inner: message({ nodeid, lockspace, body }) });
}

/** DLM_ACK: a bare header, h_seq = the receiver's next expected sequence number. */
export function ack(seq: number, nodeid: number): Buffer {
  return header({ word: seq, nodeid, length: 16, cmd: CMD.ACK });
}

/** DLM_FIN: OPTS-wrapped (40 bytes), sequenced. */
export function fin(seq: number, nodeid: number): Buffer {
  return opts({ seq, nodeid, inner: header({ word: 0, nodeid, length: 16, cmd: CMD.FIN }) });
}

/** One frame as captured. */
export interface Frame {
  /** Which capture connection it arrived on (0 = the first lowcomms opened to us). */
  conn: number;
  bytes: Buffer;
  version: number;
  /** h_lockspace or h_seq. */
  word: number;
  nodeid: number;
  length: number;
  cmd: number;
  /** For DLM_OPTS: o_nextcmd and the inner message. */
  nextcmd?: number;
  inner?: Buffer;
}

export function parseFrame(bytes: Buffer, conn = 0): Frame {
  const f: Frame = {
    conn,
    bytes,
    version: bytes.readUInt32LE(0),
    word: bytes.readUInt32LE(4),
    nodeid: bytes.readUInt32LE(8),
    length: bytes.readUInt16LE(12),
    cmd: bytes[14]!,
  };
  if (f.cmd === CMD.OPTS && bytes.length >= 24) {
    f.nextcmd = bytes[16]!;
    f.inner = bytes.subarray(24 + bytes.readUInt16LE(18));
  }
  return f;
}

/** Splits a byte stream into frames by h_length; returns the frames and the leftover. */
export function splitFrames(buf: Buffer): { frames: Buffer[]; rest: Buffer; bad: boolean } {
  const frames: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 16) {
    const len = buf.readUInt16LE(off + 12);
    if (len < 16 || len > 4096) return { frames, rest: buf.subarray(off), bad: true };
    if (buf.length - off < len) break;
    frames.push(buf.subarray(off, off + len));
    off += len;
  }
  return { frames, rest: buf.subarray(off), bad: false };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface WriteOptions {
  /** Cut into chunks of this many bytes, or at these offsets; one write per chunk. */
  chunks?: number | number[];
  /** Pause between chunks (ms, default 2) so that lowcomms reads them separately. */
  pauseMs?: number;
}

/** A connection from the raw peer to lowcomms: lowcomms reads what we write here. */
export class FeedConn {
  /** Bytes lowcomms wrote on this accepted connection: it must never send on one (§8.2). */
  received = 0;
  closedByPeer = false;
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => (this.received += d.length));
    socket.on('error', () => undefined); // ECONNRESET when lowcomms drops us: expected
    this.closed = new Promise<void>((r) =>
      socket.once('close', () => {
        this.closedByPeer = true;
        r();
      }),
    );
  }

  get isClosed(): boolean {
    return this.closedByPeer || this.socket.destroyed;
  }

  /** Writes `data` (optionally in chunks); resolves when every chunk was handed to the kernel. */
  async write(data: Uint8Array | Uint8Array[], o: WriteOptions = {}): Promise<void> {
    const buf = Buffer.concat((Array.isArray(data) ? data : [data]).map((d) => Buffer.from(d)));
    const cuts: number[] = [];
    if (typeof o.chunks === 'number') {
      for (let i = o.chunks; i < buf.length; i += o.chunks) cuts.push(i);
    } else if (o.chunks) {
      cuts.push(...o.chunks.filter((c) => c > 0 && c < buf.length).sort((a, b) => a - b));
    }
    let prev = 0;
    for (const cut of [...cuts, buf.length]) {
      const piece = buf.subarray(prev, cut);
      prev = cut;
      if (piece.length === 0) continue;
      await new Promise<void>((resolve, reject) =>
        this.socket.write(piece, (err) => (err ? reject(err) : resolve())),
      );
      if (cut < buf.length) await sleep(o.pauseMs ?? 2);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface RawPeerOptions {
  /** The node this peer plays. */
  nodeid: number;
  /** Its configured address (we listen there and connect from there). */
  addr: string;
  /** The cluster port. */
  port: number;
  /** Where lowcomms listens. */
  target: string;
  /** Listen for lowcomms' outgoing connection (default true). */
  capture?: boolean;
}

/** A configured node played by raw sockets. */
export class RawPeer {
  /** Every frame lowcomms sent to this node, in arrival order. */
  readonly frames: Frame[] = [];
  /** Set when lowcomms sent a length outside [16, 4096] (its own encoder broke framing). */
  badStream = false;
  /** Connections lowcomms opened to us. */
  readonly inbound: net.Socket[] = [];
  readonly feeds: FeedConn[] = [];
  private server: net.Server | undefined;
  private feed: FeedConn | undefined;

  private constructor(readonly o: RawPeerOptions) {}

  static async start(o: RawPeerOptions): Promise<RawPeer> {
    const p = new RawPeer(o);
    if (o.capture ?? true) await p.listen();
    return p;
  }

  get nodeid(): number {
    return this.o.nodeid;
  }

  private async listen(): Promise<void> {
    const server = net.createServer((s) => {
      const conn = this.inbound.length;
      this.inbound.push(s);
      s.on('error', () => undefined);
      let buf: Buffer = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const r = splitFrames(buf);
        for (const f of r.frames) this.frames.push(parseFrame(Buffer.from(f), conn));
        if (r.bad) {
          this.badStream = true;
          buf = Buffer.alloc(0);
        } else {
          buf = Buffer.from(r.rest);
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.addr, () => resolve());
    });
    this.server = server;
  }

  /** Opens a new feed connection (it becomes the default one for send()). */
  async connect(): Promise<FeedConn> {
    const s = net.connect({ host: this.o.target, port: this.o.port, localAddress: this.o.addr });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    const f = new FeedConn(s);
    this.feeds.push(f);
    this.feed = f;
    return f;
  }

  /** The current feed connection, opened (or reopened after lowcomms closed it) on demand. */
  async conn(): Promise<FeedConn> {
    if (!this.feed || this.feed.isClosed) return this.connect();
    return this.feed;
  }

  /** Writes on the current feed connection. */
  async send(data: Uint8Array | Uint8Array[], o: WriteOptions = {}): Promise<FeedConn> {
    const f = await this.conn();
    await f.write(data, o);
    return f;
  }

  /** Index to pass to since()/waitFor() to look only at frames captured from now on. */
  mark(): number {
    return this.frames.length;
  }

  since(mark: number): Frame[] {
    return this.frames.slice(mark);
  }

  /** The first frame at index >= from that matches; rejects after `ms`. */
  async waitFor(pred: (f: Frame) => boolean, what: string, o: { from?: number; ms?: number } = {}): Promise<Frame> {
    const deadline = Date.now() + (o.ms ?? 5000);
    for (;;) {
      const f = this.frames.slice(o.from ?? 0).find(pred);
      if (f) return f;
      if (Date.now() > deadline) {
        const seen = this.frames.slice(o.from ?? 0).map(describeFrame).join(' | ');
        throw new Error(`node ${this.o.nodeid} peer: timed out waiting for ${what}; captured: ${seen || 'nothing'}`);
      }
      await sleep(5);
    }
  }

  /** Resolves once at least `n` frames arrived since `from`. */
  async waitCount(n: number, what: string, o: { from?: number; ms?: number } = {}): Promise<Frame[]> {
    const from = o.from ?? 0;
    const deadline = Date.now() + (o.ms ?? 5000);
    while (this.frames.length - from < n) {
      if (Date.now() > deadline) {
        const seen = this.frames.slice(from).map(describeFrame).join(' | ');
        throw new Error(`node ${this.o.nodeid} peer: timed out waiting for ${what}; captured: ${seen || 'nothing'}`);
      }
      await sleep(5);
    }
    return this.frames.slice(from);
  }

  async close(): Promise<void> {
    for (const f of this.feeds) f.destroy();
    for (const s of this.inbound) s.destroy();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

/** A short text form of a frame for failure messages. */
export function describeFrame(f: Frame): string {
  const v = f.version === V32 ? '3.2' : f.version === V31 ? '3.1' : `v${f.version.toString(16)}`;
  const name = ['?', 'MSG', 'RCOM', 'OPTS', 'ACK', 'FIN'][f.cmd] ?? `cmd${f.cmd}`;
  if (f.cmd === CMD.OPTS) return `${v} OPTS seq ${f.word} next ${f.nextcmd} len ${f.length}`;
  if (f.cmd === CMD.ACK) return `${v} ACK ${f.word}`;
  return `${v} ${name} ls ${f.word} len ${f.length}`;
}

/** Is this an ACK with h_seq = seq (any seq if omitted)? */
export const isAck = (seq?: number) => (f: Frame) => f.cmd === CMD.ACK && (seq === undefined || f.word === seq);
/** Is this an OPTS-wrapped FIN? */
export const isFin = (f: Frame) => f.cmd === CMD.OPTS && f.nextcmd === CMD.FIN;
/** Is this an OPTS-wrapped DLM_MSG/RCOM? */
export const isSeqMsg = (f: Frame) => f.cmd === CMD.OPTS && (f.nextcmd === CMD.MSG || f.nextcmd === CMD.RCOM);
