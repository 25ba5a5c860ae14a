/**
 * One lowcomms node that follows corosync (CorosyncMembership), for test/corosync. Run
 * inside a corosync node's network namespace:
 *   node --import tsx membership-node.ts NODEID GROUP PORT LOG TRANSPORT
 * It sends a tagged message ("from:gen:epoch:seq") to every member every 10 ms; the
 * epoch of a destination is the number of times it joined (a new session each time).
 * Everything it sees goes to LOG, one JSON object per line, written synchronously so
 * that a SIGKILL loses nothing that happened. Commands on stdin (one per line): pause
 * (stop sending, answer {"t":"paused","ok"} on stdout once every message is acked),
 * resume, exit.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import readline from 'node:readline';
import { CorosyncMembership, Lowcomms, corosyncNodeTable } from '../../lib';

const [nodeidArg, group, portArg, logPath, transportArg] = process.argv.slice(2);
const nodeid = Number(nodeidArg);
const gen = randomBytes(4).toString('hex');
const log = (o: Record<string, unknown>) => fs.appendFileSync(logPath!, JSON.stringify(o) + '\n');

async function main(): Promise<void> {
  const { nodeid: local, nodes } = await corosyncNodeTable({ resolve: false });
  if (local !== nodeid) throw new Error(`corosync says this is node ${local}, not ${nodeid}`);
  if (transportArg !== 'tcp' && transportArg !== 'sctp') throw new Error(`transport ${transportArg}: tcp or sctp`);
  const comms = new Lowcomms({ nodeid, nodes, transport: transportArg, port: Number(portArg), connectRetryMaxMs: 200, tcpUserTimeoutMs: 3000 });
  const epoch = new Map<number, number>();
  const seq = new Map<number, number>();
  const ended = new Map<number, number>();
  comms.onMessage((m) => {
    const [from, g, e, s] = Buffer.from(m.body).toString().split(':');
    log({ t: 'got', from: Number(from), g, e: Number(e), s: Number(s) });
  });
  comms.on('dropped', (d) => {
    const e = d.reason === 'removed' || d.reason === 'reset' ? ended.get(d.nodeid) : epoch.get(d.nodeid);
    log({ t: 'dropped', to: d.nodeid, count: d.count, reason: d.reason, e });
  });
  // The engine's connection events, for reading a failed run's log (LOWCOMMS_TEST_KEEP_LOGS).
  comms.on('connect', (ev) => log({ t: 'ev:connect', ...ev }));
  comms.on('disconnect', (ev) => log({ t: 'ev:disconnect', ...ev }));
  comms.on('restart', (ev) => log({ t: 'ev:restart', ...ev }));
  comms.on('desync', (ev) => log({ t: 'ev:desync', nodeid: ev.nodeid, reason: ev.reason, count: ev.count }));
  comms.on('reject', (ev) => log({ t: 'ev:reject', ...ev }));
  comms.on('assoc', (ev) => log({ t: 'ev:assoc', ...ev }));
  await comms.start();
  const mem = new CorosyncMembership(comms, { group: group! });
  mem.on('join', (j) => {
    if (j.reset) ended.set(j.nodeid, epoch.get(j.nodeid) ?? 0);
    epoch.set(j.nodeid, (epoch.get(j.nodeid) ?? 0) + 1);
    seq.set(j.nodeid, 0);
    log({ t: 'join', ...j, e: epoch.get(j.nodeid) });
  });
  mem.on('leave', (l) => {
    ended.set(l.nodeid, epoch.get(l.nodeid) ?? 0);
    log({ t: 'leave', ...l });
  });
  mem.on('change', (c) =>
    log({ t: 'change', members: c.members, left: c.left.map((m) => m.nodeid), joined: c.joined.map((m) => m.nodeid) }),
  );
  mem.on('quorum', (q) => log({ t: 'quorum', quorate: q.quorate }));
  mem.on('error', (err) => log({ t: 'error', message: err.message }));
  mem.on('lost', (err) => {
    log({ t: 'lost', message: err.message });
    clearInterval(timer);
    void comms.close({ flush: false }).then(() => process.exit(3));
  });
  let paused = false;
  const timer = setInterval(() => {
    if (paused) return;
    for (const to of mem.members) {
      if (to === nodeid || !comms.nodes.has(to) || !epoch.has(to)) continue;
      const e = epoch.get(to)!;
      const s = seq.get(to) ?? 0;
      if (comms.send(to, { cmd: 1, body: `${nodeid}:${gen}:${e}:${s}` })) {
        log({ t: 'sent', to, e, s });
        seq.set(to, s + 1);
      }
    }
  }, 10);
  await mem.start();
  log({ t: 'ready', gen, quorate: mem.quorate, members: mem.members });

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'pause') {
      paused = true;
      const deadline = Date.now() + 15000;
      const poll = () => {
        const st = comms.stats();
        const busy = st.nodes.filter((n) => comms.nodes.has(n.nodeid) && (n.unacked > 0 || n.queuedBytes > 0));
        if (busy.length === 0 || Date.now() > deadline) {
          log({ t: 'paused', ok: busy.length === 0 });
          const detail = busy.map((n) => ({ nodeid: n.nodeid, connected: n.connected, state: n.state, unacked: n.unacked, queuedBytes: n.queuedBytes, connects: n.connects, connectErrors: n.connectErrors, members: mem.members }));
          log({ t: 'busy', detail });
          process.stdout.write(JSON.stringify({ t: 'paused', ok: busy.length === 0, busy: detail }) + '\n');
        } else setTimeout(poll, 20);
      };
      poll();
    } else if (cmd === 'resume') {
      paused = false;
    } else if (cmd === 'exit') {
      clearInterval(timer);
      void mem.stop().then(() => comms.close({ timeoutMs: 2000 })).then(() => process.exit(0));
    }
  });
}

main().catch((err) => {
  log({ t: 'fatal', message: String(err?.stack ?? err) });
  process.exit(2);
});
