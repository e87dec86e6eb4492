import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readImageHeader } from '../../core/src/image/header.js';
import { pngHeader, webpHeader } from '../../core/test/helpers/image-headers.js';
import {
  decodeImage,
  NodeModelFolder,
  nodeBackend,
  openModelFolder,
  resizeImage,
  writeAtomically,
} from '../src/index.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const llavaTiny = fileURLToPath(new URL('../../../fixtures/models/llava-tiny', import.meta.url));

/** A 3 x 2 image: left column red, the rest blue. */
const raw = Buffer.from(
  [
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 255],
  ].flat(),
);
const source = () => sharp(raw, { raw: { width: 3, height: 2, channels: 3 } });

describe('images', () => {
  it.each([
    ['PNG', () => source().png().toBuffer()],
    ['WebP', () => source().webp({ lossless: true }).toBuffer()],
  ])('decodes %s to RGBA', async (_, encode) => {
    const image = await decodeImage(new Uint8Array(await encode()));
    expect([image.width, image.height]).toEqual([3, 2]);
    expect(Array.from(image.data.subarray(0, 8))).toEqual([255, 0, 0, 255, 0, 0, 255, 255]);
  });

  it('decodes JPEG and applies its EXIF orientation', async () => {
    const jpeg = await source().jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const image = await decodeImage(new Uint8Array(jpeg));
    expect([image.width, image.height]).toEqual([2, 3]); // rotated 90 degrees
  });

  it('rejects bytes that are not an image with a one-line error', async () => {
    await expect(decodeImage(new TextEncoder().encode('not an image'))).rejects.toThrowError(
      /^cannot decode the image \(.*\): give a PNG, JPEG or WebP file$/,
    );
  });

  it('resizes with the requested size and keeps RGBA', async () => {
    const image = await decodeImage(new Uint8Array(await source().png().toBuffer()));
    const big = await resizeImage(image, 6, 4, 'bicubic');
    expect([big.width, big.height, big.data.length]).toEqual([6, 4, 96]);
    expect(Array.from(big.data.subarray(0, 4))).toEqual([255, 0, 0, 255]);
  });
});

describe('image limits', () => {
  it('refuses images over the pixel or aspect limits from their header, before decoding', async () => {
    await expect(decodeImage(webpHeader(16383, 16383))).rejects.toThrowError(
      /the image is 16383 x 16383 pixels, over the 64 megapixel limit: downscale it first/,
    );
    await expect(decodeImage(pngHeader(16000, 16000))).rejects.toThrowError(/16000 x 16000 pixels, over the 64/);
    const strip = await sharp(Buffer.alloc(100000 * 3), { raw: { width: 100000, height: 1, channels: 3 } })
      .png()
      .toBuffer();
    await expect(decodeImage(new Uint8Array(strip))).rejects.toThrowError(
      /100000 x 1 pixels, longer than 32 times its width or height: crop it first/,
    );
  });

  it("reads the size sharp reads from real files, in every encoding core's header reader knows", async () => {
    const noise = { type: 'gaussian', mean: 128, sigma: 40 } as const;
    const image = () => sharp({ create: { width: 37, height: 23, channels: 4, background: '#80808080', noise } });
    const encodings = {
      png: await image().png().toBuffer(),
      'baseline JPEG': await image().jpeg().toBuffer(),
      'progressive JPEG with EXIF': await image()
        .jpeg({ progressive: true })
        .withMetadata({ orientation: 6 })
        .toBuffer(),
      'lossy WebP with alpha (VP8X)': await image().webp().toBuffer(),
      'lossy WebP (VP8)': await image().removeAlpha().webp().toBuffer(),
      'lossless WebP (VP8L)': await image().webp({ lossless: true }).toBuffer(),
    };
    for (const [name, bytes] of Object.entries(encodings)) {
      const { width, height, format } = await sharp(bytes).metadata();
      expect(readImageHeader(new Uint8Array(bytes)), name).toEqual({ format, width, height });
    }
    expect(
      Object.values(encodings)
        .map((b) => b.toString('latin1', 12, 16))
        .filter((t) => t.startsWith('VP8')),
    ).toEqual(['VP8X', 'VP8 ', 'VP8L']);
  });

  it('decodes a photo larger than the working resolution reduced to it', async () => {
    const noise = { type: 'gaussian', mean: 128, sigma: 40 } as const;
    const photo = await sharp({ create: { width: 3000, height: 2400, channels: 3, background: '#808080', noise } })
      .jpeg()
      .toBuffer();
    const image = await decodeImage(new Uint8Array(photo));
    expect([image.width, image.height]).toEqual([2048, 1638]);
    expect(image.data.length).toBe(2048 * 1638 * 4);
  });
});

