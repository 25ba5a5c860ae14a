/** The bench's progress line on a terminal: bar, count, time left and what runs now. */
import type { Progress } from './bench';

const WIDTH = 30;

function duration(s: number): string {
  return s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

export function progressBar(out: NodeJS.WriteStream = process.stderr): Progress {
  let total = 0;
  let done = 0;
  let started = 0;
  const draw = (label: string) => {
    const filled = total ? Math.round((WIDTH * Math.min(done, total)) / total) : 0;
    // Time left: the mean step so far times the steps left (unknown before the first).
    const eta = done ? duration((((Date.now() - started) / done) * (total - done)) / 1000) : '?';
    const text = ` ${'█'.repeat(filled)}${'░'.repeat(WIDTH - filled)} ${done}/${total} | ETA ${eta} | ${label}`;
    // Clip to the terminal so the line never wraps (\r could not take it back).
    out.write(`\r${text.slice(0, Math.max(20, (out.columns || 100) - 1))}\u001b[K`);
  };
  let steps = 0;
  return {
    start(n) {
      total = n;
      started = Date.now();
      draw('starting');
    },
    // step(label) announces the next step: the one before it is done.
    step(label) {
      done = steps++;
      draw(label);
    },
    stop() {
      done = total;
      draw('done');
      out.write('\n');
    },
  };
}
