import { DexarError, type ResizeFilter, type RgbaImage } from '@dexar/core';
import sharp from 'sharp';

/** Decodes PNG, JPEG or WebP to RGBA, applying EXIF orientation. */
export async function decodeImage(bytes: Uint8Array): Promise<RgbaImage> {
  try {
    const { data, info } = await sharp(bytes).rotate().ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    return {
      width: info.width,
      height: info.height,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    };
  } catch (error) {
    throw new DexarError(
      'unreadable-image',
      `cannot decode the image (${(error as Error).message}): give a PNG, JPEG or WebP file`,
      { cause: error },
    );
  }
}

// sharp's cubic kernel is Catmull-Rom (a = -0.5), PIL's BICUBIC; both antialias when shrinking.
const kernels = { bicubic: 'cubic', bilinear: 'linear' } as const;

export async function resizeImage(
  image: RgbaImage,
  width: number,
  height: number,
  filter: ResizeFilter,
): Promise<RgbaImage> {
  if (image.width === width && image.height === height) return image;
  const data = await sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: 4 },
  })
    .resize(width, height, { kernel: kernels[filter], fit: 'fill' })
    .raw()
    .toBuffer();
  return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** Encodes RGBA as PNG. */
export async function encodePng(image: RgbaImage): Promise<Uint8Array> {
  const png = await sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: 4 },
  })
    .png()
    .toBuffer();
  return new Uint8Array(png.buffer, png.byteOffset, png.length);
}
