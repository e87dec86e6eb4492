import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DexarError } from '@dexar/core';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadMask, openDataset, readClassMap, unionMask, validateSamples, vocColor } from '../src/node/datasets.js';
import { writeShapesDataset, writeVocDataset } from './helpers/dataset.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dexar-eval-data-'));
  await writeShapesDataset(join(dir, 'shapes'), 4);
  await writeVocDataset(join(dir, 'voc'));
});

async function invalid(promise: Promise<unknown>, message: RegExp) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DexarError);
  expect((error as DexarError).code).toBe('invalid-dataset');
  expect((error as DexarError).isUsageError).toBe(true);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).not.toContain('\n');
}

describe('JSONL manifests', () => {
  it('reads a shapes-style manifest: grounded words with offsets and object masks', async () => {
    const ds = await openDataset(join(dir, 'shapes'));
    expect(ds.kind).toBe('jsonl');
    expect(ds.samples).toHaveLength(4);
    const s = ds.samples[1];
    expect(s.id).toBe('0001-caption');
    expect(s.group).toBe('caption');
    expect(s.target).toBe('a blue square and a green square');
    expect(s.words.map((w) => [w.word, w.char])).toEqual([
      ['blue', 2],
      ['square', 7],
      ['green', 20],
      ['square', 26],
    ]);
    expect(s.words[2].mask.path).toBe(join(dir, 'shapes', 'masks', '0001-1.png'));
    expect(s.sentenceMasks).toHaveLength(2);
    const m = await loadMask(s.words[0].mask);
    expect([m.width, m.height]).toEqual([64, 64]);
    expect(m.data.reduce((a, b) => a + b, 0)).toBe(16 * 16);
    const u = unionMask(await Promise.all(s.sentenceMasks.map(loadMask)));
    expect(u.data.reduce((a, b) => a + b, 0)).toBe(16 * 16 + 21 * 21);
    await validateSamples(ds.samples);
  });

  it('reads a simple manifest ({image, prompt, target, mask, word}) given as a file', async () => {
    const file = join(dir, 'simple.jsonl');
    await writeFile(
      file,
      `${JSON.stringify({ image: 'shapes/images/0000.png', prompt: 'p <image>', target: 'A Red square', mask: 'shapes/masks/0000-0.png', word: 'red' })}\n\n${JSON.stringify({ id: 'x', image: 'shapes/images/0001.png', prompt: 'p', target: 't' })}\n`,
    );
    const ds = await openDataset(file);
    expect(ds.samples.map((s) => s.id)).toEqual(['1', 'x']);
    expect(ds.samples[0].words).toEqual([
      { word: 'Red', char: 2, mask: { path: join(dir, 'shapes/masks/0000-0.png') } },
    ]);
    expect(ds.samples[1].words).toEqual([]);
    expect(ds.samples[1].sentenceMasks).toEqual([]);
  });

  it('names the line of a malformed manifest', async () => {
    const file = join(dir, 'bad.jsonl');
    await writeFile(
      file,
      `${JSON.stringify({ image: 'a.png', prompt: 'p', target: 't' })}\n{"image": "b.png", "prompt": 3}\n`,
    );
    await invalid(openDataset(file), /bad\.jsonl:2: prompt/);
    await writeFile(file, 'not json\n');
    await invalid(openDataset(file), /bad\.jsonl:1 is not JSON/);
    await writeFile(
      file,
      `${JSON.stringify({ image: 'a.png', prompt: 'p', target: 'a cat', mask: 'm.png', word: 'dog' })}\n`,
    );
    await invalid(openDataset(file), /the word "dog" is not in the target/);
  });
});

describe('PASCAL VOC folders', () => {
  it('makes one sample per class present, from palette class maps, with void left out', async () => {
    const ds = await openDataset(join(dir, 'voc'));
    expect(ds.kind).toBe('voc');
    expect(ds.samples.map((s) => [s.id, s.target])).toEqual([
      ['2007_000001/cat', 'a cat'],
      ['2007_000001/person', 'a person'],
      ['2007_000002/dog', 'a dog'],
    ]);
    expect(ds.samples[0].prompt).toBe('USER: <image>\nWhat is in the image? ASSISTANT:');
    expect(ds.samples[1].words).toEqual([{ word: 'person', char: 2, mask: ds.samples[1].sentenceMasks[0] }]);
    const map = await readClassMap(ds.samples[0].sentenceMasks[0].path);
    expect(new Set(map.data)).toEqual(new Set([0, 8, 15, 255]));
    const cat = await loadMask(ds.samples[0].words[0].mask);
    expect(cat.data.reduce((a, b) => a + b, 0)).toBe(16 * 22); // the object without its void border
    expect(cat.valid?.reduce((a, b) => a + b, 0)).toBe(48 * 48 - 2 * (18 * 24 - 16 * 22));
    await validateSamples(ds.samples);
  });

  it('applies templates and another split', async () => {
    await writeFile(join(dir, 'voc', 'ImageSets', 'Segmentation', 'mini.txt'), '2007_000002\n');
    const ds = await openDataset(join(dir, 'voc'), {
      split: 'mini',
      promptTemplate: 'Is there a {class}?',
      targetTemplate: 'yes, a {class}',
    });
    expect(ds.samples.map((s) => [s.prompt, s.target, s.words[0].char])).toEqual([
      ['Is there a dog?', 'yes, a dog', 7],
    ]);
    await invalid(openDataset(join(dir, 'voc'), { split: 'test' }), /no ImageSets\/Segmentation\/test\.txt/);
  });

  it('the palette is the devkit one', () => {
    expect(vocColor(1)).toEqual([128, 0, 0]);
    expect(vocColor(15)).toEqual([192, 128, 128]);
    expect(vocColor(255)).toEqual([224, 224, 192]);
  });
});

describe('bad datasets: one-line invalid-dataset errors', () => {
  it('a folder that is neither VOC nor JSONL', async () => {
    const empty = join(dir, 'empty');
    await mkdir(join(empty, 'JPEGImages'), { recursive: true });
    await invalid(openDataset(empty), /is neither a PASCAL VOC folder .* nor a JSONL dataset/);
    await invalid(openDataset(join(dir, 'missing')), /does not exist/);
  });

  it('a mask of another size than its image', async () => {
    const d = join(dir, 'sizes');
    await writeShapesDataset(d, 1);
    await writeFile(
      join(d, 'masks', '0000-0.png'),
      await sharp(Buffer.alloc(32 * 32), { raw: { width: 32, height: 32, channels: 1 } })
        .png()
        .toBuffer(),
    );
    const ds = await openDataset(d);
    await invalid(validateSamples(ds.samples), /mask .*0000-0\.png is 32 x 32 but its image .*0000\.png is 64 x 64/);
  });
});
