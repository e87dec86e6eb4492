import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServeProcess } from '../../cli/test/serve-process.js';
import { repoRoot } from '../scripts/assets.js';
import { type Browser, launchChromium } from '../scripts/browser.js';
import { distDir, type StaticServer, serve } from '../scripts/serve.js';
import type { BuiltinManifest } from '../src/builtin.js';
import {
  artefacts,
  type Context,
  copyModel,
  explainTests,
  imageTests,
  openPage,
  requestsTest,
  runCli,
  watch,
} from './interface.js';

/**
 * The demo's interface in headless Chromium (Debian's package, playwright-core), on both runtimes:
 * the built demo served statically from 127.0.0.1 with COOP/COEP (onnxruntime-web in the page), and
 * `dexar serve` (onnxruntime-node in the server). Both explain the built-in example, hover and
 * arrow through tokens, export, and compare the exported JSON with the Node CLI's on the same
 * inputs (interface.ts). Screenshots go to test-results/ (gitignored).
 */

let browser: Browser;
let manifest: BuiltinManifest;

async function buildIfMissing() {
  if (existsSync(join(distDir, 'index.html')) && existsSync(join(distDir, 'builtin/manifest.json'))) return;
  const { build } = await import('vite');
  await build({ root: fileURLToPath(new URL('..', import.meta.url)), logLevel: 'warn' });
}

beforeAll(async () => {
  // First, so a machine without Chromium fails at once with the one line saying what to install.
  browser = await launchChromium();
  await buildIfMissing();
  manifest = JSON.parse(readFileSync(join(distDir, 'builtin/manifest.json'), 'utf8'));
  mkdirSync(artefacts, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
});

/** A suite's context, its page opened in the shared browser and watched; the CLI's result started. */
async function context(prefix: string): Promise<Context> {
  const ctx = {
    page: await browser.context.newPage(),
    manifest,
    nodeResult: runCli(manifest),
    requests: [],
    problems: [],
    prefix,
  };
  ctx.nodeResult.catch(() => {});
  watch(ctx);
  return ctx;
}

describe('the demo in headless Chromium', () => {
  const ctx = {} as Context;
  let server: StaticServer;
  beforeAll(async () => {
    Object.assign(ctx, await context('browser-'));
    server = await serve(distDir);
  });
  afterAll(async () => {
    await ctx.page?.close();
    await server?.close();
  });

  it('opens with the built-in model and example, cross-origin isolated with WebAssembly threads', async () => {
    const { page } = ctx;
    await openPage(page, server.url);
    expect(await page.textContent('#model-name')).toContain(`${manifest.name} (built-in)`);
    expect(await page.inputValue('#prompt')).toBe(manifest.prompt);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    expect(Number(await page.getAttribute('body', 'data-threads'))).toBe(Math.min(cores, 8));
    expect(await page.getAttribute('body', 'data-where')).toBe('browser');
    // Headless with --disable-gpu has no WebGPU: the fallback is announced.
    expect(await page.textContent('#notices')).toContain('WebGPU is not available');
    expect(await page.textContent('#privacy')).toContain('no image or prompt leaves your machine');
  });

  explainTests(ctx);

  it('keeps the explain graph it built in IndexedDB, keyed like the Node cache', async () => {
    const { page } = ctx;
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

  it('opens a model folder the user picks and explains a chosen image and a typed target', async () => {
    const { page } = ctx;
    const work = mkdtempSync(join(tmpdir(), 'dexar-picked-'));
    try {
      await page.setInputFiles('#model-input', copyModel('fixtures/models/llava-tiny', work));
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
    const { page } = ctx;
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

  imageTests(ctx);

  it('runs single-threaded, and says so, when served without COOP/COEP', async () => {
    const plain = await serve(distDir, 0, false);
    const other = await browser.context.newPage();
    try {
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

  requestsTest(ctx);
});

describe('the interface served by dexar serve, the model in Node', () => {
  const ctx = {} as Context;
  let server: { child: ChildProcess; url: string };
  const work = mkdtempSync(join(tmpdir(), 'dexar-served-'));
  beforeAll(async () => {
    Object.assign(ctx, await context('served-'));
    server = await startServeProcess(copyModel(manifest.source, work));
  });
  afterAll(async () => {
    await ctx.page?.close();
    server?.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  });

  it("opens with the server's model and says where it runs; it offers no model or backend of the browser", async () => {
    const { page } = ctx;
    await openPage(page, server.url);
    expect(await page.textContent('#model-name')).toBe(`${manifest.name} (on the server) · llava, 4 layers`);
    expect(await page.inputValue('#prompt')).toBe(manifest.prompt);
    expect(await page.getAttribute('body', 'data-where')).toBe('server');
    expect(await page.textContent('#backend-info')).toMatch(
      /^onnxruntime-node on CPU, .* in the dexar server at 127\.0\.0\.1:\d+$/,
    );
    expect(await page.textContent('#privacy')).toContain(`Runs on the dexar server at ${new URL(server.url).host}`);
    for (const hidden of ['#builtin-model', '#pick-model', '#backend'])
      expect(await page.isHidden(hidden), hidden).toBe(true);
  });

  explainTests(ctx);

  it('shows a token map after explaining again (the screenshot in apps/cli/README.md)', async () => {
    const { page } = ctx;
    await page.click('#explain');
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 90_000 });
    await page.click('.token[data-index="1"]');
    expect(await page.getAttribute('#overlay', 'data-index')).toBe('1');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(artefacts, 'served-interface.png') });
  });

  imageTests(ctx);

  it('never sent the model or a runtime to the browser', () => {
    const fetched = ctx.requests.map((url) => new URL(url.replace(/^blob:/, '')).pathname);
    expect(fetched.filter((path) => /^\/(builtin|ort)\/|\.(onnx|wasm)$|worker/.test(path))).toEqual([]);
    expect(fetched).toContain('/api/explain');
  });

  requestsTest(ctx);
});
