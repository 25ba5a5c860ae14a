#!/usr/bin/env node
// The whole test suite, as `npm test` and CI run it:
//   1. unit and TCP tests on this host (test/*.test.ts, test/net/*.test.ts with TCP,
//      plus SCTP when this kernel has it);
//   2. when this kernel has no SCTP: the transport suites (test/net/) and the guest-only
//      tests (test/uml/) again inside user-mode-linux with LOWCOMMS_TEST_TRANSPORTS=sctp.
//   3. each libFuzzer target for a bounded time; 4. the host suites on TCP against the
//      ASan + UBSan + LSan build; 5. the same against a ThreadSanitizer build; 6. the SCTP
//      suites against a UBSan build in the guest (ASan cannot run there); 7. the unit and
//      TCP suites on the other supported Node versions, and on arm64 (the linux-arm64
//      prebuild, under qemu); 8. the packed tarball holds and loads both prebuilds;
//      and membership against three real corosync instances (test/corosync), on this host.
// SCTP is never skipped: a run that could not test it fails. The last line is the total
// as "N passed, N failed", with how many of those tests ran on SCTP.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
process.chdir(root);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-test-'));

const list = (dir) =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => path.join(dir, f)).sort()
    : [];
const only = process.env.LOWCOMMS_TEST_ONLY; // e.g. "net" or "unit" or "uml", for development
const unitFiles = list('test');
const FUZZ_TARGETS = ['stream', 'writequeue', 'auth', 'record'];
const netFiles = list('test/net');
const umlFiles = list('test/uml');
const corosyncFiles = list('test/corosync');

