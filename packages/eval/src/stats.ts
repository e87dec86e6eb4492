/**
 * Summary statistics for the evaluation report: means with 95% confidence intervals, from the
 * Student t distribution (default) or a percentile bootstrap.
 */
import { prng } from './random.js';

export interface Interval {
  /** Observations (non-finite values are left out). */
  n: number;
  mean: number;
  /** Bounds of the interval; NaN when it is undefined (fewer than two observations). */
  low: number;
  high: number;
}

export type CiMethod = 't' | 'bootstrap';

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation (n - 1 in the denominator). */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return Number.NaN;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / (xs.length - 1));
}

/** log Gamma(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-13). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = c[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularised incomplete beta I_x(a, b) (continued fraction, modified Lentz). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  if (x > (a + 1) / (a + b + 2)) return 1 - incompleteBeta(1 - x, b, a);
  const tiny = 1e-300;
  let f = 1;
  let c = 1;
  let d = 0;
  for (let i = 0; i <= 400; i++) {
    const m = Math.floor(i / 2);
    let numerator: number;
    if (i === 0) numerator = 1;
    else if (i % 2 === 0) numerator = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m));
    else numerator = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 + numerator * d;
    if (Math.abs(d) < tiny) d = tiny;
    d = 1 / d;
    c = 1 + numerator / c;
    if (Math.abs(c) < tiny) c = tiny;
    const cd = c * d;
    f *= cd;
    if (Math.abs(1 - cd) < 1e-15) break;
  }
  return (front * (f - 1)) / a;
}

/** CDF of Student's t distribution with `df` degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** Quantile of Student's t distribution (bisection on the CDF; |error| < 1e-10). */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return Number.NaN;
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-12; i++) {
    const mid = (lo + hi) / 2;
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * Mean and confidence interval (default 95%). `t`: mean ± t_{(1+level)/2, n-1} · s / √n.
 * `bootstrap`: percentile interval of the means of `resamples` resamples with replacement
 * (seeded, so reports are reproducible).
 */
export function confidenceInterval(
  values: readonly number[],
  options: { level?: number; method?: CiMethod; resamples?: number; seed?: number } = {},
): Interval {
  const xs = values.filter((x) => Number.isFinite(x));
  const level = options.level ?? 0.95;
  const n = xs.length;
  const m = mean(xs);
  if (n < 2) return { n, mean: m, low: Number.NaN, high: Number.NaN };
  if ((options.method ?? 't') === 't') {
    const half = (studentTQuantile((1 + level) / 2, n - 1) * sampleStd(xs)) / Math.sqrt(n);
    return { n, mean: m, low: m - half, high: m + half };
  }
  const resamples = options.resamples ?? 2000;
  const uniform = prng(options.seed ?? 1);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += xs[Math.floor(uniform() * n)];
    means[r] = s / n;
  }
  means.sort();
  const at = (q: number) => {
    const pos = q * (resamples - 1);
    const i = Math.floor(pos);
    const frac = pos - i;
    return i + 1 < resamples ? means[i] * (1 - frac) + means[i + 1] * frac : means[i];
  };
  return { n, mean: m, low: at((1 - level) / 2), high: at((1 + level) / 2) };
}

/**
 * Wilson score interval of a proportion (values 0/1), which stays inside [0, 1] and behaves at
 * 0% and 100% where the t interval does not.
 */
export function wilsonInterval(values: readonly number[], level = 0.95): Interval {
  const xs = values.filter((x) => Number.isFinite(x));
  const n = xs.length;
  const m = mean(xs);
  if (n === 0) return { n, mean: m, low: Number.NaN, high: Number.NaN };
  const z = normalQuantile((1 + level) / 2);
  const z2 = z * z;
  const centre = (m + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((m * (1 - m)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { n, mean: m, low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** Standard normal quantile: Acklam's rational approximation refined by one Halley step (|error| < 1e-12). */
export function normalQuantile(p: number): number {
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239,
  ];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  if (!(p > 0 && p < 1)) return Number.NaN;
  const lowTail = 0.02425;
  let x: number;
  if (p < lowTail) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - lowTail) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
      (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x =
      -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const e = 0.5 * (1 + erf(x / Math.SQRT2)) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** erf(x) = sign(x) · P(1/2, x²), the regularised lower incomplete gamma: series below 3, continued fraction above. */
function erf(x: number): number {
  const t = x * x;
  if (t === 0) return 0;
  let sum = 0;
  if (t < 3) {
    let term = 1 / 0.5;
    sum = term;
    for (let k = 1; k < 200; k++) {
      term *= t / (0.5 + k);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    const p = sum * Math.exp(-t + 0.5 * Math.log(t) - logGamma(0.5));
    return x < 0 ? -p : p;
  }
  // continued fraction for the upper incomplete gamma Q(1/2, t)
  let bb = t + 0.5;
  let cc = 1 / 1e-300;
  let dd = 1 / bb;
  let h = dd;
  for (let i = 1; i < 300; i++) {
    const an = -i * (i - 0.5);
    bb += 2;
    dd = an * dd + bb;
    if (Math.abs(dd) < 1e-300) dd = 1e-300;
    cc = bb + an / cc;
    if (Math.abs(cc) < 1e-300) cc = 1e-300;
    dd = 1 / dd;
    const del = dd * cc;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  const q = Math.exp(-t + 0.5 * Math.log(t) - logGamma(0.5)) * h;
  return x < 0 ? -(1 - q) : 1 - q;
}
