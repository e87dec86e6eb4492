import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExplanationSchema } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { dexar, expectUsageError, llavaTiny, root } from './helpers.js';

const referenceCase = join(root, 'fixtures/references/llava-tiny/case0');
const image = join(referenceCase, 'image.png');
const tiny = async (...args: string[]) => {
  const out = join(await mkdtemp(join(tmpdir(), 'dexar-args-')), 'out');
  return dexar('explain', '--model', llavaTiny, '--image', image, '--out', out, '--quiet', ...args);
};

describe('prompts and arguments', () => {
  it('reads the prompt and target from files as from the options', async () => {
    const reference = JSON.parse(await readFile(join(referenceCase, 'case.json'), 'utf8'));
    const dir = await mkdtemp(join(tmpdir(), 'dexar-args-'));
    await writeFile(join(dir, 'prompt.txt'), reference.prompt);
    await writeFile(join(dir, 'target.txt'), reference.target);
    const run = await tiny(
      '--prompt-file',
      join(dir, 'prompt.txt'),
      '--target-file',
      join(dir, 'target.txt'),
      '--json',
    );
    expect(run.stderr).toBe('');
    expect(ExplanationSchema.parse(JSON.parse(run.stdout)).tokens).toEqual(reference.tokens);
    expectUsageError(
      await tiny('--prompt', 'x', '--prompt-file', join(dir, 'prompt.txt')),
      /give --prompt or --prompt-file, not both/,
    );
  });

  it("refuses a target longer than the model's context before the runtime sees it", async () => {
    const run = await tiny('--target', 'a red circle '.repeat(2500));
    expectUsageError(run, /and the target \(\d+ tokens\) exceed the model's context of 4096 positions: shorten them/);
  });

  it('refuses text arguments over the character limit, without echoing them', async () => {
    const run = await tiny('--target', 'x'.repeat(70_000));
    expectUsageError(run, /--target is 70000 characters, over the 65536 limit/);
    expect(run.stderr.length).toBeLessThan(300);
  });

  it.each([
    [['--max-new-tokens', '0'], /--max-new-tokens must be from 1 to 65536, got "0"/],
    [['--threads', '100000'], /--threads must be from 1 to 256, got "100000"/],
    [['--threads', '0'], /--threads must be from 1 to 256, got "0"/],
    [['--top-k', '0'], /--top-k must be from 1 to/],
    [['--layer-index', '99999999999999999999'], /--layer-index must be from/],
  ])('refuses %j with one line', async (args, message) => {
    expectUsageError(await tiny(...args), message);
  });

  it('fails on --device cuda without CUDA in one line, with no native log', async () => {
    const run = await tiny('--device', 'cuda', '--target', 'a red circle');
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^dexar: error: cannot start the CUDA execution provider .*or use --device cpu$/),
    ]);
  });
});
