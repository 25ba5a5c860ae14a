/**
 * The round-trip floor of the design card's receive thread, next to node:net, in one run
 * (docs/performance.md section 7). Alternates, REPEAT times:
 *   - node:net ping-pong against an echo process (the bench's net-pingpong baseline);
 *   - scripts/perf/rtt-floor.c: two C processes, "direct" (the socket wakes the thread that
 *     answers, as in node:net) and "hop" (a receive thread wakes on the socket and hands the
 *     message to the answering thread through an eventfd, as in lowcomms).
 * hop - direct is what the receive thread adds to any round trip with no code of ours
 * in it; node:net + that is the least a design with that thread can reach from JS.
 *   node --import tsx scripts/perf/rtt-floor.ts [--size 64] [--count 5000] [--repeat 5]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { netPingpong } from '../../cli/baselines';

const root = path.resolve(__dirname, '../..');
const { values } = parseArgs({
  options: { size: { type: 'string', default: '64' }, count: { type: 'string', default: '5000' }, repeat: { type: 'string', default: '5' } },
});
const size = Number(values.size);
const count = Number(values.count);
const repeat = Number(values.repeat);
if (!(size >= 16 && size <= 4096 && count >= 100 && count <= 1e6 && repeat >= 1 && repeat <= 50)) {
  console.error('rtt-floor: --size 16..4096, --count 100..1000000, --repeat 1..50');
  process.exit(2);
}

const bin = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-rtt-floor-')), 'rtt-floor');
execFileSync('cc', ['-O2', '-pthread', '-o', bin, path.join(root, 'scripts/perf/rtt-floor.c')]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function main(): Promise<void> {
  const net: number[] = [];
  const direct: number[] = [];
  const hop: number[] = [];
  for (let r = 0; r < repeat; r++) {
    net.push((await netPingpong(path.join(root, 'cli/main.ts'), size, count)).rttP50Us);
    const out = execFileSync(bin, [String(size), String(count), '1'], { encoding: 'utf8' });
    const p50 = (mode: string) => Number(out.match(new RegExp(`^${mode} p50 ([\\d.]+)`, 'm'))?.[1] ?? NaN);
    direct.push(p50('direct'));
    hop.push(p50('hop'));
    console.log(`repeat ${r + 1}: node:net ${net.at(-1)!.toFixed(1)} us, C direct ${direct.at(-1)} us, C hop ${hop.at(-1)} us`);
  }

  const n = median(net);
  const d = median(direct);
  const h = median(hop);
  const deltas = hop.map((x, i) => x - direct[i]!);
  const floor = n + median(deltas);
  console.log(`\n${size} B round trip p50, median of ${repeat} alternated runs of ${count}:`);
  console.log(`  node:net ping-pong             ${n.toFixed(1)} us`);
  console.log(`  C, socket wakes the answerer   ${d.toFixed(1)} us`);
  console.log(`  C, receive thread + eventfd    ${h.toFixed(1)} us`);
  console.log(`  the receive thread adds        ${median(deltas).toFixed(1)} us [${Math.min(...deltas).toFixed(1)}-${Math.max(...deltas).toFixed(1)}] per round trip`);
  console.log(`  floor with that thread, from JS: ${floor.toFixed(1)} us = ${(floor / n).toFixed(2)}x node:net`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
