import { DexarError } from '../errors.js';
import { checkImageSize } from './limits.js';

export type ImageFormat = 'png' | 'jpeg' | 'webp';

/** What an image file declares before its pixels: its format and size (before any EXIF rotation). */
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
}

type Size = { width: number; height: number };

/** Whether `bytes` hold the Latin-1 `text` at `at`. */
const hasAt = (bytes: Uint8Array, at: number, text: string) =>
  [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));
const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** PNG spec 11.2.2: IHDR is the first chunk, width and height big-endian after its length and type. */
function pngSize(bytes: Uint8Array): Size | undefined {
  if (bytes.length < 24 || !hasAt(bytes, 12, 'IHDR')) return undefined;
  return { width: view(bytes).getUint32(16), height: view(bytes).getUint32(20) };
}

/** Start-of-frame markers (ITU T.81 table B.1): C0-CF but DHT (C4), JPG (C8) and DAC (CC). */
const isStartOfFrame = (marker: number) => marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
/** Markers without a length field (T.81 B.1.1.2): TEM, RST0-7 and SOI. */
const isStandalone = (marker: number) => marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8);

/**
 * ITU T.81 B.2.2: the frame header (SOFn: length, precision, lines, samples per line) follows
 * any number of marker segments (APPn for EXIF, DQT, DHT...), each skipped by its length; fill
 * bytes (0xFF) may precede a marker. Scan data (SOS) or the end (EOI) before a frame header is malformed.
 */
function jpegSize(bytes: Uint8Array): Size | undefined {
  const data = view(bytes);
  let at = 2;
  while (at + 1 < bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1] as number;
    if (marker === 0xff) {
      at += 1;
    } else if (isStandalone(marker)) {
      at += 2;
    } else if (marker === 0xda || marker === 0xd9 || at + 4 > bytes.length) {
      return undefined;
    } else if (isStartOfFrame(marker)) {
      if (at + 9 > bytes.length) return undefined;
      return { width: data.getUint16(at + 7), height: data.getUint16(at + 5) };
    } else {
      const length = data.getUint16(at + 2);
      if (length < 2) return undefined;
      at += 2 + length;
    }
  }
  return undefined;
}

/**
 * The WebP container (RFC 9649): after `RIFF size WEBP`, the first chunk at byte 12 is `VP8 `
 * (lossy, 2.5: the VP8 key frame header of RFC 6386 9.1, 14-bit sizes after the start code),
 * `VP8L` (lossless, 2.6 and 3.2: signature 0x2F, then width - 1 and height - 1 in 14 bits each)
 * or `VP8X` (extended, 2.7: canvas width - 1 and height - 1 in 24 bits each).
 */
function webpSize(bytes: Uint8Array): Size | undefined {
  const data = view(bytes);
  const uint24 = (at: number) => data.getUint16(at, true) | ((bytes[at + 2] as number) << 16);
  if (hasAt(bytes, 12, 'VP8 ') && bytes.length >= 30 && hasAt(bytes, 23, '\x9d\x01\x2a')) {
    return { width: data.getUint16(26, true) & 0x3fff, height: data.getUint16(28, true) & 0x3fff };
  }
  if (hasAt(bytes, 12, 'VP8L') && bytes.length >= 25 && bytes[20] === 0x2f) {
    const bits = data.getUint32(21, true);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (hasAt(bytes, 12, 'VP8X') && bytes.length >= 30) return { width: uint24(24) + 1, height: uint24(27) + 1 };
  return undefined;
}

/** Each format by its file signature, and where its header declares the size. */
const FORMATS: { format: ImageFormat; name: string; signature: (b: Uint8Array) => boolean; size: typeof pngSize }[] = [
  { format: 'png', name: 'PNG', signature: (b) => hasAt(b, 0, '\x89PNG\r\n\x1a\n'), size: pngSize },
  { format: 'jpeg', name: 'JPEG', signature: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff, size: jpegSize },
  { format: 'webp', name: 'WebP', signature: (b) => hasAt(b, 0, 'RIFF') && hasAt(b, 8, 'WEBP'), size: webpSize },
];

const unreadable = (why: string) =>
  new DexarError('unreadable-image', `cannot decode the image (${why}): give a PNG, JPEG or WebP file`);

/** The format and declared size of PNG, JPEG or WebP bytes, from the header alone (nothing is decoded). */
export function readImageHeader(bytes: Uint8Array): ImageHeader {
  const format = FORMATS.find((f) => f.signature(bytes));
  if (!format) throw unreadable('its first bytes are no PNG, JPEG or WebP signature');
  const size = format.size(bytes);
  if (!size) throw unreadable(`its ${format.name} header is cut short or malformed`);
  return { format: format.format, ...size };
}

/**
 * Reads the header and refuses an image over `IMAGE_LIMITS` before any decoder sees it: a
 * 32-byte WebP declaring 16383 x 16383 pixels costs 32 bytes, not a gigabyte. Node (before
 * sharp), the browser (before `createImageBitmap`) and the demo page (before its preview) all call this.
 */
export function checkImageHeader(bytes: Uint8Array): ImageHeader {
  const header = readImageHeader(bytes);
  checkImageSize(header.width, header.height);
  return header;
}
