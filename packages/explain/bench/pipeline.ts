// Pipeline benchmarks (issues: explain pipeline, other families, #16). For each model:
// teacher-forced explanation time / greedy generation time of the same tokens (target <= 1.5),
// streaming generate-and-explain time / generation time (target <= 1.25), single pass vs stepwise
// at T = 20 (target >= 8x), the first explanation including the explain-graph build / a warm one
// (target <= 3), and peak RSS over generation alone of: teacher-forced explanation alone (target
// <= 1.15), generation then teacher-forced explanation in one process (the decoder's session is
// released before the explain graph's opens: target <= 1.25), and the default flow (explain without
// a target, streamed: target <= 1.25). Medians of 5 runs
// after untimed warm-up runs (up to 10, for at most 1.5 s: on the small shapes model V8's JIT made
// the first 8 explanations 2-3x slower than the rest); the explain graphs are built before timing.
// Generation, explanation and streaming run in turns, each mode on an Explainer of its own.
//
// Peak RSS is each mode's own: every mode runs in a child process that reads VmHWM
// (tools/bench/peak-resident.ts; getrusage's maxRSS would report the bench process's own peak).
//
// Variants (issue #15): for each scale model, its fp32 graphs, its fp16 graphs (`--variant fp16`), its q8
// (`_quantized`) and q4 graphs and its fused-attention twin (`<model>-fused`), in the same run: teacher-forced explanation time / generation
// time, and peak RSS of explanation alone / generation alone. The variants are written by
// `/usr/bin/python3 tools/fixtures/generate.py --scale --variants` (not committed).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { dirname, join, relative as relativePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import type { RgbaImage } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import { isDerivedFile, variantPath } from '@dexar/core/runtime';
import { decodeImage, nodeBackend, openModelFolder, type Variant } from '@dexar/runtime-node';
import { peakResidentBytes, resetPeakResident } from '../../../tools/bench/peak-resident.js';
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
  /** The graph variant (file-name suffix) to open; fp32 by default. */
  variant?: Variant;
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

