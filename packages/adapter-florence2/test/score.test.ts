import type { FamilyModel, PreparedInput } from '@dexar/core/adapter';
import { nodeBackend } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, halvedAndClean, openFixtureModel, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import '../src/index.js';

const backend = nodeBackend({ threads: 1 });

describe('florence2-tiny: batched teacher-forced scoring through encoder and decoder', () => {
  let model: FamilyModel;
  let input: PreparedInput;
  let greedy: number[];
  let N: number;
  const score = (targets: readonly number[], batch: Parameters<NonNullable<FamilyModel['scoreTargets']>>[2]) =>
    model.scoreTargets?.(input, targets, batch) as Promise<Float64Array>;
  beforeAll(async () => {
    ({ model } = await openFixtureModel('florence2-tiny', backend));
    const c = referenceCases('florence2-tiny')[0];
    const image = await caseImage(c);
    input = await model.prepare(image, c.prompt);
    greedy = await model.generate(input, 4);
    const keys = (input as never as { imageKeys: { start: number; end: number } }).imageKeys;
    N = keys.end - keys.start;
  });
  afterAll(() => model.release());

  it('gives each greedy token the highest probability at its step', async () => {
    expect(greedy.length).toBeGreaterThan(1);
    for (const n of [0, greedy.length - 1]) {
      const best = await score(greedy.slice(0, n + 1), { size: 1 });
      for (const v of [3, 7, 11, 42, greedy[n] + 1]) {
        if (v === greedy[n]) continue;
        const other = await score([...greedy.slice(0, n), v], { size: 1 });
        expect(best[n]).toBeGreaterThan(other[n]);
      }
    }
  });

  it('scores a batch of images like the images one by one, the prepared image like no image', async () => {
    const pixels = input.pixels as NonNullable<PreparedInput['pixels']>;
    const { data, dims } = halvedAndClean(pixels);
    const batch = await score(greedy, { size: 2, pixels: { data, dims } });
    const clean = await score(greedy, { size: 1 });
    const T = greedy.length;
    for (let n = 0; n < T; n++) expect(batch[T + n]).toBeCloseTo(clean[n], 5);
    expect(Math.max(...greedy.map((_, n) => Math.abs(batch[n] - clean[n])))).toBeGreaterThan(1e-4);
    const halved = await score(greedy, {
      size: 1,
      pixels: { data: data.subarray(0, pixels.data.length), dims: pixels.dims },
    });
    for (let n = 0; n < T; n++) expect(halved[n]).toBeCloseTo(batch[n], 5);
  });

  it('hides image tokens from encoder and decoder per row; a mask of ones changes nothing', async () => {
    const mask = new Uint8Array(3 * N).fill(1);
    for (let j = 0; j < N; j += 2) mask[N + j] = 0;
    mask.fill(0, 2 * N, 3 * N);
    const masked = await score(greedy, { size: 3, imageTokenMask: mask });
    const clean = await score(greedy, { size: 1 });
    const T = greedy.length;
    const diff = (row: number) => Math.max(...greedy.map((_, n) => Math.abs(masked[row * T + n] - clean[n])));
    expect(diff(0)).toBeLessThan(1e-5);
    expect(diff(1)).toBeGreaterThan(1e-4);
    expect(diff(2)).toBeGreaterThan(1e-4);
  });

  it('rejects a batch whose pixels or mask do not match its size', async () => {
    await expect(score(greedy, { size: 2, imageTokenMask: new Uint8Array(N) })).rejects.toThrow(
      /image token mask holds/,
    );
    const pixels = input.pixels as NonNullable<PreparedInput['pixels']>;
    await expect(score(greedy, { size: 2, pixels })).rejects.toThrow(/do not hold 2 images/);
    await expect(score([], { size: 1 })).rejects.toThrow(/positive batch size and targets/);
  });
});
