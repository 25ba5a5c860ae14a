/**
 * What a person sees after `lowcomms bench`: a terminal table (cli-table3) with every
 * run as a ratio to the baselines and SCTP against TCP in the same kernel, and an
 * offline HTML page with vega-lite charts rendered to inline SVG.
 */
import Table from 'cli-table3';
import type { BenchBaseline, BenchResult, BenchRun } from './bench';

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n));
const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}x` : '-');
/** A median with its spread over the repeats: "10.5M [10.1M-11.0M]". */
const withSpread = (v: number, s: [number, number] | undefined, f: (n: number) => string = String) =>
  s && s[0] !== s[1] ? `${f(v)} [${f(s[0])}-${f(s[1])}]` : f(v);

function baselineOf(r: BenchResult, name: BenchBaseline['name'], run: BenchRun, key: 'msgsPerSec' | 'rttP50Us' = 'msgsPerSec'): number | undefined {
  // rawtcp/netbench frame 16..65535; a 4072-byte DLM message is compared with 4096.
  return r.baselines.find((b) => b.name === name && b.kernel === run.kernel && Math.abs(b.size - run.size) <= 24)?.[key];
}

/** lowcomms' round trip over a baseline's: above 1 is slower. */
const rttRatio = (r: BenchResult, name: BenchBaseline['name'], run: BenchRun) => {
  const b = baselineOf(r, name, run, 'rttP50Us');
  return b ? `${(run.rttP50Us / b).toFixed(2)}x` : '-';
};

function tcpTwin(r: BenchResult, run: BenchRun): BenchRun | undefined {
  return r.runs.find(
    (x) => x.transport === 'tcp' && x.kernel === run.kernel && x.size === run.size && x.batching === run.batching && x.records === run.records,
  );
}

/** The same configuration without authentication, measured in the same run (--auth). */
function plainTwin(r: BenchResult, run: BenchRun): BenchRun | undefined {
  return r.runs.find(
    (x) => !x.auth && x.transport === run.transport && x.kernel === run.kernel && x.size === run.size && x.batching === run.batching,
  );
}

export function renderTable(r: BenchResult): string {
  const withAuth = r.runs.some((run) => run.auth);
  const t = new Table({
    head: [
      'transport',
      'kernel',
      'size',
      'batching',
      ...(withAuth ? ['auth', 'auth/off msgs/s', 'first msg ms'] : []),
      'msgs/s [min-max]',
      'MB/s',
      'rtt p50 µs [min-max]',
      'rtt p99/p99.9 µs',
      'cpu ns/msg [min-max]',
      'vs netbench',
      'vs rawtcp',
      'rtt/net',
      'rtt/C',
      'sctp/tcp',
      'verified',
    ],
    style: { head: [], border: [] },
  });
  for (const run of r.runs) {
    const twin = run.transport === 'sctp' ? tcpTwin(r, run) : undefined;
    const plain = run.auth ? plainTwin(r, run) : undefined;
    t.push([
      run.transport,
      run.kernel,
      run.size,
      run.batching,
      ...(withAuth ? [run.auth ? (run.records ?? 'on') : 'off', plain ? ratio(run.msgsPerSec, plain.msgsPerSec) : '', run.firstMsgMs ?? ''] : []),
      withSpread(run.msgsPerSec, run.spread?.msgsPerSec, fmt),
      run.mbPerSec,
      withSpread(run.rttP50Us, run.spread?.rttP50Us),
      `${run.rttP99Us}/${run.rttP999Us}`,
      withSpread(run.cpuNsPerMsg, run.spread?.cpuNsPerMsg),
      ratio(run.msgsPerSec, baselineOf(r, 'netbench-concat', run)),
      ratio(run.msgsPerSec, baselineOf(r, 'rawtcp', run)),
      rttRatio(r, 'net-pingpong', run),
      rttRatio(r, 'c-pingpong', run),
      twin ? ratio(run.msgsPerSec, twin.msgsPerSec) : '',
      run.verified ? 'yes' : `NO: ${run.error ?? ''}`,
    ]);
  }
  const b = new Table({ head: ['baseline', 'kernel', 'size', 'msgs/s [min-max]', 'rtt p50 µs [min-max]', 'rtt p99 µs', 'repeats'], style: { head: [], border: [] } });
  const us = (n: number) => n.toFixed(1);
  for (const x of r.baselines)
    b.push([
      x.name,
      x.kernel,
      x.size,
      x.msgsPerSec !== undefined ? withSpread(x.msgsPerSec, x.spread?.msgsPerSec, fmt) : '',
      x.rttP50Us !== undefined ? withSpread(x.rttP50Us, x.spread?.rttP50Us, us) : '',
      x.rttP99Us !== undefined ? us(x.rttP99Us) : '',
      x.repeats ?? 1,
    ]);
  const reps = r.runs[0]?.repeats ?? 1;
  const note = `Every figure is the median of ${reps} repeat(s) in this run, [min-max] their spread; rtt/net and rtt/C: lowcomms' ping-pong p50 over node:net's and C's, same size, same run (above 1 = slower).`;
  return `${t.toString()}\n${r.baselines.length ? b.toString() : ''}\n${note}`;
}

