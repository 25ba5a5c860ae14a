/**
 * What the tests of test/uml need from the user-mode-linux guest (scripts/uml-run.sh):
 * root, the guest's own kernel modules (netem, tbf, dlm, ...), shell tools and the
 * kernel log. Nothing here skips: a missing guest or module throws, so the test fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Throws unless we run as root inside the guest (or as root on a kernel that has the modules). */
export function requireGuest(what: string): void {
  if (process.getuid?.() !== 0)
    throw new Error(`${what} needs root inside the user-mode-linux guest: run it through scripts/uml-run.sh`);
  if (process.env.LOWCOMMS_UML !== '1' && !process.env.LOWCOMMS_GUEST_OK)
    throw new Error(`${what} changes the kernel's network and DLM state: it runs only inside the guest (scripts/uml-run.sh)`);
}

let modroot: string | undefined;

/**
 * Loads kernel modules of the running (guest) kernel. uml-run.sh loads only the SCTP
 * set; the rest live in /usr/lib/uml/modules/<release>, which modprobe finds through
 * a lib/modules/<release> symlink in a scratch directory (Debian ships modules.dep).
 */
export function loadModules(names: string[]): void {
  const rel = os.release();
  const src = process.env.LOWCOMMS_UML_MODULES ?? `/usr/lib/uml/modules/${rel}`;
  if (!fs.existsSync(path.join(src, 'modules.dep')) && !fs.existsSync(path.join(src, 'modules.dep.bin')))
    throw new Error(`no module index for kernel ${rel} in ${src}`);
  if (!modroot) {
    modroot = fs.mkdtempSync(path.join(os.tmpdir(), 'lc-mod-'));
    fs.mkdirSync(path.join(modroot, 'lib', 'modules'), { recursive: true });
    fs.symlinkSync(src, path.join(modroot, 'lib', 'modules', rel));
  }
  const r = spawnSync('modprobe', ['-a', '-d', modroot, '-S', rel, ...names], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`modprobe ${names.join(' ')} failed: ${r.stderr || r.error}`);
}

/** Runs a command, throws with its stderr on failure, returns stdout. */
export function sh(cmd: string, ...args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Like sh() but ignores failure (cleanup paths). */
export function shQuiet(cmd: string, ...args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore' });
}

/** The kernel log since boot, as lines (dmesg reads it through syslog(2)). */
export function dmesg(): string[] {
  return sh('dmesg').split('\n');
}

/** Lines of the kernel log written after `mark` (a line count taken with dmesg().length). */
export function dmesgSince(mark: number): string[] {
  return dmesg().slice(Math.max(0, mark - 1));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `stepMs` until it holds or `ms` passed; returns whether it held. */
export async function waitFor(cond: () => boolean, ms: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}
