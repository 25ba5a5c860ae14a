/**
 * What a person sees after `lowcomms bench`: a terminal table with every run as a ratio
 * to the baselines and SCTP against TCP in the same kernel, and an offline HTML page
 * with the charts as inline SVG (cli/svg.ts).
 */
import type { BenchBaseline, BenchResult, BenchRun } from './bench';
import { barChartSvg, esc } from './svg';
import { renderTable as table, type Cell } from './table';

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

/**
 * The rtt/net of a design with a receive thread whose JS side costs what node:net's does:
 * node:net's round trip plus what a receive thread adds to a C one (c-pingpong-rxthread -
 * c-pingpong-epoll), all from this run, over node:net's.
 */
const floorRatio = (r: BenchResult, run: BenchRun) => {
  const net = baselineOf(r, 'net-pingpong', run, 'rttP50Us');
  const hop = baselineOf(r, 'c-pingpong-rxthread', run, 'rttP50Us');
  const direct = baselineOf(r, 'c-pingpong-epoll', run, 'rttP50Us');
  return net && hop !== undefined && direct !== undefined ? `${((net + hop - direct) / net).toFixed(2)}x` : '-';
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
  const head = [
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
    'floor/net',
    'sctp/tcp',
    'verified',
  ];
  const rows: Cell[][] = [];
  for (const run of r.runs) {
    const twin = run.transport === 'sctp' ? tcpTwin(r, run) : undefined;
    const plain = run.auth ? plainTwin(r, run) : undefined;
    rows.push([
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
      floorRatio(r, run),
      twin ? ratio(run.msgsPerSec, twin.msgsPerSec) : '',
      run.verified ? 'yes' : `NO: ${run.error ?? ''}`,
    ]);
  }
  const baseHead = ['baseline', 'kernel', 'size', 'msgs/s [min-max]', 'rtt p50 µs [min-max]', 'rtt p99 µs', 'repeats'];
  const baseRows: Cell[][] = [];
  const us = (n: number) => n.toFixed(1);
  for (const x of r.baselines)
    baseRows.push([
      x.name,
      x.kernel,
      x.size,
      x.msgsPerSec !== undefined ? withSpread(x.msgsPerSec, x.spread?.msgsPerSec, fmt) : '',
      x.rttP50Us !== undefined ? withSpread(x.rttP50Us, x.spread?.rttP50Us, us) : '',
      x.rttP99Us !== undefined ? us(x.rttP99Us) : '',
      x.repeats ?? 1,
    ]);
  const reps = r.runs[0]?.repeats ?? 1;
  const note = `Every figure is the median of ${reps} repeat(s) in this run, [min-max] their spread; rtt/net and rtt/C: lowcomms' ping-pong p50 over node:net's and C's, same size, same run (above 1 = slower); floor/net: the rtt/net of a design whose receive thread hands messages to the JS thread, if its JS side cost what node:net's does: node:net's p50 plus what such a thread adds to a C ping-pong (c-pingpong-rxthread - c-pingpong-epoll) in this run.`;
  return `${table(head, rows)}\n${r.baselines.length ? table(baseHead, baseRows) : ''}\n${note}`;
}

/** The 4096-byte baseline frame sits with the 4072-byte message it compares with. */
const appSize = (size: number) => (size === 4096 ? 4072 : size);
const bySize = (a: number, b: number) => a - b;

/** Throughput into a JS handler: one row per kernel, one panel per size, a bar per series. */
function throughputChart(r: BenchResult): string {
  const series = (run: BenchRun) => `lowcomms ${run.transport} (${run.batching}${run.auth ? `, auth ${run.records ?? ''}` : ''})`;
  const points = r.runs.map((run) => ({ key: series(run), kernel: run.kernel, size: run.size, value: run.msgsPerSec }));
  for (const b of r.baselines)
    if (b.msgsPerSec !== undefined) points.push({ key: b.name, kernel: b.kernel, size: appSize(b.size), value: b.msgsPerSec });
  // Host and user-mode-linux figures never share a scale: one row per kernel.
  const kernels = [...new Set(points.map((p) => p.kernel))];
  return barChartSvg({
    title: 'Throughput into a JS handler (messages/s), per message size',
    yTitle: 'messages/s',
    xTitle: 'message size (bytes)',
    rows: kernels.map((kernel) => ({
      title: `kernel: ${kernel}`,
      panels: [...new Set(points.filter((p) => p.kernel === kernel).map((p) => p.size))].sort(bySize).map((size) => ({
        title: `${size} B`,
        groups: [{ label: '', bars: points.filter((p) => p.kernel === kernel && p.size === size) }],
      })),
    })),
  });
}

/** Ping-pong round trips: one panel per transport and kernel (and baseline), p50/p99/p99.9 per size. */
function latencyChart(r: BenchResult): string {
  const points: Array<{ series: string; size: number; key: string; value: number }> = [];
  for (const run of r.runs.filter((x) => x.batching === 'default')) {
    const series = `${run.transport} (${run.kernel})${run.auth ? ` auth ${run.records ?? ''}` : ''}`;
    points.push({ series, size: run.size, key: 'p50', value: run.rttP50Us });
    points.push({ series, size: run.size, key: 'p99', value: run.rttP99Us });
    points.push({ series, size: run.size, key: 'p99.9', value: run.rttP999Us });
  }
  // The round-trip baselines of the same run, beside lowcomms (p50 and p99).
  for (const b of r.baselines)
    if (b.rttP50Us !== undefined) {
      const series = `${b.name} (${b.kernel})`;
      points.push({ series, size: appSize(b.size), key: 'p50', value: b.rttP50Us });
      if (b.rttP99Us !== undefined) points.push({ series, size: appSize(b.size), key: 'p99', value: b.rttP99Us });
    }
  const seriesList = [...new Set(points.map((p) => p.series))];
  return barChartSvg({
    title: 'Ping-pong round trip (µs), per transport and kernel',
    yTitle: 'µs',
    xTitle: 'message size (bytes)',
    keys: ['p50', 'p99', 'p99.9'],
    rows: [
      {
        panels: seriesList.map((series) => {
          const mine = points.filter((p) => p.series === series);
          return {
            title: series,
            groups: [...new Set(mine.map((p) => p.size))].sort(bySize).map((size) => ({
              label: String(size),
              bars: mine.filter((p) => p.size === size).map(({ key, value }) => ({ key, value })),
            })),
          };
        }),
      },
    ],
  });
}

export function renderHtml(r: BenchResult): string {
  const throughput = throughputChart(r);
  const latency = latencyChart(r);
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
<pre>${esc(renderTable(r))}</pre>
<details><summary>JSON</summary><pre>${esc(JSON.stringify(r, null, 2))}</pre></details>
</body></html>
`;
}
