import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Explanation, ExplanationSchema } from '@dexar/core';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pngHeader, webpHeader } from '../../../packages/core/test/helpers/image-headers.js';
import { repoRoot } from '../scripts/assets.js';
import { type Browser, launchChromium } from '../scripts/browser.js';
import { distDir, type StaticServer, serve } from '../scripts/serve.js';
import type { BuiltinManifest } from '../src/builtin.js';

/**
 * The built demo in headless Chromium (Debian's package, playwright-core),
 * served from 127.0.0.1 with COOP/COEP: explain the built-in example, hover
 * and arrow through tokens, export, and compare the exported JSON with the
 * Node CLI's on the same inputs. Screenshots go to test-results/ (gitignored).
 */

const artefacts = fileURLToPath(new URL('../test-results/', import.meta.url));
const cli = join(repoRoot, 'apps/cli/bin/dexar.js');
const TOLERANCE = 1e-4;

let server: StaticServer;
let browser: Browser;
let page: Page;
let manifest: BuiltinManifest;
const requests: string[] = [];
const problems: string[] = [];
let nodeResult: Promise<Explanation>;

async function buildIfMissing() {
  if (existsSync(join(distDir, 'index.html')) && existsSync(join(distDir, 'builtin/manifest.json'))) return;
  const { build } = await import('vite');
  await build({ root: fileURLToPath(new URL('..', import.meta.url)), logLevel: 'warn' });
}

/** The Node CLI's result for the same model, image and prompt, on a copy of the model (its graph cache stays out of the repo). */
async function runCli(m: BuiltinManifest, ...extra: string[]): Promise<Explanation> {
  const work = mkdtempSync(join(tmpdir(), 'dexar-e2e-'));
  try {
    const model = join(work, 'model');
    cpSync(join(repoRoot, m.source), model, {
      recursive: true,
      filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src),
    });
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        cli,
        'explain',
        '--model',
        model,
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

const overlayPixels = () =>
  page.evaluate(() => (document.getElementById('overlay') as HTMLCanvasElement).toDataURL('image/png'));

function maxAbsDiff(a: unknown, b: unknown, path = ''): number {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b);
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) throw new Error(`${path}: length ${a.length} in the browser, ${b.length} in Node`);
    return a.reduce((m: number, x, i) => Math.max(m, maxAbsDiff(x, b[i], `${path}[${i}]`)), 0);
  }
  throw new Error(`${path}: not numbers or arrays`);
}

