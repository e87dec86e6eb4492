import { pixelValues } from '@dexar/adapter-kit';
import type { Backend, RgbaImage } from '@dexar/core';
import type { ClipPreprocessor } from './config.js';

/**
 * CLIP preprocessing as transformers' `CLIPImageProcessor` does it: resize the
 * shortest edge (bicubic), centre-crop, rescale to [0, 1], normalise.
 * Returns `pixel_values` `[1, 3, H, W]`, the value of a black pixel per channel, and the crop's
 * window in the original image's pixels.
 */
export async function clipPixelValues(
  image: RgbaImage,
  pp: ClipPreprocessor,
  backend: Backend,
): Promise<{
  data: Float32Array;
  dims: [1, 3, number, number];
  black: number[];
  window: { left: number; top: number; width: number; height: number };
}> {
  let resized = image;
  if (pp.do_resize) {
    const edge = typeof pp.size === 'number' ? pp.size : pp.size.shortest_edge;
    const short = Math.min(image.width, image.height);
    const long = Math.max(image.width, image.height);
    const other = Math.floor((edge * long) / short);
    const [width, height] = image.width <= image.height ? [edge, other] : [other, edge];
    resized = await backend.resizeImage(image, width, height, pp.resample === 2 ? 'bilinear' : 'bicubic');
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
