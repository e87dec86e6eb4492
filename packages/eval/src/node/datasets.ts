/**
 * Dataset readers: a PASCAL VOC folder, a JSONL manifest, and the built-in shapes held-out set (a
 * JSONL manifest with objects, masks and grounded words). Every problem is a one-line
 * `DexarError` with code `invalid-dataset`.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DexarError } from '@dexar/core';
import sharp from 'sharp';
import { z } from 'zod';
import type { Mask } from '../metrics/segmentation.js';

/** A mask file: binary (any channel above 127 is the object), or the pixels of one class of a VOC class map. */
export interface MaskRef {
  readonly path: string;
  /** VOC: the class index the mask selects; 255 (void) is left out of the scores. */
  readonly classIndex?: number;
}

export interface GroundedWord {
  readonly word: string;
  /** Character offset of the word in the target. */
  readonly char: number;
  readonly mask: MaskRef;
}

export interface EvalSample {
  readonly id: string;
  /** Absolute path. */
  readonly image: string;
  readonly prompt: string;
  readonly target: string;
  /** Words of the target with the region they refer to (per-token maps are scored on these). */
  readonly words: readonly GroundedWord[];
  /** The sentence map is scored against the union of these (empty: not scored). */
  readonly sentenceMasks: readonly MaskRef[];
  /** The manifest's `kind` (shapes: caption or question): the report breaks results down by it. */
  readonly group?: string;
}

export interface Dataset {
  /** The spec as given and what it resolved to. */
  readonly spec: string;
  readonly kind: 'voc' | 'jsonl' | 'shapes';
  readonly location: string;
  readonly samples: readonly EvalSample[];
}

export interface VocOptions {
  /** `ImageSets/Segmentation/<split>.txt` (default `val`). */
  split?: string;
  /** `{class}` is replaced by the class name. */
  promptTemplate?: string;
  targetTemplate?: string;
}

export const VOC_CLASSES = [
  'background',
  'aeroplane',
  'bicycle',
  'bird',
  'boat',
  'bottle',
  'bus',
  'car',
  'cat',
  'chair',
  'cow',
  'dining table',
  'dog',
  'horse',
  'motorbike',
  'person',
  'potted plant',
  'sheep',
  'sofa',
  'train',
  'tv monitor',
];

export const defaultVocTemplates = {
  prompt: 'USER: <image>\nWhat is in the image? ASSISTANT:',
  target: 'a {class}',
};

const bad = (message: string) => new DexarError('invalid-dataset', message);

