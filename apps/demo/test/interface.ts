/**
 * The end-to-end assertions on the demo's interface, whichever runtime serves it: the static demo
 * (onnxruntime-web in the page's worker) and `dexar serve` (onnxruntime-node in the server) run
 * the same ones (e2e.test.ts), comparing the exported JSON with the CLI's on the same inputs.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Explanation, ExplanationSchema } from '@dexar/core';
import type { Page } from 'playwright-core';
import { expect, it } from 'vitest';
import { pngHeader, webpHeader } from '../../../packages/core/test/helpers/image-headers.js';
import { repoRoot } from '../scripts/assets.js';
import type { BuiltinManifest } from '../src/builtin.js';

export const artefacts = fileURLToPath(new URL('../test-results/', import.meta.url));
const cli = join(repoRoot, 'apps/cli/bin/dexar.js');
const TOLERANCE = 1e-4;

/** What the shared tests read: set by each suite's beforeAll. */
export interface Context {
  page: Page;
  manifest: BuiltinManifest;
  /** The CLI's result on the built-in example (started early: it runs while the page loads). */
  nodeResult: Promise<Explanation>;
  /** Every URL the browser requested, and the page and CSP errors it raised. */
  requests: string[];
  problems: string[];
  /** Prefix of this suite's screenshots and summaries in test-results/. */
  prefix: string;
}

/** A copy of a repository model folder in `work` (its graph cache stays out of the repository). */
export function copyModel(source: string, work: string): string {
  const model = join(work, source.split('/').at(-1) as string);
  cpSync(join(repoRoot, source), model, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src) });
  return model;
}

/** The Node CLI's result for the same model, image and prompt, on a copy of the model. */
export async function runCli(m: BuiltinManifest, ...extra: string[]): Promise<Explanation> {
  const work = mkdtempSync(join(tmpdir(), 'dexar-e2e-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        cli,
        'explain',
        '--model',
        copyModel(m.source, work),
        '--image',
        join(repoRoot, m.imageSource),
        '--prompt',
        m.prompt,
        '--raw',
        '--json',
        '--quiet',
        '--out',
        join(work, 'out'),
        ...extra,
      ],
      { maxBuffer: 512 * 1024 * 1024 },
    );
    return JSON.parse(stdout) as Explanation;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Records the browser's requests and the page's errors into the context. */
export function watch(ctx: Context) {
  ctx.page.context().on('request', (r) => ctx.requests.push(r.url()));
  ctx.page.on('pageerror', (e) => ctx.problems.push(`page error: ${e.message}`));
  ctx.page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) ctx.problems.push(`CSP: ${m.text()}`);
  });
}

const overlayPixels = (page: Page) =>
  page.evaluate(() => (document.getElementById('overlay') as HTMLCanvasElement).toDataURL('image/png'));

export function maxAbsDiff(a: unknown, b: unknown, path = ''): number {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b);
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) throw new Error(`${path}: length ${a.length} in the browser, ${b.length} in Node`);
    return a.reduce((m: number, x, i) => Math.max(m, maxAbsDiff(x, b[i], `${path}[${i}]`)), 0);
  }
  throw new Error(`${path}: not numbers or arrays`);
}

/** Opens the page and waits until it can explain (or shows an error). */
export async function openPage(page: Page, url: string) {
  await page.goto(url);
  await page.waitForFunction(
    () =>
      !(document.getElementById('explain') as HTMLButtonElement).disabled ||
      document.getElementById('status')?.dataset.kind === 'error',
    null,
    { timeout: 60_000 },
  );
  expect(await page.textContent('#status')).toMatch(/^Ready/);
}

const explained = (page: Page) =>
  page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
    timeout: 90_000,
  });

