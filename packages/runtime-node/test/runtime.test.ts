import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  decodeImage,
  NodeModelFolder,
  nodeBackend,
  openModelFolder,
  resizeImage,
  writeAtomically,
} from '../src/index.js';

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
});
