/**
 * An on-path attacker for TCP with auth: a relay that node 1 takes for node 2 (and one
 * that node 2 takes for node 1), forwarding everything, and on the first connection
 * from node 1 letting the handshake through and then doing one thing to the record
 * stream (docs/protocol.md, "Records"): flip a byte, inject a record, replay one, drop
 * one, or swap two. Addresses (loopback, so no privileges): node 1 127.0.0.1, node 2
 * 127.0.0.2; node 1 reaches node 2 at 127.0.0.3 (relay -> 127.0.0.2, from 127.0.0.4),
 * node 2 reaches node 1 at 127.0.0.4 (relay -> 127.0.0.1, from 127.0.0.3).
 */
import net from 'node:net';
import type { NodeConfig } from '../../lib';

export type Tamper = 'flip' | 'inject' | 'inject-dlm' | 'replay' | 'drop' | 'reorder' | 'none';

const HELLO = 52;
const PROOF = 36;
const TAG = 16;

/** The node tables: node 1's and node 2's view, each seeing the other through a relay. */
export function relayedTables(): { node1: NodeConfig[]; node2: NodeConfig[] } {
  return {
    node1: [
      { nodeid: 1, addrs: ['127.0.0.1'] },
      { nodeid: 2, addrs: ['127.0.0.3'] },
    ],
    node2: [
      { nodeid: 1, addrs: ['127.0.0.4'] },
      { nodeid: 2, addrs: ['127.0.0.2'] },
    ],
  };
}

export class TamperRelay {
  private servers: net.Server[] = [];
  private sockets = new Set<net.Socket>();
  /** Connections node 1 opened to node 2 through the relay. */
  connections = 0;
  /** Records of node 1 seen on the wire (all connections). */
  records = 0;
  /** Set once the tamper was done. */
  done = false;
  /** Every byte node 1 sent to node 2 after the handshakes (for "is it readable?"). */
  readonly wire: Buffer[] = [];

  /** `at`: the record (counted on the first connection from 0) the tamper applies to. */
  constructor(
    private readonly port: number,
    private readonly tamper: Tamper,
    private readonly at = 3,
  ) {}

  async start(): Promise<void> {
    await this.listen('127.0.0.3', '127.0.0.2', '127.0.0.4', true);
    await this.listen('127.0.0.4', '127.0.0.1', '127.0.0.3', false);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }

  private listen(at: string, to: string, from: string, watch: boolean): Promise<void> {
    const server = net.createServer((down) => {
      const up = net.connect({ host: to, port: this.port, localAddress: from });
      for (const s of [down, up]) {
        this.sockets.add(s);
        s.setNoDelay(true);
        s.on('error', () => {});
        s.on('close', () => {
          this.sockets.delete(s);
          // Either side gone: the other goes too (as a broken path would do it).
          down.destroy();
          up.destroy();
        });
      }
      up.on('data', (d: Buffer) => down.write(d));
      if (!watch) {
        down.on('data', (d: Buffer) => up.write(d));
        return;
      }
      const first = this.connections++ === 0;
      let buf = Buffer.alloc(0);
      let skip = HELLO + PROOF; // the handshake goes through untouched
      let index = 0;
      let held: Buffer | undefined;
      let last: Buffer | undefined;
      down.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const out: Buffer[] = [];
        if (skip > 0) {
          const n = Math.min(skip, buf.length);
          out.push(buf.subarray(0, n));
          buf = buf.subarray(n);
          skip -= n;
        }
        while (skip === 0 && buf.length >= 4) {
          const len = 4 + buf.readUInt32LE(0) + TAG;
          if (buf.length < len) break;
          const rec = Buffer.from(buf.subarray(0, len));
          buf = buf.subarray(len);
          this.records++;
          this.wire.push(rec);
          out.push(...(first ? this.apply(rec, index++, last, (h) => (held = h), () => held) : [rec]));
          last = rec;
        }
        if (out.length) up.write(Buffer.concat(out));
      });
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, at, () => resolve());
    });
  }

  /** What goes on in place of record `i` of the first connection. */
  private apply(rec: Buffer, i: number, last: Buffer | undefined, hold: (b: Buffer) => void, held: () => Buffer | undefined): Buffer[] {
    if (i < this.at || this.done) return [rec];
    switch (this.tamper) {
      case 'none':
        return [rec];
      case 'flip': {
        this.done = true;
        const f = Buffer.from(rec);
        f[4 + ((f.length - 4 - TAG) >> 1)]! ^= 0x40; // a byte of the payload
        return [f];
      }
      case 'inject': {
        // A record of the right shape that nobody sealed, in front of the real one.
        this.done = true;
        const fake = Buffer.alloc(4 + 64 + TAG, 0x5a);
        fake.writeUInt32LE(64, 0);
        return [fake, rec];
      }
      case 'inject-dlm': {
        // What an attacker did before records: a DLM message in clear (3.2 header,
        // DLM_MSG from node 1) slipped into the stream between two of the sender's writes.
        this.done = true;
        const body = Buffer.from('forged by the relay');
        const msg = Buffer.alloc(16 + body.length);
        msg.writeUInt32LE(0x00030002, 0);
        msg.writeUInt32LE(7, 4);
        msg.writeUInt32LE(1, 8);
        msg.writeUInt16LE(msg.length, 12);
        msg[14] = 1;
        body.copy(msg, 16);
        return [msg, rec];
      }
      case 'replay':
        this.done = true;
        return [rec, last ?? rec];
      case 'drop':
        this.done = true;
        return [];
      case 'reorder': {
        // Hold this one and send it after the next.
        const h = held();
        if (!h) {
          hold(rec);
          return [];
        }
        this.done = true;
        return [rec, h];
      }
    }
  }
}