/** Explaining the example, the exported result against the CLI's, the viewer and the exports. */
export function explainTests(ctx: Context) {
  let exported: Explanation;

  it('explains the example: the answer appears, one shaded token per answer token', async () => {
    const { page } = ctx;
    const t0 = Date.now();
    // every status line the page shows while it runs (tokens stream in before the result)
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { statusLines: string[] }).statusLines = seen;
      const status = document.getElementById('status') as HTMLElement;
      new MutationObserver(() => seen.push(status.textContent ?? '')).observe(status, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await page.click('#explain');
    await explained(page);
    expect(await page.textContent('#status')).toMatch(/^Explained \d+ tokens/);
    const tokens = await page.locator('#tokens .token:not(.sentence)').count();
    expect(tokens).toBeGreaterThan(0);
    // each token, with its map, was shown as it was generated, before the whole result
    const lines = await page.evaluate(() => (window as unknown as { statusLines: string[] }).statusLines);
    const live = lines.filter((line) => /^Generated and explained \d+ tokens/.test(line));
    expect(live.map((line) => Number(/\d+/.exec(line)?.[0]))).toEqual(Array.from({ length: tokens }, (_, n) => n + 1));
    expect(lines.indexOf(live[live.length - 1] as string)).toBeLessThan(
      lines.findIndex((l) => l.startsWith('Explained')),
    );
    console.log(
      `e2e ${ctx.prefix}: explained ${tokens} tokens in ${Date.now() - t0} ms (${await page.textContent('#timing')})`,
    );
  });

  it('exports result JSON that matches the Node CLI within 1e-4', async () => {
    const { page } = ctx;
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    expect(download.suggestedFilename()).toBe('result.json');
    exported = JSON.parse(readFileSync((await download.path()) as string, 'utf8'));
    writeFileSync(join(artefacts, `${ctx.prefix}result.json`), JSON.stringify(exported));
    expect(ExplanationSchema.safeParse(exported).success).toBe(true);
    const node = await ctx.nodeResult;
    // The CLI ran with --raw (for head weights); the page asks for head weights without the raw rows.
    const { raw: _, ...expected } = node;
    expect(Object.keys(exported).sort()).toEqual(Object.keys(expected).sort());
    expect(exported.tokens).toEqual(node.tokens);
    expect(exported.tokenIds).toEqual(node.tokenIds);
    expect(exported.options).toEqual(node.options);
    expect(exported.layersUsed).toEqual(node.layersUsed);
    expect(exported.grid).toEqual(node.grid);
    expect(exported.prompt).toBe(node.prompt);
    expect(exported.image).toEqual(node.image);
    expect(exported.model?.family).toBe(node.model?.family);
    const fields = [
      'perTokenHeatmaps',
      'perTokenHeatmapsUnfiltered',
      'tokenWeights',
      'sentenceHeatmap',
      'sentenceHeatmapUnfiltered',
      'headWeights',
    ] as const;
    const diffs = Object.fromEntries(fields.map((f) => [f, maxAbsDiff(exported[f], node[f], f)]));
    const max = Math.max(...Object.values(diffs));
    writeFileSync(
      join(artefacts, `${ctx.prefix}summary.json`),
      JSON.stringify(
        {
          model: ctx.manifest.source,
          fallback: ctx.manifest.fallback,
          tokens: node.tokens,
          maxAbsDiff: max,
          diffs,
        },
        null,
        2,
      ),
    );
    console.log(
      `e2e ${ctx.prefix}: ${ctx.manifest.source}, ${node.tokens.length} tokens, max |page - CLI| = ${max.toExponential(2)}`,
    );
    expect(max).toBeLessThan(TOLERANCE);
  });

  it('changes the overlay when a token is hovered, and moves between tokens with the arrow keys', async () => {
    const { page } = ctx;
    expect(await page.getAttribute('#overlay', 'data-index')).toBe('-1');
    const sentence = await overlayPixels(page);
    // The token whose map differs most from the sentence map (any token with a weight differs).
    const best = exported.tokenWeights.indexOf(Math.max(...exported.tokenWeights));
    await page.hover(`.token[data-index="${best}"]`);
    expect(await page.getAttribute('#overlay', 'data-index')).toBe(String(best));
    expect(await overlayPixels(page)).not.toBe(sentence);
    expect(await page.textContent('#overlay-caption')).toContain('δ');
    await page.screenshot({ path: join(artefacts, `${ctx.prefix}desktop-hover.png`), fullPage: true });
    await page.mouse.move(0, 0);
    expect(await page.getAttribute('#overlay', 'data-index')).toBe('-1');

    await page.focus('.token[data-index="-1"]');
    await page.keyboard.press('ArrowRight');
    expect(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.index)).toBe('0');
    expect(await page.getAttribute('#overlay', 'data-index')).toBe('0');
    await page.keyboard.press('End');
    const last = String(exported.tokens.length - 1);
    expect(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.index)).toBe(last);
    expect(await page.getAttribute(`.token[data-index="${last}"]`, 'aria-pressed')).toBe('true');
    // The head panel follows the selected token: layers used x heads.
    const heads = exported.headWeights?.[0]?.[0]?.length ?? 0;
    expect(await page.locator('#heads-grid .cell').count()).toBe(exported.layersUsed.length * heads);

    // Opacity 0 shows the bare image; unfiltered switches maps.
    await page.locator('#opacity').fill('0');
    const bare = await overlayPixels(page);
    await page.locator('#opacity').fill('60');
    expect(await overlayPixels(page)).not.toBe(bare);
    await page.check('input[name="filter"][value="unfiltered"]', { force: true });
    expect(await page.textContent('#overlay-caption')).toContain('unfiltered');
    await page.check('input[name="filter"][value="filtered"]', { force: true });
  });

  it('exports overlay PNGs: the current one, and all of them with result.json as a zip', async () => {
    const { page } = ctx;
    const [png] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    const bytes = readFileSync((await png.path()) as string);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    const [archive] = await Promise.all([page.waitForEvent('download'), page.click('#export-zip')]);
    expect(archive.suggestedFilename()).toBe('dexar-overlays.zip');
    const zip = readFileSync((await archive.path()) as string);
    const names: string[] = [];
    for (let at = 0; zip.readUInt32LE(at) === 0x04034b50; ) {
      const size = zip.readUInt32LE(at + 18);
      const nameLength = zip.readUInt16LE(at + 26);
      names.push(zip.subarray(at + 30, at + 30 + nameLength).toString());
      at += 30 + nameLength + size;
    }
    expect(names).toContain('sentence.png');
    expect(names).toContain('result.json');
    expect(names.filter((n) => n.startsWith('tokens/'))).toHaveLength(exported.tokens.length);
  });

  it('explains with a baseline method picked in the page, as dexar explain --method does', async () => {
    const { page } = ctx;
    const node = runCli(ctx.manifest, '--method', 'logit-lens-image');
    await page.click('#advanced summary');
    await page.selectOption('#method', 'logit-lens-image');
    await page.click('#explain');
    await explained(page);
    expect(await page.textContent('#status')).toMatch(/^Explained \d+ tokens with logit-lens-image/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const pageResult = JSON.parse(readFileSync((await download.path()) as string, 'utf8')) as Explanation;
    const cliResult = await node;
    expect(pageResult.method).toBe('logit-lens-image');
    expect(cliResult.method).toBe('logit-lens-image');
    expect(pageResult.tokens).toEqual(cliResult.tokens);
    const max = Math.max(
      maxAbsDiff(pageResult.perTokenHeatmaps, cliResult.perTokenHeatmaps, 'perTokenHeatmaps'),
      maxAbsDiff(pageResult.sentenceHeatmap, cliResult.sentenceHeatmap, 'sentenceHeatmap'),
    );
    console.log(`e2e ${ctx.prefix}: logit-lens-image, max |page - CLI| = ${max.toExponential(2)}`);
    expect(max).toBeLessThan(TOLERANCE);
    await page.selectOption('#method', 'dexar');
    await page.click('#advanced summary');
  });
}

