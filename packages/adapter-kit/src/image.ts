import { type RgbaImage, resample } from '@dexar/core';
import type { PixelValues } from '@dexar/core/adapter';
import { z } from 'zod';

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

const side = z.number().int().positive();
const box = z.object({ height: side, width: side });

/** What a family's image processor does when `preprocessor_config.json` leaves a field out. */
export interface ImageProcessorDefaults {
  /** `{ shortest_edge }` (CLIP) or `{ height, width }` (SigLIP, Florence-2). */
  readonly size: { readonly shortest_edge: number } | { readonly height: number; readonly width: number };
  /** transformers' `default_to_square`: a plain-number `size` is a square (true) or the shortest edge (false). */
  readonly default_to_square: boolean;
  readonly do_center_crop: boolean;
  readonly crop_size?: { readonly height: number; readonly width: number };
  readonly image_mean: readonly [number, number, number];
  readonly image_std: readonly [number, number, number];
}

/**
 * The fields of a transformers image processor (`preprocessor_config.json`) that the families'
 * preprocessing reads, with the family's defaults; `processImage` applies them. A family adds its
 * own fields beside them: `configObject({ ...imageProcessorFields(defaults), task_prompts: ... })`.
 */
export function imageProcessorFields(defaults: ImageProcessorDefaults) {
  return {
    do_resize: z.boolean().default(true),
    size: z.union([z.object({ shortest_edge: side }), box, side]).default(defaults.size),
    default_to_square: z.boolean().default(defaults.default_to_square),
    /** PIL's filter: 2 bilinear, 3 bicubic. */
    resample: z.number().int().default(3),
    do_center_crop: z.boolean().default(defaults.do_center_crop),
    crop_size: z.union([box, side]).default(defaults.crop_size ?? { height: 224, width: 224 }),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z
      .array(z.number())
      .length(3)
      .default([...defaults.image_mean]),
    image_std: z
      .array(z.number())
      .length(3)
      .default([...defaults.image_std]),
  };
}

/** The parsed image-processor fields, as `processImage` takes them. */
export type ImageProcessor = z.output<z.ZodObject<ReturnType<typeof imageProcessorFields>>>;

/**
 * The vision encoder's input for one image, as transformers' image processors compute it: resize
 * (`size`: the shortest edge, or an exact height and width), centre-crop (`do_center_crop`),
 * rescale (`do_rescale`) and normalise (`do_normalize`). Resizing is Pillow's (core's `resample`).
 * Returns `pixel_values` `[1, 3, H, W]`, the value of a black pixel per channel and the crop's
 * window in the original image's pixels.
 */
export function processImage(image: RgbaImage, pp: ImageProcessor): PixelValues {
  let resized = image;
  if (pp.do_resize) {
    const { width, height } = resizedSize(image, pp);
    resized = resample(image, width, height, pp.resample === 2 ? 'bilinear' : 'bicubic');
  }
  const crop = typeof pp.crop_size === 'number' ? { height: pp.crop_size, width: pp.crop_size } : pp.crop_size;
  const [height, width] = pp.do_center_crop ? [crop.height, crop.width] : [resized.height, resized.width];
  const top = Math.floor((resized.height - height) / 2);
  const left = Math.floor((resized.width - width) / 2);
  const pixels = pixelValues(
    resized,
    { top, left, height, width },
    {
      scale: pp.do_rescale ? pp.rescale_factor : 1,
      mean: pp.do_normalize ? pp.image_mean : [0, 0, 0],
      std: pp.do_normalize ? pp.image_std : [1, 1, 1],
    },
  );
  const sx = image.width / resized.width;
  const sy = image.height / resized.height;
  return { ...pixels, window: { left: left * sx, top: top * sy, width: width * sx, height: height * sy } };
}

/** transformers' `get_resize_output_image_size`: the shortest edge to `size` (the other by floor), or the exact size. */
function resizedSize(image: RgbaImage, pp: ImageProcessor): { width: number; height: number } {
  const size =
    typeof pp.size === 'number'
      ? pp.default_to_square
        ? { height: pp.size, width: pp.size }
        : { shortest_edge: pp.size }
      : pp.size;
  if (!('shortest_edge' in size)) return size;
  const edge = size.shortest_edge;
  const short = Math.min(image.width, image.height);
  const long = Math.max(image.width, image.height);
  const other = Math.floor((edge * long) / short);
  return image.width <= image.height ? { width: edge, height: other } : { width: other, height: edge };
}