/** Per scale model: its fp32, fp16, q8 and q4 graphs and its fused-attention twin. */
const variantModels: BenchModel[] = models
  .filter((m) => m.dir.includes('/fixtures/scale/'))
  .flatMap((m) => [
    { ...m, name: `${m.name} fp32` },
    { ...m, name: `${m.name} fp16`, variant: 'fp16' as const },
    { ...m, name: `${m.name} q8`, variant: 'q8' as const },
    { ...m, name: `${m.name} q4`, variant: 'q4' as const },
    { ...m, name: `${m.name}-fused`, dir: `${m.dir}-fused` },
  ]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/**
 * Median times of modes run in turns (after each one's warm-up runs), so that a burst of load on
 * a shared machine falls on all of them alike and their ratios hold.
 */
async function timeTogether<K extends string>(fns: Record<K, () => Promise<unknown>>): Promise<Record<K, number>> {
  const modes = Object.entries(fns) as [K, () => Promise<unknown>][];
  for (const [, fn] of modes) {
    const warmupStart = performance.now();
    for (let i = 0; i < WARMUP.runs && performance.now() - warmupStart < WARMUP.ms; i++) await fn();
  }
  const samples = new Map<K, number[]>(modes.map(([mode]) => [mode, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const [mode, fn] of modes) {
      const start = performance.now();
      await fn();
      samples.get(mode)?.push(performance.now() - start);
    }
  }
  return Object.fromEntries(modes.map(([mode]) => [mode, median(samples.get(mode) ?? [])])) as Record<K, number>;
}
const time = async (fn: () => Promise<unknown>) => (await timeTogether({ fn })).fn;

function exampleImage(): Promise<RgbaImage> {
  return decodeImage(new Uint8Array(readFileSync(`${root}examples/shapes/example.png`)));
}

const childModes = {
  generate: 'generation alone',
  explain: 'teacher-forced explanation alone',
  'generate-explain': 'generation, then teacher-forced explanation in one process',
  default: 'the default flow: explain without a target (streamed, one session)',
} as const;
type ChildMode = keyof typeof childModes;

/** Child mode: one run of a mode in a fresh process, then its peak RSS in bytes. */
async function child(dir: string, variant: Variant, mode: ChildMode, prompt: string, ids: number[]) {
  resetPeakResident(); // node's start-up is not the mode's
  let built = false; // an explain graph missing from the cache is built here, and its build's memory counted
  const onProgress = (e: ProgressEvent) => {
    built ||= e.detail?.startsWith('building the explain graph') ?? false;
  };
  const explainer = await Explainer.open({
    backend: nodeBackend(),
    folder: await openModelFolder(dir, variant),
    onProgress,
  });
  const image = await exampleImage();
  if (mode === 'generate' || mode === 'generate-explain') {
    await explainer.generate(image, { prompt, maxNewTokens: ids.length });
  }
  if (mode === 'explain' || mode === 'generate-explain') await explainer.explain(image, { prompt, targetIds: ids });
  if (mode === 'default') await explainer.explain(image, { prompt, maxNewTokens: ids.length });
  process.stdout.write(`${peakResidentBytes()} ${built ? 'built' : 'cached'}\n`);
}

/**
 * A mode's peak RSS from a child process. A child that had to build an explain graph (another
 * process cleared the cache) counts the build too: it runs once more, on the graph now cached.
 */
function peakRss(model: BenchModel, mode: ChildMode, ids: number[], retry = true): number {
  const out = execFileSync(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      '--child',
      model.dir,
      model.variant ?? 'fp32',
      mode,
      model.prompt,
      ids.join(','),
    ],
    { encoding: 'utf8' },
  );
  const [bytes, graph] = (out.trim().split('\n').at(-1) ?? '').split(' ');
  return graph === 'built' && retry ? peakRss(model, mode, ids, false) : Number(bytes);
}

/**
 * The first explanation of an Explainer whose explain graph is not cached, then the median of warm
 * ones, in milliseconds. The model is opened from a temporary folder beside it of hard links to its
 * files (cached explain graphs left out), so the graph is built and written there, not over the
 * shared cache, and reads the decoder's weights as it would in the model's own folder (ONNX Runtime
 * follows symbolic links out of a folder, and refuses external data there).
 */
async function firstExplanation(model: BenchModel, ids: number[]): Promise<{ first: number; warm: number }> {
  const dir = await mkdtemp(join(dirname(model.dir), '.dexar-bench-'));
  try {
    for (const entry of await readdir(model.dir, { recursive: true, withFileTypes: true })) {
      const relative = join(relativePath(model.dir, entry.parentPath), entry.name);
      if (entry.isDirectory()) await mkdir(join(dir, relative), { recursive: true });
      else if (!isDerivedFile(entry.name)) await link(join(model.dir, relative), join(dir, relative));
    }
    const explainer = await Explainer.open({ backend: nodeBackend(), folder: await openModelFolder(dir) });
    const image = await exampleImage();
    const explain = () => explainer.explain(image, { prompt: model.prompt, targetIds: ids });
    const start = performance.now();
    await explain();
    const first = performance.now() - start;
    const warm = await time(explain);
    await explainer.release();
    return { first, warm };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function bench(model: BenchModel) {
  if (!existsSync(`${model.dir}/config.json`)) {
    console.log(
      `${model.name}: skipped, ${model.dir} is missing (generate it: /usr/bin/python3 tools/fixtures/generate.py --scale)`,
    );
    return;
  }
  // one Explainer per mode: an Explainer holds one decoder session at a time, and the modes take turns
  const open = async () => Explainer.open({ backend: nodeBackend(), folder: await openModelFolder(model.dir) });
  const [explainer, generator, streamer] = [await open(), await open(), await open()];
  const image = await exampleImage();
  await explainer.prepare(); // build and cache the explain graph (default options) before timing
  const generated = await generator.generate(image, { prompt: model.prompt, maxNewTokens: 20 });
  const ids =
    generated.tokenIds.length > 1 ? generated.tokenIds : explainer.model.tokenizeTarget(model.longTarget).slice(0, 20);
  const {
    generate: tGenerate,
    explain: tExplain,
    stream: tStream,
  } = await timeTogether({
    generate: () => generator.generate(image, { prompt: model.prompt, maxNewTokens: ids.length }),
    explain: () => explainer.explain(image, { prompt: model.prompt, targetIds: ids }),
    // the stream generates the same greedy tokens (its calls are generation's), explaining each
    stream: () => streamer.explain(image, { prompt: model.prompt, maxNewTokens: ids.length }),
  });
  await Promise.all([generator.release(), streamer.release()]);
  const ids20 = [...explainer.model.tokenizeTarget(model.longTarget), ...ids].slice(0, 20);
  const tSingle = await time(() => explainer.explain(image, { prompt: model.prompt, targetIds: ids20 }));
  const tStepwise = await time(() =>
    explainer.explain(image, { prompt: model.prompt, targetIds: ids20, strategy: 'stepwise' }),
  );
  await explainer.release();
  const { first, warm } = await firstExplanation(model, ids);
  const rss = Object.fromEntries(
    (Object.keys(childModes) as ChildMode[]).map((mode) => [mode, peakRss(model, mode, ids)]),
  ) as Record<ChildMode, number>;
  const ms = (t: number) => `${t.toFixed(1)} ms`;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  const overGeneration = (mode: ChildMode, target: string) =>
    `  peak RSS, ${childModes[mode]} / generation alone: ${mib(rss[mode])} / ${mib(rss.generate)} = ${(rss[mode] / rss.generate).toFixed(2)}${target}`;
  console.log(
    [
      `${model.name} (${explainer.model.family}, ${explainer.model.numLayers} layers)`,
      `  explain / generate, ${ids.length} tokens: ${ms(tExplain)} / ${ms(tGenerate)} = ${(tExplain / tGenerate).toFixed(2)} (target <= 1.5)`,
      `  streamed generate-and-explain / generate, ${ids.length} tokens: ${ms(tStream)} / ${ms(tGenerate)} = ${(tStream / tGenerate).toFixed(2)} (target <= 1.25)`,
      `  stepwise / single, T = 20: ${ms(tStepwise)} / ${ms(tSingle)} = ${(tStepwise / tSingle).toFixed(1)}x (target >= 8)`,
      `  first explanation, explain graph built / warm explanation: ${ms(first)} / ${ms(warm)} = ${(first / warm).toFixed(1)} (target <= 3)`,
      overGeneration('explain', ' (target <= 1.15)'),
      overGeneration('generate-explain', ' (target <= 1.25)'),
      overGeneration('default', ' (target <= 1.25)'),
    ].join('\n'),
  );
}

/** A variant's teacher-forced explanation / generation time and peak RSS, on the tokens it generates. */
async function benchVariant(model: BenchModel) {
  const decoder = `${model.dir}/${variantPath('onnx/decoder_model_merged.onnx', model.variant ?? 'fp32')}`;
  if (!existsSync(decoder)) {
    console.log(
      `${model.name}: skipped, ${decoder} is missing (/usr/bin/python3 tools/fixtures/generate.py --scale --variants)`,
    );
    return;
  }
  const explainer = await Explainer.open({
    backend: nodeBackend(),
    folder: await openModelFolder(model.dir, model.variant),
  });
  const image = await exampleImage();
  await explainer.prepare();
  const generated = await explainer.generate(image, { prompt: model.prompt, maxNewTokens: 20 });
  const ids =
    generated.tokenIds.length > 1 ? generated.tokenIds : explainer.model.tokenizeTarget(model.longTarget).slice(0, 20);
  const tGenerate = await time(() => explainer.generate(image, { prompt: model.prompt, maxNewTokens: ids.length }));
  const tExplain = await time(() => explainer.explain(image, { prompt: model.prompt, targetIds: ids }));
  await explainer.release();
  const rssGenerate = peakRss(model, 'generate', ids);
  const rssExplain = peakRss(model, 'explain', ids);
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  console.log(
    [
      `${model.name}, ${ids.length} tokens`,
      `  explain / generate: ${tExplain.toFixed(1)} ms / ${tGenerate.toFixed(1)} ms = ${(tExplain / tGenerate).toFixed(2)}`,
      `  peak RSS, explanation alone / generation alone: ${mib(rssExplain)} / ${mib(rssGenerate)} = ${(rssExplain / rssGenerate).toFixed(2)}`,
    ].join('\n'),
  );
}

const args = process.argv.slice(2);
if (args[0] === '--child') {
  await child(args[1], args[2] as Variant, args[3] as ChildMode, args[4], args[5].split(',').map(Number));
} else if (args[0] === '--variants') {
  // tsx bench/pipeline.ts --variants [model names]: the variant rows only
  const selected = args.length > 1 ? variantModels.filter((m) => args.includes(m.name)) : variantModels;
  for (const model of selected) await benchVariant(model);
} else {
  // optional model names select a subset: tsx bench/pipeline.ts shapes-llava
  const selected = args.length > 0 ? models.filter((m) => args.includes(m.name)) : models;
  console.log(
    `pipeline benchmarks: medians of ${RUNS} runs after up to ${WARMUP.runs} warm-up runs (onnxruntime-node, CPU)`,
  );
  for (const model of selected) await bench(model);
  if (args.length === 0) {
    console.log('variants (issue #15): fp32, fp16, q8, q4 and fused-attention graphs of each scale model, in this run');
    for (const model of variantModels) await benchVariant(model);
  }
}
