import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-llava';
import { aggregate, DexarError, ExplanationSchema, parseOptions, type TokenLayout } from '@dexar/core';
import { Explainer } from '@dexar/explain';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { describe, expect, it } from 'vitest';
import {
  type MethodInput,
  methodExplanation,
  methodFor,
  methodInputFromExplanation,
  methodNames,
  registerMethod,
} from '../src/methods.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** T = 2 tokens, layers [2, 3] of 4, H = 2 heads, keys: 0 text, [1, 5) image (2 x 2 grid), 5..6 text. */
function synthetic(): MethodInput {
  const [T, L, H, K] = [2, 2, 2, 7];
  const g = new Float32Array(T * L * H * K);
  const a = new Float32Array(T * L * H * K);
  for (let i = 0; i < g.length; i++) {
    g[i] = Math.sin(i * 1.7) * 2;
    a[i] = (Math.cos(i * 0.9) + 1.2) / 10;
  }
  const layout: TokenLayout = {
    imageKeys: { start: 1, end: 5 },
    grid: { height: 2, width: 2 },
    keyCounts: [6, 7],
    textKeys: [
      [0, 5],
      [0, 5, 6],
    ],
  };
  const lens = new Float32Array(T * L * 7);
  for (let i = 0; i < lens.length; i++) lens[i] = Math.cos(i * 2.3) * 3;
  return {
    gradientRows: { data: g, dims: [T, L, H, K] },
    attentionRows: { data: a, dims: [T, L, H, K] },
    layers: [2, 3],
    numLayers: 4,
    layout,
    options: parseOptions({ layerIndex: -2 }),
    positionLens: { data: lens, dims: [T, L, 7] },
    sampleKey: 's1',
  };
}

const minMax = (xs: number[]) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return xs.map((x) => (hi > lo ? (x - lo) / (hi - lo) : 0));
};

