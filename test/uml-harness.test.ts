// Checks scripts/uml-run.sh for real: boots user-mode-linux guests (about 2-3 s
// each, run concurrently) and looks at what comes back. Also checks
// scripts/has-sctp.sh on the host and inside a guest.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const umlRun = path.join(root, 'scripts', 'uml-run.sh');
const hasSctp = path.join(root, 'scripts', 'has-sctp.sh');

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? root,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: Date.now() - started,
      });
    });
  });
}

function explain(r: RunResult): string {
  return `exit ${String(r.code)} signal ${String(r.signal)} after ${r.ms} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** Processes whose command line mentions `needle` (e.g. a private TMPDIR). */
function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(needle)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process went away
    }
  }
  return found;
}

function umlAvailable(): boolean {
  const kernel = process.env['LOWCOMMS_UML_KERNEL'] ?? 'linux.uml';
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', kernel], { stdio: 'ignore' }).status === 0;
}

// Inside a guest the harness cannot be tested (nested UML does not work): that is a
// skip, which the test runner (scripts/run-tests.mjs) counts as a failure, so this file
// is never run there. A host without linux.uml fails (below), CI or not: a harness that
// was not tested did not pass.
const insideGuest = process.env['LOWCOMMS_UML'] === '1';
const skip: string | false = insideGuest ? 'already inside a user-mode-linux guest (nested UML does not work)' : false;

test('linux.uml is installed (scripts/setup-system.sh installs it)', { skip }, () => {
  assert.ok(umlAvailable(), `${process.env['LOWCOMMS_UML_KERNEL'] ?? 'linux.uml'} not found in PATH: run scripts/setup-system.sh`);
});

// One SCTP one-to-many round trip over 127.0.0.1, in python3 inside the guest.
const sctpEcho = `
import socket
P = getattr(socket, "IPPROTO_SCTP", 132)
srv = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, P)
srv.settimeout(20)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
cli = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, P)
cli.settimeout(20)
cli.sendto(b"ping", srv.getsockname())
data, peer = srv.recvfrom(1024)
srv.sendto(b"pong:" + data, peer)
reply, _ = cli.recvfrom(1024)
assert reply == b"pong:ping", reply
print("sctp=" + reply.decode())
`;

// Everything that needs a boot with exit status 3, in one guest.
const guestScript = `
set -u
echo OUT-MARK
echo ERR-MARK >&2
echo "cwd=$(pwd)"
echo "uml=\${LOWCOMMS_UML-unset}"
echo "passed=\${LOWCOMMS_TEST_PASSED-unset}"
echo "extra=\${UML_TEST_EXTRA-unset}"
echo "notpassed=\${UML_TEST_NOT_PASSED-unset}"
echo written-in-guest > from-guest.txt
# the system python: version-manager shims (pyenv) take seconds to start in UML
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
"$PY" sctp_echo.py || echo "sctp=FAILED"
if ip netns add x && ip netns exec x ip link set lo up && ip netns list | grep -qw x; then
  echo netns=ok
else
  echo netns=FAILED
