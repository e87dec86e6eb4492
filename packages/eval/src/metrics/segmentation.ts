/**
 * Localisation metrics of one map against one binary mask. The map (a `gh x gw` grid) is upsampled
 * bilinearly to the mask's size (half-pixel centres, `@dexar/core`'s `upsampleBilinear`, the
 * PyTorch `align_corners=False` convention) and min-max normalised to [0, 1]; a constant map is all
 * zeros (it points nowhere).
 */
import { type Grid, upsampleBilinear } from '@dexar/core';

/** A binary mask, row-major: `data[i]` 1 inside the object; `valid[i]` 0 where the pixel is not scored (VOC's void). */
export interface Mask {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  readonly valid?: Uint8Array;
}

export interface SegmentationOptions {
  /** Binarisation threshold on the normalised map: `mean` (its mean, the default) or a value in [0, 1]. Pixels strictly above are foreground. */
  threshold?: 'mean' | number;
}

export interface SegmentationScores {
  /**
   * 1 when the map's maximum lies inside the mask (ties within 1e-6 count), 0 otherwise. A constant
   * map scores 0 (the Python reference, tools/fixtures/shapes/score.py, counts it as a hit).
   */
  pointing: number;
  /** Share of scored pixels where the binarised map equals the mask. */
  pixelAccuracy: number;
  /** Foreground IoU of the binarised map and the mask. */
  iou: number;
  /** Mean of the foreground and background IoUs (the two-class mIoU). */
  miou: number;
  /** Average precision of the pixel ranking by map value (ties form one threshold, as scikit-learn). */
  ap: number;
  /** Soft (probabilistic) IoU: sum(u·m) / sum(u + m - u·m) with u the normalised map. */
  softIou: number;
  /** The threshold used, on the normalised map. */
  threshold: number;
  /** 1 when the map is constant (no information: it points nowhere and selects nothing). */
  constant: number;
}

/** Min-max normalisation to [0, 1]; a constant input becomes all zeros. */
export function normalizeMap(values: ArrayLike<number>): Float64Array {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    if (values[i] < lo) lo = values[i];
    if (values[i] > hi) hi = values[i];
  }
  const out = new Float64Array(values.length);
  if (hi > lo) for (let i = 0; i < values.length; i++) out[i] = (values[i] - lo) / (hi - lo);
  return out;
}

/**
 * Scores an already upsampled map (same size as the mask). The pixel-level building block of
 * `segmentationScores`, exported for tests and for maps computed at pixel resolution.
 */
export function scorePixels(
  pixels: ArrayLike<number>,
  mask: Mask,
  options: SegmentationOptions = {},
): SegmentationScores {
  const P = mask.width * mask.height;
  if (pixels.length !== P)
    throw new RangeError(`scorePixels: ${pixels.length} map pixels for a ${mask.width} x ${mask.height} mask`);
  const u = normalizeMap(pixels);
  const valid = mask.valid;
  const m = mask.data;
  let count = 0;
  let sum = 0;
  let max = 0;
  for (let i = 0; i < P; i++) {
    if (valid && !valid[i]) continue;
    count++;
    sum += u[i];
    if (u[i] > max) max = u[i];
  }
  const threshold =
    options.threshold === undefined || options.threshold === 'mean' ? sum / Math.max(count, 1) : options.threshold;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  let maxInside = Number.NEGATIVE_INFINITY;
  let softInter = 0;
  let softUnion = 0;
  for (let i = 0; i < P; i++) {
    if (valid && !valid[i]) continue;
    const fg = u[i] > threshold;
    const inside = m[i] !== 0;
    if (fg && inside) tp++;
    else if (fg) fp++;
    else if (inside) fn++;
    else tn++;
    if (inside && u[i] > maxInside) maxInside = u[i];
    const t = inside ? 1 : 0;
    softInter += u[i] * t;
    softUnion += u[i] + t - u[i] * t;
  }
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  const iou = ratio(tp, tp + fp + fn);
  const iouBackground = ratio(tn, tn + fp + fn);
  return {
    pointing: max > 0 && maxInside >= max - 1e-6 ? 1 : 0,
    pixelAccuracy: ratio(tp + tn, count),
    iou,
    miou: (iou + iouBackground) / 2,
    ap: averagePrecision(u, m, valid),
    softIou: ratio(softInter, softUnion),
    threshold,
    constant: max > 0 ? 0 : 1,
  };
}

/** Scores a `grid` map against `mask`, after upsampling it to the mask's size. */
export function segmentationScores(
  map: ArrayLike<number>,
  grid: Grid,
  mask: Mask,
  options: SegmentationOptions = {},
): SegmentationScores {
  return scorePixels(upsampleBilinear(map, grid, mask.width, mask.height), mask, options);
}

/**
 * Average precision of ranking pixels by `scores` for the positives of `labels`:
 * AP = Σ_k (R_k - R_{k-1}) · P_k over the distinct score thresholds, highest first (scikit-learn's
 * `average_precision_score`). 0 when there is no positive.
 */
export function averagePrecision(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  valid?: ArrayLike<number>,
): number {
  const index: number[] = [];
  let positives = 0;
  for (let i = 0; i < scores.length; i++) {
    if (valid && !valid[i]) continue;
    index.push(i);
    if (labels[i]) positives++;
  }
  if (positives === 0) return 0;
  index.sort((a, b) => scores[b] - scores[a]);
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let recallBefore = 0;
  for (let k = 0; k < index.length; ) {
    const s = scores[index[k]];
    while (k < index.length && scores[index[k]] === s) {
      if (labels[index[k]]) tp++;
      else fp++;
      k++;
    }
    const recall = tp / positives;
    ap += (recall - recallBefore) * (tp / (tp + fp));
    recallBefore = recall;
  }
  return ap;
}
