/**
 * One node of `lowcomms bench`, in its own process, driven by the bench over IPC.
 * Node 1 streams (as fast as send() takes messages) and pings; node 2 counts and
 * verifies what arrives (per-sender order via h_lockspace = sequence number) and echoes
 * pings. CPU time is the whole process's: JS plus the native send and receive threads.
 */
import { Lowcomms, type LowcommsOptions } from '../lib';

/** Pings are DLM_MSG messages with this lockspace (streams use sequence numbers from 0). */
export const PING_LOCKSPACE = 0xffffffff;

export type NodeRequest =
  | { id: number; cmd: 'init'; options: LowcommsOptions }
  | { id: number; cmd: 'expect' }
  | { id: number; cmd: 'report' }
  | { id: number; cmd: 'stream'; to: number; size: number; seconds: number; immediate: boolean }
  | { id: number; cmd: 'ping'; size: number; count: number; seconds: number }
  | { id: number; cmd: 'close' };

export interface StreamReport {
  sent: number;
  cpuUs: number;
}

export interface SinkReport {
  received: number;
  errors: number;
  firstError?: string;
  seconds: number; // first to last message
  cpuUs: number;
}

export interface PingReport {
  count: number;
  rttUs: number[]; // sorted
}

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

export async function benchNodeMain(): Promise<void> {
  let comms: Lowcomms | undefined;
  // Sink state: the next sequence number expected from each sender.
  const expected = new Map<number, number>();
  let received = 0;
  let errors = 0;
  let firstError: string | undefined;
  let firstAt = 0;
  let lastAt = 0;
  let cpu0 = 0;
  // Ping state.
  let pong: ((t: number) => void) | undefined;

  const reply = (id: number, body: unknown) => process.send?.({ id, body });

  process.on('message', async (req: NodeRequest) => {
    try {
      switch (req.cmd) {
        case 'init': {
          comms = new Lowcomms(req.options);
          const c = comms;
          c.onBatch((b) => {
            const now = performance.now();
            const d = b.data;
            const idx = b.index;
            // Every message is checked; the sender's next sequence number is carried in
            // locals while one sender's run lasts (a batch is mostly one sender's), and
            // kept in the map between runs.
            let from = -1;
            let want = 0;
            for (let i = 0; i < idx.length; i += 3) {
              const off = idx[i + 1]!;
              const seq = d.readUInt32LE(off + 4);
              if (seq === PING_LOCKSPACE) {
                if (c.nodeid === 2) c.send(idx[i]!, d.subarray(off, off + idx[i + 2]!));
                else pong?.(now);
                continue;
              }
              if (idx[i] !== from) {
                if (from !== -1) expected.set(from, want);
                from = idx[i]!;
                want = expected.get(from) ?? 0;
              }
              if (seq !== want) {
                errors++;
                firstError ??= `from node ${from}: expected ${want}, got ${seq}`;
              }
              want = seq + 1;
              received++;
            }
            if (from !== -1) expected.set(from, want);
            if (!firstAt) firstAt = now;
            lastAt = now;
          });
          await c.start();
          reply(req.id, { transport: c.transport });
          return;
        }
        case 'expect':
          expected.clear();
          received = 0;
          errors = 0;
          firstError = undefined;
          firstAt = 0;
          lastAt = 0;
          cpu0 = cpuUs();
          reply(req.id, {});
          return;
        case 'report': {
          const r: SinkReport = { received, errors, seconds: (lastAt - firstAt) / 1000, cpuUs: cpuUs() - cpu0 };
          if (firstError) r.firstError = firstError;
          reply(req.id, r);
          return;
        }
        case 'stream': {
          const c = comms!;
          const c0 = cpuUs();
          const body = Buffer.alloc(req.size - 16);
          const end = performance.now() + req.seconds * 1000;
          let seq = 0;
          while (performance.now() < end) {
            // A slice of sends, then a turn of the event loop (drain events, batches).
            for (let k = 0; k < 4096; k++) {
              if (!c.send(req.to, { lockspace: seq, cmd: 1, body })) break;
              seq++;
              if (req.immediate) c.flush();
            }
            await new Promise<void>((r) => setImmediate(r));
          }
          reply(req.id, { sent: seq, cpuUs: cpuUs() - c0 } satisfies StreamReport);
          return;
        }
        case 'ping': {
          const c = comms!;
          const msg = Buffer.alloc(req.size);
          msg.writeUInt16LE(req.size, 12);
          msg.writeUInt32LE(0x00030002, 0);
          msg.writeUInt32LE(PING_LOCKSPACE, 4);
          msg.writeUInt32LE(1, 8);
          msg[14] = 1; // DLM_MSG
          const rtts: number[] = [];
          const end = performance.now() + req.seconds * 1000;
          while (rtts.length < req.count && performance.now() < end) {
            const t0 = performance.now();
            const back = new Promise<number>((r) => (pong = r));
            c.send(2, msg);
            c.flush();
            const t1 = await back;
            rtts.push((t1 - t0) * 1000);
          }
          pong = undefined;
          rtts.sort((a, b) => a - b);
          reply(req.id, { count: rtts.length, rttUs: rtts } satisfies PingReport);
          return;
        }
        case 'close':
          await comms?.close({ timeoutMs: 2000 });
          reply(req.id, {});
          process.exit(0);
      }
    } catch (err) {
      process.send?.({ id: req.id, error: String((err as Error)?.stack ?? err) });
    }
  });
  // The bench going away takes us with it.
  process.on('disconnect', () => process.exit(0));
}