beforeAll(async () => {
  // First, so a machine without Chromium fails at once with the one line saying what to install.
  browser = await launchChromium();
  await buildIfMissing();
  manifest = JSON.parse(readFileSync(join(distDir, 'builtin/manifest.json'), 'utf8'));
  nodeResult = runCli(manifest);
  nodeResult.catch(() => {});
  server = await serve(distDir);
  page = await browser.context.newPage();
  browser.context.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  mkdirSync(artefacts, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe(`the demo in headless Chromium`, () => {
  let exported: Explanation;

  it('opens with the built-in model and example, cross-origin isolated with WebAssembly threads', async () => {
    await page.goto(server.url);
    await page.waitForFunction(
      () =>
        !(document.getElementById('explain') as HTMLButtonElement).disabled ||
        document.getElementById('status')?.dataset.kind === 'error',
      null,
      { timeout: 60_000 },
    );
    expect(await page.textContent('#status')).toMatch(/^Ready/);
    expect(await page.textContent('#model-name')).toContain(`${manifest.name} (built-in)`);
    expect(await page.inputValue('#prompt')).toBe(manifest.prompt);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    expect(Number(await page.getAttribute('body', 'data-threads'))).toBe(Math.min(cores, 8));
    // Headless with --disable-gpu has no WebGPU: the fallback is announced.
    expect(await page.textContent('#notices')).toContain('WebGPU is not available');
    expect(await page.textContent('#privacy')).toContain('no image or prompt leaves your machine');
  });

  it('explains the example: the answer appears, one shaded token per answer token', async () => {
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
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
      timeout: 90_000,
    });
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
    console.log(`e2e: explained ${tokens} tokens in ${Date.now() - t0} ms (${await page.textContent('#timing')})`);
  });

  it('exports result JSON that matches the Node CLI within 1e-4', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    expect(download.suggestedFilename()).toBe('result.json');
    exported = JSON.parse(readFileSync((await download.path()) as string, 'utf8'));
    writeFileSync(join(artefacts, 'browser-result.json'), JSON.stringify(exported));
    expect(ExplanationSchema.safeParse(exported).success).toBe(true);
    const node = await nodeResult;
    // The CLI ran with --raw (for head weights); the demo adds head weights without the raw rows.
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
      join(artefacts, 'e2e-summary.json'),
      JSON.stringify(
        { model: manifest.source, fallback: manifest.fallback, tokens: node.tokens, maxAbsDiff: max, diffs },
        null,
        2,
      ),
    );
    console.log(`e2e: ${manifest.source}, ${node.tokens.length} tokens, max |browser - CLI| = ${max.toExponential(2)}`);
    expect(max).toBeLessThan(TOLERANCE);
  });

  it('changes the overlay when a token is hovered, and moves between tokens with the arrow keys', async () => {
    expect(await page.getAttribute('#overlay', 'data-index')).toBe('-1');
    const sentence = await overlayPixels();
    // The token whose map differs most from the sentence map (any token with a weight differs).
    const best = exported.tokenWeights.indexOf(Math.max(...exported.tokenWeights));
    await page.hover(`.token[data-index="${best}"]`);
    expect(await page.getAttribute('#overlay', 'data-index')).toBe(String(best));
    expect(await overlayPixels()).not.toBe(sentence);
    expect(await page.textContent('#overlay-caption')).toContain('δ');
    await page.screenshot({ path: join(artefacts, 'desktop-hover.png'), fullPage: true });
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
    const bare = await overlayPixels();
    await page.locator('#opacity').fill('60');
    expect(await overlayPixels()).not.toBe(bare);
    await page.check('input[name="filter"][value="unfiltered"]', { force: true });
    expect(await page.textContent('#overlay-caption')).toContain('unfiltered');
    await page.check('input[name="filter"][value="filtered"]', { force: true });
  });

  it('exports overlay PNGs: the current one, and all of them with result.json as a zip', async () => {
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

  it('keeps the explain graph it built in IndexedDB, keyed like the Node cache', async () => {
    const keys = await page.evaluate(
      () =>
        new Promise<string[]>((resolve, reject) => {
          const open = indexedDB.open('dexar');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const all = open.result.transaction('derived').objectStore('derived').getAllKeys();
            all.onsuccess = () => resolve(all.result.map(String));
            all.onerror = () => reject(all.error);
          };
        }),
    );
    expect(keys.some((k) => /\/builtin\/model\|onnx\/decoder_model_merged\.dexar-[0-9a-f]{64}\.onnx$/.test(k))).toBe(
      true,
    );
  });

  it('explains with a baseline method picked in the page, as dexar explain --method does', async () => {
    const node = runCli(manifest, '--method', 'logit-lens-image');
    await page.click('#advanced summary');
    await page.selectOption('#method', 'logit-lens-image');
    await page.click('#explain');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
      timeout: 90_000,
    });
    expect(await page.textContent('#status')).toMatch(/^Explained \d+ tokens with logit-lens-image/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const browserResult = JSON.parse(readFileSync((await download.path()) as string, 'utf8')) as Explanation;
    const cliResult = await node;
    expect(browserResult.method).toBe('logit-lens-image');
    expect(cliResult.method).toBe('logit-lens-image');
    expect(browserResult.tokens).toEqual(cliResult.tokens);
    const max = Math.max(
      maxAbsDiff(browserResult.perTokenHeatmaps, cliResult.perTokenHeatmaps, 'perTokenHeatmaps'),
      maxAbsDiff(browserResult.sentenceHeatmap, cliResult.sentenceHeatmap, 'sentenceHeatmap'),
    );
    console.log(`e2e: logit-lens-image, max |browser - CLI| = ${max.toExponential(2)}`);
    expect(max).toBeLessThan(TOLERANCE);
    await page.selectOption('#method', 'dexar');
    await page.click('#advanced summary');
  });

  it('opens a model folder the user picks and explains a chosen image and a typed target', async () => {
    const work = mkdtempSync(join(tmpdir(), 'dexar-picked-'));
    try {
      const folder = join(work, 'llava-tiny');
      cpSync(join(repoRoot, 'fixtures/models/llava-tiny'), folder, {
        recursive: true,
        filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src),
      });
      await page.setInputFiles('#model-input', folder);
      await page.waitForFunction(() => /layers$|failed/.test(document.getElementById('model-name')?.textContent ?? ''));
      expect(await page.textContent('#model-name')).toBe('llava-tiny · llava, 4 layers');
      await page.setInputFiles('#image-input', join(repoRoot, 'fixtures/references/llava-tiny/case0/image.png'));
      await page.check('input[name="mode"][value="target"]');
      await page.fill('#target', 'a red circle');
      await page.click('#explain');
      await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
        timeout: 90_000,
      });
      expect(await page.textContent('#status')).toMatch(/^Explained \d+ tokens/);
      // Each token is shown decoded on its own (the word-start marker dropped): "a", "red", "circle".
      const text = (await page.locator('#tokens .token:not(.sentence) .t').allTextContents()).join('');
      expect(text.replace(/\s+/g, '')).toBe('aredcircle');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('lets the user pick a weight variant when the folder holds several, and says which one ran', async () => {
    const work = mkdtempSync(join(tmpdir(), 'dexar-variants-'));
    try {
      // the zoo's llava with its fp32 and q4 graphs only
      const folder = join(work, 'llava-hf-eager14');
      cpSync(join(repoRoot, 'fixtures/zoo/models/llava-hf-eager14'), folder, {
        recursive: true,
        filter: (src) => !/\.dexar-[0-9a-f]+\.(onnx|json)$|_(fp16|bnb4|quantized)\.onnx$/.test(src),
      });
      await page.setInputFiles('#model-input', folder);
      await page.waitForFunction(() =>
        /weights$|failed/.test(document.getElementById('model-name')?.textContent ?? ''),
      );
      expect(await page.textContent('#model-name')).toBe('llava-hf-eager14 · llava, 3 layers, fp32 weights');
      expect(await page.locator('#variant option').allTextContents()).toEqual(['fp32', 'q4']);
      await page.selectOption('#variant', 'q4');
      await page.waitForFunction(() =>
        /q4 weights$|failed/.test(document.getElementById('model-name')?.textContent ?? ''),
      );
      expect(await page.textContent('#model-name')).toBe('llava-hf-eager14 · llava, 3 layers, q4 weights');
      const reference = JSON.parse(
        readFileSync(join(repoRoot, 'fixtures/zoo/references/llava-hf-eager14/q4/case0/case.json'), 'utf8'),
      );
      await page.setInputFiles(
        '#image-input',
        join(repoRoot, 'fixtures/zoo/references/llava-hf-eager14/case0/image.png'),
      );
      await page.fill('#prompt', reference.prompt);
      await page.check('input[name="mode"][value="target"]');
      await page.fill('#target', reference.target);
      await page.click('#explain');
      await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
        timeout: 90_000,
      });
      expect(await page.textContent('#status')).toMatch(/^Explained \d+ tokens \(q4 weights\) in /);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('decodes images in the browser to the same pixels as the Node path (sharp)', async () => {
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
    console.log(`e2e: browser vs sharp decoding, max |difference| per format: ${JSON.stringify(measured)}`);
    // Lossless formats must decode identically; JPEG decoders may round the inverse DCT differently (measured: 0).
    expect(measured.png).toBe(0);
    expect(measured.webp).toBe(0);
    expect(measured.jpeg).toBeLessThanOrEqual(4);
    expect(measured['jpeg, EXIF orientation 6']).toBeLessThanOrEqual(4);
  });

  it('refuses an image over the limits from its header, in the words of the CLI, before anything decodes it', async () => {
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
    // The worker's decoding (as Explain runs it) refuses from the header too: decoded, these 32 bytes would fail otherwise.
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
    await page.setViewportSize({ width: 390, height: 844 });
    await page.focus('.token[data-index="0"]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(artefacts, 'narrow.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('runs single-threaded, and says so, when served without COOP/COEP', async () => {
    const plain = await serve(distDir, 0, false);
    const other = await browser.context.newPage();
    try {
      other.on('request', (r) => requests.push(r.url()));
      await other.goto(plain.url);
      await other.waitForFunction(() => !(document.getElementById('explain') as HTMLButtonElement).disabled, null, {
        timeout: 60_000,
      });
      expect(await other.evaluate(() => crossOriginIsolated)).toBe(false);
      expect(await other.getAttribute('body', 'data-threads')).toBe('1');
      const cores = await other.evaluate(() => navigator.hardwareConcurrency);
      if (cores > 1) expect(await other.textContent('#notices')).toContain('not cross-origin isolated');
    } finally {
      await other.close();
      await plain.close();
    }
  });

  it('made no request outside 127.0.0.1 and raised no page or CSP error', () => {
    const local = (url: string) => {
      const u = new URL(url.replace(/^blob:/, ''));
      return (u.protocol === 'http:' && u.hostname === '127.0.0.1') || u.protocol === 'data:';
    };
    const outside = requests.filter((url) => !local(url));
    expect(outside).toEqual([]);
    expect(requests.length).toBeGreaterThan(5);
    expect(problems).toEqual([]);
  });
});
