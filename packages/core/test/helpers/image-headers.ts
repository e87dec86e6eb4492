/**
 * Crafted image files that declare a size and hold (almost) no pixels, as an attacker would send
 * them: what the header readers and the decoders' limits are tested on, in Node and the browser.
 */
import { crc32, deflateSync } from 'node:zlib';

/** A PNG that declares `width` x `height` pixels and holds none (an empty image-data chunk). */
export function pngHeader(width: number, height: number): Uint8Array {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Uint8Array(
    Buffer.concat([
      signature,
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(0))),
      chunk('IEND', Buffer.alloc(0)),
    ]),
  );
}

/** `RIFF size WEBP` and one chunk of `size` bytes, the rest of the 32 bytes zero. */
function webp(chunk: 'VP8 ' | 'VP8L' | 'VP8X', size: number): Buffer {
  const bytes = Buffer.alloc(32);
  bytes.write('RIFF', 0, 'latin1');
  bytes.writeUInt32LE(24, 4);
  bytes.write(`WEBP${chunk}`, 8, 'latin1');
  bytes.writeUInt32LE(size, 16);
  return bytes;
}

/** A 32-byte lossless WebP that declares `width` x `height` pixels. */
export function webpHeader(width: number, height: number): Uint8Array {
  const bytes = webp('VP8L', 12);
  bytes[20] = 0x2f;
  bytes.writeUInt32LE(((width - 1) | ((height - 1) << 14)) >>> 0, 21);
  return new Uint8Array(bytes);
}

/** A 32-byte lossy WebP: a VP8 key frame header declaring `width` x `height`. */
export function webpLossyHeader(width: number, height: number): Uint8Array {
  const bytes = webp('VP8 ', 12);
  bytes.set([0x9d, 0x01, 0x2a], 23);
  bytes.writeUInt16LE(width, 26);
  bytes.writeUInt16LE(height, 28);
  return new Uint8Array(bytes);
}

/** A 32-byte extended WebP: a VP8X chunk declaring a `width` x `height` canvas. */
export function webpExtendedHeader(width: number, height: number): Uint8Array {
  const bytes = webp('VP8X', 10);
  bytes.writeUIntLE(width - 1, 24, 3);
  bytes.writeUIntLE(height - 1, 27, 3);
  return new Uint8Array(bytes);
}

/** A JPEG whose frame header (SOF`n`) declares `width` x `height`, after an APP1 segment and fill bytes. */
export function jpegHeader(width: number, height: number, sof = 0xc0): Uint8Array {
  const app1 = [0xff, 0xe1, 0x00, 0x08, ...Buffer.from('Exif\0\0', 'latin1')];
  const dqt = [0xff, 0xdb, 0x00, 0x04, 0x00, 0x01]; // a segment to skip (its content does not matter here)
  const frame = [
    0xff,
    0xff,
    0xff,
    sof,
    0x00,
    0x0b,
    8,
    height >> 8,
    height & 0xff,
    width >> 8,
    width & 0xff,
    1,
    1,
    0x11,
    0,
  ];
  return new Uint8Array([0xff, 0xd8, ...app1, ...dqt, ...frame, 0xff, 0xd9]);
}
