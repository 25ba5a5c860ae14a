/**
 * Self-checking traffic: every message carries (sender, sequence) and a body whose
 * bytes are a function of both, so the receiver can tell loss, duplication,
 * reordering and corruption apart.
 */
import { DLM_HEADER_LEN, DLM_MAX_APP_BUFSIZE, type DlmMessage, type Lowcomms } from '../../lib';

/** Deterministic size of message `seq` from `sender`: 16..4072 bytes, mixed. */
export function messageSize(sender: number, seq: number, min = DLM_HEADER_LEN, max = DLM_MAX_APP_BUFSIZE): number {
  const x = Math.imul(seq ^ (sender << 20), 2654435761) >>> 0;
  // Mostly small, some large: the mix a lock manager produces.
  const r = x % 100;
  const span = max - min;
  if (r < 60) return min + (x >>> 8) % Math.min(span + 1, 240);
  if (r < 90) return min + (x >>> 8) % Math.min(span + 1, 1024);
  return min + (x >>> 8) % (span + 1);
}

/** The body of message `seq` from `sender` (size includes the 16-byte header). */
export function makeBody(sender: number, seq: number, size: number): Buffer {
  const body = Buffer.alloc(size - DLM_HEADER_LEN);
  if (body.length >= 4) body.writeUInt32LE(seq, 0);
  for (let i = 4; i < body.length; i++) body[i] = (seq + i * 7 + sender) & 0xff;
  return body;
}

/** The sender puts the sequence number in h_lockspace (and in the body's first word). */
export function seqOf(msg: DlmMessage): number {
  return msg.lockspace;
}

/** Why `msg` is not the message `makeBody` made for its sender and sequence, or undefined. */
export function badBytes(msg: DlmMessage, seq = seqOf(msg)): string | undefined {
  if (msg.raw.length !== messageSize(msg.nodeid, seq)) return `size ${msg.raw.length}`;
  const b = msg.body;
  if (b.length >= 4 && b.readUInt32LE(0) !== seq) return `body word ${b.readUInt32LE(0)}`;
  for (let i = 4; i < b.length; i++) if (b[i] !== ((seq + i * 7 + msg.nodeid) & 0xff)) return `corrupt byte ${i}`;
  return undefined;
}

export class Checker {
  /** Next expected sequence per sender. */
  readonly next = new Map<number, number>();
  errors: string[] = [];
  received = 0;

  check(msg: DlmMessage): void {
    this.received++;
    const seq = seqOf(msg);
    const want = this.next.get(msg.nodeid) ?? 0;
    if (seq !== want) {
      if (this.errors.length < 10)
        this.errors.push(`from ${msg.nodeid}: got seq ${seq}, expected ${want} (${seq < want ? 'duplicate' : 'gap'})`);
    }
    this.next.set(msg.nodeid, seq + 1);
    const size = msg.raw.length;
    if (size !== messageSize(msg.nodeid, seq)) {
      if (this.errors.length < 10) this.errors.push(`from ${msg.nodeid} seq ${seq}: size ${size}`);
      return;
    }
    const b = msg.body;
    for (let i = 4; i < b.length; i++) {
      if (b[i] !== ((seq + i * 7 + msg.nodeid) & 0xff)) {
        if (this.errors.length < 10) this.errors.push(`from ${msg.nodeid} seq ${seq}: corrupt byte ${i}`);
        return;
      }
    }
  }

  count(nodeid: number): number {
    return this.next.get(nodeid) ?? 0;
  }
}

/**
 * Sends `count` checkable messages to `to`, honouring backpressure (send() false ->
 * wait for 'drain' or a short timer). Resolves when all are queued.
 */
export async function pump(
  comms: Lowcomms,
  to: number,
  count: number,
  opts: { start?: number; yieldEvery?: number } = {},
): Promise<number> {
  let seq = opts.start ?? 0;
  const end = seq + count;
  const yieldEvery = opts.yieldEvery ?? 2000;
  let sinceYield = 0;
  while (seq < end) {
    const size = messageSize(comms.nodeid, seq);
    if (comms.send(to, { lockspace: seq, cmd: 1, body: makeBody(comms.nodeid, seq, size) })) {
      seq++;
      if (++sinceYield >= yieldEvery) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
      continue;
    }
    await waitDrain(comms, to, 20);
  }
  return seq;
}

export function waitDrain(comms: Lowcomms, nodeid: number, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (ev: { nodeid: number }) => {
      if (ev.nodeid !== nodeid) return;
      cleanup();
    };
    const t = setTimeout(() => cleanup(), ms);
    const cleanup = () => {
      clearTimeout(t);
      comms.off('drain', done);
      resolve();
    };
    comms.on('drain', done);
  });
}
