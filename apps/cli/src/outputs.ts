import { join } from 'node:path';
import { type Explanation, overlayHeatmap, type RgbaImage } from '@dexar/core';
import { encodePng, resizeImage, writeAtomically } from '@dexar/runtime-node';
import sharp from 'sharp';
import { reportHtml } from './report.js';

/** Overlays are drawn at least this large on their longer side, so 64 px inputs stay readable. */
const MIN_DISPLAY = 384;
const TILE = 160;

export interface Written {
  files: string[];
}

/**
 * Writes an explanation's files into `dir`: `sentence.png`, `tokens/NN-token.png`,
 * `grid.png` (contact sheet), `result.json` and a self-contained `report.html`.
 * Each file is written under a temporary name and renamed.
 */
export async function writeOutputs(dir: string, result: Explanation, image: RgbaImage): Promise<Written> {
  const display = await displayImage(image);
  const grid = result.grid;
  const overlay = (map: number[][]) => encodePng(overlayHeatmap(display, map.flat(), grid, { alpha: 0.5 }));
  const files: string[] = [];
  const write = async (name: string, bytes: Uint8Array | string) => {
    await writeAtomically(join(dir, name), bytes);
    files.push(name);
  };

  const sentence = await overlay(result.sentenceHeatmap);
  const sentenceUnfiltered = await overlay(result.sentenceHeatmapUnfiltered);
  await write('sentence.png', sentence);
  const tokens = await Promise.all(
    result.tokens.map(async (token, n) => ({
      name: `tokens/${String(n).padStart(2, '0')}-${safeName(token)}.png`,
      filtered: await overlay(result.perTokenHeatmaps[n]),
      unfiltered: await overlay(result.perTokenHeatmapsUnfiltered[n]),
    })),
  );
  for (const t of tokens) await write(t.name, t.filtered);
  await write(
    'grid.png',
    await contactSheet(
      result,
      tokens.map((t) => t.filtered),
    ),
  );
  await write('result.json', `${JSON.stringify(result)}\n`);
  await write(
    'report.html',
    reportHtml(result, {
      image: await encodePng(display),
      sentence: { filtered: sentence, unfiltered: sentenceUnfiltered },
      tokens: tokens.map((t) => ({ filtered: t.filtered, unfiltered: t.unfiltered })),
    }),
  );
  return { files };
}

async function displayImage(image: RgbaImage): Promise<RgbaImage> {
  const long = Math.max(image.width, image.height);
  if (long >= MIN_DISPLAY) return image;
  const scale = MIN_DISPLAY / long;
  return resizeImage(image, Math.round(image.width * scale), Math.round(image.height * scale), 'bilinear');
}

const safeName = (token: string) => token.replace(/[^\p{L}\p{N}_-]+/gu, '_').slice(0, 24) || '_';
const escapeXml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c);

/** Each token's filtered map, with the token and its weight delta under it (a bar scaled to the largest delta). */
async function contactSheet(result: Explanation, overlays: Uint8Array[]): Promise<Uint8Array> {
  const columns = Math.min(6, Math.max(1, overlays.length));
  const rows = Math.ceil(overlays.length / columns);
  const cellHeight = TILE + 36;
  const maxDelta = Math.max(...result.tokenWeights, 1e-12);
  const labels = result.tokens
    .map((token, n) => {
      const x = (n % columns) * TILE;
      const y = Math.floor(n / columns) * cellHeight + TILE;
      const delta = result.tokenWeights[n];
      const bar = Math.round(((TILE - 8) * delta) / maxDelta);
      return (
        `<text x="${x + 4}" y="${y + 15}" font-family="DejaVu Sans, sans-serif" font-size="13">${escapeXml(JSON.stringify(token))}  δ ${delta.toFixed(3)}</text>` +
        `<rect x="${x + 4}" y="${y + 22}" width="${bar}" height="8" fill="#d1495b"/>`
      );
    })
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${columns * TILE}" height="${rows * cellHeight}"><rect width="100%" height="100%" fill="white"/>${labels}</svg>`;
  const tiles = await Promise.all(
    overlays.map(async (png, n) => ({
      input: await sharp(png).resize(TILE, TILE, { fit: 'contain', background: '#ffffff' }).toBuffer(),
      left: (n % columns) * TILE,
      top: Math.floor(n / columns) * cellHeight,
    })),
  );
  const sheet = await sharp(Buffer.from(svg)).composite(tiles).png().toBuffer();
  return new Uint8Array(sheet.buffer, sheet.byteOffset, sheet.length);
}
