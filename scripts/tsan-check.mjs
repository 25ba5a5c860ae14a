#!/usr/bin/env node
// Reads the ThreadSanitizer logs of a run (scripts/test-tsan.sh) and fails on every
// report that involves our code.
//
// A report is OURS when any frame of an access ("Write of size ... by", "Previous read
// ...") or of the location's allocation is in lowcomms.node or in native/: those are
// printed in full and fail the run. There is no suppression for our code.
//
// The other reports have every access inside node, V8 or libuv, which are not compiled
// with -fsanitize=thread: TSan sees their pthread calls (intercepted) but none of their
// lock-free synchronisation (V8's std::atomic and futex-based primitives, libuv's
// atomics in uv_async_send), so it misses half of their happens-before edges and reports
// accesses those edges order, e.g. a V8 platform job state destroyed after the worker
// that released it. They cannot involve our memory (no frame of ours in either access or
// in the allocation), so they are counted and listed by summary line, not failed.
// This is the only filtering: the run sets no TSan suppressions.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [dir, addon, symbolizer = 'llvm-symbolizer'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: tsan-check.mjs LOGDIR [ADDON SYMBOLIZER]');
  process.exit(2);
}

/** Names our frames: libtsan loaded into an uninstrumented node leaves them as <null>. */
function symbolize(report) {
  if (!addon) return report;
  const addrs = [...new Set([...report.matchAll(/<null> <null> \(lowcomms\.node\+(0x[0-9a-f]+)\)/g)].map((m) => m[1]))];
  if (addrs.length === 0) return report;
  const r = spawnSync(symbolizer, ['--obj', addon, '--demangle', ...addrs], { encoding: 'utf8' });
  if (r.status !== 0) return report;
  const names = r.stdout.trim().split(/\n\n/);
  return report.replace(/<null> <null> \(lowcomms\.node\+(0x[0-9a-f]+)\)/g, (all, a) => {
    const i = addrs.indexOf(a);
    const [fn, loc] = (names[i] ?? '').split('\n');
    return fn ? `${fn.replace(/\(.*\)$/, '()')} ${loc?.replace(/^.*\/native\//, 'native/') ?? ''}` : all;
  });
}
const files = fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => path.join(dir, f)) : [];
const ours = [];
const foreign = new Map();
const isOurFrame = (line) => /lowcomms\.node|\/native\//.test(line);

for (const f of files) {
  const text = fs.readFileSync(f, 'utf8');
  for (const block of text.split(/^==================$/m)) {
    if (!block.includes('WARNING: ThreadSanitizer')) continue;
    let inAccess = false;
    let mine = false;
    for (const line of block.split('\n')) {
      if (/^\s{2}\S/.test(line)) {
        // A section header: an access, the location, or a thread/mutex creation.
        inAccess = /^\s{2}(Previous )?(atomic )?(write|read)\b|^\s{2}(Write|Read|Atomic)\b|^\s{2}Location is/i.test(line);
      } else if (inAccess && /^\s+#\d+ /.test(line) && isOurFrame(line)) {
        mine = true;
      }
    }
    const summary = (block.match(/^SUMMARY: ThreadSanitizer: (.*)$/m) ?? [])[1] ?? 'unknown';
    if (mine) ours.push(symbolize(block.trim()));
    else foreign.set(summary, (foreign.get(summary) ?? 0) + 1);
  }
}

const nForeign = [...foreign.values()].reduce((a, b) => a + b, 0);
if (nForeign) {
  console.log(`tsan-check: ${nForeign} report(s) inside node/V8/libuv only (not instrumented; not ours):`);
  for (const [s, n] of [...foreign].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  ${n} x ${s}`);
}
if (ours.length) {
  for (const r of ours) console.log(`\n${r}\n`);
  console.log(`tsan-check: ${ours.length} report(s) involve lowcomms code: FAIL`);
  process.exit(1);
}
console.log(`tsan-check: ${files.length} log file(s), no report involves lowcomms code`);
