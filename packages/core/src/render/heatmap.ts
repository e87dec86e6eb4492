import type { Grid } from '../layout.js';

/** An RGBA8 image, row-major: what a canvas `ImageData` and `sharp().raw()` both hold. */
export interface RgbaImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array | Uint8ClampedArray;
}

export type ColormapName = 'jet' | 'turbo';
export const colormapNames: readonly ColormapName[] = ['jet', 'turbo'];

type Rgb = readonly [number, number, number];
const clamp01 = (x: number) => Math.min(Math.max(x, 0), 1);

/** Colormaps as functions of t in [0, 1] returning RGB in [0, 1]. */
const colormaps: Record<ColormapName, (t: number) => Rgb> = {
  // The classic piecewise-linear jet the authors' figures use.
  jet: (t) => [
    clamp01(1.5 - Math.abs(4 * t - 3)),
    clamp01(1.5 - Math.abs(4 * t - 2)),
    clamp01(1.5 - Math.abs(4 * t - 1)),
  ],
  // Turbo, perceptually smoother than jet: the published degree-5 polynomial fit (Mikhailov, 2019).
  turbo: (t) => [
    clamp01(
      0.13572138 + t * (4.6153926 + t * (-42.66032258 + t * (132.13108234 + t * (-152.94239396 + t * 59.28637943)))),
    ),
    clamp01(0.09140261 + t * (2.19418839 + t * (4.84296658 + t * (-14.18503333 + t * (4.27729857 + t * 2.82956604))))),
    clamp01(
      0.1066733 + t * (12.64194608 + t * (-60.58204836 + t * (110.36276771 + t * (-89.90310912 + t * 27.34824973)))),
    ),
  ],
};

/** 256-entry RGB lookup table of a colormap. `[256, 3]` */
export function colormapTable(name: ColormapName): Uint8Array {
  const fn = colormaps[name];
  const table = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = fn(i / 255);
    table.set([Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)], i * 3);
  }
  return table;
}

/**
 * Bilinear upsampling of a `[gh, gw]` map to `[height, width]` with half-pixel
 * centres (PyTorch `interpolate(..., align_corners=False)`), so each patch's
 * value sits at the centre of the image area it covers.
 */
export function upsampleBilinear(map: ArrayLike<number>, grid: Grid, width: number, height: number): Float32Array {
  const { height: gh, width: gw } = grid;
  const out = new Float32Array(width * height);
  const sy = gh / height;
  const sx = gw / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.max((y + 0.5) * sy - 0.5, 0);
    const y0 = Math.min(Math.floor(fy), gh - 1);
    const y1 = Math.min(y0 + 1, gh - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.max((x + 0.5) * sx - 0.5, 0);
      const x0 = Math.min(Math.floor(fx), gw - 1);
      const x1 = Math.min(x0 + 1, gw - 1);
      const wx = fx - x0;
      const top = map[y0 * gw + x0] * (1 - wx) + map[y0 * gw + x1] * wx;
      const bottom = map[y1 * gw + x0] * (1 - wx) + map[y1 * gw + x1] * wx;
      out[y * width + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}

export interface HeatmapStyle {
  /**
   * The colours from 0 to 1.
   * @defaultValue 'jet'
   */
  colormap?: ColormapName;
  /**
   * Opacity of the heatmap over the image, in [0, 1].
   * @defaultValue 0.5
   */
  alpha?: number;
}

/** A grid map (values in [0, 1]) upsampled to `width x height` and coloured: an opaque RGBA image. */
export function renderHeatmap(
  map: ArrayLike<number>,
  grid: Grid,
  width: number,
  height: number,
  colormap: ColormapName = 'jet',
): RgbaImage {
  const values = upsampleBilinear(map, grid, width, height);
  const table = colormapTable(colormap);
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < values.length; i++) {
    const c = Math.round(clamp01(values[i]) * 255) * 3;
    data[i * 4] = table[c];
    data[i * 4 + 1] = table[c + 1];
    data[i * 4 + 2] = table[c + 2];
    data[i * 4 + 3] = 255;
  }
  return { width, height, data };
}

/** The map's heatmap alpha-blended over the image (`out = (1 - alpha) * image + alpha * heat`). */
export function overlayHeatmap(
  image: RgbaImage,
  map: ArrayLike<number>,
  grid: Grid,
  style: HeatmapStyle = {},
): RgbaImage {
  const alpha = clamp01(style.alpha ?? 0.5);
  const heat = renderHeatmap(map, grid, image.width, image.height, style.colormap);
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < data.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      data[i + c] = Math.round((1 - alpha) * image.data[i + c] + alpha * heat.data[i + c]);
    }
    data[i + 3] = image.data[i + 3];
  }
  return { width: image.width, height: image.height, data };
}
