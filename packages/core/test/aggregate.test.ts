import { describe, expect, it } from 'vitest';
import {
  aggregate,
  causalTextKeys,
  type DexarError,
  ExplanationSchema,
  type GradientRows,
  type TokenLayout,
  tensor,
  toExplanation,
} from '../src/index.js';
import { conformanceCases, gradientRowsOf, layoutOf, loadCase } from './conformance.js';

const TOLERANCE = 1e-5; // conformance/README.md: from raw.grad_rows, final maps within 1e-5

function maxAbsDiff(actual: ArrayLike<number>, expected: number[]): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

describe.each(conformanceCases)('conformance %s', (name) => {
  const c = loadCase(name);
  describe.each(['official', 'paper'] as const)('compat %s', (compat) => {
    it.each([0, -2])('layerIndex %i matches every result field', (layerIndex) => {
      const ref = c.results[compat][`layer_index_${layerIndex}`];
      const maps = aggregate(gradientRowsOf(c, compat), layoutOf(c, compat), {
        layerIndex,
        compat,
      });
      expect(maxAbsDiff(maps.perToken, ref.per_token_heatmaps.flat(2))).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(maps.perTokenUnfiltered, ref.per_token_heatmaps_unfiltered.flat(2))).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(maps.tokenWeights, ref.token_weights)).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(maps.sentence, ref.sentence_heatmap.flat())).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(maps.sentenceUnfiltered, ref.sentence_heatmap_unfiltered.flat())).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(maps.headWeights, ref.head_filter_weights.flat(2))).toBeLessThan(TOLERANCE);
      expect(maps.layersUsed).toEqual(layerIndex === 0 ? [0, 1, 2, 3] : [2, 3]);
    });
  });

  it('leaves the filtered map of a token with all head weights 0 at zero (official) and zero (paper)', () => {
    for (const compat of ['official', 'paper'] as const) {
      const maps = aggregate(gradientRowsOf(c, compat), layoutOf(c, compat), {
        layerIndex: 0,
        compat,
      });
      const H = 4;
      const silent = [...maps.tokenWeights.keys()].find((n) =>
        maps.headWeights.subarray(n * 4 * H, (n + 1) * 4 * H).every((w) => w === 0),
      );
      if (silent === undefined) continue;
      expect(Array.from(maps.perToken.subarray(silent * 64, (silent + 1) * 64)).every((v) => v === 0)).toBe(true);
      expect(maps.tokenWeights[silent]).toBe(0);
    }
  });

  it('produces a result that the shared JSON schema accepts', () => {
    const maps = aggregate(gradientRowsOf(c, 'official'), layoutOf(c, 'official'), {
      layerIndex: -2,
    });
    const result = toExplanation(maps, {
      tokens: c.tokens,
      tokenIds: c.target_ids,
      includeHeadWeights: true,
    });
    expect(ExplanationSchema.parse(JSON.parse(JSON.stringify(result)))).toEqual(result);
    expect(result.perTokenHeatmaps).toHaveLength(c.tokens.length);
    expect(result.headWeights?.[0]).toHaveLength(2);
  });
});

/** A synthetic case: `T` steps over `2 + 4` keys (2 text keys, then a 2 x 2 image), one layer, `H` heads. */
function synthetic(values: number[][][], numLayers = 1): { gradients: GradientRows; layout: TokenLayout } {
  const T = values.length;
  const H = values[0].length;
  const K = 6;
  const data = new Float32Array(values.flat(2));
  const imageKeys = { start: 2, end: 6 };
  const keyCounts = Array(T).fill(K);
  return {
    gradients: { rows: tensor(data, [T, 1, H, K]), layers: [numLayers - 1], numLayers },
    layout: {
      imageKeys,
      grid: { height: 2, width: 2 },
      keyCounts,
      textKeys: causalTextKeys(keyCounts, imageKeys),
    },
  };
}