/** The repository folder holding `rel` (walking up from this package, then from the working directory). */
export function findRepositoryPath(rel: string): string | undefined {
  for (const start of [dirname(fileURLToPath(import.meta.url)), process.cwd()]) {
    let dir = start;
    for (;;) {
      if (existsSync(join(dir, rel))) return join(dir, rel);
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return undefined;
}

/**
 * Opens a dataset: `shapes` (the built-in held-out set, `datasets/shapes-heldout`), a `.jsonl`
 * file, a folder with `samples.jsonl` or `manifest.jsonl`, or a PASCAL VOC folder (`JPEGImages/`,
 * `SegmentationClass/`, `ImageSets/Segmentation/<split>.txt`).
 */
export async function openDataset(spec: string, voc: VocOptions = {}): Promise<Dataset> {
  if (spec === 'shapes') {
    const file = findRepositoryPath(join('datasets', 'shapes-heldout', 'samples.jsonl'));
    if (!file) {
      throw bad(
        'the built-in shapes held-out set (datasets/shapes-heldout/samples.jsonl) is not in this checkout: build it with tools/fixtures/shapes/build.py or pass --dataset DIR',
      );
    }
    return { spec, kind: 'shapes', location: dirname(file), samples: await readJsonl(file) };
  }
  const path = resolve(spec);
  const info = existsSync(path) ? statSync(path) : undefined;
  if (!info) throw bad(`dataset ${spec} does not exist: pass a VOC folder, a JSONL manifest or "shapes"`);
  if (info.isFile()) {
    if (!path.endsWith('.jsonl')) throw bad(`dataset file ${spec} is not a .jsonl manifest`);
    return { spec, kind: 'jsonl', location: dirname(path), samples: await readJsonl(path) };
  }
  for (const name of ['samples.jsonl', 'manifest.jsonl']) {
    if (existsSync(join(path, name))) {
      return { spec, kind: 'jsonl', location: path, samples: await readJsonl(join(path, name)) };
    }
  }
  if (existsSync(join(path, 'JPEGImages')) && existsSync(join(path, 'SegmentationClass'))) {
    return { spec, kind: 'voc', location: path, samples: await readVoc(path, voc) };
  }
  throw bad(
    `${spec} is neither a PASCAL VOC folder (JPEGImages/ and SegmentationClass/) nor a JSONL dataset (samples.jsonl or manifest.jsonl): pass one of those, a .jsonl file, or "shapes"`,
  );
}

const LineSchema = z.object({
  id: z.string().min(1).optional(),
  kind: z.string().min(1).optional(),
  image: z.string().min(1),
  prompt: z.string().min(1),
  target: z.string().min(1),
  /** Simple manifests: one mask, for `word` (its first token's map) or else for the sentence map. */
  mask: z.string().min(1).optional(),
  word: z.string().min(1).optional(),
  /** Shapes-style manifests: objects with masks, and grounded words pointing at them. */
  objects: z.array(z.object({ mask: z.string().min(1) }).passthrough()).optional(),
  words: z
    .array(
      z.object({
        word: z.string().min(1),
        object: z.number().int().nonnegative(),
        char: z.number().int().nonnegative().optional(),
      }),
    )
    .optional(),
});

function wordOffset(target: string, word: string): number {
  const m = new RegExp(
    `(^|[^\\p{L}\\p{N}])(${word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')})(?![\\p{L}\\p{N}])`,
    'iu',
  ).exec(target);
  return m ? m.index + m[1].length : -1;
}

async function readJsonl(file: string): Promise<EvalSample[]> {
  const root = dirname(file);
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw bad(`cannot read ${file}: ${e.code ?? e.message}`);
  });
  const at = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const samples: EvalSample[] = [];
  const ids = new Set<string>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw bad(`${where} is not JSON: each line of a manifest is one object {image, prompt, target, mask?, word?}`);
    }
    const parsed = LineSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw bad(
        `${where}: ${issue?.path.join('.') || 'line'} ${issue?.message} (expected {image, prompt, target, mask?, word?})`,
      );
    }
    const s = parsed.data;
    const id = s.id ?? String(i + 1);
    if (ids.has(id)) throw bad(`${where}: sample id ${JSON.stringify(id)} appears twice`);
    ids.add(id);
    const words: GroundedWord[] = [];
    let sentenceMasks: MaskRef[] = [];
    if (s.objects && s.words) {
      const objects = s.objects;
      for (const w of s.words) {
        const object = objects[w.object];
        if (!object)
          throw bad(
            `${where}: word ${JSON.stringify(w.word)} refers to object ${w.object}, but there are ${objects.length}`,
          );
        const char = w.char ?? wordOffset(s.target, w.word);
        if (char < 0 || s.target.slice(char, char + w.word.length) !== w.word) {
          throw bad(
            `${where}: the word ${JSON.stringify(w.word)} is not at character ${char} of the target ${JSON.stringify(s.target)}`,
          );
        }
        words.push({ word: w.word, char, mask: { path: at(object.mask) } });
      }
      const mentioned = [...new Set(s.words.map((w) => w.object))].sort((a, b) => a - b);
      sentenceMasks = mentioned.map((k) => ({ path: at(objects[k].mask) }));
    } else if (s.mask) {
      if (s.word) {
        const char = wordOffset(s.target, s.word);
        if (char < 0)
          throw bad(`${where}: the word ${JSON.stringify(s.word)} is not in the target ${JSON.stringify(s.target)}`);
        words.push({ word: s.target.slice(char, char + s.word.length), char, mask: { path: at(s.mask) } });
      }
      sentenceMasks = [{ path: at(s.mask) }];
    }
    samples.push({
      id,
      image: at(s.image),
      prompt: s.prompt,
      target: s.target,
      words,
      sentenceMasks,
      ...(s.kind ? { group: s.kind } : {}),
    });
  });
  if (samples.length === 0) throw bad(`${file} holds no samples`);
  return samples;
}

