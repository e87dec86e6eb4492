import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
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
