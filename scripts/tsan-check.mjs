#!/usr/bin/env node
// Reads the ThreadSanitizer logs of a run (scripts/test-tsan.sh) and fails on every
// report that involves our code.
//
// A report is OURS when our code made one of the accesses or owns the memory: the first
// frame of an access stack ("Write of size ... by", "Previous read ...") or of the
// location's allocation that is not in libtsan, libc or libstdc++ (the functions our
// code calls) is in lowcomms.node, or the location is a global of lowcomms.node. Those
// are printed in full and fail the run. There is no suppression for our code.
//
// The other reports have every access made by node, V8 or libuv, on their own memory.
// Those are not compiled with -fsanitize=thread: TSan sees their pthread calls
// (intercepted) but none of their lock-free synchronisation (V8's std::atomic and futex
// primitives, libuv's atomics in uv_async_send), so it misses half of their
// happens-before edges and reports accesses those edges order, e.g. a V8 platform job
// state destroyed after the worker that released it. Our code may be further down such
// a stack (V8 collects garbage inside a napi call of ours, and waits for its GC job
// there), but it neither made the access nor owns the memory. Those reports are counted
// and listed by summary line, not failed. This is the only filtering: the run sets no
// TSan suppressions.
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
// Where the code of a frame lives: the module in "(module+0x...)" at the end of the line.
const moduleOf = (line) => (line.match(/\(([^()+\s]+)\+0x[0-9a-f]+\)\s*$/) ?? [])[1] ?? '';
const CALLEES = /^(libtsan\.so[.\d]*|libc\.so[.\d]*|libstdc\+\+\.so[.\d]*|libgcc_s\.so[.\d]*)$/;

for (const f of files) {
  const text = fs.readFileSync(f, 'utf8');
  for (const block of text.split(/^==================$/m)) {
    if (!block.includes('WARNING: ThreadSanitizer')) continue;
    let section = 'other'; // 'access' until its first non-callee frame is seen, then 'done'
    let mine = false;
    for (const line of block.split('\n')) {
      if (/^\s{2}\S/.test(line)) {
        // A section header: an access, the location, or a thread/mutex creation.
        const access = /^\s{2}(Previous )?(atomic )?(write|read)\b|^\s{2}(Write|Read|Atomic)\b|^\s{2}Location is/i.test(line);
        section = access ? 'access' : 'other';
        if (/^\s{2}Location is global/.test(line) && /lowcomms\.node/.test(line)) mine = true;
      } else if (section === 'access' && /^\s+#\d+ /.test(line)) {
        const mod = moduleOf(line);
        if (CALLEES.test(mod)) continue;
        if (mod === 'lowcomms.node' || /\/native\//.test(line)) mine = true;
        section = 'done';
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