fi
echo "rmem_max=$(cat /proc/sys/net/core/rmem_max)"
echo "wmem_max=$(cat /proc/sys/net/core/wmem_max)"
"$HAS_SCTP"; echo "has_sctp_status=$?"
exit 3
`;

describe('scripts/uml-run.sh (user-mode-linux harness)', { skip, concurrency: true, timeout: 240_000 }, () => {
  test('one guest: exit status 3, stdout/stderr, cwd, env, SCTP round trip, ip netns', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'uml-harness-cwd-'));
    try {
      fs.writeFileSync(path.join(cwd, 'sctp_echo.py'), sctpEcho);
      const env = {
        ...process.env,
        LOWCOMMS_TEST_PASSED: 'yes',
        UML_TEST_NOT_PASSED: 'leaked',
        UML_TEST_EXTRA: 'from-host',
        HAS_SCTP: hasSctp,
      };
      const r = await run(umlRun, ['--env', 'UML_TEST_EXTRA', '--env', 'HAS_SCTP', '--', 'bash', '-c', guestScript], {
        cwd,
        env,
      });
      const info = explain(r);
      assert.equal(r.code, 3, info);
      const lines = r.stdout.split('\n');
      assert.equal(lines[0], 'OUT-MARK', `stdout must start with the command's output only\n${info}`);
      assert.ok(r.stderr.includes('ERR-MARK'), info);
      assert.ok(!r.stdout.includes('ERR-MARK'), `stderr must not leak into stdout\n${info}`);
      assert.ok(lines.includes(`cwd=${cwd}`), info);
      assert.ok(lines.includes('uml=1'), info);
      assert.ok(lines.includes('passed=yes'), `LOWCOMMS_* must pass through\n${info}`);
      assert.ok(lines.includes('extra=from-host'), `--env NAME must pass through\n${info}`);
      assert.ok(lines.includes('notpassed=unset'), `other variables must not pass\n${info}`);
      assert.ok(lines.includes('sctp=pong:ping'), info);
      assert.ok(lines.includes('netns=ok'), info);
      assert.ok(lines.includes('has_sctp_status=0'), info);
      assert.ok(lines.some((l) => /^SCTP: available on kernel .*user-mode-linux guest/.test(l)), info);
      for (const key of ['rmem_max', 'wmem_max']) {
        const line = lines.find((l) => l.startsWith(`${key}=`));
        assert.ok(line !== undefined && Number(line.slice(key.length + 1)) >= 8 * 1024 * 1024, info);
      }
      assert.equal(fs.readFileSync(path.join(cwd, 'from-guest.txt'), 'utf8'), 'written-in-guest\n');
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  test('exit status 0; large stdout and stderr come back whole, without console noise', async () => {
    const r = await run(umlRun, ['--mem', '1G', '--', 'bash', '-c', 'seq 1 100000; seq 1 20000 >&2']);
    const seq = (n: number): string => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join('');
    assert.equal(r.code, 0, explain(r));
    assert.ok(r.stdout === seq(100000), `stdout differs (${r.stdout.length} chars)\n${r.stdout.slice(0, 500)}`);
    assert.ok(r.stderr === seq(20000), `stderr differs (${r.stderr.length} chars)\n${r.stderr.slice(0, 500)}`);
  });

  test('--timeout kills the guest: exit 124, output so far kept, nothing left behind', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uml-harness-tmp-'));
    try {
      // The timeout counts from launch, boot included: with other guests booting beside
      // this one on a loaded 2-CPU machine, boot alone has taken over 12 s.
      const r = await run(umlRun, ['--timeout', '40', '--', 'bash', '-c', 'echo started; exec sleep 300'], {
        env: { ...process.env, TMPDIR: tmp },
      });
      assert.equal(r.code, 124, explain(r));
      assert.equal(r.stdout, 'started\n', explain(r));
      assert.match(r.stderr, /TIMEOUT/);
      assert.ok(r.ms < 100_000, explain(r));
      assert.deepEqual(fs.readdirSync(tmp), [], 'the run directory must be removed');
      assert.deepEqual(processesMentioning(tmp), [], 'no linux.uml may be left running');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a guest that cannot run the command: exit 125 with a loud message and the console tail', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uml-harness-tmp-'));
    try {
      const r = await run(umlRun, ['--module', 'no_such_module_xyz', '--', 'echo', 'must-not-run'], {
        env: { ...process.env, TMPDIR: tmp },
      });
      assert.equal(r.code, 125, explain(r));
      assert.equal(r.stdout, '', explain(r));
      assert.match(r.stderr, /HARNESS FAILURE/);
      assert.match(r.stderr, /no_such_module_xyz/);
      assert.match(r.stderr, /last lines of the guest console/);
      assert.deepEqual(fs.readdirSync(tmp), [], 'the run directory must be removed');
      assert.deepEqual(processesMentioning(tmp), [], 'no linux.uml may be left running');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a guest that dies under the command (kernel panic): exit 125, output so far kept', async () => {
    const r = await run(umlRun, ['--', 'bash', '-c', 'echo before-crash; echo c > /proc/sysrq-trigger; echo after']);
    assert.equal(r.code, 125, explain(r));
    assert.equal(r.stdout, 'before-crash\n', explain(r));
    assert.match(r.stderr, /HARNESS FAILURE: the guest died while the command was running/);
    assert.match(r.stderr, /Kernel panic/);
  });

  test('usage errors exit 125 without booting', async () => {
    for (const args of [[], ['--mem', 'lots', '--', 'true'], ['--timeout', '-1', '--', 'true'], ['true']]) {
      const r = await run(umlRun, args);
      assert.equal(r.code, 125, `${JSON.stringify(args)}: ${explain(r)}`);
      assert.ok(r.ms < 10_000, explain(r));
    }
    const help = await run(umlRun, ['--help']);
    assert.equal(help.code, 0, explain(help));
    assert.match(help.stdout, /usage: uml-run\.sh/);
  });
});

test('scripts/has-sctp.sh on this host prints one line and exits 0 or 1', async () => {
  const r = await run(hasSctp, []);
  assert.ok(r.code === 0 || r.code === 1, explain(r));
  assert.match(r.stdout, r.code === 0 ? /^SCTP: available on kernel \S+.*\n$/ : /^SCTP: not available on kernel \S+.*\n$/);
});