describe('methods over raw rows', () => {
  const input = synthetic();
  const at = (t: { data: ArrayLike<number> }, n: number, l: number, h: number, k: number) =>
    t.data[((n * 2 + l) * 2 + h) * 7 + k];

  it('registers the six methods of the issue', () => {
    expect(methodNames()).toEqual([
      'dexar',
      'dexar-unfiltered',
      'attention',
      'grad-x-attention',
      'logit-lens-image',
      'random',
    ]);
  });

  it('dexar and dexar-unfiltered are the core aggregation', () => {
    const maps = aggregate({ rows: input.gradientRows, layers: [2, 3], numLayers: 4 }, input.layout, input.options);
    const d = methodFor('dexar').compute(input);
    expect(Array.from(d.perToken)).toEqual(Array.from(maps.perToken));
    expect(Array.from(d.sentence)).toEqual(Array.from(maps.sentence));
    expect(Array.from(d.tokenWeights ?? [])).toEqual(Array.from(maps.tokenWeights));
    const u = methodFor('dexar-unfiltered').compute(input);
    expect(Array.from(u.perToken)).toEqual(Array.from(maps.perTokenUnfiltered));
    expect(Array.from(u.sentence)).toEqual(Array.from(maps.sentenceUnfiltered));
    expect(u.tokenWeights).toBeUndefined();
  });

  it('attention: mean over heads and layers of the image keys, per-token normalised', () => {
    const m = methodFor('attention').compute(input);
    for (let n = 0; n < 2; n++) {
      const raw = [0, 1, 2, 3].map(
        (j) =>
          [0, 1].flatMap((l) => [0, 1].map((h) => at(input.attentionRows, n, l, h, 1 + j))).reduce((s, v) => s + v, 0) /
          4,
      );
      const want = minMax(raw);
      for (let j = 0; j < 4; j++) expect(m.perToken[n * 4 + j]).toBeCloseTo(want[j], 6);
      expect(m.tokenWeights?.[n]).toBeCloseTo(
        raw.reduce((s, v) => s + v, 0),
        6,
      );
    }
  });

  it('grad-x-attention: positive part of the product, averaged', () => {
    const m = methodFor('grad-x-attention').compute(input);
    const n = 1;
    const raw = [0, 1, 2, 3].map(
      (j) =>
        [0, 1]
          .flatMap((l) =>
            [0, 1].map((h) =>
              Math.max(at(input.gradientRows, n, l, h, 1 + j) * at(input.attentionRows, n, l, h, 1 + j), 0),
            ),
          )
          .reduce((s, v) => s + v, 0) / 4,
    );
    const want = minMax(raw);
    for (let j = 0; j < 4; j++) expect(m.perToken[n * 4 + j]).toBeCloseTo(want[j], 6);
  });

  it('logit-lens-image: the lens at the image positions, averaged over layers', () => {
    const m = methodFor('logit-lens-image').compute(input);
    const lens = input.positionLens as { data: Float32Array };
    for (let n = 0; n < 2; n++) {
      const raw = [0, 1, 2, 3].map(
        (j) => (lens.data[(n * 2 + 0) * 7 + 1 + j] + lens.data[(n * 2 + 1) * 7 + 1 + j]) / 2,
      );
      const want = minMax(raw);
      for (let j = 0; j < 4; j++) expect(m.perToken[n * 4 + j]).toBeCloseTo(want[j], 6);
    }
    const { positionLens: _, ...without } = input;
    expect(() => methodFor('logit-lens-image').compute(without)).toThrow(DexarError);
  });

  it('layerIndex narrows the layers a baseline averages', () => {
    const last = { ...input, options: parseOptions({ layerIndex: -1 }) };
    const m = methodFor('attention').compute(last);
    const raw = [0, 1, 2, 3].map(
      (j) => (at(input.attentionRows, 0, 1, 0, 1 + j) + at(input.attentionRows, 0, 1, 1, 1 + j)) / 2,
    );
    const want = minMax(raw);
    for (let j = 0; j < 4; j++) expect(m.perToken[j]).toBeCloseTo(want[j], 6);
  });

  it('random is seeded by the sample and within [0, 1]', () => {
    const a = methodFor('random').compute(input);
    const b = methodFor('random').compute(input);
    const c = methodFor('random').compute({ ...input, sampleKey: 's2' });
    expect(Array.from(a.perToken)).toEqual(Array.from(b.perToken));
    expect(Array.from(a.perToken)).not.toEqual(Array.from(c.perToken));
    expect(Math.max(...a.perToken)).toBe(1);
    expect(Math.min(...a.sentence)).toBe(0);
  });

  it('takes third-party methods and rejects unknown names with a usage error', () => {
    registerMethod({
      name: 'test-centre',
      description: 'a fixed map',
      compute: () => ({
        perToken: new Float64Array(2 * 4).fill(0.5),
        sentence: new Float64Array(4),
        tokenWeights: undefined,
      }),
    });
    expect(methodFor('test-centre').compute(input).perToken[0]).toBe(0.5);
    expect(() => methodFor('gradcam')).toThrow(/unknown method "gradcam"/);
  });
});

describe('methods from an Explainer result with raw rows (llava-tiny)', () => {
  it('re-derives the DEX-AR maps exactly and returns every method in the result schema', async () => {
    const explainer = await Explainer.open({
      backend: nodeBackend(),
      folder: await openModelFolder(`${root}fixtures/models/llava-tiny`),
    });
    try {
      const image = await decodeImage(
        new Uint8Array(await readFile(`${root}fixtures/references/llava-tiny/case0/image.png`)),
      );
      const result = await explainer.explain(image, {
        prompt: 'USER: <image>\nDescribe the image. ASSISTANT:',
        target: 'a red circle and a blue square',
        returnRaw: true,
      });
      const input = methodInputFromExplanation(result);
      const d = methodFor('dexar').compute(input);
      const N = 64;
      const close = (got: ArrayLike<number> | undefined, want: number[]) => {
        const worst = want.reduce((m, v, i) => Math.max(m, Math.abs((got?.[i] ?? Number.NaN) - v)), 0);
        expect(worst).toBeLessThan(1e-12);
      };
      close(d.perToken, result.perTokenHeatmaps.flat(2));
      expect(d.perToken.length).toBe(result.tokens.length * N);
      close(d.sentence, result.sentenceHeatmap.flat());
      close(d.tokenWeights, result.tokenWeights);
      for (const name of ['dexar-unfiltered', 'attention', 'grad-x-attention', 'random']) {
        const e = methodExplanation(result, name, methodFor(name).compute(input));
        expect(ExplanationSchema.parse(e).method).toBe(name);
        expect(e.raw).toBeUndefined();
      }
    } finally {
      await explainer.release();
    }
  });
});