/** Images: decoded as Node decodes them, and refused from their header before anything decodes them. */
export function imageTests(ctx: Context) {
  it('decodes images in the browser to the same pixels as the Node path (sharp)', async () => {
    const { page } = ctx;
    const { decodeImage } = await import('@dexar/runtime-node');
    const sharp = (await import('sharp')).default;
    const width = 40;
    const height = 30;
    const rgb = Buffer.alloc(width * height * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + ((i / 3) % width) * 5) % 256;
    const source = () => sharp(rgb, { raw: { width, height, channels: 3 } });
    const cases = {
      png: await source().png().toBuffer(),
      webp: await source().webp({ lossless: true }).toBuffer(),
      jpeg: await source().jpeg({ quality: 90 }).toBuffer(),
      'jpeg, EXIF orientation 6': await source().jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer(),
    };
    const measured: Record<string, number> = {};
    for (const [name, bytes] of Object.entries(cases)) {
      const node = await decodeImage(new Uint8Array(bytes));
      const web = await page.evaluate(async (b) => {
        const image = await (
          globalThis as unknown as {
            dexarDemo: { decode(x: Uint8Array): Promise<{ width: number; height: number; data: Uint8Array }> };
          }
        ).dexarDemo.decode(new Uint8Array(b));
        return { width: image.width, height: image.height, data: Array.from(image.data) };
      }, Array.from(bytes));
      expect([web.width, web.height], name).toEqual([node.width, node.height]);
      measured[name] = maxAbsDiff(web.data, Array.from(node.data), name);
    }
    console.log(
      `e2e ${ctx.prefix}: browser vs sharp decoding, max |difference| per format: ${JSON.stringify(measured)}`,
    );
    // Lossless formats must decode identically; JPEG decoders may round the inverse DCT differently (measured: 0).
    expect(measured.png).toBe(0);
    expect(measured.webp).toBe(0);
    expect(measured.jpeg).toBeLessThanOrEqual(4);
    expect(measured['jpeg, EXIF orientation 6']).toBeLessThanOrEqual(4);
  });

  it('refuses an image over the limits from its header, in the words of the CLI, before anything decodes it', async () => {
    const { page } = ctx;
    // every way the page could start decoding a file: its preview (an object URL), createImageBitmap, the worker
    await page.evaluate(() => {
      const started: string[] = [];
      (window as unknown as { decodesStarted: string[] }).decodesStarted = started;
      const counted = <F extends (...args: never[]) => unknown>(what: string, f: F) =>
        function (this: unknown, ...args: Parameters<F>) {
          started.push(what);
          return f.apply(this, args);
        } as unknown as F;
      URL.createObjectURL = counted('preview', URL.createObjectURL);
      window.createImageBitmap = counted('createImageBitmap', window.createImageBitmap);
      Worker.prototype.postMessage = counted('worker', Worker.prototype.postMessage);
    });
    const preview = await page.getAttribute('#preview', 'src');
    const cases: [string, string, Uint8Array, string][] = [
      [
        'huge.webp',
        'image/webp',
        webpHeader(16383, 16383),
        'the image is 16383 x 16383 pixels, over the 64 megapixel limit: downscale it first',
      ],
      [
        'strip.png',
        'image/png',
        pngHeader(100000, 1),
        'the image is 100000 x 1 pixels, longer than 32 times its width or height: crop it first',
      ],
    ];
    for (const [name, type, bytes, message] of cases) {
      const dataTransfer = await page.evaluateHandle(
        ({ name, type, bytes }) => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
          return transfer;
        },
        { name, type, bytes: Array.from(bytes) },
      );
      await page.dispatchEvent('#drop', 'drop', { dataTransfer });
      await page.waitForFunction((m) => document.getElementById('status')?.textContent === m, message);
      expect(await page.getAttribute('#status', 'data-kind'), name).toBe('error');
    }
    expect(await page.evaluate(() => (window as unknown as { decodesStarted: string[] }).decodesStarted)).toEqual([]);
    expect(await page.getAttribute('#preview', 'src')).toBe(preview); // the example stays the chosen image
    // The pipeline's decoding (as Explain runs it) refuses from the header too: decoded, these 32 bytes would fail otherwise.
    const refusal = await page.evaluate(
      (b) =>
        (globalThis as unknown as { dexarDemo: { decode(x: Uint8Array): Promise<unknown> } }).dexarDemo
          .decode(new Uint8Array(b))
          .then(
            () => 'decoded',
            (error: Error) => error.message,
          ),
      Array.from(webpHeader(16383, 16383)),
    );
    expect(refusal).toBe(cases[0]?.[3]);
  });

  it('is usable on a narrow screen (no horizontal scrolling)', async () => {
    const { page } = ctx;
    await page.setViewportSize({ width: 390, height: 844 });
    await page.focus('.token[data-index="0"]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(artefacts, `${ctx.prefix}narrow.png`), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });
}

/** The last test of a suite: every request stayed on 127.0.0.1, and the page raised no error. */
export function requestsTest(ctx: Context) {
  it('made no request outside 127.0.0.1 and raised no page or CSP error', () => {
    const local = (url: string) => {
      const u = new URL(url.replace(/^blob:/, ''));
      return (u.protocol === 'http:' && u.hostname === '127.0.0.1') || u.protocol === 'data:';
    };
    const outside = ctx.requests.filter((url) => !local(url));
    expect(outside).toEqual([]);
    expect(ctx.requests.length).toBeGreaterThan(5);
    expect(ctx.problems).toEqual([]);
  });
}
