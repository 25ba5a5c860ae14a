/**
 * Mesh soak: N nodes, full mesh, random message sizes, connections killed at random, one
 * node restarted, for a bounded time. At the end every message sent to a live node was
 * delivered exactly once in per-sender order, and fds, threads and memory did not grow.
 * TCP on the host: 16 nodes. SCTP (user-mode-linux, one slow CPU): 4 nodes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { Lowcomms, type DlmMessage } from '../../lib';
import { nodeList } from '../helpers/cluster';
import { badBytes, makeBody, messageSize } from '../helpers/traffic';
import { testPort, testTransports } from '../helpers/transports';

const SECONDS = Number(process.env.LOWCOMMS_SOAK_SECONDS ?? 45);

const fds = () => fs.readdirSync('/proc/self/fd').length;
const threads = () => fs.readdirSync('/proc/self/task').length;
/** RSS after a full GC when available (node --expose-gc), so that garbage is not counted. */
const rssMiB = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return Math.round(process.memoryUsage().rss / 2 ** 20);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Per (sender, receiver): next sequence to send and what the receiver expects next.
 * A restart moves both directions with the restarted node to a new base, so that a
 * message of the previous incarnation still in flight is recognised as such.
 */
class Ledger {
  sent = new Map<string, number>();
  expect = new Map<string, number>();
  base = new Map<string, number>();
  /** Per direction with a restarted node: the old session's next expected and end (exclusive). */
  old = new Map<string, { next: number; end: number }>();
  errors: string[] = [];
  sentCount = 0;
  delivered = 0;
  stale = 0;
  /** Messages in flight to or from the restarted node when it died (at most this many arrive late). */
  lost = 0;
  key = (from: number, to: number) => `${from}>${to}`;
  nextSeq(from: number, to: number): number {
    const k = this.key(from, to);
    return this.sent.get(k) ?? this.base.get(k) ?? 0;
  }
  sentOne(from: number, to: number): void {
    this.sent.set(this.key(from, to), this.nextSeq(from, to) + 1);
    this.sentCount++;
  }
  receive(to: number, m: DlmMessage): void {
    const k = this.key(m.nodeid, to);
    const base = this.base.get(k) ?? 0;
    const bad = badBytes(m, m.lockspace);
    if (bad && this.errors.length < 10) this.errors.push(`${k}: seq ${m.lockspace}: ${bad}`);
    if (m.lockspace < base) {
      // From before the restart: the old session's last words, which must still be the
      // next ones it owed, in order, once each, and only ones that were sent.
      const old = this.old.get(k);
      if (!old || m.lockspace !== old.next || old.next >= old.end) {
        if (this.errors.length < 10)
          this.errors.push(`${k}: pre-restart seq ${m.lockspace}, expected ${old ? `${old.next} (< ${old.end})` : 'none'}`);
      } else old.next++;
      this.stale++;
      return;
    }
    const want = this.expect.get(k) ?? base;
    if (m.lockspace !== want && this.errors.length < 10)
      this.errors.push(`${k}: got ${m.lockspace}, expected ${want}`);
    this.expect.set(k, m.lockspace + 1);
    this.delivered++;
  }
  /** A node restarted: both directions with it start over from a new base. */
  restart(node: number, all: number[], base: number): void {
    for (const o of all) {
      for (const k of [this.key(node, o), this.key(o, node)]) {
        // Messages to the dead node, and its own unacked ones, are gone with it.
        const end = this.sent.get(k) ?? this.base.get(k) ?? 0;
        const next = this.expect.get(k) ?? this.base.get(k) ?? 0;
        const lost = end - next;
        this.sentCount -= lost;
        this.lost += lost;
        this.old.set(k, { next, end });
        this.sent.delete(k);
        this.expect.delete(k);
        this.base.set(k, base);
      }
    }
  }
  missing(): number {
    let m = 0;
    for (const [k, n] of this.sent) m += n - (this.expect.get(k) ?? this.base.get(k) ?? 0);
    return m;
  }
}

