import { describe, expect, it } from 'vitest';
import { fillerTokens, tokenRanking } from '../src/metrics/faithfulness.js';
import {
  fillImage,
  normalizedPerplexity,
  perplexity,
  perturbPixels,
  removalOrder,
  removedCells,
  removedCount,
  trapezoidAuc,
} from '../src/metrics/perturbation.js';
import { averagePrecision, type Mask, scorePixels, segmentationScores } from '../src/metrics/segmentation.js';

const mask = (width: number, height: number, ones: number[], valid?: number[]): Mask => {
  const data = new Uint8Array(width * height);
  for (const i of ones) data[i] = 1;
  return { width, height, data, ...(valid ? { valid: Uint8Array.from(valid) } : {}) };
};

describe('segmentation metrics (hand-computed)', () => {
  it('average precision, with and without ties', () => {
    // ranks: + - + -  -> P@1 = 1, P@3 = 2/3; AP = 0.5·1 + 0.5·2/3
    expect(averagePrecision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])).toBeCloseTo(5 / 6, 12);
    // a tie between a positive and a negative is one threshold: (0.5)(1/2) + (0.5)(2/3)
    expect(averagePrecision([0.5, 0.5, 0.2], [1, 0, 1])).toBeCloseTo(0.25 + 1 / 3, 12);
    // all tied: the positive rate
    expect(averagePrecision([1, 1, 1, 1], [1, 0, 0, 0])).toBeCloseTo(0.25, 12);
    expect(averagePrecision([1, 2], [0, 0])).toBe(0);
  });

  it('pixel accuracy, IoU, mIoU, soft IoU and pointing on a 2 x 2 map', () => {
    // normalised u = [1, 0.5, 0, 0]; mean 0.375 -> foreground {0, 1}; mask {0, 2}
    const s = scorePixels([4, 3, 2, 2], mask(2, 2, [0, 2]));
    expect(s.threshold).toBeCloseTo(0.375, 12);
    expect(s.pixelAccuracy).toBeCloseTo(2 / 4, 12); // pixels 0 and 3 right
    expect(s.iou).toBeCloseTo(1 / 3, 12); // tp 1, fp 1, fn 1
    expect(s.miou).toBeCloseTo((1 / 3 + 1 / 3) / 2, 12); // background: tn 1 / (1 + 1 + 1)
    // soft: sum(u·m) = 1 + 0; sum(u + m - u·m) = 1 + 0.5 + 1 + 0
    expect(s.softIou).toBeCloseTo(1 / 2.5, 12);
    expect(s.pointing).toBe(1);
    expect(s.ap).toBeCloseTo(0.5 * 1 + 0.5 * (2 / 4), 12); // ranks 1, then the tie {2, 3} at 2/4
    expect(scorePixels([4, 3, 2, 2], mask(2, 2, [3])).pointing).toBe(0);
  });

  it('a numeric threshold, void pixels left out, and a constant map points nowhere', () => {
    const s = scorePixels([0, 1, 2, 4], mask(2, 2, [3]), { threshold: 0.6 });
    expect(s.iou).toBe(1); // only 4 (u = 1) is above 0.6
    const v = scorePixels([0, 1, 2, 4], mask(2, 2, [3], [1, 0, 0, 1]));
    expect(v.pixelAccuracy).toBe(1); // pixels 1 and 2 are void; mean of {0, 1} = 0.5
    const c = scorePixels([2, 2, 2, 2], mask(2, 2, [0]));
    expect(c.pointing).toBe(0);
    expect(c.softIou).toBe(0);
  });

  it('upsamples a grid map to the mask size before scoring', () => {
    // a 2 x 2 map whose top-left cell is hot, scored on an 8 x 8 mask of the top-left quadrant
    const quadrant: number[] = [];
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) quadrant.push(y * 8 + x);
    const s = segmentationScores([1, 0, 0, 0], { height: 2, width: 2 }, mask(8, 8, quadrant));
    expect(s.pointing).toBe(1);
    expect(s.iou).toBeGreaterThan(0.5);
    expect(s.ap).toBeGreaterThan(0.9);
  });
});

