import type { FamilyModel, PreparedInput } from '@dexar/core/adapter';
import { nodeBackend } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, halvedAndClean, openFixtureModel, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import '../src/index.js';

const backend = nodeBackend({ threads: 1 });

describe('paligemma-tiny: batched teacher-forced scoring through the prefix call', () => {
  let model: FamilyModel;
  let input: PreparedInput;
  let greedy: number[];
  beforeAll(async () => {
    ({ model } = await openFixtureModel('paligemma-tiny', backend));
    const c = referenceCases('paligemma-tiny')[0];
    const image = await caseImage(c);
    input = await model.prepare(image, c.prompt);
    greedy = await model.generate(input, 4);
  });
  afterAll(() => model.release());

  it('gives each greedy token the highest probability at its step (prefix bidirectional, answer causal)', async () => {
    expect(greedy.length).toBeGreaterThan(1);
    for (const n of [0, greedy.length - 1]) {
      const alternatives = [greedy[n], 3, 7, 11, 42, 100, greedy[n] + 1];
      const best = await model.scoreTargets?.(input, greedy.slice(0, n + 1), { size: 1 });
      for (const v of alternatives.slice(1)) {
        const other = await model.scoreTargets?.(input, [...greedy.slice(0, n), v], { size: 1 });
        expect(best?.[n]).toBeGreaterThanOrEqual(other?.[n] as number);
      }
    }
  });

  it('scores a batch of variants like the variants one by one', async () => {
    const pixels = input.pixels as NonNullable<PreparedInput['pixels']>;
    const { data, dims } = halvedAndClean(pixels);
    const batch = (await model.scoreTargets?.(input, greedy, { size: 2, pixels: { data, dims } })) as Float64Array;
    const clean = (await model.scoreTargets?.(input, greedy, { size: 1 })) as Float64Array;
    const T = greedy.length;
    for (let n = 0; n < T; n++) expect(batch[T + n]).toBeCloseTo(clean[n], 4);
    expect(Math.max(...greedy.map((_, n) => Math.abs(batch[n] - clean[n])))).toBeGreaterThan(1e-4);
  });
});
