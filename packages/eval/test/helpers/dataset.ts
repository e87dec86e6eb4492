/** Small synthetic datasets written by the tests: shapes-style JSONL and PASCAL VOC layouts. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { vocColor } from '../../src/node/datasets.js';

export interface Shape {
  colour: [number, number, number];
  name: string;
  colourName: string;
  /** Square [x0, y0, x1) in pixels. */
  x: number;
  y: number;
  size: number;
}

const png = (data: Uint8Array, width: number, height: number, channels: 1 | 3) =>
  sharp(Buffer.from(data), { raw: { width, height, channels } }).png().toBuffer();

export function render(shapes: readonly Shape[], size: number, background = 240): Uint8Array {
  const img = new Uint8Array(size * size * 3).fill(background);
  for (const s of shapes) {
    for (let y = s.y; y < s.y + s.size; y++)
      for (let x = s.x; x < s.x + s.size; x++) img.set(s.colour, (y * size + x) * 3);
  }
  return img;
}

export function maskOf(s: Shape, size: number): Uint8Array {
  const m = new Uint8Array(size * size);
  for (let y = s.y; y < s.y + s.size; y++) for (let x = s.x; x < s.x + s.size; x++) m[y * size + x] = 255;
  return m;
}

const scenes = (size: number): Shape[][] => [
  [{ colour: [215, 40, 40], name: 'square', colourName: 'red', x: 4, y: 6, size: Math.round(size / 3) }],
  [
    { colour: [45, 75, 225], name: 'square', colourName: 'blue', x: 2, y: 30, size: Math.round(size / 4) },
    { colour: [40, 170, 60], name: 'square', colourName: 'green', x: 36, y: 4, size: Math.round(size / 3) },
  ],
  [{ colour: [235, 210, 40], name: 'square', colourName: 'yellow', x: 30, y: 30, size: Math.round(size / 3) }],
  [
    { colour: [150, 60, 200], name: 'square', colourName: 'purple', x: 8, y: 40, size: Math.round(size / 5) },
    { colour: [215, 40, 40], name: 'square', colourName: 'red', x: 40, y: 10, size: Math.round(size / 4) },
  ],
];

/** A shapes-style manifest (objects, masks, grounded words with offsets) of `count` samples over 64 px images. */
export async function writeShapesDataset(
  dir: string,
  count = 4,
  size = 64,
  prompt = 'USER: <image>\nDescribe the image. ASSISTANT:',
): Promise<string> {
  await mkdir(join(dir, 'images'), { recursive: true });
  await mkdir(join(dir, 'masks'), { recursive: true });
  const lines: string[] = [];
  const all = scenes(size);
  for (let i = 0; i < count; i++) {
    const shapes = all[i % all.length];
    const name = String(i).padStart(4, '0');
    await writeFile(join(dir, 'images', `${name}.png`), await png(render(shapes, size), size, size, 3));
    const objects = [];
    for (const [k, s] of shapes.entries()) {
      await writeFile(join(dir, 'masks', `${name}-${k}.png`), await png(maskOf(s, size), size, size, 1));
      objects.push({ shape: s.name, colour: s.colourName, mask: `masks/${name}-${k}.png` });
    }
    const parts = shapes.map((s) => `a ${s.colourName} ${s.name}`);
    const target = parts.join(' and ');
    const words = shapes.flatMap((s, k) => [
      { word: s.colourName, object: k },
      { word: s.name, object: k },
    ]);
    let from = 0;
    const located = words.map((w) => {
      const char = target.indexOf(w.word, from);
      from = char + w.word.length;
      return { ...w, char };
    });
    lines.push(
      JSON.stringify({
        id: `${name}-caption`,
        kind: 'caption',
        image: `images/${name}.png`,
        prompt,
        target,
        objects,
        words: located,
      }),
    );
  }
  await writeFile(join(dir, 'samples.jsonl'), `${lines.join('\n')}\n`);
  return dir;
}

/** A PASCAL VOC folder: two images, palette class maps with a void border, a val list. */
export async function writeVocDataset(dir: string, size = 48): Promise<string> {
  await mkdir(join(dir, 'JPEGImages'), { recursive: true });
  await mkdir(join(dir, 'SegmentationClass'), { recursive: true });
  await mkdir(join(dir, 'ImageSets', 'Segmentation'), { recursive: true });
  const ids = ['2007_000001', '2007_000002'];
  const classes = [
    [8, 15], // cat, person
    [12], // dog
  ];
  for (const [n, id] of ids.entries()) {
    const rgb = new Uint8Array(size * size * 3).fill(128);
    const cls = new Uint8Array(size * size * 3);
    classes[n].forEach((c, k) => {
      const x0 = 4 + k * 22;
      for (let y = 6; y < 30; y++) {
        for (let x = x0; x < x0 + 18; x++) {
          rgb.set([50 + 60 * k, 90, 200 - 60 * k], (y * size + x) * 3);
          const border = y === 6 || y === 29 || x === x0 || x === x0 + 17;
          cls.set(vocColor(border ? 255 : c), (y * size + x) * 3);
        }
      }
    });
    await writeFile(
      join(dir, 'JPEGImages', `${id}.jpg`),
      await sharp(Buffer.from(rgb), { raw: { width: size, height: size, channels: 3 } })
        .jpeg()
        .toBuffer(),
    );
    await writeFile(
      join(dir, 'SegmentationClass', `${id}.png`),
      await sharp(Buffer.from(cls), { raw: { width: size, height: size, channels: 3 } })
        .png({ palette: true, colours: 256, dither: 0 })
        .toBuffer(),
    );
  }
  await writeFile(join(dir, 'ImageSets', 'Segmentation', 'val.txt'), `${ids.join('\n')}\n`);
  return dir;
}
