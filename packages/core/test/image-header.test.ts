import { describe, expect, it } from 'vitest';
import { checkImageHeader, readImageHeader } from '../src/image/header.js';
import { jpegHeader, pngHeader, webpExtendedHeader, webpHeader, webpLossyHeader } from './helpers/image-headers.js';

describe('readImageHeader: the declared size from the header alone', () => {
  it.each([
    ['PNG', pngHeader(640, 480), 'png'],
    ['baseline JPEG after APP1, DQT and fill bytes', jpegHeader(640, 480), 'jpeg'],
    ['progressive JPEG (SOF2)', jpegHeader(640, 480, 0xc2), 'jpeg'],
    ['lossless WebP (VP8L)', webpHeader(640, 480), 'webp'],
    ['lossy WebP (VP8)', webpLossyHeader(640, 480), 'webp'],
    ['extended WebP (VP8X)', webpExtendedHeader(640, 480), 'webp'],
  ])('reads %s', (_, bytes, format) => {
    expect(readImageHeader(bytes)).toEqual({ format, width: 640, height: 480 });
  });

  it('reads the largest sizes each format can declare', () => {
    expect(readImageHeader(webpHeader(16383, 16383))).toMatchObject({ width: 16383, height: 16383 });
    expect(readImageHeader(webpLossyHeader(16383, 16383))).toMatchObject({ width: 16383, height: 16383 });
    expect(readImageHeader(webpExtendedHeader(2 ** 24, 2 ** 24))).toMatchObject({ width: 2 ** 24, height: 2 ** 24 });
    expect(readImageHeader(jpegHeader(65535, 65535))).toMatchObject({ width: 65535, height: 65535 });
    expect(readImageHeader(pngHeader(2 ** 31 - 1, 1))).toMatchObject({ width: 2 ** 31 - 1, height: 1 });
  });

  it.each([
    ['text', new TextEncoder().encode('not an image'), /its first bytes are no PNG, JPEG or WebP signature/],
    ['nothing', new Uint8Array(), /its first bytes are no PNG, JPEG or WebP signature/],
    ['a PNG cut inside IHDR', pngHeader(64, 64).subarray(0, 20), /its PNG header is cut short or malformed/],
    ['a JPEG cut inside its frame header', jpegHeader(64, 64).subarray(0, 28), /its JPEG header is cut short/],
    ['a JPEG whose scan comes before any frame header', new Uint8Array([0xff, 0xd8, 0xff, 0xda, 0, 2]), /JPEG header/],
    ['a JPEG segment of length 0', new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0xff, 0xc0]), /JPEG header/],
    ['a WebP cut at 24 bytes', webpHeader(64, 64).subarray(0, 24), /its WebP header is cut short or malformed/],
    ['a VP8 chunk without its start code', webpLossyHeader(64, 64).map((b, i) => (i === 23 ? 0 : b)), /WebP header/],
  ])('refuses %s in one line, before any decoder', (_, bytes, message) => {
    expect(() => readImageHeader(bytes)).toThrowError(message);
    expect(() => readImageHeader(bytes)).toThrowError(
      /^cannot decode the image \(.*\): give a PNG, JPEG or WebP file$/,
    );
  });
});

describe('checkImageHeader: the limits on the declared size', () => {
  it.each([
    [
      'a 32-byte lossless WebP of 16383 x 16383',
      webpHeader(16383, 16383),
      /16383 x 16383 pixels, over the 64 megapixel/,
    ],
    ['a lossy WebP of 16383 x 16383', webpLossyHeader(16383, 16383), /16383 x 16383 pixels, over the 64 megapixel/],
    ['a 16000 x 16000 PNG', pngHeader(16000, 16000), /16000 x 16000 pixels, over the 64 megapixel limit/],
    ['a 100000 x 1 PNG', pngHeader(100000, 1), /100000 x 1 pixels, longer than 32 times its width or height: crop/],
    ['a JPEG of 65535 x 65535', jpegHeader(65535, 65535), /65535 x 65535 pixels, over the 64 megapixel/],
    ['a JPEG declaring no lines', jpegHeader(64, 0), /declares 64 x 0 pixels: give a non-empty image/],
  ])('refuses %s', (_, bytes, message) => {
    expect(bytes.length).toBeLessThan(200);
    expect(() => checkImageHeader(bytes)).toThrowError(message);
  });

  it('passes an image within the limits and returns its header', () => {
    expect(checkImageHeader(pngHeader(8000, 8000))).toEqual({ format: 'png', width: 8000, height: 8000 });
  });
});
