/**
 * One lowcomms node for the impaired-link tests, run in its own network namespace
 * (`ip netns exec NS node --import tsx netem-node.ts '<json args>'`) and driven by
 * JSON lines on stdin; it answers each command with one JSON line on stdout.
 *
 * Every message either node sends carries a per-sender sequence number that continues
 * across all phases (h_lockspace and the body's first word), a kind byte (data, ping,
 * pong) and a body pattern derived from both; the receiver checks every one: exactly
 * once, in order, intact. Commands:
 *   {cmd:'stream', count}           send `count` data messages (mixed sizes) to the peer
 *                                   and wait for the peer's `count`; reports goodput
 *   {cmd:'ping', count}             `count` sequential round trips of 64-byte messages
 *   {cmd:'stream-for', ms, rateMsgs} stream at a bounded rate for `ms` (partitions);
 *                                   then wait until everything sent is acked and the
 *                                   peer's messages stopped coming
 *   {cmd:'expect', count}           wait until `count` messages in all came from the peer
 *   {cmd:'stats'} / {cmd:'close'}
 */
import { createInterface } from 'node:readline';
import { Lowcomms, type LowcommsOptions, type NodeConfig } from '../../lib';
import { messageSize } from './traffic';

interface Args {
  nodeid: number;
  peer: number;
  nodes: NodeConfig[];
  transport: 'tcp' | 'sctp';
  port: number;
  options?: Partial<LowcommsOptions>;
}

const KIND_DATA = 0;
const KIND_PING = 1;
const KIND_PONG = 2;
const PING_SIZE = 64;

