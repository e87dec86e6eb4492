import type { RgbaImage } from '../render/heatmap.js';

/**
 * RGBA resizing with Pillow's resampling (`Image.resize`, libImaging/Resample.c),
 * the resize HuggingFace image processors run: a separable convolution,
 * horizontal pass first, whose kernel support widens by the scale factor
 * when shrinking (antialiasing), with 8-bit fixed-point coefficients
 * (22 fraction bits) and a clipped 8-bit intermediate image. Pure
 * JavaScript, so the browser gets the same pixels whatever its canvas does.
 */

/** Pillow's resampling filters that image processors use (`resample` 3 and 2). */
export type ResizeFilter = 'bicubic' | 'bilinear';

interface Filter {
  support: number;
  weight(x: number): number;
}

// Keys' cubic convolution with a = -0.5, Pillow's BICUBIC.
const A = -0.5;
const filters: Record<ResizeFilter, Filter> = {
  bicubic: {
    support: 2,
    weight(x) {
      const t = Math.abs(x);
      if (t < 1) return ((A + 2) * t - (A + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * A;
      return 0;
    },
  },
  bilinear: {
    support: 1,
    weight(x) {
      const t = Math.abs(x);
      return t < 1 ? 1 - t : 0;
    },
  },
};

const PRECISION_BITS = 32 - 8 - 2;

interface Coefficients {
  /** First source index and tap count of each output pixel. */
  bounds: Int32Array;
  /** Fixed-point taps, `taps` per output pixel. */
  kernel: Int32Array;
  taps: number;
}

/** Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`. */
function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kernel = new Int32Array(outSize * taps);
  const k = new Float64Array(taps);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    // C's (int) truncates toward zero; both operands are >= -0.5 here, so trunc matches.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww === 0 ? 0 : k[x] / ww;
      // normalize_coeffs_8bpc: round half away from zero.
      kernel[xx * taps + x] =
        w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kernel, taps };
}

const clip8 = (v: number) => {
  const x = Math.floor(v / (1 << PRECISION_BITS));
  return Math.min(Math.max(x, 0), 255);
};

/** One pass along x (`horizontal`) or y over RGBA8 data. */
function pass(
  src: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  outSize: number,
  horizontal: boolean,
  filter: Filter,
): Uint8Array {
  const inSize = horizontal ? width : height;
  const { bounds, kernel, taps } = coefficients(inSize, outSize, filter);
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * 4);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const i = horizontal ? x : y;
      const start = bounds[i * 2];
      const count = bounds[i * 2 + 1];
      let r = half;
      let g = half;
      let b = half;
      let a = half;
      for (let t = 0; t < count; t++) {
        const w = kernel[i * taps + t];
        const p = horizontal ? (y * width + start + t) * 4 : ((start + t) * width + x) * 4;
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
        a += src[p + 3] * w;
      }
      const o = (y * outW + x) * 4;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
      out[o + 3] = clip8(a);
    }
  }
  return out;
}

/**
 * Resizes RGBA to `width x height` as Pillow does. Channels are filtered
 * independently (the images adapters resize are opaque: processors convert to RGB first).
 */
export function resample(image: RgbaImage, width: number, height: number, filter: ResizeFilter): RgbaImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`cannot resize to ${width} x ${height}: the size must be positive integers`);
  }
  if (image.width === width && image.height === height) return image;
  const f = filters[filter];
  let data: Uint8Array | Uint8ClampedArray = image.data;
  let w = image.width;
  if (width !== image.width) {
    data = pass(data, image.width, image.height, width, true, f);
    w = width;
  }
  if (height !== image.height) data = pass(data, w, image.height, height, false, f);
  return { width, height, data: data instanceof Uint8Array ? data : new Uint8Array(data) };
}
