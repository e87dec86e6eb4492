// Pipeline benchmarks (issues: explain pipeline, other families). For each
// model: teacher-forced explanation time / greedy generation time of the same
// tokens (target <= 1.5), single pass vs stepwise at T = 20 (target >= 8x),
// and peak RSS of an explanation / of a generation, each in its own process
// (target <= 1.3). Medians of 5 runs after untimed warm-up runs (up to 10, for at most 1.5 s: on the
// small shapes model V8's JIT made the first 8 explanations 2-3x slower than the rest); the explain graph
// is built before timing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import type { RgbaImage } from '@dexar/core';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { Explainer } from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const RUNS = 5;
const WARMUP = { runs: 10, ms: 1500 };

interface BenchModel {
  name: string;
  dir: string;
  prompt: string;
  /** A caption long enough for 20 target tokens. */
  longTarget: string;
}

const captionPrompt = 'USER: <image>\nDescribe the image. ASSISTANT:';
const long =
  'a red circle and a blue square and a green triangle and a yellow circle above a purple square on a grey background';
const models: BenchModel[] = [
  { name: 'shapes-llava', dir: `${root}models/shapes-llava`, prompt: captionPrompt, longTarget: long },
  { name: 'llava-scale-1024', dir: `${root}fixtures/scale/llava-scale-1024`, prompt: captionPrompt, longTarget: long },
  { name: 'paligemma-scale', dir: `${root}fixtures/scale/paligemma-scale`, prompt: 'caption en', longTarget: long },
  { name: 'florence2-scale', dir: `${root}fixtures/scale/florence2-scale`, prompt: '<CAPTION>', longTarget: long },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function time(fn: () => Promise<unknown>): Promise<number> {
  const warmupStart = performance.now();
  for (let i = 0; i < WARMUP.runs && performance.now() - warmupStart < WARMUP.ms; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    await fn();
    samples.push(performance.now() - start);
  }
  return median(samples);
}

function exampleImage(): Promise<RgbaImage> {
  return decodeImage(new Uint8Array(readFileSync(`${root}examples/shapes/example.png`)));
}

/** Child mode: one generation or one explanation, then print the peak RSS in bytes. */
async function child(dir: string, mode: string, prompt: string, ids: number[]) {
  const explainer = await Explainer.open({ backend: nodeBackend(), folder: await openModelFolder(dir) });
  const image = await exampleImage();
  if (mode === 'generate') await explainer.generate(image, { prompt, maxNewTokens: ids.length });
  else await explainer.explain(image, { prompt, targetIds: ids });
  process.stdout.write(`${process.resourceUsage().maxRSS * 1024}\n`);
}

function peakRss(model: BenchModel, mode: string, ids: number[]): number {
  const out = execFileSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--child', model.dir, mode, model.prompt, ids.join(',')],
    { encoding: 'utf8' },
  );
  return Number(out.trim().split('\n').at(-1));
}

async function bench(model: BenchModel) {
  if (!existsSync(`${model.dir}/config.json`)) {
    console.log(
      `${model.name}: skipped, ${model.dir} is missing (generate it: /usr/bin/python3 tools/fixtures/generate.py --scale)`,
    );
    return;
  }
  const explainer = await Explainer.open({ backend: nodeBackend(), folder: await openModelFolder(model.dir) });
  const image = await exampleImage();
  await explainer.prepare(); // build and cache the explain graph (default options) before timing
  const generated = await explainer.generate(image, { prompt: model.prompt, maxNewTokens: 20 });
  const ids =
    generated.tokenIds.length > 1 ? generated.tokenIds : explainer.model.tokenizeTarget(model.longTarget).slice(0, 20);
  const tGenerate = await time(() => explainer.generate(image, { prompt: model.prompt, maxNewTokens: ids.length }));
  const tExplain = await time(() => explainer.explain(image, { prompt: model.prompt, targetIds: ids }));
  const ids20 = [...explainer.model.tokenizeTarget(model.longTarget), ...ids].slice(0, 20);
  const tSingle = await time(() => explainer.explain(image, { prompt: model.prompt, targetIds: ids20 }));
  const tStepwise = await time(() =>
    explainer.explain(image, { prompt: model.prompt, targetIds: ids20, strategy: 'stepwise' }),
  );
  await explainer.release();
  const rssGenerate = peakRss(model, 'generate', ids);
  const rssExplain = peakRss(model, 'explain', ids);
  const ms = (t: number) => `${t.toFixed(1)} ms`;
  console.log(
    `${model.name} (${explainer.model.family}, ${explainer.model.numLayers} layers)\n` +
      `  explain / generate, ${ids.length} tokens: ${ms(tExplain)} / ${ms(tGenerate)} = ${(tExplain / tGenerate).toFixed(2)} (target <= 1.5)\n` +
      `  stepwise / single, T = 20: ${ms(tStepwise)} / ${ms(tSingle)} = ${(tStepwise / tSingle).toFixed(1)}x (target >= 8)\n` +
      `  peak RSS explain / generate: ${(rssExplain / 2 ** 20).toFixed(0)} MiB / ${(rssGenerate / 2 ** 20).toFixed(0)} MiB = ${(rssExplain / rssGenerate).toFixed(2)} (target <= 1.3)`,
  );
}

const args = process.argv.slice(2);
if (args[0] === '--child') {
  await child(args[1], args[2], args[3], args[4].split(',').map(Number));
} else {
  // optional model names select a subset: tsx bench/pipeline.ts shapes-llava
  const selected = args.length > 0 ? models.filter((m) => args.includes(m.name)) : models;
  console.log(
    `pipeline benchmarks: medians of ${RUNS} runs after up to ${WARMUP.runs} warm-up runs (onnxruntime-node, CPU)`,
  );
  for (const model of selected) await bench(model);
}
