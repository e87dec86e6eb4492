import { randomBytes } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DexarError, type Explanation, overlayHeatmap, type RgbaImage, resample } from '@dexar/core';
import { encodePng } from '@dexar/runtime-node';
import sharp from 'sharp';
import { reportHtml } from './report.js';

/**
 * Overlays are drawn with their longer side between these: 64 px inputs stay readable, and a
 * photo's report stays small (each token embeds two overlays).
 */
export const DISPLAY_SIDE = { min: 384, max: 512 } as const;
const TILE = 160;

export interface Written {
  files: string[];
}

/**
 * Writes an explanation's files into `dir`: `sentence.png`, `tokens/NN-token.png`,
 * `grid.png` (contact sheet), `result.json` and a self-contained `report.html`.
 * The folder appears whole or not at all (see `publishFolder`): no file of an earlier,
 * longer answer stays, and a folder holding anything dexar did not write is refused.
 */
export function writeOutputs(dir: string, result: Explanation, image: RgbaImage): Promise<Written> {
  return publishFolder(dir, (staging) => writeExplanation(staging, result, image));
}

async function writeExplanation(dir: string, result: Explanation, image: RgbaImage): Promise<Written> {
  const display = await displayImage(image);
  const grid = result.grid;
  const overlay = (map: number[][]) => encodePng(overlayHeatmap(display, map.flat(), grid, { alpha: 0.5 }));
  const files: string[] = [];
  await mkdir(join(dir, 'tokens'));
  const write = async (name: string, bytes: Uint8Array | string) => {
    await writeFile(join(dir, name), bytes);
    files.push(name);
  };

  const sentence = await overlay(result.sentenceHeatmap);
  const sentenceUnfiltered = await overlay(result.sentenceHeatmapUnfiltered);
  await write('sentence.png', sentence);
  // one token at a time: only the encoded PNGs of the display-sized overlays stay in memory
  const tokens: { filtered: Uint8Array; unfiltered: Uint8Array }[] = [];
  for (const [n, token] of result.tokens.entries()) {
    const filtered = await overlay(result.perTokenHeatmaps[n]);
    await write(`tokens/${String(n).padStart(2, '0')}-${safeName(token)}.png`, filtered);
    tokens.push({ filtered, unfiltered: await overlay(result.perTokenHeatmapsUnfiltered[n]) });
  }
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
      tokens,
    }),
  );
  return { files };
}

/** What dexar writes into an output folder; a folder holding only these is an earlier run's output. */
const OUTPUT_FILES = new Set(['sentence.png', 'grid.png', 'result.json', 'report.html']);
const TOKEN_FILE = /^\d{2,}-[\p{L}\p{N}_-]+\.png$/u;

/** The first entry of `dir` that dexar did not write (a link, another file, a folder), if any. */
async function foreignEntry(dir: string): Promise<string | undefined> {
  for (const name of await readdir(dir)) {
    const info = await lstat(join(dir, name));
    if (name === 'tokens' && info.isDirectory()) {
      for (const token of await readdir(join(dir, name))) {
        const tokenInfo = await lstat(join(dir, name, token));
        if (!TOKEN_FILE.test(token) || !tokenInfo.isFile()) return join(name, token);
      }
    } else if (!OUTPUT_FILES.has(name) || !info.isFile()) {
      return name;
    }
  }
  return undefined;
}

/** A file-system failure on the output folder as one line naming the folder and the fix. */
function outputError(out: string, error: unknown): DexarError {
  if (error instanceof DexarError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? String(error);
  const why =
    code === 'ENOTDIR' || code === 'EEXIST'
      ? 'a file is in the way'
      : code === 'EROFS' || code === 'EACCES' || code === 'EPERM'
        ? 'the location is read-only'
        : code === 'ENOSPC'
          ? 'the disk is full'
          : code;
  return new DexarError('invalid-options', `cannot write --out ${out} (${why}): pick a writable folder`, {
    cause: error,
  });
}

/**
 * Refuses an `--out` that dexar must not replace: empty, a file or link, or a folder holding
 * anything dexar did not write. Run before the work, so a bad `--out` fails at once.
 */
export async function checkOutputFolder(out: string): Promise<void> {
  if (out.trim() === '') throw new DexarError('invalid-options', '--out is empty: name a folder (default dexar-out)');
  const info = await lstat(out).catch(() => undefined);
  if (info && !info.isDirectory()) {
    throw new DexarError('invalid-options', `--out ${out} is not a folder: name a new folder or an earlier output`);
  }
  const foreign = info ? await foreignEntry(out).catch((error) => Promise.reject(outputError(out, error))) : undefined;
  if (foreign !== undefined) {
    throw new DexarError(
      'invalid-options',
      `--out ${out} holds files dexar did not write (${foreign}): name a new or empty folder, or an earlier dexar output`,
    );
  }
}

/**
 * Fills a fresh hidden sibling of `out` and renames it into place, so the folder appears whole or
 * not at all: an earlier run's output (a folder holding only dexar's files) is swapped away
 * afterwards, an empty folder is replaced, and anything else at `out` (a file, a link, a folder
 * with other files: the model folder, the user's own) is refused and left untouched. SIGINT and
 * SIGTERM while writing remove the partial folder, restore the earlier output, and then end the
 * process as the signal would have.
 */
export async function publishFolder<T>(out: string, fill: (dir: string) => Promise<T>): Promise<T> {
  await checkOutputFolder(out);
  const target = resolve(out);
  const hidden = (kind: string) =>
    join(dirname(target), `.${basename(target)}.dexar-${kind}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const staging = hidden('tmp');
  const previous = hidden('old');
  const restore = () => {
    if (existsSync(staging)) rmSync(staging, { recursive: true, force: true });
    if (existsSync(previous)) {
      if (existsSync(target)) rmSync(previous, { recursive: true, force: true });
      else renameSync(previous, target);
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    restore();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
    process.kill(process.pid, signal);
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    // the parent first, then the staging folder alone: a recursive mkdir on a read-only mount
    // reports ENOENT where the single one reports EROFS
    await mkdir(dirname(target), { recursive: true })
      .then(() => mkdir(staging))
      .catch((error) => Promise.reject(outputError(out, error)));
    const value = await fill(staging);
    await checkOutputFolder(out); // again: nothing foreign may have arrived while the files were made
    const hasFiles = (await readdir(target).catch(() => [])).length > 0;
    try {
      if (hasFiles) await rename(target, previous);
      await rename(staging, target);
    } catch (error) {
      throw outputError(out, error);
    }
    await rm(previous, { recursive: true, force: true });
    return value;
  } catch (error) {
    restore();
    throw error;
  } finally {
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}

async function displayImage(image: RgbaImage): Promise<RgbaImage> {
  const long = Math.max(image.width, image.height);
  const side = Math.min(Math.max(long, DISPLAY_SIDE.min), DISPLAY_SIDE.max);
  if (side === long) return image;
  const scale = side / long;
  return resample(image, Math.round(image.width * scale), Math.round(image.height * scale), 'bilinear');
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