async function readVoc(root: string, options: VocOptions): Promise<EvalSample[]> {
  const split = options.split ?? 'val';
  const list = join(root, 'ImageSets', 'Segmentation', `${split}.txt`);
  if (!existsSync(list))
    throw bad(`VOC folder ${root} has no ImageSets/Segmentation/${split}.txt (choose the split with --split)`);
  const classesFile = join(root, 'classes.txt');
  const classes = existsSync(classesFile)
    ? (await readFile(classesFile, 'utf8'))
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
    : VOC_CLASSES;
  const promptTemplate = options.promptTemplate ?? defaultVocTemplates.prompt;
  const targetTemplate = options.targetTemplate ?? defaultVocTemplates.target;
  if (!targetTemplate.includes('{class}'))
    throw bad(`the VOC target template ${JSON.stringify(targetTemplate)} has no {class}`);
  const ids = (await readFile(list, 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const samples: EvalSample[] = [];
  for (const id of ids) {
    const image = ['jpg', 'jpeg', 'png'].map((e) => join(root, 'JPEGImages', `${id}.${e}`)).find(existsSync);
    if (!image) throw bad(`VOC image ${id} (listed in ${split}.txt) is missing from JPEGImages/`);
    const maskPath = join(root, 'SegmentationClass', `${id}.png`);
    if (!existsSync(maskPath)) throw bad(`VOC mask SegmentationClass/${id}.png (listed in ${split}.txt) is missing`);
    const present = new Set((await readClassMap(maskPath)).data);
    for (let c = 1; c < classes.length; c++) {
      if (!present.has(c)) continue;
      const name = classes[c];
      const target = targetTemplate.replaceAll('{class}', name);
      const mask = { path: maskPath, classIndex: c };
      samples.push({
        id: `${id}/${name.replace(/\s+/g, '-')}`,
        image,
        prompt: promptTemplate.replaceAll('{class}', name),
        target,
        words: [{ word: name, char: target.indexOf(name), mask }],
        sentenceMasks: [mask],
      });
    }
  }
  if (samples.length === 0) throw bad(`VOC split ${split} of ${root} holds no object of a known class`);
  return samples;
}

/** The PASCAL VOC palette colour of class index `i` (bit-interleaved, as the devkit's `labelcolormap`). */
export function vocColor(i: number): [number, number, number] {
  let r = 0;
  let g = 0;
  let b = 0;
  let c = i;
  for (let j = 0; j < 8; j++) {
    r |= (c & 1) << (7 - j);
    g |= ((c >> 1) & 1) << (7 - j);
    b |= ((c >> 2) & 1) << (7 - j);
    c >>= 3;
  }
  return [r, g, b];
}

const vocIndexOfColor = new Map(Array.from({ length: 256 }, (_, i) => [vocColor(i).join(','), i] as const));

/** A VOC class map as indices: palette PNGs through the VOC palette, greyscale PNGs as the value. */
export async function readClassMap(path: string): Promise<{ width: number; height: number; data: Uint8Array }> {
  const img = sharp(await readFile(path));
  const meta = await img.metadata();
  const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const out = new Uint8Array(n);
  const ch = info.channels;
  for (let i = 0; i < n; i++) {
    const r = data[i * ch];
    const g = data[i * ch + (ch > 1 ? 1 : 0)];
    const b = data[i * ch + (ch > 2 ? 2 : 0)];
    if (meta.isPalette) {
      const index = vocIndexOfColor.get(`${r},${g},${b}`);
      if (index === undefined) throw bad(`${path}: colour (${r}, ${g}, ${b}) is not in the PASCAL VOC palette`);
      out[i] = index;
    } else {
      if (r !== g || g !== b) throw bad(`${path} is neither a palette nor a greyscale class map`);
      out[i] = r;
    }
  }
  return { width: info.width, height: info.height, data: out };
}

const maskCache = new Map<string, Promise<Mask>>();

/** Reads a mask (cached by path and class). */
export function loadMask(ref: MaskRef): Promise<Mask> {
  const key = `${ref.path}#${ref.classIndex ?? ''}`;
  let hit = maskCache.get(key);
  if (!hit) {
    hit = readMask(ref);
    maskCache.set(key, hit);
    hit.catch(() => maskCache.delete(key));
  }
  return hit;
}

async function readMask(ref: MaskRef): Promise<Mask> {
  if (ref.classIndex !== undefined) {
    const map = await readClassMap(ref.path);
    const data = new Uint8Array(map.data.length);
    const valid = new Uint8Array(map.data.length);
    for (let i = 0; i < data.length; i++) {
      data[i] = map.data[i] === ref.classIndex ? 1 : 0;
      valid[i] = map.data[i] === 255 ? 0 : 1;
    }
    return { width: map.width, height: map.height, data, valid };
  }
  const bytes = await readFile(ref.path).catch((e: NodeJS.ErrnoException) => {
    throw bad(`cannot read mask ${ref.path}: ${e.code ?? e.message}`);
  });
  const { data, info } = await sharp(bytes)
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true })
    .catch((e: Error) => {
      throw bad(`cannot decode mask ${ref.path}: ${e.message}`);
    });
  const n = info.width * info.height;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (let c = 0; c < info.channels; c++) v = Math.max(v, data[i * info.channels + c]);
    out[i] = v > 127 ? 1 : 0;
  }
  return { width: info.width, height: info.height, data: out };
}

