import type { RgbaImage } from '@dexar/core';

export interface Normalisation {
  /** Multiplier that maps bytes to [0, 1] (`rescale_factor`), 1 when rescaling is off. */
  scale: number;
  mean: readonly number[];
  std: readonly number[];
}

/**
 * `pixel_values` `[1, 3, height, width]` from an RGBA image: the window at
 * (`top`, `left`) of the given size (zero outside the image, as transformers
 * pads a crop larger than the image), rescaled and normalised per channel.
 * `black` is the value of a zero byte per channel (evaluation's black fill).
 */
export function pixelValues(
  image: RgbaImage,
  window: { top: number; left: number; height: number; width: number },
  norm: Normalisation,
): { data: Float32Array; dims: [1, 3, number, number]; black: number[] } {
  const { top, left, height, width } = window;
  const data = new Float32Array(3 * height * width);
  for (let c = 0; c < 3; c++) {
    const mean = norm.mean[c];
    const std = norm.std[c];
    for (let y = 0; y < height; y++) {
      const sy = y + top;
      for (let x = 0; x < width; x++) {
        const sx = x + left;
        const inside = sy >= 0 && sy < image.height && sx >= 0 && sx < image.width;
        const value = inside ? image.data[(sy * image.width + sx) * 4 + c] : 0;
        data[(c * height + y) * width + x] = (value * norm.scale - mean) / std;
      }
    }
  }
  const black = [0, 1, 2].map((c) => -norm.mean[c] / norm.std[c]);
  return { data, dims: [1, 3, height, width], black };
}
