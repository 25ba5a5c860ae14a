#!/usr/bin/env node
/**
 * The `lowcomms` command: bench (the package's main job from a shell), status, ping, keygen and uml.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AUTH_KEY_BYTES, sctpAvailable, type RecordProtection, type TransportName } from '../lib';
import { killChildren, runBench, SCTP_SETTINGS, type Batching, type BenchOptions, type Progress } from './bench';

import { netEchoMain } from './baselines';
import { progressBar } from './progress';
import { benchNodeMain } from './bench-node';
import { renderHtml, renderTable } from './report';
import { runStatus, STATUS_DEFAULT_PORT } from './status';

const USAGE = `usage: lowcomms <command> [options]

commands:
  bench             SCTP vs TCP through the lowcomms API, with node:net and C baselines
  status CONFIG     reachability of every node of a corosync.conf or JSON node table
  status --corosync the same for the node list of the running corosync (its cmap)
  ping CONFIG       the same, with --count connect-time samples per address
  keygen FILE       write a new cluster key for auth: 32 random bytes, mode 0600
                    (then every node: auth: { key: fs.readFileSync(FILE) })
  uml [--timeout S] -- COMMAND...
                    run COMMAND in the current directory inside user-mode-linux, whose
                    kernel has SCTP (for hosts without it), e.g. npx lowcomms uml -- node app.js
  help              this text

bench options:
  --quick               small matrix, under a minute (64 and 4072 bytes, short runs,
                        2 repeats unless --repeat says otherwise)
  --repeat N            measure everything N times, interleaved (default 3); every
                        figure is the median, with the spread (min..max) beside it
  --duration S          seconds per throughput run (default 3; --quick 1)
  --sizes LIST          message sizes in bytes, 16..4072 (default 64,256,1024,4072)
  --transports LIST     tcp,sctp (default both; SCTP in user-mode-linux if the kernel lacks it)
  --batching LIST       default,immediate (default both)
  --nodes N             cluster size, 2..16 (default 2: node 1 streams to node 2); with
                        more, node i streams to node i+1 round a ring; figures are totals
  --pings N             ping-pong round trips per size (default 2000)
  --json FILE           write every figure as JSON
  --html FILE           write a self-contained page with charts
  --no-uml              skip SCTP when the kernel has none, instead of using user-mode-linux
                        (the report says so)
  --no-baselines        skip the node:net and C baselines (throughput: netbench-concat,
                        rawtcp; round trip: net-pingpong, c-pingpong)
  --auth                run each configuration without and with peer authentication,
                        side by side (its cost: msgs/s ratio, first message ms)
  --auth-records LIST   with --auth: encrypt,integrity (default both), the record
                        protections measured

status/ping options:
  --port P (default 21064)   --timeout MS (default 1000)   --count N (ping: 5)   --json
`;

function list(v: string | undefined, def: string[]): string[] {
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : def;
}

function fail(msg: string): never {
  console.error(`lowcomms: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

const silent: Progress = { start() {}, step() {}, stop() {} };

async function bench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      duration: { type: 'string' },
      sizes: { type: 'string' },
      transports: { type: 'string' },
      batching: { type: 'string' },
      nodes: { type: 'string' },
      pings: { type: 'string' },
      repeat: { type: 'string' },
      json: { type: 'string' },
      html: { type: 'string' },
      'no-uml': { type: 'boolean' },
      'no-baselines': { type: 'boolean' },
      auth: { type: 'boolean' },
      'auth-records': { type: 'string' },
      inner: { type: 'boolean' },
    },
  });
  const quick = values.quick ?? false;
  const sizes = list(values.sizes, quick ? ['64', '4072'] : ['64', '256', '1024', '4072']).map(Number);
  for (const s of sizes) if (!Number.isInteger(s) || s < 16 || s > 4072) fail(`bad size ${s}: 16..4072`);
  const transports = list(values.transports, ['tcp', 'sctp']) as TransportName[];
  for (const t of transports) if (t !== 'tcp' && t !== 'sctp') fail(`bad transport ${t}`);
  const batchings = list(values.batching, quick ? ['default'] : ['default', 'immediate']) as Batching[];
  for (const b of batchings) if (b !== 'default' && b !== 'immediate') fail(`bad batching ${b}`);
  const authRecords = list(values['auth-records'], ['encrypt', 'integrity']) as RecordProtection[];
  for (const m of authRecords) if (m !== 'encrypt' && m !== 'integrity') fail(`bad --auth-records ${m}: encrypt or integrity`);
  const nodes = Number(values.nodes ?? 2);
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 16) fail('--nodes must be 2..16');
  const o: BenchOptions = {
    sizes,
    transports,
    batchings,
    seconds: Number(values.duration ?? (quick ? 1 : 3)),
    pings: Number(values.pings ?? (quick ? 500 : 2000)),
    nodes,
    uml: !values['no-uml'],
    baselines: !values['no-baselines'],
    inner: values.inner ?? false,
    auth: values.auth ?? false,
    authRecords,
    repeat: Number(values.repeat ?? (quick ? 2 : 3)),
  };
  if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 50) fail('--repeat must be 1..50');
  if (!(o.seconds > 0 && o.seconds <= 600)) fail('--duration must be 0..600 seconds');
  const interactive = !o.inner && process.stderr.isTTY === true;
  // Without SCTP here and without user-mode-linux, SCTP is not measured: say so up front.
  const sctpSkipped =
    !o.inner && !o.uml && transports.includes('sctp') && !sctpAvailable(4).ok
      ? 'SCTP skipped: this kernel has no SCTP and --no-uml was given (without it SCTP runs in user-mode-linux)'
      : undefined;
  const measured = sctpSkipped ? transports.filter((t) => t !== 'sctp') : transports;
  if (measured.length === 0) fail(sctpSkipped ?? 'no transport to measure');
  if (!o.inner)
    console.error(
      `lowcomms bench: ${sizes.join(',')} B x ${measured.join('+')} x ${batchings.join('+')}, ${o.seconds} s per run, median of ${o.repeat}`,
    );
  if (sctpSkipped) console.error(`lowcomms bench: ${sctpSkipped}`);
  const result = await runBench(o, interactive ? progressBar() : silent, __filename);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(result, null, 2));
  if (o.inner) return 0;
  console.log(renderTable(result));
  if (result.runs.some((r) => r.transport === 'sctp')) console.log(`SCTP settings: ${SCTP_SETTINGS}`);
  if (sctpSkipped) console.log(sctpSkipped);
  if (result.host.sctp === 'user-mode-linux')
    console.log('SCTP ran in user-mode-linux (this kernel has none), with TCP in the same guest: compare uml figures with uml figures.');
  if (values.html) {
    fs.writeFileSync(values.html, renderHtml(result));
    console.log(`wrote ${values.html}`);
  }
  if (values.json) console.log(`wrote ${values.json}`);
  const bad = result.runs.filter((r) => !r.verified);
  if (bad.length) {
    console.error(`${bad.length} run(s) failed verification`);
    return 1;
  }
  return 0;
}

async function status(argv: string[], ping: boolean): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      timeout: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean' },
      corosync: { type: 'boolean' },
    },
  });
  const config = positionals[0];
  if (!config && !values.corosync) fail(`${ping ? 'ping' : 'status'} needs a CONFIG (corosync.conf or JSON node table) or --corosync`);
  if (config && values.corosync) fail('give either a CONFIG or --corosync, not both');
  return runStatus({
    config: config ?? '',
    corosync: values.corosync ?? false,
    port: Number(values.port ?? STATUS_DEFAULT_PORT),
    timeoutMs: Number(values.timeout ?? 1000),
    count: Number(values.count ?? (ping ? 5 : 1)),
    json: values.json ?? false,
  });
}

/** A new cluster key (LowcommsOptions.auth.key): never overwrites an existing file. */
function keygen(argv: string[]): number {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length !== 1) fail('keygen needs one FILE');
  const file = positionals[0]!;
  fs.writeFileSync(file, randomBytes(AUTH_KEY_BYTES), { flag: 'wx', mode: 0o600 });
  console.log(`wrote a ${AUTH_KEY_BYTES}-byte random key to ${file} (mode 0600); copy it to every node and pass auth: { key: fs.readFileSync('${file}') }`);
  return 0;
}