/** Union of masks of one size. */
export function unionMask(masks: readonly Mask[]): Mask {
  const first = masks[0];
  const data = new Uint8Array(first.data.length);
  let valid: Uint8Array | undefined;
  for (const m of masks) {
    for (let i = 0; i < data.length; i++) if (m.data[i]) data[i] = 1;
    if (m.valid) {
      valid ??= new Uint8Array(data.length).fill(1);
      for (let i = 0; i < data.length; i++) if (!m.valid[i]) valid[i] = 0;
    }
  }
  return { width: first.width, height: first.height, data, ...(valid ? { valid } : {}) };
}

async function dimensions(path: string, what: string): Promise<{ width: number; height: number }> {
  const meta = await sharp(path)
    .metadata()
    .catch((e: Error) => {
      throw bad(`cannot read ${what} ${path}: ${e.message.split('\n')[0]}`);
    });
  const swap = (meta.orientation ?? 1) >= 5;
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  return swap ? { width: height, height: width } : { width, height };
}

/** Checks, before any model run, that every image and mask of `samples` reads and that masks match their image's size. */
export async function validateSamples(samples: readonly EvalSample[]): Promise<void> {
  const sizes = new Map<string, Promise<{ width: number; height: number }>>();
  const size = (path: string, what: string) => {
    let hit = sizes.get(path);
    if (!hit) {
      hit = dimensions(path, what);
      sizes.set(path, hit);
    }
    return hit;
  };
  for (const s of samples) {
    const image = await size(s.image, 'image');
    for (const ref of [...s.words.map((w) => w.mask), ...s.sentenceMasks]) {
      const mask = await size(ref.path, 'mask');
      if (mask.width !== image.width || mask.height !== image.height) {
        throw bad(
          `sample ${s.id}: mask ${ref.path} is ${mask.width} x ${mask.height} but its image ${s.image} is ${image.width} x ${image.height}: masks must have their image's size`,
        );
      }
    }
  }
}
