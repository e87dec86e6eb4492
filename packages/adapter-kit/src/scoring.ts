import { DexarError } from '@dexar/core';
import type { ScoreBatch } from '@dexar/core/adapter';
import { type Backend, floatData, type Session, type TypedTensor } from '@dexar/core/runtime';
import type { Embeddings } from './decoding.js';

/** Checks a `ScoreBatch` against a model with `imageTokens` image tokens; returns the batch size B. */
export function checkScoreBatch(batch: ScoreBatch, imageTokens: number, targets: number): number {
  const B = batch.size;
  if (!(Number.isInteger(B) && B > 0) || targets === 0) {
    throw new DexarError(
      'invalid-input',
      `scoreTargets needs a positive batch size and targets, got ${B} and ${targets}`,
    );
  }
  if (batch.imageTokenMask && batch.imageTokenMask.length !== B * imageTokens) {
    throw new DexarError(
      'invalid-input',
      `the image token mask holds ${batch.imageTokenMask.length} values, the batch needs ${B} x ${imageTokens}`,
    );
  }
  if (batch.pixels) {
    const dims = batch.pixels.dims;
    if (dims[0] !== B || batch.pixels.data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new DexarError(
        'invalid-input',
        `batch pixels [${dims.join(', ')}] do not hold ${B} images of the prepared image's size`,
      );
    }
  }
  return B;
}

/**
 * The vision encoder's features of the batch's images, `[B, count, hidden]` flat; at least
 * `minCount` features of width `hidden` per image.
 */
export async function batchImageFeatures(
  backend: Backend,
  vision: Session,
  pixels: NonNullable<ScoreBatch['pixels']>,
  minCount: number,
  hidden: number,
): Promise<{ data: Float32Array; count: number }> {
  const B = pixels.dims[0];
  const { image_features: out } = await vision.run({
    pixel_values: backend.tensor('float32', pixels.data, pixels.dims),
  });
  if (out.dims[0] !== B || out.dims[1] < minCount || out.dims[2] !== hidden) {
    throw new DexarError(
      'unsupported-model',
      `the vision encoder returned [${out.dims.join(', ')}] for a batch of ${B}: scoring needs an export with a dynamic batch axis`,
    );
  }
  return { data: floatData(out), count: out.dims[1] };
}

/** An int64 attention mask `[B, length]` of ones with the batch's hidden image tokens (at `imageStart`) zeroed. */
export function batchAttentionMask(
  backend: Backend,
  batch: ScoreBatch,
  length: number,
  imageStart: number,
  imageTokens: number,
): TypedTensor {
  const B = batch.size;
  const data = new BigInt64Array(B * length).fill(1n);
  const hidden = batch.imageTokenMask;
  if (hidden) {
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < imageTokens; j++)
        if (hidden[b * imageTokens + j] === 0) data[b * length + imageStart + j] = 0n;
    }
  }
  return backend.tensor('int64', data, [B, length]);
}

/**
 * Writes log p(`target`) at sequence `position` of every row of `logits` `[B, S, V]` into
 * `out[b * columns + column]` (a log-softmax over the vocabulary, in float64).
 */
export function readLogProbabilities(
  logits: TypedTensor,
  position: number,
  target: number,
  out: Float64Array,
  column: number,
  columns: number,
): void {
  const [B, S, V] = logits.dims as [number, number, number];
  const data = floatData(logits);
  for (let b = 0; b < B; b++) {
    const base = (b * S + position) * V;
    let max = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < V; v++) if (data[base + v] > max) max = data[base + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(data[base + v] - max);
    out[b * columns + column] = data[base + target] - max - Math.log(sum);
  }
}

/** `[B, S, D]`: the sequence's embeddings repeated for each of the B rows of a batch. */
export function tileRows(sequence: Embeddings, B: number): Float32Array {
  const size = sequence.length * sequence.hidden;
  const data = new Float32Array(B * size);
  for (let b = 0; b < B; b++) data.set(sequence.data.subarray(0, size), b * size);
  return data;
}