/** `lowcomms uml [--timeout S] -- COMMAND...`: the package's scripts/uml-run.sh, from any directory. */
async function uml(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  const opts = sep < 0 ? [] : argv.slice(0, sep);
  const command = sep < 0 ? argv : argv.slice(sep + 1);
  if (command.length === 0) fail('uml needs a COMMAND, e.g. lowcomms uml -- node app.js');
  for (let i = 0; i < opts.length; i++) {
    if (opts[i] !== '--timeout' || !/^[0-9]+$/.test(opts[i + 1] ?? '')) fail(`uml: unknown option '${opts[i]}' (only --timeout SECONDS)`);
    i++;
  }
  const script = path.join(packageRoot(), 'scripts', 'uml-run.sh');
  const child = spawn('bash', [script, ...opts, '--', ...command], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}

/** The installed package's directory (cli/main.ts, or dist/cli/main.js once built). */
function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'scripts', 'uml-run.sh'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find scripts/uml-run.sh in the lowcomms package');
    dir = up;
  }
  return dir;
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === '__bench-node') return benchNodeMain();
  if (cmd === '__net-echo') return netEchoMain();
  const stop = () => {
    killChildren();
    process.exit(130);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  let code: number;
  try {
    switch (cmd) {
      case 'bench':
        code = await bench(rest);
        break;
      case 'status':
        code = await status(rest, false);
        break;
      case 'ping':
        code = await status(rest, true);
        break;
      case 'keygen':
        code = keygen(rest);
        break;
      case 'uml':
        code = await uml(rest);
        break;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        code = cmd === undefined ? 2 : 0;
        break;
      default:
        fail(`unknown command '${cmd}'`);
    }
  } catch (err) {
    killChildren();
    // parseArgs: an unknown option or a missing value is bad usage.
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) fail(`${cmd}: ${(err as Error).message}`);
    console.error(`lowcomms ${cmd}: ${(err as Error).message}`);
    code = 1;
  }
  process.exit(code);
}

void main();
