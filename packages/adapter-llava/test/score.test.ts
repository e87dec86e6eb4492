import { concatEmbeddings, decoderFeeds, type Embeddings, emptyCache, type MergedPrompt } from '@dexar/adapter-kit';
import type { FamilyModel } from '@dexar/core/adapter';
import type { ModelFolder, Session } from '@dexar/core/runtime';
import { nodeBackend } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, openFixtureModel, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import '../src/index.js';

const backend = nodeBackend({ threads: 1 });
const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';

/** log-softmax of row `position` of `[1, S, V]` logits at `id`. */
function logProb(logits: Float32Array, V: number, position: number, id: number): number {
  const row = logits.subarray(position * V, (position + 1) * V);
  const max = Math.max(...row);
  const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
  return row[id] - max - Math.log(sum);
}

describe('llava-tiny: batched teacher-forced scoring (scoreTargets, for evaluation)', () => {
  let folder: ModelFolder;
  let model: FamilyModel;
  let decoder: Session;
  let input: MergedPrompt;
  let ids: number[];
  beforeAll(async () => {
    ({ folder, model } = await openFixtureModel('llava-tiny', backend));
    decoder = await backend.createSession(folder, 'onnx/decoder_model_merged.onnx');
    const c = referenceCases('llava-tiny')[0];
    const image = await caseImage(c);
    input = (await model.prepare(image, prompt)) as MergedPrompt;
    ids = model.tokenizeTarget('a red circle and a blue square');
  });
  afterAll(async () => {
    await decoder.release();
    await model.release();
  });

  /** Log-probs of the targets from one plain decoder run over `sequence` with these position ids. */
  async function direct(sequence: Embeddings, positions: number[], queries: number[]): Promise<number[]> {
    const feeds = decoderFeeds(backend, sequence, emptyCache(backend, { numLayers: 4, kvHeads: 4, headDim: 16 }), 0);
    feeds.position_ids = backend.tensor('int64', BigInt64Array.from(positions, BigInt), [1, positions.length]);
    const { logits } = await decoder.run(feeds);
    const V = logits.dims[2];
    return queries.map((q, n) => logProb(logits.data as Float32Array, V, q, ids[n]));
  }

  async function answerEmbeddings(): Promise<Embeddings> {
    const embed = await backend.createSession(folder, 'onnx/embed_tokens.onnx');
    const { inputs_embeds: out } = await embed.run({
      input_ids: backend.tensor('int64', BigInt64Array.from(ids.slice(0, -1), BigInt), [1, ids.length - 1]),
    });
    await embed.release();
    return { data: (out.data as Float32Array).slice(), length: ids.length - 1, hidden: out.dims[2] };
  }

  it('keeps the pixel values, the black value and the crop window with the prepared input', () => {
    expect(input.pixels.dims).toEqual([1, 3, 64, 64]);
    expect(input.pixels.black?.[0]).toBeCloseTo(-0.48145466 / 0.26862954, 6);
    expect(input.pixels.window).toEqual({ left: 0, top: 0, width: 64, height: 64 });
  });

  it('maps the centre crop of a wide image back to the original pixels', async () => {
    const wide = { width: 256, height: 128, data: new Uint8Array(256 * 128 * 4).fill(200) };
    const prepared = await model.prepare(wide, prompt);
    // shortest edge 128 -> 64 (x 0.5): 128 x 64, centre crop 64 at x = 32, i.e. x = 64 .. 192 of the original
    expect(prepared.pixels?.window).toEqual({ left: 64, top: 0, width: 128, height: 128 });
  });

  it('equals a plain decoder run, and a batch of variants equals its rows scored one by one', async () => {
    const P = input.promptIds.length;
    const T = ids.length;
    const one = await model.scoreTargets?.(input, ids, { size: 1 });
    const sequence = concatEmbeddings([input.embeddings, await answerEmbeddings()]);
    const want = await direct(
      sequence,
      Array.from({ length: P + T - 1 }, (_, i) => i),
      ids.map((_, n) => P - 1 + n),
    );
    for (const [n, v] of (one ?? []).entries()) expect(v).toBeCloseTo(want[n], 4);

    const size = input.pixels.data.length;
    const data = new Float32Array(3 * size);
    data.set(input.pixels.data, 0);
    data.set(
      input.pixels.data.map((v) => -v),
      size,
    );
    data.set(input.pixels.data, 2 * size);
    const batch = (await model.scoreTargets?.(input, ids, {
      size: 3,
      pixels: { data, dims: [3, 1 * 3, 64, 64] },
    })) as Float64Array;
    for (let n = 0; n < T; n++) {
      expect(batch[n]).toBeCloseTo(one?.[n] as number, 4);
      expect(batch[2 * T + n]).toBeCloseTo(one?.[n] as number, 4);
    }
    expect(Math.max(...ids.map((_, n) => Math.abs(batch[T + n] - batch[n])))).toBeGreaterThan(1e-3);
  });

  it('hiding image tokens equals deleting them from the sequence (positions kept)', async () => {
    const P = input.promptIds.length;
    const T = ids.length;
    const { start: i0, end: i1 } = input.imageKeys;
    const N = i1 - i0;
    const hidden = new Set([0, 5, 9, 10, 33, 63]);
    const mask = new Uint8Array(2 * N).fill(1);
    for (const j of hidden) mask[N + j] = 0;
    const scored = (await model.scoreTargets?.(input, ids, { size: 2, imageTokenMask: mask })) as Float64Array;
    const full = concatEmbeddings([input.embeddings, await answerEmbeddings()]);
    const keep = Array.from({ length: P + T - 1 }, (_, i) => i).filter(
      (i) => !(i >= i0 && i < i1 && hidden.has(i - i0)),
    );
    const D = full.hidden;
    const data = new Float32Array(keep.length * D);
    for (const [r, i] of keep.entries()) data.set(full.data.subarray(i * D, (i + 1) * D), r * D);
    const want = await direct(
      { data, length: keep.length, hidden: D },
      keep,
      ids.map((_, n) => keep.indexOf(P - 1 + n)),
    );
    for (let n = 0; n < T; n++) expect(scored[T + n]).toBeCloseTo(want[n], 4);
    expect(Math.max(...ids.map((_, n) => Math.abs(scored[T + n] - scored[n])))).toBeGreaterThan(1e-4);
  });

  it('rejects a batch whose pixels or mask do not match its size', async () => {
    await expect(
      model.scoreTargets?.(input, ids, { size: 2, pixels: { data: input.pixels.data, dims: [1, 3, 64, 64] } }),
    ).rejects.toThrow(/do not hold 2 images/);
    await expect(model.scoreTargets?.(input, ids, { size: 2, imageTokenMask: new Uint8Array(64) })).rejects.toThrow(
      /needs 2 x 64/,
    );
  });
});
