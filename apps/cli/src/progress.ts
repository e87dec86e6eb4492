import type { ProgressCallback } from '@dexar/core/adapter';

/** Progress on stderr: a redrawn line on a terminal, one line per step otherwise. */
export function stderrProgress(enabled: boolean): ProgressCallback {
  if (!enabled) return () => {};
  const tty = process.stderr.isTTY;
  return (event) => {
    const counted = event.total ? ` ${bar(event.done ?? 0, event.total)} ${event.done ?? 0}/${event.total}` : '';
    const line = `dexar: ${event.stage}${counted}${event.detail ? ` ${event.detail}` : ''}`;
    if (tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      if (!event.total || event.done === event.total) process.stderr.write('\n');
    } else if (!event.total || event.done === event.total || event.done === 0) {
      process.stderr.write(`${line}\n`);
    }
  };
}

function bar(done: number, total: number): string {
  const width = 20;
  const full = Math.round((width * done) / total);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
