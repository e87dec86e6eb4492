import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-llava';
import type { Explanation } from '@dexar/core';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Explainer } from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface ReferenceResult {
  per_token_heatmaps: number[][][];
  per_token_heatmaps_unfiltered: number[][][];
  token_weights: number[];
  sentence_heatmap: number[][];
  sentence_heatmap_unfiltered: number[][];
}

function cases(model: string) {
  const dir = `${root}fixtures/references/${model}`;
  return readdirSync(dir)
    .filter((d) => d.startsWith('case'))
    .sort()
    .map((name) => ({
      name,
      dir: `${dir}/${name}`,
      ...JSON.parse(readFileSync(`${dir}/${name}/case.json`, 'utf8')),
    }));
}

function rawOf(result: Explanation) {
  if (!result.raw) throw new Error('returnRaw was set but the result has no raw rows');
  return result.raw;
}

function maxAbs(actual: number[], expected: number[]): number {
  expect(actual).toHaveLength(expected.length);
  return Math.max(0, ...actual.map((a, i) => Math.abs(a - expected[i])));
}

/** Heatmaps within 1e-4 absolute, token weights within 1e-4 relative (issue: explain pipeline, "Correct"). */
function expectMatches(result: Explanation, ref: ReferenceResult) {
  expect(maxAbs(result.perTokenHeatmaps.flat(2), ref.per_token_heatmaps.flat(2))).toBeLessThan(1e-4);
  expect(maxAbs(result.perTokenHeatmapsUnfiltered.flat(2), ref.per_token_heatmaps_unfiltered.flat(2))).toBeLessThan(
    1e-4,
  );
  expect(maxAbs(result.sentenceHeatmap.flat(), ref.sentence_heatmap.flat())).toBeLessThan(1e-4);
  expect(maxAbs(result.sentenceHeatmapUnfiltered.flat(), ref.sentence_heatmap_unfiltered.flat())).toBeLessThan(1e-4);
  result.tokenWeights.forEach((w, n) => {
    const expected = ref.token_weights[n];
    if (expected === 0) expect(w).toBe(0);
    else expect(Math.abs(w - expected) / Math.abs(expected)).toBeLessThan(1e-4);
  });
}

describe.each(['llava-tiny', 'bakllava-tiny'])('%s against the PyTorch reference', (model) => {
  let explainer: Explainer;
  beforeAll(async () => {
    explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(`${root}fixtures/models/${model}`),
    });
  });
  afterAll(() => explainer.release());

  describe.each(cases(model))('$name', (c) => {
    it.each([
      ['official', 0],
      ['official', -2],
      ['paper', 0],
      ['paper', -2],
    ] as const)('%s, layerIndex %i: single pass and stepwise match', async (compat, layerIndex) => {
      const image = await decodeImage(new Uint8Array(await readFile(`${c.dir}/image.png`)));
      const ref: ReferenceResult = c.results[compat][`layer_index_${layerIndex}`];
      const request = {
        prompt: c.prompt,
        targetIds: c.target_ids,
        compat,
        layerIndex,
        returnRaw: true,
      };
      const single = await explainer.explain(image, request);
      expectMatches(single, ref);
      expect(single.tokens).toEqual(c.tokens);
      const stepwise = await explainer.explain(image, { ...request, strategy: 'stepwise' });
      expectMatches(stepwise, ref);
      expect(maxAbs(rawOf(stepwise).gradientRows.flat(3), rawOf(single).gradientRows.flat(3))).toBeLessThan(1e-4);
      if (compat === 'official' && layerIndex === 0) {
        // Raw rows of the explain graph against PyTorch autograd: gradients 1e-4, attention 1e-5.
        expect(maxAbs(rawOf(single).gradientRows.flat(3), c.raw.grad_rows.flat(3))).toBeLessThan(1e-4);
        expect(maxAbs(rawOf(single).attentionRows.flat(3), c.raw.attn_rows.flat(3))).toBeLessThan(1e-5);
      }
    });
  });
});
