// Read-only places, as a read-only mount makes them for anyone, root included: dexar explains a
// model folder it cannot write into (the explain graph and its probe record go to the user cache),
// and an --out on a read-only mount is one line naming the problem, not a raw EROFS.
import { cp, mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dexarOnReadOnlyMount, expectUsageError, llavaTiny } from './helpers.js';

const referenceImage = join(llavaTiny, '../../references/llava-tiny/case0/image.png');

/** A private copy of the tiny LLaVA without cached explain graphs, a user cache and an output folder. */
async function workspace(): Promise<{ model: string; cache: string; out: string }> {
  const work = await mkdtemp(join(tmpdir(), 'dexar-read-only-'));
  const model = join(work, 'model');
  await cp(llavaTiny, model, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\.(onnx|json)$/.test(src) });
  const out = join(work, 'out');
  await mkdir(out);
  return { model, cache: join(work, 'user-cache'), out: join(out, 'result') };
}

describe('read-only mounts', () => {
  it('explains a model folder on a read-only mount through the user cache, and again from it', async () => {
    const { model, cache, out } = await workspace();
    const args = ['explain', '--model', model, '--image', referenceImage, '--target', 'a red circle', '--out', out];
    const first = await dexarOnReadOnlyMount(model, { DEXAR_CACHE_DIR: cache }, ...args);
    expect(first.stderr).toMatch(/building the explain graph/);
    expect(first.code).toBe(0);
    expect((await readdir(join(model, 'onnx'))).filter((f) => f.includes('.dexar-'))).toEqual([]);
    expect(await readdir(join(cache, 'explain-graphs'))).toHaveLength(1);
    const again = await dexarOnReadOnlyMount(model, { DEXAR_CACHE_DIR: cache }, ...args);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/explain graph from cache/);
  });

  it('refuses an --out on a read-only mount in one line', async () => {
    const { model, out } = await workspace();
    const parent = join(out, '..');
    const run = await dexarOnReadOnlyMount(
      parent,
      {},
      ...['explain', '--model', model, '--image', referenceImage, '--target', 'a red circle', '--out', out, '--quiet'],
    );
    expectUsageError(
      run,
      /^dexar: error: cannot write --out .* \(the location is read-only\): pick a writable folder$/m,
    );
    expect(await readdir(parent)).toEqual([]);
  });
});