function body(sender: number, seq: number, size: number, kind: number): Buffer {
  const b = Buffer.alloc(size - 16);
  b.writeUInt32LE(seq, 0);
  b[4] = kind;
  for (let i = 5; i < b.length; i++) b[i] = (seq + i * 7 + sender) & 0xff;
  return b;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args;
  const comms = new Lowcomms({ nodeid: a.nodeid, nodes: a.nodes, transport: a.transport, port: a.port, ...a.options });
  const events: Array<{ t: number; type: string; detail: unknown }> = [];
  for (const type of ['connect', 'disconnect', 'path', 'assoc', 'dropped', 'error'] as const)
    comms.on(type, (e: unknown) => events.push({ t: Date.now(), type, detail: e instanceof Error ? e.message : e }));

  let sendSeq = 0;
  let nextSeq = 0;
  let received = 0;
  let dataReceived = 0;
  let dataExpected = 0;
  let rxBytes = 0;
  const errors: string[] = [];
  let pongWaiter: ((seq: number) => void) | undefined;
  const fail = (e: string) => {
    if (errors.length < 20) errors.push(e);
  };

  /** Sends the next message, waiting out backpressure until `deadline`; false if it never cleared. */
  const sendOne = async (kind: number, deadline = Infinity): Promise<boolean> => {
    const seq = sendSeq;
    const size = kind === KIND_DATA ? messageSize(a.nodeid, seq, 24) : PING_SIZE;
    while (!comms.send(a.peer, { lockspace: seq, cmd: 1, body: body(a.nodeid, seq, size, kind) })) {
      if (Date.now() > deadline) return false;
      await sleep(2);
    }
    sendSeq++;
    return true;
  };

  comms.onMessage((m) => {
    received++;
    rxBytes += m.raw.length;
    const seq = m.lockspace;
    if (m.nodeid !== a.peer) fail(`message from ${m.nodeid}`);
    if (seq !== nextSeq) fail(`seq ${seq}, expected ${nextSeq} (${seq < nextSeq ? 'duplicate' : 'gap'})`);
    nextSeq = seq + 1;
    const b = m.body;
    if (b.length < 5 || b.readUInt32LE(0) !== seq) return fail(`seq ${seq}: bad body`);
    const kind = b[4]!;
    const want = kind === KIND_DATA ? messageSize(m.nodeid, seq, 24) : PING_SIZE;
    if (m.raw.length !== want) fail(`seq ${seq}: size ${m.raw.length}, expected ${want}`);
    for (let i = 5; i < b.length; i++)
      if (b[i] !== ((seq + i * 7 + m.nodeid) & 0xff)) return fail(`seq ${seq}: corrupt byte ${i}`);
    if (kind === KIND_DATA) dataReceived++;
    else if (kind === KIND_PING) void sendOne(KIND_PONG);
    else if (kind === KIND_PONG) pongWaiter?.(seq);
  });

  // Backpressure watch: the most this node ever held for its peer (queued + unacked).
  let maxHeld = 0;
  const watch = setInterval(() => {
    const n = comms.stats().nodes.find((x) => x.nodeid === a.peer);
    if (n && n.heldBytes > maxHeld) maxHeld = n.heldBytes;
  }, 20);

  const peerStats = () => comms.stats().nodes.find((x) => x.nodeid === a.peer)!;
  const waitAcked = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && (peerStats().unacked > 0 || peerStats().queuedBytes > 0)) await sleep(10);
    return peerStats().unacked === 0;
  };
  const waitData = async (n: number, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (dataReceived < n && Date.now() < deadline) await sleep(5);
    return dataReceived >= n;
  };
  const waitReceived = async (n: number, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (received < n && Date.now() < deadline) await sleep(5);
    return received >= n;
  };

  await comms.start();
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  out({ ready: true });

  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const c = JSON.parse(line) as { cmd: string; count?: number; ms?: number; rate?: number; timeoutMs?: number };
    const timeoutMs = c.timeoutMs ?? Number(process.env.LOWCOMMS_NETEM_TIMEOUT_MS ?? 120_000);
    if (c.cmd === 'stream') {
      // Both nodes get the same command at about the same time, and the peer's first
      // messages may arrive before ours does: the receive side waits for a cumulative
      // target of data messages, and goodput is measured at the sender (its bytes, until
      // the peer acked the last of them), so nothing depends on who started first.
      dataExpected += c.count!;
      const start = Date.now();
      const deadline = start + timeoutMs;
      let bytes = 0;
      let sent = 0;
      for (; sent < c.count!; sent++) {
        const size = messageSize(a.nodeid, sendSeq, 24);
        if (!(await sendOne(KIND_DATA, deadline))) {
          fail(`backpressure did not clear within ${timeoutMs} ms (sent ${sent})`);
          break;
        }
        bytes += size;
        if (sent % 256 === 255) await new Promise<void>((r) => setImmediate(r));
      }
      const acked = sent === c.count && (await waitAcked(Math.max(1000, deadline - Date.now())));
      const ms = Date.now() - start;
      const rxOk = await waitData(dataExpected, Math.max(1000, deadline - Date.now()));
      out({ ok: rxOk && acked, rxOk, acked, dataReceived, dataExpected, bytes, ms, errors, peer: rxOk && acked ? undefined : peerStats() });
    } else if (c.cmd === 'ping') {
      const rtts: number[] = [];
      for (let i = 0; i < c.count!; i++) {
        const pong = new Promise<number>((r) => (pongWaiter = r));
        const t = process.hrtime.bigint();
        if (!(await sendOne(KIND_PING, Date.now() + 10_000))) {
          fail(`ping ${i}: backpressure did not clear within 10 s`);
          break;
        }
        comms.flush();
        const timed = await Promise.race([pong.then(() => true), sleep(10_000).then(() => false)]);
        if (!timed) {
          fail(`ping ${i}: no pong within 10 s`);
          break;
        }
        rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      pongWaiter = undefined;
      out({ ok: rtts.length === c.count, rtts, errors });
    } else if (c.cmd === 'stream-for') {
      const start = Date.now();
      const startSeq = sendSeq;
      const interval = 1000 / (c.rate ?? 500);
      let refused = 0;
      while (Date.now() - start < c.ms!) {
        const seq = sendSeq;
        const size = messageSize(a.nodeid, seq, 24);
        if (comms.send(a.peer, { lockspace: seq, cmd: 1, body: body(a.nodeid, seq, size, KIND_DATA) })) sendSeq++;
        else {
          refused++;
          await sleep(5);
          continue;
        }
        // A burst per tick: at the rate asked, and fast enough to reach the limit while cut.
        if ((sendSeq - startSeq) * interval > Date.now() - start) await sleep(Math.max(1, interval));
      }
      const acked = await waitAcked(timeoutMs);
      out({ ok: acked, sent: sendSeq - startSeq, refused, totalSent: sendSeq, errors, maxHeld });
    } else if (c.cmd === 'expect') {
      const ok = await waitReceived(c.count!, timeoutMs);
      out({ ok, received, errors });
    } else if (c.cmd === 'stats') {
      out({ stats: comms.stats(), events, maxHeld, received, sent: sendSeq, errors });
    } else if (c.cmd === 'close') {
      clearInterval(watch);
      const res = await comms.close({ timeoutMs: 5000 });
      out({ closed: true, flushed: res.flushed, received, sent: sendSeq, errors, events });
      rl.close();
      break;
    }
  }
  clearInterval(watch);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
