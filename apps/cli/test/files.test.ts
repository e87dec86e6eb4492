import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import type { Explanation } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/library.js';
import { dexar, llavaTiny, root } from './helpers.js';

const image = join(root, 'fixtures/references/llava-tiny/case0/image.png');
const request = { image, prompt: 'USER: <image>\nDescribe the image. ASSISTANT:', target: 'a red circle' };

/** A copy of the tiny LLaVA without cached explain graphs. */
async function modelCopy(): Promise<string> {
  const dir = join(await mkdtemp(join(tmpdir(), 'dexar-files-')), 'model');
  await cp(llavaTiny, dir, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src) });
  return dir;
}

async function filesOf(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = join(prefix, entry.name);
    if (entry.isDirectory()) out.push(...(await filesOf(dir, path)));
    else out.push(path);
  }
  return out;
}

/** A Hugging Face hub cache: `snapshots/<rev>/<file>` links to `../../blobs/<sha256>`. */
async function huggingFaceSnapshot(source: string): Promise<string> {
  const hub = join(await mkdtemp(join(tmpdir(), 'dexar-hf-')), 'models--dexar--llava-tiny');
  const snapshot = join(hub, 'snapshots/0123abcd');
  await mkdir(join(hub, 'blobs'), { recursive: true });
  for (const file of await filesOf(source)) {
    const bytes = await readFile(join(source, file));
    const blob = join(hub, 'blobs', createHash('sha256').update(bytes).digest('hex'));
    await writeFile(blob, bytes);
    await mkdir(dirname(join(snapshot, file)), { recursive: true });
    await symlink(relative(dirname(join(snapshot, file)), blob), join(snapshot, file));
  }
  return snapshot;
}

/** A parsed config file, damaged in place by the tests. */
type Config = Record<string, Record<string, unknown>>;

const oneLine = (stderr: string) => expect(stderr.trim().split('\n')).toHaveLength(1);

describe('model folders made of links', () => {
  it('explains a Hugging Face cache snapshot and a linked onnx/ folder exactly like a plain copy', async () => {
    const plain = await modelCopy();
    const expected = await explain({ model: plain, ...request });
    const snapshot = await huggingFaceSnapshot(plain);
    const sameModelAs = (result: Explanation, folder: string) => ({
      ...result,
      model: { ...result.model, path: folder },
    });
    expect(sameModelAs(await explain({ model: snapshot, ...request }), plain)).toEqual(expected);

    const linked = await modelCopy();
    await rm(join(linked, 'onnx'), { recursive: true });
    await symlink(join(plain, 'onnx'), join(linked, 'onnx'));
    expect(sameModelAs(await explain({ model: linked, ...request }), plain)).toEqual(expected);
  });
});

describe('only regular files are read, within their limits, never echoed', () => {
  it('refuses a FIFO, a device and a directory as --image with one line, without blocking', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-files-'));
    execFileSync('mkfifo', [join(dir, 'fifo.png')]);
    for (const [path, kind] of [
      [join(dir, 'fifo.png'), 'a FIFO'],
      ['/dev/zero', 'a device'],
      [dir, 'a directory'],
    ]) {
      const run = await dexar('explain', '--image', path, '--out', join(dir, 'out'), '--quiet');
      expect(run.code).toBe(2);
      oneLine(run.stderr);
      expect(run.stderr).toContain(`image ${path} is ${kind}: give a regular file`);
    }
  });

  it('refuses a config.json or decoder linked to /dev/zero, and a sparse 1.5 GB config.json, before reading them', async () => {
    const model = await modelCopy();
    await rm(join(model, 'config.json'));
    await symlink('/dev/zero', join(model, 'config.json'));
    let run = await dexar('explain', '--model', model, '--quiet');
    expect(run.code).toBe(2);
    oneLine(run.stderr);
    expect(run.stderr).toMatch(/model file .*config\.json is a device: give a regular file/);

    await rm(join(model, 'config.json'));
    await cp(join(llavaTiny, 'config.json'), join(model, 'config.json'));
    await truncate(join(model, 'config.json'), 1.5 * 1024 ** 3);
    run = await dexar('explain', '--model', model, '--quiet');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/config\.json is 1536 MiB, over the 128 MiB limit/);

    const decoder = await modelCopy();
    await rm(join(decoder, 'onnx/decoder_model_merged.onnx'));
    await symlink('/dev/zero', join(decoder, 'onnx/decoder_model_merged.onnx'));
    run = await dexar('explain', '--model', decoder, '--quiet', '--out', join(decoder, '..', 'out'));
    expect(run.code).toBe(2);
    oneLine(run.stderr);
    expect(run.stderr).toMatch(/decoder_model_merged\.onnx is a device: give a regular file/);
  });

  it('names a config.json that is not JSON, or an empty tokenizer.json, without echoing their contents', async () => {
    const model = await modelCopy();
    await writeFile(join(model, 'secret'), 'root:x:0:0:root:/root:/bin/bash\n');
    await rm(join(model, 'config.json'));
    await symlink(join(model, 'secret'), join(model, 'config.json'));
    let run = await dexar('explain', '--model', model, '--quiet');
    expect(run.code).toBe(2);
    oneLine(run.stderr);
    expect(run.stderr).toMatch(/config\.json is not valid JSON \(it is not JSON text\): re-export or re-download/);
    expect(run.stderr).not.toContain('root:');

    await rm(join(model, 'config.json'));
    await cp(join(llavaTiny, 'config.json'), join(model, 'config.json'));
    await writeFile(join(model, 'tokenizer.json'), '');
    run = await dexar('explain', '--model', model, '--quiet');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/tokenizer\.json is not valid JSON \(it is empty\)/);
  });

  it.each([
    ['config.json', (c: Config) => (c.text_config.num_hidden_layers = 1e9), /num_hidden_layers is 1000000000/],
    [
      'config.json',
      (c: Config) => (c.vision_config.image_size = 65),
      /image_size \(65\) does not divide by patch_size \(8\)/,
    ],
    ['preprocessor_config.json', (c: Config) => (c.size.shortest_edge = 1e9), /size\.shortest_edge is 1000000000/],
  ])('refuses a %s with an impossible size before allocating for it', async (file, damage, message) => {
    const model = await modelCopy();
    const config = JSON.parse(await readFile(join(model, file), 'utf8'));
    damage(config);
    await writeFile(join(model, file), JSON.stringify(config));
    const run = await dexar('explain', '--model', model, '--quiet');
    expect(run.code).toBe(2);
    oneLine(run.stderr);
    expect(run.stderr).toMatch(message);
  });
});
