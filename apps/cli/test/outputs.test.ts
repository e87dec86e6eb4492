import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DISPLAY_SIDE, publishFolder } from '../src/outputs.js';
import { dexar, expectUsageError, llavaTiny, root } from './helpers.js';

/** An earlier run's output with two token maps. */
async function earlierOutput(): Promise<{ parent: string; out: string }> {
  const parent = await mkdtemp(join(tmpdir(), 'dexar-out-'));
  const out = join(parent, 'out');
  await mkdir(join(out, 'tokens'), { recursive: true });
  await writeFile(join(out, 'result.json'), 'old');
  await writeFile(join(out, 'tokens/00-a.png'), 'old');
  await writeFile(join(out, 'tokens/01-b.png'), 'old');
  return { parent, out };
}

const writeShorterAnswer = async (dir: string) => {
  await mkdir(join(dir, 'tokens'));
  await writeFile(join(dir, 'result.json'), 'new');
  await writeFile(join(dir, 'tokens/00-c.png'), 'new');
};

describe('output folders', () => {
  it('replaces an earlier output whole: no token map of a longer answer stays, no temporary folder', async () => {
    const { parent, out } = await earlierOutput();
    await publishFolder(out, writeShorterAnswer);
    expect(await readdir(join(out, 'tokens'))).toEqual(['00-c.png']);
    expect(await readFile(join(out, 'result.json'), 'utf8')).toBe('new');
    expect(await readdir(parent)).toEqual(['out']);
  });

  it('refuses a folder holding files dexar did not write and leaves it intact', async () => {
    const { out } = await earlierOutput();
    await writeFile(join(out, 'notes.txt'), 'mine');
    await expect(publishFolder(out, writeShorterAnswer)).rejects.toThrowError(
      /--out .* holds files dexar did not write \(notes\.txt\): name a new or empty folder/,
    );
    expect((await readdir(out)).sort()).toEqual(['notes.txt', 'result.json', 'tokens']);
    expect(await readdir(join(out, 'tokens'))).toHaveLength(2);
  });

  it('names a file in the way of --out, or of a folder above it, in one line', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'dexar-out-'));
    await writeFile(join(parent, 'file'), 'x');
    await expect(publishFolder(join(parent, 'file'), writeShorterAnswer)).rejects.toThrowError(
      /--out .*file is not a folder/,
    );
    await expect(publishFolder(join(parent, 'file/below'), writeShorterAnswer)).rejects.toThrowError(
      /cannot write --out .*file\/below \(a file is in the way\): pick a writable folder/,
    );
    expect(await readdir(parent)).toEqual(['file']);
  });

  it('on SIGTERM while writing, removes the partial folder, keeps the earlier output and ends by the signal', async () => {
    const { parent, out } = await earlierOutput();
    const outputs = pathToFileURL(join(root, 'apps/cli/dist/outputs.js')).href;
    const script = `
      import { writeFileSync } from 'node:fs';
      import { publishFolder } from ${JSON.stringify(outputs)};
      setInterval(() => {}, 1 << 30);
      await publishFolder(${JSON.stringify(out)}, async (dir) => {
        writeFileSync(dir + '/result.json', 'half');
        process.stdout.write('writing\\n');
        await new Promise(() => {});
      });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script]);
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGTERM');
    const [, signal] = await new Promise<[number | null, string | null]>((resolve) =>
      child.on('exit', (code, sig) => resolve([code, sig])),
    );
    expect(signal).toBe('SIGTERM');
    expect(await readdir(parent)).toEqual(['out']);
    expect(await readFile(join(out, 'result.json'), 'utf8')).toBe('old');
  });

  it('refuses an empty --out and a model folder as --out before any work', async () => {
    expectUsageError(await dexar('explain', '--out', ''), /--out is empty: name a folder/);
    const model = await mkdtemp(join(tmpdir(), 'dexar-model-'));
    await cp(llavaTiny, model, { recursive: true });
    const before = (await readdir(model)).sort();
    expectUsageError(
      await dexar('explain', '--model', model, '--out', model),
      /holds files dexar did not write \(.+\): name a new or empty folder/,
    );
    expect((await readdir(model)).sort()).toEqual(before);
  });

  it('draws the overlays of a photo at a bounded size, so its report stays small', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-photo-'));
    const noise = { type: 'gaussian', mean: 128, sigma: 40 } as const;
    await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080', noise } })
      .png()
      .toFile(join(dir, 'photo.png'));
    const run = await dexar(
      'explain',
      '--model',
      llavaTiny,
      '--image',
      join(dir, 'photo.png'),
      '--target',
      'a red circle',
      '--out',
      join(dir, 'out'),
      '--quiet',
    );
    expect(run.stderr).toBe('');
    const sentence = await sharp(join(dir, 'out/sentence.png')).metadata();
    expect(Math.max(sentence.width ?? 0, sentence.height ?? 0)).toBe(DISPLAY_SIDE.max);
    expect((await stat(join(dir, 'out/report.html'))).size).toBeLessThan(8 * 1024 * 1024);
  });
});
