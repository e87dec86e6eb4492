/**
 * Browser (onnxruntime-web, WebAssembly) explanation time over Node
 * (onnxruntime-node, CPU) on the built-in model and example, in one run,
 * with the same thread count. Target: browser / Node <= 3.
 *
 *   pnpm bench                     (all benches; builds first)
 *   pnpm --filter @dexar/demo bench   (after pnpm build)
 *
 * Each side explains the model's answer (generation + one explain run +
 * aggregation) and a given target (teacher forcing, no generation); the
 * first call of each builds the explain graph and is not timed.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { Explainer } from '@dexar/explain';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { repoRoot } from '../scripts/assets.js';
import { launchChromium } from '../scripts/browser.js';
import { distDir, serve } from '../scripts/serve.js';
import type { BuiltinManifest } from '../src/builtin.js';

const RUNS = Number(process.env.DEXAR_BENCH_RUNS ?? 9);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');

if (!existsSync(join(distDir, 'builtin/manifest.json'))) {
  console.error('bench: build the demo first (pnpm build, or pnpm bench which builds)');
  process.exit(1);
}
const manifest = JSON.parse(readFileSync(join(distDir, 'builtin/manifest.json'), 'utf8')) as BuiltinManifest;

// ---- both sides open the same model (Node on a copy: its graph cache stays out of the repo), then runs alternate,
// so that a load change on the machine hits both alike

const server = await serve(distDir);
const browser = await launchChromium();
const work = mkdtempSync(join(tmpdir(), 'dexar-bench-'));
const browserTimes = { answer: [] as number[], target: [] as number[] };
const nodeTimes = { answer: [] as number[], target: [] as number[] };
let threads = 1;
let target = '';
try {
  const page = await browser.context.newPage();
  const forced = process.env.DEXAR_BENCH_THREADS;
  await page.goto(`${server.url}${forced ? `?threads=${forced}` : ''}`);
  await page.waitForFunction(() => !(document.getElementById('explain') as HTMLButtonElement).disabled, null, {
    timeout: 120_000,
  });
  threads = Number(await page.getAttribute('body', 'data-threads'));
  const browserRun = async () => {
    await page.click('#explain');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, {
      timeout: 300_000,
    });
    if ((await page.getAttribute('body', 'data-state')) === 'error') {
      throw new Error(`the demo failed: ${await page.textContent('#status')}`);
    }
    return Number(await page.getAttribute('body', 'data-explain-ms'));
  };

  cpSync(join(repoRoot, manifest.source), join(work, 'model'), {
    recursive: true,
    filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src),
  });
  const explainer = await Explainer.open({
    backend: nodeBackend({ threads }),
    folder: await openModelFolder(join(work, 'model')),
  });
  const image = await decodeImage(new Uint8Array(readFileSync(join(repoRoot, manifest.imageSource))));
  const nodeRun = async (extra: object) => {
    const t0 = performance.now();
    await explainer.explain(image, { prompt: manifest.prompt, headWeights: true, ...extra });
    return performance.now() - t0;
  };

  // Warm-up: each side builds its explain graph once.
  await browserRun();
  await nodeRun({});
  for (let i = 0; i < RUNS; i++) {
    browserTimes.answer.push(await browserRun());
    nodeTimes.answer.push(await nodeRun({}));
  }
  // The target: the example's expected caption, or the tokens of the answer just explained.
  target =
    manifest.expectedAnswer ??
    (await page.locator('#tokens .token:not(.sentence) .t').allTextContents()).map((t) => t.trim()).join(' ');
  await page.check('input[name="mode"][value="target"]');
  await page.fill('#target', target);
  await browserRun();
  await nodeRun({ target });
  for (let i = 0; i < RUNS; i++) {
    browserTimes.target.push(await browserRun());
    nodeTimes.target.push(await nodeRun({ target }));
  }
  await explainer.release();
} finally {
  await browser.close();
  await server.close();
  rmSync(work, { recursive: true, force: true });
}

// ---- report

const rows = (['answer', 'target'] as const).map((kind) => {
  const b = median(browserTimes[kind]);
  const n = median(nodeTimes[kind]);
  return { kind, browserMs: b, nodeMs: n, ratio: b / n, browserRuns: browserTimes[kind], nodeRuns: nodeTimes[kind] };
});
console.log(
  `demo bench: ${manifest.source}${manifest.fallback ? ' (fallback: the shapes model is not built)' : ''}, ${RUNS} runs each after a warm-up, ${threads} thread${threads === 1 ? '' : 's'} on both sides`,
);
for (const r of rows) {
  const what = r.kind === 'answer' ? 'answer (generate + explain)' : 'target (explain only)  ';
  console.log(
    `  ${what}  browser WASM median ${r.browserMs.toFixed(0)} ms [${fmt(r.browserRuns)}]  Node median ${r.nodeMs.toFixed(0)} ms [${fmt(r.nodeRuns)}]  browser/Node ${r.ratio.toFixed(2)} (target <= 3)`,
  );
}
const out = fileURLToPath(new URL('../test-results/', import.meta.url));
mkdirSync(out, { recursive: true });
writeFileSync(
  join(out, 'bench.json'),
  JSON.stringify({ model: manifest.source, fallback: manifest.fallback, threads, runs: RUNS, rows }, null, 2),
);
