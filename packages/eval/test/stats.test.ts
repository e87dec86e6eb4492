import { describe, expect, it } from 'vitest';
import {
  confidenceInterval,
  incompleteBeta,
  logGamma,
  normalQuantile,
  sampleStd,
  studentTCdf,
  studentTQuantile,
  wilsonInterval,
} from '../src/stats.js';

describe('distributions', () => {
  it('log gamma and the incomplete beta match closed forms', () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
    // I_x(a, 1) = x^a; I_0.5(2, 3) = 11/16 (binomial sum)
    expect(incompleteBeta(0.3, 2.5, 1)).toBeCloseTo(0.3 ** 2.5, 12);
    expect(incompleteBeta(0.5, 2, 3)).toBeCloseTo(11 / 16, 12);
  });

  it('Student t quantiles match the tables', () => {
    const table: [number, number][] = [
      [1, 12.7062047],
      [2, 4.3026527],
      [4, 2.7764451],
      [10, 2.2281389],
      [30, 2.0422725],
      [100, 1.9839715],
    ];
    for (const [df, t] of table) expect(studentTQuantile(0.975, df)).toBeCloseTo(t, 6);
    expect(studentTQuantile(0.025, 4)).toBeCloseTo(-2.7764451, 6);
    expect(studentTCdf(0, 3)).toBeCloseTo(0.5, 12);
    // Cauchy (df = 1): F(1) = 3/4
    expect(studentTCdf(1, 1)).toBeCloseTo(0.75, 10);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963985, 8);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232306, 8);
  });
});

describe('confidence intervals', () => {
  it('t interval of 1..5: 3 ± t(0.975, 4) · s / √5', () => {
    const iv = confidenceInterval([1, 2, 3, 4, 5]);
    const half = (2.7764451 * Math.sqrt(2.5)) / Math.sqrt(5); // s² = 2.5
    expect(sampleStd([1, 2, 3, 4, 5])).toBeCloseTo(Math.sqrt(2.5), 12);
    expect(iv.n).toBe(5);
    expect(iv.mean).toBe(3);
    expect(iv.low).toBeCloseTo(3 - half, 6);
    expect(iv.high).toBeCloseTo(3 + half, 6);
  });

  it('is undefined below two observations and ignores non-finite values', () => {
    const one = confidenceInterval([4, Number.NaN]);
    expect(one.n).toBe(1);
    expect(one.mean).toBe(4);
    expect(one.low).toBeNaN();
  });

  it('percentile bootstrap is seeded, brackets the mean and is close to t for a normal-ish sample', () => {
    const xs = Array.from({ length: 200 }, (_, i) => Math.sin(i * 12.9898) * 2 + 1);
    const a = confidenceInterval(xs, { method: 'bootstrap', seed: 3 });
    const b = confidenceInterval(xs, { method: 'bootstrap', seed: 3 });
    const t = confidenceInterval(xs);
    expect(a).toEqual(b);
    expect(a.low).toBeLessThan(a.mean);
    expect(a.high).toBeGreaterThan(a.mean);
    expect(Math.abs(a.high - a.low - (t.high - t.low))).toBeLessThan(0.15 * (t.high - t.low));
  });

  it('Wilson interval of 3/4 and of 0/3', () => {
    // p = 0.75, n = 4, z = 1.96: centre (p + z²/2n)/(1 + z²/n), half z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n)
    const iv = wilsonInterval([1, 1, 1, 0]);
    expect(iv.low).toBeCloseTo(0.300642, 5);
    expect(iv.high).toBeCloseTo(0.954413, 5);
    const zero = wilsonInterval([0, 0, 0]);
    expect(zero.low).toBeCloseTo(0, 12);
    expect(zero.high).toBeCloseTo(0.561497, 5);
  });
});
