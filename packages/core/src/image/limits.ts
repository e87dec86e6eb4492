import { DexarError } from '../errors.js';

/**
 * What an input image may be. Checked on the declared size, before any pixel is decoded, so a
 * 32-byte file declaring 16383 x 16383 pixels costs nothing.
 */
export const IMAGE_LIMITS = {
  /** Pixels an image may declare (width x height): 64 megapixels, a large camera photo. */
  maxInputPixels: 64_000_000,
  /** The longer side an image is reduced to while decoding: above every family's input size, far below a photo's. */
  maxWorkingSide: 2048,
  /** Longer side over shorter: resizing a 100000 x 1 strip to a model's shortest edge would need gigapixels. */
  maxAspectRatio: 32,
} as const;

/** Refuses an image whose declared size is over the limits, with one line naming the size and the fix. */
export function checkImageSize(width: number, height: number): void {
  if (!(width >= 1 && height >= 1)) {
    throw new DexarError('unreadable-image', `the image declares ${width} x ${height} pixels: give a non-empty image`);
  }
  if (width * height > IMAGE_LIMITS.maxInputPixels) {
    throw new DexarError(
      'unreadable-image',
      `the image is ${width} x ${height} pixels, over the ${IMAGE_LIMITS.maxInputPixels / 1e6} megapixel limit: downscale it first`,
    );
  }
  const ratio = Math.max(width, height) / Math.min(width, height);
  if (ratio > IMAGE_LIMITS.maxAspectRatio) {
    throw new DexarError(
      'unreadable-image',
      `the image is ${width} x ${height} pixels, longer than ${IMAGE_LIMITS.maxAspectRatio} times its width or height: crop it first`,
    );
  }
}

/** The size an image of `width` x `height` is decoded at: itself, or reduced to `maxWorkingSide` on its longer side. */
export function workingSize(width: number, height: number): { width: number; height: number } {
  const scale = IMAGE_LIMITS.maxWorkingSide / Math.max(width, height);
  if (scale >= 1) return { width, height };
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}
