/**
 * The perturbation metric (DEX-AR's evaluation; its exact protocol is not public, so every choice
 * is an option): remove image regions in the order of a map, measure the teacher-forced perplexity
 * of the target, normalise by the clean perplexity, integrate over the removed fractions.
 */
import type { Grid } from '@dexar/core';
import { gaussian, permutation, prng } from '../random.js';

/** `positive`: most relevant removed first (a faithful map raises perplexity fast); `negative`: least relevant first. */
export type Direction = 'positive' | 'negative';
/** What replaces a removed region in pixel space. */
export type Fill = 'mean' | 'black' | 'blur' | 'noise';
/** `pixels`: perturb the vision encoder's input patch by patch; `tokens`: hide image tokens from the decoder's attention. */
export type Space = 'pixels' | 'tokens';
/** `ratio`: PPL(f) / PPL(clean); `minmax`: (PPL(f) - PPL(clean)) / (PPL(all removed) - PPL(clean)). */
export type Normalization = 'ratio' | 'minmax';

export interface PerturbationOptions {
  /** Removed fractions, each in [0, 1]; 0 is the clean input (no extra run). Default 0.1, 0.2, ..., 0.9. */
  fractions: readonly number[];
  fill: Fill;
  space: Space;
  normalization: Normalization;
}

export const defaultFractions: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/**
 * Cells in removal order: by map value, highest first (`positive`) or lowest first (`negative`);
 * equal values in a seeded random order, so a constant map removes a random sequence.
 */
export function removalOrder(map: ArrayLike<number>, direction: Direction, tieSeed: number): Uint32Array {
  const shuffle = permutation(map.length, prng(tieSeed));
  const rank = new Uint32Array(map.length);
  for (let i = 0; i < shuffle.length; i++) rank[shuffle[i]] = i;
  const order = Array.from({ length: map.length }, (_, i) => i);
  const sign = direction === 'positive' ? -1 : 1;
  order.sort((a, b) => sign * (map[a] - map[b]) || rank[a] - rank[b]);
  return Uint32Array.from(order);
}

/** Number of cells removed at a fraction: round(fraction · N). */
export function removedCount(fraction: number, cells: number): number {
  return Math.round(fraction * cells);
}

/** `[N]` 1 for the first `count` cells of `order`. */
export function removedCells(order: Uint32Array, count: number): Uint8Array {
  const out = new Uint8Array(order.length);
  for (let i = 0; i < count; i++) out[order[i]] = 1;
  return out;
}

/** Perplexity of teacher-forced log-probabilities: exp(-mean log p). */
export function perplexity(logProbs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < logProbs.length; i++) s += logProbs[i];
  return Math.exp(-s / logProbs.length);
}

export function normalizedPerplexity(ppl: number, clean: number, mode: Normalization, removedAll?: number): number {
  if (mode === 'ratio') return ppl / clean;
  if (removedAll === undefined) throw new Error('minmax normalisation needs the perplexity with everything removed');
  const span = removedAll - clean;
  return span !== 0 ? (ppl - clean) / span : 0;
}

/** Area under a curve by the trapezoid rule over its x values (sorted ascending by the caller). */
export function trapezoidAuc(xs: readonly number[], ys: readonly number[]): number {
  if (xs.length !== ys.length) throw new RangeError(`trapezoidAuc: ${xs.length} x values, ${ys.length} y values`);
  let area = 0;
  for (let i = 1; i < xs.length; i++) area += ((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1])) / 2;
  return area;
}

/** The clean pixel values of one image, `[1, 3, H, W]`, and what a fill needs. */
export interface PixelSource {
  readonly data: Float32Array;
  readonly dims: readonly number[];
  readonly black?: readonly number[];
}

/**
 * The replacement image of a fill, `[3, H, W]`: per-channel mean of the image (`mean`), black
 * (`black`, needs the adapter's normalisation), a Gaussian blur with sigma = one patch (`blur`), or
 * Gaussian noise with the image's per-channel mean and standard deviation (`noise`, seeded).
 */
export function fillImage(source: PixelSource, grid: Grid, fill: Fill, seed: number): Float32Array {
  const [, C, H, W] = source.dims as [number, number, number, number];
  const plane = H * W;
  const out = new Float32Array(C * plane);
  const data = source.data;
  for (let c = 0; c < C; c++) {
    const channel = data.subarray(c * plane, (c + 1) * plane);
    let s = 0;
    let s2 = 0;
    for (const v of channel) {
      s += v;
      s2 += v * v;
    }
    const mu = s / plane;
    const sd = Math.sqrt(Math.max(s2 / plane - mu * mu, 0));
    const target = out.subarray(c * plane, (c + 1) * plane);
    if (fill === 'mean') target.fill(mu);
    else if (fill === 'black') {
      if (!source.black) throw new Error('the black fill needs the adapter to report the value of a black pixel');
      target.fill(source.black[c]);
    } else if (fill === 'noise') {
      const draw = gaussian(prng((seed + c * 0x9e3779b9) >>> 0));
      for (let i = 0; i < plane; i++) target[i] = mu + sd * draw();
    } else {
      gaussianBlur(channel, W, H, Math.max(H / grid.height, W / grid.width), target);
    }
  }
  return out;
}

/** Separable Gaussian blur of one plane (edges clamped), radius 3 sigma. */
function gaussianBlur(input: Float32Array, W: number, H: number, sigma: number, out: Float32Array): void {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float64Array(2 * radius + 1);
  let total = 0;
  for (let k = -radius; k <= radius; k++) {
    kernel[k + radius] = Math.exp(-(k * k) / (2 * sigma * sigma));
    total += kernel[k + radius];
  }
  for (let k = 0; k < kernel.length; k++) kernel[k] /= total;
  const tmp = new Float64Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++)
        s += kernel[k + radius] * input[y * W + Math.min(W - 1, Math.max(0, x + k))];
      tmp[y * W + x] = s;
    }
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++)
        s += kernel[k + radius] * tmp[Math.min(H - 1, Math.max(0, y + k)) * W + x];
      out[y * W + x] = s;
    }
  }
}

/**
 * Writes into `out` (`[3, H, W]`) the image with the removed grid cells taken from `replacement`.
 * Cell (r, c) covers rows [floor(r·H/gh), floor((r+1)·H/gh)) and the matching columns: the vision
 * encoder's patches when H = gh · patch.
 */
export function perturbPixels(
  source: PixelSource,
  grid: Grid,
  removed: Uint8Array,
  replacement: Float32Array,
  out: Float32Array,
): void {
  const [, C, H, W] = source.dims as [number, number, number, number];
  const plane = H * W;
  out.set(source.data.subarray(0, C * plane));
  for (let r = 0; r < grid.height; r++) {
    const y0 = Math.floor((r * H) / grid.height);
    const y1 = Math.floor(((r + 1) * H) / grid.height);
    for (let c = 0; c < grid.width; c++) {
      if (!removed[r * grid.width + c]) continue;
      const x0 = Math.floor((c * W) / grid.width);
      const x1 = Math.floor(((c + 1) * W) / grid.width);
      for (let ch = 0; ch < C; ch++) {
        for (let y = y0; y < y1; y++) {
          const row = ch * plane + y * W;
          out.set(replacement.subarray(row + x0, row + x1), row + x0);
        }
      }
    }
  }
}
