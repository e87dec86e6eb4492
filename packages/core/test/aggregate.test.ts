import { describe, expect, it } from 'vitest';
import {
  aggregate,
  causalTextKeys,
  type DexarError,
  ExplanationSchema,
  type GradientRows,
  startAggregation,
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

  it.each(['official', 'paper'] as const)(
    'gives each token its final head weights, token weight and maps as its rows arrive (%s)',
    (compat) => {
      const gradients = gradientRowsOf(c, compat);
      const layout = layoutOf(c, compat);
      const whole = aggregate(gradients, layout, { layerIndex: -2, compat });
      const [T, L, H, K] = gradients.rows.dims as number[];
      const aggregation = startAggregation(
        { layers: gradients.layers, numLayers: gradients.numLayers, heads: H },
        layout,
        { layerIndex: -2, compat },
      );
      const N = whole.grid.height * whole.grid.width;
      const perHead = whole.layersUsed.length * H;
      for (let n = 0; n < T; n++) {
        // each token's rows in an array of their own, as a streaming run returns them
        const own = gradients.rows.data.slice(n * L * H * K, (n + 1) * L * H * K);
        const token = aggregation.addToken({ data: own, offset: 0, keys: K }, layout.keyCounts[n], layout.textKeys[n]);
        expect(token.tokenWeight).toBe(whole.tokenWeights[n]);
        expect(Array.from(token.headWeights)).toEqual(
          Array.from(whole.headWeights.subarray(n * perHead, (n + 1) * perHead)),
        );
        if (!token.provisional) {
          expect(maxAbsDiff(token.perToken, Array.from(whole.perToken.subarray(n * N, (n + 1) * N)))).toBeLessThan(
            1e-12,
          );
          expect(
            maxAbsDiff(token.perTokenUnfiltered, Array.from(whole.perTokenUnfiltered.subarray(n * N, (n + 1) * N))),
          ).toBeLessThan(1e-12);
        }
      }
      expect(aggregation.finish()).toEqual(whole);
    },
  );

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

  it('marks a constant official map provisional: its value waits for the global rescale of all tokens', () => {
    // token 0's image gradients are all 1 (a constant map); token 1 moves the global maximum to 3
    const { gradients, layout } = synthetic([[[0, 0, 1, 1, 1, 1]], [[0, 0, 0, 3, 0, 0]]]);
    const aggregation = startAggregation({ layers: [0], numLayers: 1, heads: 1 }, layout, { layerIndex: 0 });
    const first = aggregation.addToken({ data: gradients.rows.data, offset: 0, keys: 6 }, 6, layout.textKeys[0]);
    expect(first.provisional).toBe(true);
    expect(Array.from(first.perTokenUnfiltered)).toEqual([0, 0, 0, 0]); // relu(G) - m with m = M = 1 so far
    expect(
      aggregation.addToken({ data: gradients.rows.data, offset: 6, keys: 6 }, 6, layout.textKeys[1]).provisional,
    ).toBe(false);
    expect(Array.from(aggregation.finish().perTokenUnfiltered.subarray(0, 4))).toEqual([1 / 3, 1 / 3, 1 / 3, 1 / 3]);
  });

  it('refuses to finish a token-by-token aggregation that received no token', () => {
    const { layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    const aggregation = startAggregation({ layers: [0], numLayers: 1, heads: 1 }, layout, { layerIndex: 0 });
    expect(() => aggregation.finish()).toThrowError(/nothing to explain: no token was added/);
  });

  it('rejects a token whose key count exceeds the keys its rows hold', () => {
    const { layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    const aggregation = startAggregation({ layers: [0], numLayers: 1, heads: 1 }, layout, { layerIndex: 0 });
    expect(() => aggregation.addToken({ data: new Float32Array(6), offset: 0, keys: 6 }, 7, [0, 1])).toThrowError(
      /step 0 sees 7 keys but the gradient rows hold only 6/,
    );
  });

  it('rejects a layout whose grid does not match the image keys', () => {
    const { gradients, layout } = synthetic([[[0, 0, 1, 0, 0, 0]]]);
    expect(() => aggregate(gradients, { ...layout, grid: { height: 3, width: 3 } }, { layerIndex: 0 })).toThrowError(
      /image keys \[2, 6\) hold 4 positions but the grid 3 x 3 needs 9/,
    );
  });
});
