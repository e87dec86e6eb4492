/** What the CLI tests share: the built binary run as a user would run it, and the one-line usage-error check. */
import { type ChildProcess, execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const root = fileURLToPath(new URL('../../../', import.meta.url));
export const llavaTiny = join(root, 'fixtures/models/llava-tiny');
const bin = join(root, 'apps/cli/bin/dexar.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function dexar(...args: string[]): Promise<Run> {
  return startDexar(...args).done;
}

/** `dexar` started, for a test that signals the process while it runs; `done` settles when it exits. */
export function startDexar(...args: string[]): { child: ChildProcess; done: Promise<Run> } {
  let child: ChildProcess | undefined;
  const done = new Promise<Run>((resolve) => {
    child = execFile('node', [bin, ...args], { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
  return { child: child as ChildProcess, done };
}

/**
 * `dexar` with `readOnly` mounted read-only (a bind mount in a user and mount namespace of its own,
 * so it binds root too, whom file permissions do not), and `env` added to the environment.
 */
export function dexarOnReadOnlyMount(readOnly: string, env: Record<string, string>, ...args: string[]): Promise<Run> {
  const script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec node "$@"';
  return new Promise((resolve) => {
    execFile(
      'unshare',
      ['--map-root-user', '--mount', 'sh', '-c', script, readOnly, bin, ...args],
      { maxBuffer: 64 << 20, env: { ...process.env, ...env } },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    );
  });
}

/** A usage error: exit 2 and one line on stderr that names the problem. */
export function expectUsageError(run: Run, message: RegExp): void {
  expect(run.code).toBe(2);
  expect(run.stderr).toMatch(message);
  expect(run.stderr.trim().split('\n')).toHaveLength(1);
}