describe('edge cases', () => {
  it('turns all-zero gradients into all-zero maps and weights in both modes', () => {
    const { gradients, layout } = synthetic([[[0, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0]]]);
    for (const compat of ['official', 'paper'] as const) {
      const maps = aggregate(gradients, layout, { compat, layerIndex: 0 });
      for (const field of [
        maps.perToken,
        maps.perTokenUnfiltered,
        maps.tokenWeights,
        maps.sentence,
        maps.sentenceUnfiltered,
      ]) {
        expect(Array.from(field).every((v) => v === 0)).toBe(true);
      }
    }
  });

  it('explains a single token by hand-computed numbers', () => {
    // text keys 0, 1; image keys 2..5. Head 0 looks at the image, head 1 at the text.
    const { gradients, layout } = synthetic([
      [
        [0.5, -1, 0, 2, 1, -3],
        [3, 0, 1, 0, 0, 0],
      ],
    ]);
    const maps = aggregate(gradients, layout, { compat: 'paper', layerIndex: 0 });
    expect(Array.from(maps.headWeights)).toEqual([1.5, 0]); // max(2 - 0.5, 0), max(1 - 3, 0)
    expect(maps.tokenWeights[0]).toBe(0); // max(max(2, 1) - max(0.5, 3), 0)
    expect(Array.from(maps.perToken)).toEqual([0, 1, 0.5, 0]); // N(1.5 * [0, 2, 1, 0])
    expect(Array.from(maps.perTokenUnfiltered)).toEqual([0.5, 1, 0.5, 0]); // N([1, 2, 1, 0])
    expect(Array.from(maps.sentence)).toEqual([0, 0, 0, 0]); // delta 0 everywhere
  });

  it('averages the top-k positive gradients when topK > 1', () => {
    const { gradients, layout } = synthetic([[[0.5, 0.25, 4, 2, 1, -3]]]);
    const maps = aggregate(gradients, layout, { compat: 'paper', layerIndex: 0, topK: 2 });
    expect(maps.headScoreImage[0]).toBe(3); // mean(4, 2)
    expect(maps.headScoreText[0]).toBe(0.375); // mean(0.5, 0.25)
  });

  it('weights each token by delta in the sentence map', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]], [[0, 0, 0, 0, 0, 3]]]);
    const maps = aggregate(gradients, layout, { compat: 'paper', layerIndex: 0 });
    expect(Array.from(maps.tokenWeights)).toEqual([1, 3]);
    expect(Array.from(maps.sentence)).toEqual([1 / 3, 0, 0, 1]);
  });

  it('rejects a layer index beyond the layer count with a clear error', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]], 4);
    expect(() => aggregate(gradients, layout, { layerIndex: 4 })).toThrowError(
      /layer index 4 is out of range for a model with 4 layers: use a value below 4 \(negative values count from the end, and below -4 start at layer 0\)/,
    );
    try {
      aggregate(gradients, layout, { layerIndex: 7 });
    } catch (error) {
      expect((error as DexarError).code).toBe('layer-out-of-range');
    }
  });

  it('asks for the missing layers when the rows do not cover the layer range', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]], 4);
    expect(() => aggregate(gradients, layout, { layerIndex: 0 })).toThrowError(/layer 0 is needed/);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY])('names token and layer when the rows hold %s', (bad) => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]], [[0, 0, 1, bad, 0, 0]]], 3);
    expect(() => aggregate(gradients, layout, { layerIndex: -1 })).toThrowError(
      new RegExp(`token 1, layer 2, head 0 holds ${bad} at key 3`),
    );
  });

  it('rejects invalid options with a one-line message', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    expect(() => aggregate(gradients, layout, { topK: 0 })).toThrowError(/invalid DEX-AR options: topK/);
    expect(() => aggregate(gradients, layout, { compat: 'nope' as 'paper' })).toThrowError(/compat/);
  });

  it('refuses a topK above the image token count before allocating for it', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    const N = layout.imageKeys.end - layout.imageKeys.start;
    expect(() => aggregate(gradients, layout, { topK: 1e9 })).toThrowError(
      new RegExp(`topK 1000000000 is more than the ${N} image tokens: use a value from 1 to ${N}`),
    );
  });

  it('rejects a layout whose grid does not match the image keys', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    expect(() => aggregate(gradients, { ...layout, grid: { height: 3, width: 3 } }, { layerIndex: 0 })).toThrowError(
      /image keys \[2, 6\) hold 4 positions but the grid 3 x 3 needs 9/,
    );
  });
});
