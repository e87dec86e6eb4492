import {
  checkImageHeader,
  checkImageSize,
  DexarError,
  type ResizeFilter,
  type RgbaImage,
  resample,
  workingSize,
} from '@dexar/core';
import { encodePngBytes } from './png.js';

type Canvas2D = OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;

function canvas(width: number, height: number): { context: Canvas2D } {
  if (typeof OffscreenCanvas !== 'undefined') {
    const c = new OffscreenCanvas(width, height);
    const context = c.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
    if (context) return { context };
  }
  if (typeof document !== 'undefined') {
    const c = document.createElement('canvas');
    c.width = width;
    c.height = height;
    const context = c.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
    if (context) return { context };
  }
  throw new DexarError('runtime', 'this environment has no 2D canvas (OffscreenCanvas or document): run in a browser');
}

/**
 * Decodes PNG, JPEG or WebP bytes to RGBA through the browser's decoders
 * (`createImageBitmap`), EXIF orientation applied, no colour-space
 * conversion and no premultiplication, so opaque images give the same bytes
 * as the Node path (sharp); works in a window or a worker. An image over `IMAGE_LIMITS` is
 * refused from its header before the browser decodes it (core's `checkImageHeader`, as in Node),
 * and one larger than the working resolution drawn reduced to it.
 */
export async function decodeImage(bytes: Uint8Array): Promise<RgbaImage> {
  checkImageHeader(bytes);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>]), {
      imageOrientation: 'from-image',
      premultiplyAlpha: 'none',
      colorSpaceConversion: 'none',
    });
  } catch (error) {
    throw new DexarError(
      'unreadable-image',
      `cannot decode the image (${(error as Error).message || 'the browser cannot read it'}): give a PNG, JPEG or WebP file`,
      { cause: error },
    );
  }
  try {
    checkImageSize(bitmap.width, bitmap.height); // what the browser decoded, should it read a header otherwise
    const { width, height } = workingSize(bitmap.width, bitmap.height);
    const { context } = canvas(width, height);
    context.drawImage(bitmap, 0, 0, width, height);
    const pixels = context.getImageData(0, 0, width, height, { colorSpace: 'srgb' });
    return { width, height, data: new Uint8Array(pixels.data.buffer, pixels.data.byteOffset, pixels.data.length) };
  } finally {
    bitmap.close();
  }
}

/** Resizes RGBA with Pillow's filters (antialiased when shrinking); see `resample`. */
export async function resizeImage(
  image: RgbaImage,
  width: number,
  height: number,
  filter: ResizeFilter,
): Promise<RgbaImage> {
  return resample(image, width, height, filter);
}

/** RGBA to an `ImageData` for a canvas (no copy when the data is already clamped). */
export function toImageData(image: RgbaImage): ImageData {
  const data =
    image.data instanceof Uint8ClampedArray
      ? image.data
      : new Uint8ClampedArray(image.data.buffer, image.data.byteOffset, image.data.length);
  return new ImageData(data as Uint8ClampedArray<ArrayBuffer>, image.width, image.height);
}

/** Encodes RGBA as a PNG blob (see `encodePngBytes`). */
export async function encodePng(image: RgbaImage): Promise<Blob> {
  return new Blob([(await encodePngBytes(image)) as Uint8Array<ArrayBuffer>], { type: 'image/png' });
}