describe('perturbation building blocks', () => {
  it('trapezoid AUC, perplexity and normalisation', () => {
    expect(trapezoidAuc([0.1, 0.2, 0.3], [1, 2, 4])).toBeCloseTo(0.1 * 1.5 + 0.1 * 3, 12);
    expect(perplexity([Math.log(0.5), Math.log(0.5)])).toBeCloseTo(2, 12);
    expect(perplexity([Math.log(0.5), Math.log(0.125)])).toBeCloseTo(4, 12); // exp(-(ln .5 + ln .125)/2)
    expect(normalizedPerplexity(6, 2, 'ratio')).toBe(3);
    expect(normalizedPerplexity(6, 2, 'minmax', 10)).toBe(0.5);
    expect(() => normalizedPerplexity(6, 2, 'minmax')).toThrow(/everything removed/);
  });

  it('removal order: most relevant first, least relevant first, seeded ties', () => {
    const map = [0.2, 0.9, 0.5, 0.1];
    expect(Array.from(removalOrder(map, 'positive', 1))).toEqual([1, 2, 0, 3]);
    expect(Array.from(removalOrder(map, 'negative', 1))).toEqual([3, 0, 2, 1]);
    const flat = new Array(16).fill(0.5);
    const a = Array.from(removalOrder(flat, 'positive', 7));
    expect(Array.from(removalOrder(flat, 'positive', 7))).toEqual(a);
    expect(Array.from(removalOrder(flat, 'positive', 8))).not.toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
    expect(removedCount(0.3, 64)).toBe(19);
    expect(Array.from(removedCells(Uint32Array.from([2, 0, 1]), 2))).toEqual([1, 0, 1]);
  });

  it('fills removed patches of the pixel values and leaves the rest', () => {
    // [1, 3, 4, 4] with a 2 x 2 grid: 2 x 2 pixel patches
    const data = Float32Array.from({ length: 48 }, (_, i) => i);
    const source = { data, dims: [1, 3, 4, 4], black: [-1, -2, -3] };
    const grid = { height: 2, width: 2 };
    const mean = fillImage(source, grid, 'mean', 0);
    expect(mean[0]).toBeCloseTo(7.5, 6); // channel 0 holds 0..15
    expect(mean[16]).toBeCloseTo(23.5, 6);
    const out = new Float32Array(48);
    perturbPixels(source, grid, Uint8Array.from([0, 1, 0, 0]), mean, out); // top-right patch
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 4; x++) {
          const i = c * 16 + y * 4 + x;
          expect(out[i]).toBeCloseTo(y < 2 && x >= 2 ? 7.5 + 16 * c : i, 5);
        }
      }
    }
    expect(fillImage(source, grid, 'black', 0)[20]).toBe(-2);
    const noise = fillImage(source, grid, 'noise', 5);
    expect(noise).toEqual(fillImage(source, grid, 'noise', 5));
    const constant = { data: new Float32Array(48).fill(3), dims: [1, 3, 4, 4] };
    expect(Array.from(fillImage(constant, grid, 'blur', 0)).every((v) => Math.abs(v - 3) < 1e-6)).toBe(true);
    expect(() => fillImage(constant, grid, 'black', 0)).toThrow(/black pixel/);
  });
});

describe('token-weight faithfulness', () => {
  it('ranks grounded words against filler', () => {
    const tokens = ['a', 'red', 'circle', 'and', 'a', 'blue', 'square', ','];
    const grounded = [1, 2, 5, 6];
    const filler = fillerTokens(tokens, new Set(grounded));
    expect(filler).toEqual([0, 3, 4]); // the comma is neither
    const w = [0.1, 0.9, 0.8, 0.2, 0.05, 0.7, 0.15, 0.3];
    expect(tokenRanking(w, grounded, filler)).toEqual({
      groundedMean: (0.9 + 0.8 + 0.7 + 0.15) / 4,
      fillerMean: (0.1 + 0.2 + 0.05) / 3,
      ok: 1,
      strictOk: 0, // 0.15 < 0.2
    });
    expect(tokenRanking(w, [1], [])).toBeNull();
  });
});