function hostHasSctp() {
  const r = spawnSync('bash', ['scripts/has-sctp.sh'], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * The least number of tests `files` must run: every test() call site in them runs at
 * least once (loops and transports only add runs; no test is defined conditionally).
 * A stage that ran fewer lost tests on the way (a file that did not load, a describe
 * skipped, a runner that stopped early), and fails.
 */
function expectedAtLeast(files) {
  let n = 0;
  for (const f of files) n += (fs.readFileSync(f, 'utf8').match(/(^|[^.\w])test\(/gm) ?? []).length;
  return n;
}

/**
 * Runs node's test runner; returns {pass, fail, skipped, todo, cancelled}. Nothing passes
 * by not running: a skipped, todo or cancelled test counts as a failure, and so do a run
 * that crashed and a run of fewer tests than its files define (expectedAtLeast).
 */
function runNodeTests(label, files, env, wrap = [], node = process.execPath) {
  if (files.length === 0) return { pass: 0, fail: 0, skipped: 0, todo: 0, cancelled: 0 };
  const tap = path.join(tmp, `${label}.tap`);
  const args = [
    ...wrap,
    node,
    '--expose-gc', // memory figures after a full GC (soak test)
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=1',
    // Bounded: a test that hangs fails after 15 min. (Not --test-force-exit: it exits
    // before the TAP file reporter below has flushed, and the stage then counts 0 tests.)
    '--test-timeout=900000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ];
  const where = wrap.some((w) => w.endsWith('uml-run.sh')) ? ' inside user-mode-linux' : wrap.length ? ` under ${path.basename(wrap[1] ?? wrap[0])}` : '';
  const min = expectedAtLeast(files);
  console.log(`\n=== ${label}: ${files.length} file(s), at least ${min} tests${where} ===`);
  // A child's `node` is this one too (a wrapper sets its own PATH).
  const PATH = wrap.length ? process.env.PATH : `${path.dirname(node)}:${process.env.PATH}`;
  const r = spawnSync(args[0], args.slice(1), { stdio: 'inherit', env: { ...process.env, PATH, ...env } });
  const text = fs.existsSync(tap) ? fs.readFileSync(tap, 'utf8') : '';
  // The summary's last occurrence: a crashed runner may leave a partial report.
  const num = (k) => Number([...text.matchAll(new RegExp(`^# ${k} (\\d+)$`, 'gm'))].at(-1)?.[1] ?? 0);
  const res = { pass: num('pass'), fail: num('fail'), skipped: num('skipped'), todo: num('todo'), cancelled: num('cancelled') };
  const notRun = res.skipped + res.todo + res.cancelled;
  if (notRun) {
    console.error(`${label}: ${res.skipped} skipped, ${res.todo} todo, ${res.cancelled} cancelled - each counted as a failure (a test that did not run did not pass)`);
    res.fail += notRun;
  }
  if (r.status !== 0 && res.fail === 0) {
    console.error(`${label}: the run itself failed (exit ${r.status ?? r.signal}) - counted as a failure`);
    res.fail += 1;
  }
  const ran = res.pass + res.fail;
  if (ran < min) {
    console.error(`${label}: ${ran} tests ran, but its files define at least ${min} - counted as a failure`);
    res.fail += 1;
  }
  console.log(`=== ${label}: ${res.pass} passed, ${res.fail} failed (${notRun} of them skipped/todo/cancelled) ===`);
  return res;
}

const nativeSctp = hostHasSctp();
const results = [];
let sctpCount = 0;

if (!only || only === 'unit' || only === 'net') {
  const files = [...(!only || only === 'unit' ? unitFiles : []), ...(!only || only === 'net' ? netFiles : [])];
  const transports = nativeSctp ? 'tcp,sctp' : 'tcp';
  results.push(runNodeTests('host', files, { LOWCOMMS_TEST_TRANSPORTS: transports }));
}

// Membership from a real corosync (test/corosync): three corosync 3 instances in network
// namespaces of this host, as root (scripts/setup-system.sh installs corosync). Services on
// TCP here (and SCTP if this kernel has it); on SCTP in the guest below, which runs the
// host's corosync through hostfs. Not under qemu (arm64). About a minute.
if (!only || only === 'corosync') results.push(runNodeTests('corosync', corosyncFiles, { LOWCOMMS_TEST_TRANSPORTS: nativeSctp ? 'tcp,sctp' : 'tcp' }));
const corosyncSctpFiles = corosyncFiles.filter((f) => /membership/.test(f));

if (!only || only === 'net' || only === 'uml') {
  const files = [...(only === 'uml' ? [] : netFiles), ...umlFiles, ...(only === 'uml' ? [] : corosyncSctpFiles)];
  if (nativeSctp) {
    // This kernel has SCTP: the net suites ran with it above. The guest tests still run in
    // the guest: they build namespaces, netem links and a kernel DLM node (dlm.ko) there.
    if (umlFiles.length && only !== 'net')
      results.push(runNodeTests('uml-guest', umlFiles, { LOWCOMMS_TEST_TRANSPORTS: 'sctp' }, ['bash', 'scripts/uml-run.sh', '--timeout', '1500', '--']));
    sctpCount = -1;
  } else {
    const r = runNodeTests('uml-sctp', files, { LOWCOMMS_TEST_TRANSPORTS: 'sctp' }, [
      'bash',
      'scripts/uml-run.sh',
      '--timeout',
      '1500',
      '--',
    ]);
    results.push(r);
    sctpCount = r.pass + r.fail;
    if (r.pass === 0) {
      console.error('no SCTP test passed inside user-mode-linux: that is a failure, not a skip');
      r.fail += 1;
    }
  }
}

// Fuzzing: each libFuzzer target (native/fuzz/README.md says what each checks) for a bounded time (LOWCOMMS_FUZZ_SECONDS, default 60).
if (!only || only === 'fuzz') {
  const seconds = process.env.LOWCOMMS_FUZZ_SECONDS ?? '60';
  const res = { pass: 0, fail: 0, skipped: 0, todo: 0, cancelled: 0 };
  for (const target of FUZZ_TARGETS) {
    console.log(`\n=== fuzz ${target}: ${seconds} s ===`);
    const r = spawnSync('bash', ['scripts/fuzz.sh', seconds, target], { stdio: 'inherit' });
    if (r.status === 0) res.pass++;
    else res.fail++;
  }
  console.log(`=== fuzz: ${res.pass} passed, ${res.fail} failed ===`);
  results.push(res);
}

// Sanitizers: the addon built with ASan + UBSan + LeakSanitizer, the host suites on TCP.
if (!only || only === 'asan') {
  console.log('\n=== asan: ASan + UBSan + LSan build, host suites on TCP ===');
  // corosyncFiles: the membership thread and the dlopen'd client libraries under ASan too (about 50 s).
  results.push(runNodeTests('asan', [...unitFiles.filter((f) => !/cli|uml-harness|nodetable|corosync/.test(f)), ...netFiles, ...corosyncFiles], { LOWCOMMS_TEST_TRANSPORTS: 'tcp', LOWCOMMS_SOAK_SECONDS: '15', LOWCOMMS_TEST_MESSAGES: '20000', LOWCOMMS_TEST_KILLS: '50', LOWCOMMS_TEST_RESTARTS: '15' }, ['bash', 'scripts/test-asan.sh']));
}

// ThreadSanitizer: the addon built with -fsanitize=thread, libtsan preloaded into node
// (not instrumented itself), the host suites on TCP; any report touching our code fails
// the stage (scripts/tsan-check.mjs). Smaller counts: TSan runs the native code 5-15x slower.
if (!only || only === 'tsan') {
  console.log('\n=== tsan: ThreadSanitizer build, host suites on TCP ===');
  // corosyncFiles: the membership thread's dispatch against the JS thread (about 40 s).
  const files = [...unitFiles.filter((f) => !/cli|uml-harness|nodetable|corosync/.test(f)), ...netFiles.filter((f) => !/soak|\/auth\.test/.test(f)), ...corosyncFiles];
  results.push(runNodeTests('tsan', files, { LOWCOMMS_TEST_TRANSPORTS: 'tcp', LOWCOMMS_TEST_MESSAGES: '5000', LOWCOMMS_TEST_KILLS: '20', LOWCOMMS_TEST_RESTARTS: '10' }, ['bash', 'scripts/test-tsan.sh']));
}

// UBSan on SCTP: ASan cannot run in the guest, so the SCTP-only native paths get the
// undefined-behaviour sanitizer there (test-ubsan.sh boots the guest when needed).
if (!only || only === 'ubsan') {
  console.log('\n=== ubsan-sctp: UBSan build, the transport suites on SCTP ===');
  const r = runNodeTests('ubsan-sctp', [...netFiles, ...umlFiles], { LOWCOMMS_TEST_TRANSPORTS: 'sctp', LOWCOMMS_SOAK_SECONDS: '15', LOWCOMMS_TEST_MESSAGES: '20000', LOWCOMMS_TEST_KILLS: '50', LOWCOMMS_TEST_RESTARTS: '15' }, ['bash', 'scripts/test-ubsan.sh']);
  if (r.pass === 0) {
    console.error('no SCTP test passed under UBSan: that is a failure, not a skip');
    r.fail += 1;
  }
  results.push(r);
  if (sctpCount >= 0) sctpCount += r.pass + r.fail;
}

// Other Node versions and arm64: the binaries come from the registry's node-linux-*
// packages (scripts/node-versions.sh, cached). On arm64 everything runs under qemu.
const nodeBin = (major, arch) => {
  const r = spawnSync('bash', ['scripts/node-versions.sh', 'path', String(major), arch], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return r.status === 0 ? r.stdout.trim() : undefined;
};
const failed = (label) => (console.error(`${label}: could not install its Node - counted as a failure`), { pass: 0, fail: 1, skipped: 0, todo: 0, cancelled: 0 });
const portable = [...unitFiles, ...netFiles].filter((f) => !/uml-harness/.test(f)); // the harness is not Node's
if (!only || only === 'node-versions') {
  for (const major of spawnSync('bash', ['scripts/node-versions.sh', 'list'], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean)) {
    const node = nodeBin(major, 'x64');
    results.push(node ? runNodeTests(`host-node${major}`, portable, { LOWCOMMS_TEST_TRANSPORTS: 'tcp', LOWCOMMS_TEST_RESTARTS: '15' }, [], node) : failed(`host-node${major}`));
  }
}
// arm64 leaves out the CLI's benchmarks (3 min emulated, and they measure qemu): the
// CLI is TypeScript only, tested on every x64 Node above.
// contract-native's capability test is left out there too: as nobody (setpriv), the
// emulated node exits 1 before running any JS under qemu-user; the errno mapping it checks
// is the same code on both architectures and runs on every x64 Node above.
const ARM64_FILES = portable.filter((f) => !/cli\.test|contract-native/.test(f));
if (!only || only === 'arm64') {
  const major = spawnSync('bash', ['scripts/node-versions.sh', 'arm64-major'], { encoding: 'utf8' }).stdout.trim();
  const node = nodeBin(major, 'arm64');
  results.push(node ? runNodeTests(`arm64-node${major}`, ARM64_FILES, { LOWCOMMS_TEST_TRANSPORTS: 'tcp', LOWCOMMS_TEST_RESTARTS: '5' }, ['bash', 'scripts/test-arm64.sh'], node) : failed(`arm64-node${major}`));
  console.log('\n=== pack: the tarball holds and loads both prebuilds ===');
  const r = spawnSync('bash', ['scripts/check-pack.sh', '--build'], { stdio: 'inherit' });
  results.push({ pass: r.status === 0 ? 1 : 0, fail: r.status === 0 ? 0 : 1, skipped: 0, todo: 0, cancelled: 0 });
}

const total = results.reduce(
  (a, r) => ({ pass: a.pass + r.pass, fail: a.fail + r.fail, notRun: a.notRun + r.skipped + r.todo + r.cancelled }),
  { pass: 0, fail: 0, notRun: 0 },
);
console.log('');
if (sctpCount >= 0) console.log(`SCTP: ${sctpCount} tests ran on real kernel SCTP inside user-mode-linux`);
else console.log('SCTP: the host kernel has SCTP; the SCTP tests ran natively (see the host run)');
console.log(`${total.pass} passed, ${total.fail} failed${total.notRun ? ` (${total.notRun} of them skipped, todo or cancelled)` : ''}`);
fs.rmSync(tmp, { recursive: true, force: true });
process.exit(total.fail === 0 && total.pass > 0 ? 0 : 1);
