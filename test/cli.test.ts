/**
 * The `lowcomms` command: bench produces verified figures in the documented JSON schema
 * and an offline HTML page; status reports reachability with the right exit status.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Lowcomms } from '../lib';
import { aggregateBaselines, aggregateRuns, median, type BenchRun } from '../cli/bench';
import { barChartSvg, tickStep } from '../cli/svg';
import { renderTable } from '../cli/table';
import { nodeList } from './helpers/cluster';
import { testPort } from './helpers/transports';

const main = path.join(__dirname, '..', 'cli', 'main.ts');
const cli = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', timeout: 120_000 });

test('bench --quick (TCP) writes verified runs and baselines in the JSON schema, and an HTML page', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-cli-'));
  try {
    const json = path.join(dir, 'b.json');
    const html = path.join(dir, 'b.html');
    const r = cli(['bench', '--quick', '--transports', 'tcp', '--sizes', '64,4072', '--duration', '0.5', '--pings', '100', '--json', json, '--html', html]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /vs netbench/);
    assert.match(r.stdout, /rtt\/net/);
    // floor/net: node:net plus what a receive thread costs, from this run's baselines.
    assert.match(r.stdout, /floor\/net/);
    assert.match(r.stdout, /│ \d+\.\d\dx +│ +│ yes/);
    assert.match(r.stdout, /median of 2 repeat/);
    const res = JSON.parse(fs.readFileSync(json, 'utf8')) as {
      host: object;
      runs: Array<Record<string, unknown>>;
      baselines: Array<Record<string, unknown>>;
    };
    assert.ok(res.host);
    assert.equal(res.runs.length, 2);
    for (const run of res.runs) {
      for (const k of ['transport', 'kernel', 'size', 'nodes', 'batching', 'msgsPerSec', 'mbPerSec', 'rttP50Us', 'rttP99Us', 'cpuNsPerMsg', 'verified'])
        assert.ok(k in run, `run has ${k}`);
      assert.equal(run.verified, true);
      assert.equal(run.transport, 'tcp');
      assert.equal(run.kernel, 'host');
      assert.ok((run.msgsPerSec as number) > 0);
      // --quick: two repeats, medians with their spread.
      assert.equal(run.repeats, 2);
      const [lo, hi] = (run.spread as Record<string, [number, number]>).rttP50Us!;
      assert.ok(lo <= (run.rttP50Us as number) && (run.rttP50Us as number) <= hi, `p50 ${run.rttP50Us} within [${lo}, ${hi}]`);
    }
    assert.ok(res.baselines.some((b) => b.name === 'netbench-concat'));
    // The round-trip baselines of the same run, at both sizes (4072 is compared with a 4096-byte frame).
    for (const name of ['net-pingpong', 'c-pingpong', 'c-pingpong-epoll', 'c-pingpong-rxthread'])
      for (const size of [64, 4096]) {
        const b = res.baselines.find((x) => x.name === name && x.size === size);
        assert.ok(b, `${name} ${size} B measured`);
        assert.ok((b.rttP50Us as number) > 0 && (b.rttP99Us as number) >= (b.rttP50Us as number));
        assert.equal(b.repeats, 2);
      }
    const page = fs.readFileSync(html, 'utf8');
    assert.ok(page.includes('<svg') && !/<script[^>]+src=/.test(page), 'charts inline, nothing fetched');
    // Both charts, with a bar (and its value as the tooltip) for lowcomms and the baselines.
    assert.equal(page.match(/<svg /g)?.length, 2);
    assert.match(page, /<title>lowcomms tcp \(default\): [\d,]+<\/title>/);
    assert.match(page, /<title>netbench-concat: [\d,]+<\/title>/);
    assert.match(page, /<title>p50, 4072: [\d,.]+<\/title>/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bench repeats: every figure is the median, the spread min..max, verified only if every repeat was', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const run = (rtt: number, msgs: number, verified: boolean): BenchRun => ({
    transport: 'tcp', kernel: 'host', size: 64, nodes: 2, batching: 'default', auth: false, firstMsgMs: 1,
    msgsPerSec: msgs, mbPerSec: 1, rttP50Us: rtt, rttP99Us: rtt * 2, rttP999Us: rtt * 3, cpuNsPerMsg: 100,
    verified, messages: msgs, seconds: 1, repeats: 1, spread: {}, ...(verified ? {} : { error: 'lost one' }),
  });
  const [a, ...rest] = aggregateRuns([run(50, 900, true), run(200, 1000, true), run(60, 1100, false)]);
  assert.equal(rest.length, 0);
  assert.equal(a!.rttP50Us, 60);
  assert.equal(a!.msgsPerSec, 1000);
  assert.deepEqual(a!.spread.rttP50Us, [50, 200]);
  assert.deepEqual(a!.spread.msgsPerSec, [900, 1100]);
  assert.equal(a!.repeats, 3);
  assert.equal(a!.verified, false);
  assert.equal(a!.error, 'lost one');
  const b = aggregateBaselines([40, 10, 20].map((rtt) => ({ name: 'c-pingpong' as const, kernel: 'host' as const, size: 64, rttP50Us: rtt, rttP99Us: rtt, repeats: 1, spread: {} })));
  assert.equal(b.length, 1);
  assert.equal(b[0]!.rttP50Us, 20);
  assert.deepEqual(b[0]!.spread.rttP50Us, [10, 40]);
  assert.equal(b[0]!.msgsPerSec, undefined);
});

test('bench --auth measures each configuration without and with authentication (both record protections), side by side', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-cli-'));
  try {
    const json = path.join(dir, 'b.json');
    const r = cli(['bench', '--transports', 'tcp', '--sizes', '256', '--batching', 'default', '--duration', '0.5', '--pings', '50', '--no-baselines', '--auth', '--repeat', '1', '--json', json]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /auth\/off msgs\/s/);
    const res = JSON.parse(fs.readFileSync(json, 'utf8')) as { runs: Array<{ auth: boolean; records?: string; verified: boolean; firstMsgMs: number; msgsPerSec: number }> };
    assert.deepEqual(res.runs.map((x) => [x.auth, x.records]), [[false, undefined], [true, 'encrypt'], [true, 'integrity']]);
    for (const run of res.runs) {
      assert.equal(run.verified, true);
      assert.ok(run.firstMsgMs > 0 && run.msgsPerSec > 0);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('status: exit 0 when every node answers, 1 when one does not', async (t) => {
  const port = testPort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'nodes.json');
  fs.writeFileSync(conf, JSON.stringify({ nodes: nodeList(2) }));
  const a = new Lowcomms({ nodeid: 1, nodes: nodeList(2), port });
  const b = new Lowcomms({ nodeid: 2, nodes: nodeList(2), port });
  await a.start();
  await b.start();
  const spawnAsync = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', main, ...args]);
      let stdout = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.on('exit', (status) => resolve({ status, stdout }));
    });
  const up = await spawnAsync(['status', conf, '--port', String(port)]);
  assert.equal(up.status, 0, up.stdout);
  assert.match(up.stdout, /every node is reachable/);
  await b.close({ flush: false });
  const down = await spawnAsync(['ping', conf, '--port', String(port), '--count', '2', '--json']);
  assert.equal(down.status, 1, down.stdout);
  const rep = JSON.parse(down.stdout) as { nodes: Array<{ nodeid: number; reachable: boolean; addrs: Array<{ state: string }> }> };
  assert.equal(rep.nodes.find((n) => n.nodeid === 2)!.addrs[0]!.state, 'refused');
  assert.equal(rep.nodes.find((n) => n.nodeid === 1)!.reachable, true);
  await a.close({ flush: false });
});

test('the CLI uses only the public API: every import from lib/ is lib/index, none from binding/', () => {
  const dir = path.join(__dirname, '..', 'cli');
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
    const src = fs.readFileSync(path.join(dir, f), 'utf8');
    for (const m of src.matchAll(/from '([^']+)'/g)) {
      const spec = m[1]!;
      if (!spec.startsWith('.')) continue;
      assert.ok(spec === '../lib' || /^\.\/[\w-]+$/.test(spec), `${f} imports ${spec}: the CLI may import only '../lib' and its own files`);
    }
  }
});

test('charts: bars scale within each panel, ticks are round, text is escaped; tables align', () => {
  assert.equal(tickStep(41e6), 1e7);
  assert.equal(tickStep(7.2), 2);
  assert.equal(tickStep(0), 1);
  const svg = barChartSvg({
    title: 'a <b> & c',
    yTitle: 'n',
    rows: [{ panels: [{ title: 'p', groups: [{ label: 'g', bars: [{ key: 'x', value: 50 }, { key: 'y', value: 100 }] }] }] }],
  });
  assert.match(svg, /a &lt;b&gt; &amp; c/);
  const heights = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="\d+" height="([\d.]+)" fill="[^"]+"><title>/g)].map((m) => Number(m[1]));
  assert.equal(heights.length, 2);
  assert.ok(Math.abs(heights[1]! - 2 * heights[0]!) < 0.2, `100 is twice as tall as 50: ${heights}`);
  const t = renderTable(['a', 'long head'], [[1, 'x'], ['wide cell', 2]]).split('\n');
  assert.equal(t.length, 6);
  assert.ok(t.every((l) => l.length === t[0]!.length), 'every line as wide as the border');
  assert.match(t[3]!, /^│ 1 {9}│ x {9}│$/);
});