for (const transport of testTransports()) {
  const N = Number(process.env.LOWCOMMS_SOAK_NODES ?? (transport === 'sctp' ? 4 : 16));
  const seconds = transport === 'sctp' ? Math.min(SECONDS, 30) : SECONDS;
  describe(`mesh soak over ${transport}`, () => {
    test(`${N} nodes, full mesh, ${seconds} s, random kills and a restart: exactly once, in order, nothing grows`, async (t) => {
      const port = testPort();
      const nodes = nodeList(N);
      const ids = nodes.map((n) => n.nodeid);
      const ledger = new Ledger();
      const comms = new Map<number, Lowcomms>();
      const make = async (id: number) => {
        const c = new Lowcomms({ nodeid: id, nodes, transport, port, connectRetryMaxMs: 100, limits: { maxNodeBytes: 2 << 20 } });
        c.onMessage((m) => ledger.receive(id, m));
        await c.start();
        comms.set(id, c);
        return c;
      };
      t.after(() => Promise.all([...comms.values()].map((c) => c.close({ flush: false }))));
      for (const id of ids) await make(id);

      const fd0 = fds();
      const th0 = threads();
      const samples: string[] = [];
      let rssMid = 0;
      let x = 987654321;
      const rand = (n: number) => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x % n;
      };
      let kills = 0;
      let fdMax = 0;
      let restarted = 0;
      let refused = 0;
      const end = Date.now() + seconds * 1000;
      const restartAt = Date.now() + (seconds * 1000) / 2;
      while (Date.now() < end) {
        // A burst: every node sends a few messages to random peers.
        for (const from of ids) {
          const c = comms.get(from)!;
          for (let k = 0; k < 20; k++) {
            const to = ids[rand(N)]!;
            if (to === from) continue;
            const seq = ledger.nextSeq(from, to);
            const size = messageSize(from, seq);
            if (c.send(to, { lockspace: seq, body: makeBody(from, seq, size) })) ledger.sentOne(from, to);
            else refused++;
          }
        }
        if (rand(10) === 0) {
          const a = ids[rand(N)]!;
          const b = ids[rand(N)]!;
          if (a !== b) {
            comms.get(a)!.killConnections(b);
            kills++;
          }
        }
        if (!restarted && Date.now() > restartAt) {
          // One node dies and comes back; the others learn it from their membership
          // layer (here: the test) and reset their state for it.
          const victim = ids[N - 1]!;
          await comms.get(victim)!.close({ flush: false });
          comms.delete(victim);
          for (const [id, c] of comms) if (id !== victim) c.resetNode(victim);
          ledger.restart(victim, ids, 1_000_000);
          await make(victim);
          restarted++;
          rssMid = rssMiB();
        }
        await sleep(2);
        fdMax = Math.max(fdMax, fds());
        if (samples.length < 6 && Date.now() > end - ((6 - samples.length) * seconds * 1000) / 6)
          samples.push(`fds=${fds()} threads=${threads()} rss=${rssMiB()}MiB`);
      }
      // Drain: wait until every receiver has every message its peers queued.
      const deadline = Date.now() + 120_000;
      while (ledger.missing() > 0 && Date.now() < deadline) await sleep(20);
      const missing = ledger.missing();
      const line =
        `soak ${transport}: nodes=${N} seconds=${seconds} sent=${ledger.sentCount} delivered=${ledger.delivered} ` +
        `stale_from_restarted=${ledger.stale} (of ${ledger.lost} in flight at the restart) ` +
        `missing=${missing} kills=${kills} restarts=${restarted} refused(backpressure)=${refused} ` +
        `fds ${fd0}->${fds()} threads ${th0}->${threads()} rss mid=${rssMid}MiB end=${rssMiB()}MiB samples: ${samples.join(' | ')}`;
      t.diagnostic(line);
      console.log(`# ${line}`);
      assert.deepEqual(ledger.errors, []);
      assert.equal(missing, 0, 'every message sent was delivered');
      assert.equal(restarted, 1, 'the node was restarted');
      assert.ok(ledger.stale <= ledger.lost, `late pre-restart messages (${ledger.stale}) were among the ${ledger.lost} in flight`);
      // A full mesh holds an outgoing and an accepted socket per ordered pair of nodes.
      const mesh = 2 * N * (N - 1);
      assert.ok(fdMax <= fd0 + mesh + 8, `fds bounded by the mesh: ${fd0} + ${mesh} >= ${fdMax}`);
      assert.ok(threads() <= th0, `threads bounded: ${th0} -> ${threads()}`);
      assert.ok(rssMiB() < 1.5 * rssMid + 64, `memory levels off: mid ${rssMid} MiB, end ${rssMiB()} MiB`);
    });
  });
}
