import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Compat, Explanation } from '@dexar/core';
import { adapterFor, type FamilyModel } from '@dexar/core/adapter';
import { type Backend, type ModelFolder, readJson } from '@dexar/core/runtime';
import { decodeImage, openModelFolder } from '@dexar/runtime-node';
import { expect } from 'vitest';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const modelDir = (name: string) => `${repoRoot}fixtures/models/${name}`;

export interface ReferenceCase {
  name: string;
  dir: string;
  prompt: string;
  target: string;
  target_ids: number[];
  tokens: string[];
  prompt_ids_expanded: number[];
  image_features: { dims: number[]; data: number[] };
  pixel_values: { dims: number[]; data: number[] };
  idx_img_tok_start: number;
  idx_img_tok_end: number;
  results: Record<Compat, Record<string, ReferenceResult>>;
  raw: { grad_rows: number[][][][]; attn_rows: number[][][][] };
}

export interface ReferenceResult {
  per_token_heatmaps: number[][][];
  per_token_heatmaps_unfiltered: number[][][];
  token_weights: number[];
  sentence_heatmap: number[][];
  sentence_heatmap_unfiltered: number[][];
}

/** Every fixture case: both compat modes and both layer ranges of the references. */
export const referenceSettings = [
  ['official', 0],
  ['official', -2],
  ['paper', 0],
  ['paper', -2],
] as const;

export function maxAbs(actual: number[], expected: number[]): number {
  expect(actual).toHaveLength(expected.length);
  return Math.max(0, ...actual.map((a, i) => Math.abs(a - expected[i])));
}

/**
 * Heatmaps within 1e-4 absolute, token weights within 1e-4 relative (issue: explain pipeline, "Correct").
 * A token weight is a difference of two maxima (paper Eq. 6), so for weights below 1e-2 the float32
 * difference between ONNX Runtime's and PyTorch's forward passes (about 6e-6 on gradient rows of size
 * up to 8) dominates the relative error; those are held to 1e-6 absolute instead (measured: 7.7e-7
 * on a weight of 6.4e-3), a hundred times tighter than the conformance tolerance of 1e-4 absolute.
 */
export function expectMatchesReference(result: Explanation, ref: ReferenceResult): void {
  expect(maxAbs(result.perTokenHeatmaps.flat(2), ref.per_token_heatmaps.flat(2))).toBeLessThan(1e-4);
  expect(maxAbs(result.perTokenHeatmapsUnfiltered.flat(2), ref.per_token_heatmaps_unfiltered.flat(2))).toBeLessThan(
    1e-4,
  );
  expect(maxAbs(result.sentenceHeatmap.flat(), ref.sentence_heatmap.flat())).toBeLessThan(1e-4);
  expect(maxAbs(result.sentenceHeatmapUnfiltered.flat(), ref.sentence_heatmap_unfiltered.flat())).toBeLessThan(1e-4);
  result.tokenWeights.forEach((w, n) => {
    const expected = ref.token_weights[n];
    if (expected === 0) expect(w).toBe(0);
    else if (Math.abs(expected) >= 1e-2) expect(Math.abs(w - expected) / Math.abs(expected)).toBeLessThan(1e-4);
    else expect(Math.abs(w - expected)).toBeLessThan(1e-6);
  });
}

/** The PyTorch reference cases of a fixture model (`<references>/<model>/case<K>`, by default fixtures/references). */
export function referenceCases(model: string, references = `${repoRoot}fixtures/references`): ReferenceCase[] {
  const root = `${references}/${model}`;
  return readdirSync(root)
    .filter((d) => d.startsWith('case'))
    .sort()
    .map((d) => ({
      name: d,
      dir: `${root}/${d}`,
      ...JSON.parse(readFileSync(`${root}/${d}/case.json`, 'utf8')),
    }));
}

/** A reference case's input image, decoded as the adapters receive it. */
export function caseImage(c: ReferenceCase) {
  return decodeImage(new Uint8Array(readFileSync(`${c.dir}/image.png`)));
}

/** A fixture model opened through the adapter its config.json selects. */
export async function openFixtureModel(
  name: string,
  backend: Backend,
): Promise<{ folder: ModelFolder; model: FamilyModel }> {
  const folder = await openModelFolder(modelDir(name));
  const config = await readJson(folder, 'config.json');
  return { folder, model: await adapterFor(config, folder.location).load(folder, backend, config) };
}

/**
 * A decoder-only adapter's `prepare` and tokenisation against a reference case: the expanded prompt
 * ids, the image span, the merged image features (1e-4) and the target ids and token strings.
 */
export async function expectPreparedLikeReference(model: FamilyModel, c: ReferenceCase): Promise<void> {
  const input = (await model.prepare(await caseImage(c), c.prompt)) as never as {
    promptIds: number[];
    imageKeys: { start: number; end: number };
    embeddings: { data: Float32Array; hidden: number };
  };
  expect(input.promptIds).toEqual(c.prompt_ids_expanded);
  expect(input.imageKeys).toEqual({ start: c.idx_img_tok_start, end: c.idx_img_tok_end });
  const { hidden } = input.embeddings;
  const merged = input.embeddings.data.subarray(c.idx_img_tok_start * hidden, c.idx_img_tok_end * hidden);
  expect(maxAbs(Array.from(merged), c.image_features.data)).toBeLessThan(1e-4);
  expect(model.tokenizeTarget(c.target)).toEqual(c.target_ids);
  expect(model.tokenStrings(c.target_ids)).toEqual(c.tokens);
}

/** A scoring batch of two images: the prepared one at half intensity, then the prepared one itself. */
export function halvedAndClean(pixels: { data: Float32Array; dims: readonly number[] }): {
  data: Float32Array;
  dims: number[];
} {
  const size = pixels.data.length;
  const data = new Float32Array(2 * size);
  data.set(
    pixels.data.map((v) => v * 0.5),
    0,
  );
  data.set(pixels.data, size);
  return { data, dims: [2, ...pixels.dims.slice(1)] };
}