describe('model folders', () => {
  it('maps a variant to its file name, but not derived explain graphs', () => {
    const folder = new NodeModelFolder('/m', 'fp16');
    expect(folder.filePath('onnx/decoder_model_merged.onnx')).toBe('/m/onnx/decoder_model_merged_fp16.onnx');
    expect(folder.filePath('onnx/decoder_model_merged.dexar-0a1b.onnx')).toBe(
      '/m/onnx/decoder_model_merged.dexar-0a1b.onnx',
    );
    expect(folder.filePath('config.json')).toBe('/m/config.json');
  });

  it('names the missing variant file', async () => {
    const folder = await openModelFolder(llavaTiny, 'q4');
    await expect(folder.readBytes('onnx/decoder_model_merged.onnx')).rejects.toThrowError(
      /decoder_model_merged_q4\.onnx: ENOENT .*with the q4 variant/,
    );
  });

  it('writes atomically: the file appears whole and no temporary file stays', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-atomic-'));
    await writeAtomically(join(dir, 'a/b.bin'), new Uint8Array([1, 2, 3]));
    expect(Array.from(await readFile(join(dir, 'a/b.bin')))).toEqual([1, 2, 3]);
    expect(await readdir(join(dir, 'a'))).toEqual(['b.bin']);
  });
});

describe('sessions', () => {
  it('opens a graph of a model folder and runs it', async () => {
    const backend = nodeBackend({ threads: 1 });
    const session = await backend.createSession(await openModelFolder(llavaTiny), 'onnx/embed_tokens.onnx');
    const out = await session.run({
      input_ids: backend.tensor('int64', new BigInt64Array([1n, 2n]), [1, 2]),
    });
    expect(out.inputs_embeds.dims).toEqual([1, 2, 64]);
    await session.release();
  });

  it('opens a graph holding each weight once (no pre-packing) with the same outputs', async () => {
    const backend = nodeBackend({ threads: 1 });
    const folder = await openModelFolder(llavaTiny);
    const [packed, once] = await Promise.all([
      backend.createSession(folder, 'onnx/vision_encoder.onnx'),
      backend.createSession(folder, 'onnx/vision_encoder.onnx', { weightsOnce: true }),
    ]);
    const pixels = Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i));
    const feeds = { pixel_values: backend.tensor('float32', pixels, [1, 3, 64, 64]) };
    const [a, b] = await Promise.all([packed.run(feeds), once.run(feeds)]);
    const x = a.image_features.data as Float32Array;
    const y = b.image_features.data as Float32Array;
    expect(y.length).toBe(x.length);
    expect(Math.max(...x.map((v, i) => Math.abs(v - (y[i] as number))))).toBeLessThan(1e-5); // the same products, blocked alike or not
    await Promise.all([packed.release(), once.release()]);
  });

  it('explains how to get CUDA when its provider is missing', async () => {
    const backend = nodeBackend({ executionProvider: 'cuda' });
    await expect(
      backend.createSession(await openModelFolder(llavaTiny), 'onnx/embed_tokens.onnx'),
    ).rejects.toThrowError(
      /cannot start the CUDA execution provider .*install onnxruntime-node with its CUDA binaries, or use --device cpu/,
    );
  });

  it('names an empty graph file without ONNX Runtime internal source paths', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-empty-graph-'));
    await cp(join(llavaTiny, 'config.json'), join(dir, 'config.json'));
    await writeAtomically(join(dir, 'onnx/embed_tokens.onnx'), new Uint8Array());
    const failure = nodeBackend().createSession(await openModelFolder(dir), 'onnx/embed_tokens.onnx');
    await expect(failure).rejects.toThrowError(/ONNX Runtime cannot load .*embed_tokens\.onnx/);
    await expect(failure).rejects.not.toThrowError(/onnxruntime_src|\.cc:\d/);
  });

  it('keeps ONNX Runtime silent on stderr and its telemetry out of the home folder', async () => {
    const home = await mkdtemp(join(tmpdir(), 'dexar-home-'));
    const script = `
      import { nodeBackend, openModelFolder } from ${JSON.stringify(pathToFileURL(join(packageDir, 'dist/index.js')).href)};
      const folder = await openModelFolder(${JSON.stringify(llavaTiny)});
      await nodeBackend({ executionProvider: 'cuda' }).createSession(folder, 'onnx/embed_tokens.onnx').catch(() => {});
      const session = await nodeBackend().createSession(folder, 'onnx/embed_tokens.onnx');
      await session.release();`;
    const { stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH, HOME: home, TMPDIR: tmpdir() },
    });
    expect(stderr).toBe('');
    expect(await readdir(home)).toEqual([]);
  });
});