async function svg(spec: object): Promise<string> {
  // vega and vega-lite are ES modules (top-level await): load them dynamically.
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const compiled = vl.compile(spec as Parameters<typeof vl.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  return view.toSVG();
}

export async function renderHtml(r: BenchResult): Promise<string> {
  const series = (run: BenchRun) => `lowcomms ${run.transport} (${run.batching}${run.auth ? `, auth ${run.records ?? ''}` : ''})`;
  const thr = r.runs.map((run) => ({ series: series(run), kernel: run.kernel, size: run.size, msgsPerSec: run.msgsPerSec }));
  // Baselines of the 4096-byte frame sit with the 4072-byte message they compare with.
  for (const b of r.baselines)
    if (b.msgsPerSec !== undefined)
      thr.push({ series: b.name, kernel: b.kernel, size: b.size === 4096 ? 4072 : b.size, msgsPerSec: b.msgsPerSec });
  const lat = r.runs
    .filter((run) => run.batching === 'default')
    .flatMap((run) => [
      { series: `${run.transport} (${run.kernel})`, size: run.size, percentile: 'p50', us: run.rttP50Us },
      { series: `${run.transport} (${run.kernel})`, size: run.size, percentile: 'p99', us: run.rttP99Us },
      { series: `${run.transport} (${run.kernel})`, size: run.size, percentile: 'p99.9', us: run.rttP999Us },
    ]);
  // The round-trip baselines of the same run, beside lowcomms (p50 and p99).
  for (const b of r.baselines)
    if (b.rttP50Us !== undefined) {
      const size = b.size === 4096 ? 4072 : b.size;
      lat.push({ series: `${b.name} (${b.kernel})`, size, percentile: 'p50', us: b.rttP50Us });
      lat.push({ series: `${b.name} (${b.kernel})`, size, percentile: 'p99', us: b.rttP99Us ?? 0 });
    }
  // One panel per size, each with its own scale: sizes differ by orders of magnitude.
  const throughput = await svg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Throughput into a JS handler (messages/s), per message size',
    data: { values: thr },
    // Host and user-mode-linux figures never share a scale: one row per kernel.
    facet: {
      row: { field: 'kernel', type: 'nominal', title: 'kernel' },
      column: { field: 'size', type: 'ordinal', sort: 'ascending', title: 'message size (bytes)' },
    },
    spec: {
      width: 220,
      height: 260,
      mark: 'bar',
      encoding: {
        x: { field: 'series', type: 'nominal', axis: null },
        y: { field: 'msgsPerSec', type: 'quantitative', title: 'messages/s' },
        color: { field: 'series', type: 'nominal', title: null },
        tooltip: [{ field: 'series' }, { field: 'msgsPerSec', format: ',' }],
      },
    },
    resolve: { scale: { y: 'independent' } },
  });
  const latency = await svg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Ping-pong round trip (µs), per transport and kernel',
    width: 260,
    height: 260,
    data: { values: lat },
    mark: 'bar',
    encoding: {
      x: { field: 'size', type: 'ordinal', sort: 'ascending', title: 'message size (bytes)' },
      xOffset: { field: 'percentile', sort: ['p50', 'p99', 'p99.9'] },
      y: { field: 'us', type: 'quantitative', title: 'µs' },
      color: { field: 'percentile', type: 'nominal' },
      column: { field: 'series', type: 'nominal', title: null },
    },
    resolve: { scale: { y: 'independent' } },
  });
  const esc = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>lowcomms bench</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style>
</head><body>
<h1>lowcomms bench</h1>
<p>${esc(String(r.host.date))} on ${esc(String(r.host.cpuModel))} (${r.host.cpus} CPUs, kernel ${esc(String(r.host.kernel))}, Node ${esc(String(r.host.node))}); SCTP: ${esc(String(r.host.sctp))}.</p>
<p>SCTP settings: ${esc(String(r.settings.sctp))}. Figures from user-mode-linux compare only with each other (every syscall is slower there).</p>
${throughput}
${latency}
<h2>All figures</h2>
<pre>${esc(renderTable(r).replace(/\u001b\[[0-9;]*m/g, ''))}</pre>
<details><summary>JSON</summary><pre>${esc(JSON.stringify(r, null, 2))}</pre></details>
</body></html>
`;
}
