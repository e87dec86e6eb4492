/**
 * `dexar eval`: runs methods x metrics over a dataset shard and appends one JSONL record per
 * sample and method to `<out>/records-<i>-of-<N>.jsonl`. A rerun resumes: (sample, method) pairs
 * already written are skipped, a torn last line is cut off, and a file written under another
 * configuration is refused.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DexarError, type DexarOptionsInput, type Grid, parseOptions, type RgbaImage } from '@dexar/core';
import type { FamilyModel, ModelAdapter, PixelValues, PreparedInput } from '@dexar/core/adapter';
import {
  decodeImage,
  FILE_LIMITS,
  type NodeBackendOptions,
  nodeBackend,
  openModelFolder,
  readRegularFile,
  type Variant,
} from '@dexar/runtime-node';
import { type MethodInput, type MethodMaps, methodFor } from '../methods.js';
import { fillerTokens, tokenRanking } from '../metrics/faithfulness.js';
import {
  fillImage,
  normalizedPerplexity,
  perplexity,
  perturbPixels,
  removalOrder,
  removedCells,
  removedCount,
  trapezoidAuc,
} from '../metrics/perturbation.js';
import { type Mask, segmentationScores } from '../metrics/segmentation.js';
import { defaultPerturbation, type MetricName, type PerturbationConfig, type Shard } from '../options.js';
import { hashString } from '../random.js';
import { type Curve, type EvalConfig, RECORDS_VERSION, type RunHeader, type SampleRecord } from '../records.js';
import { type EvalSample, loadMask, openDataset, unionMask, type VocOptions, validateSamples } from './datasets.js';
import { openEvalModel, wordTokens } from './model.js';
import { configKeyOf, parseRecordLine, readRecordsText } from './record-lines.js';

export interface EvalProgress {
  /** Samples of this shard done (computed or already on file) and in total. */
  done: number;
  total: number;
  /** Samples found complete on file at the start. */
  resumed: number;
  elapsedSeconds: number;
  /** Estimated seconds left, from the samples computed in this run. */
  etaSeconds?: number;
  sample?: string;
}

export interface EvalOptions {
  model: string;
  /** The model's family adapter; the registered one for its `model_type` when left out. */
  adapter?: ModelAdapter;
  variant?: Variant;
  dataset: string;
  voc?: VocOptions;
  methods: readonly string[];
  metrics: readonly MetricName[];
  out: string;
  shard?: Shard;
  limit?: number;
  dexar?: DexarOptionsInput;
  perturbation?: Partial<PerturbationConfig>;
  /** Perturbed inputs per vision-encoder and decoder run (default 32). */
  batchSize?: number;
  threshold?: 'mean' | number;
  /** Seeds the random method, tie-breaking and noise (default 0). */
  seed?: number;
  backend?: NodeBackendOptions;
  onProgress?: (progress: EvalProgress) => void;
  onLog?: (line: string) => void;
}

export interface EvalOutcome {
  file: string;
  /** Samples of the shard, samples computed now, samples already complete on file. */
  shardSamples: number;
  computed: number;
  resumed: number;
  records: number;
}

export function recordsFile(out: string, shard: Shard): string {
  return join(out, `records-${shard.index}-of-${shard.count}.jsonl`);
}

/** Samples of shard i of N: every N-th sample of the dataset (after `limit`), from the i-th. */
export function shardSamples<T>(samples: readonly T[], shard: Shard): { sample: T; index: number }[] {
  return samples.flatMap((sample, index) => (index % shard.count === shard.index ? [{ sample, index }] : []));
}

export async function runEvaluation(options: EvalOptions): Promise<EvalOutcome> {
  const shard = options.shard ?? { index: 0, count: 1 };
  const dexar = parseOptions(options.dexar ?? {});
  const methods = options.methods.map((m) => methodFor(m));
  const metrics = new Set(options.metrics);
  const perturbation: PerturbationConfig = { ...defaultPerturbation, ...options.perturbation };
  const batchSize = options.batchSize ?? 32;
  const seed = options.seed ?? 0;
  const threshold = options.threshold ?? 'mean';
  const log = options.onLog ?? (() => {});
  if (!(Number.isInteger(batchSize) && batchSize > 0)) {
    throw new DexarError('invalid-options', `--batch-size must be a positive integer, got ${batchSize}`);
  }
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0)) {
    throw new DexarError('invalid-options', `--limit must be a positive integer, got ${options.limit}`);
  }

  const dataset = await openDataset(options.dataset, options.voc);
  const all = options.limit !== undefined ? dataset.samples.slice(0, options.limit) : dataset.samples;
  const mine = shardSamples(all, shard);
  // every image and mask of the shard reads and has the right size before the model loads
  await validateSamples(mine.map((m) => m.sample));

  const folder = await openModelFolder(options.model, options.variant);
  const evalModel = await openEvalModel({
    folder,
    backend: nodeBackend(options.backend ?? {}),
    ...(options.adapter ? { adapter: options.adapter } : {}),
    dexar,
    positionLens: methods.some((m) => m.needsPositionLens),
    onProgress: (e) => e.detail && log(e.detail),
  });
  const model = evalModel.model;
  let releaseLock: (() => Promise<void>) | undefined;
  try {
    if (metrics.has('perturbation') && !model.scoreTargets) {
      throw new DexarError(
        'invalid-options',
        `the ${model.family} adapter cannot score targets (no scoreTargets), which the perturbation metric needs: leave it out of --metrics`,
      );
    }
    const config: EvalConfig = {
      model: options.model,
      modelKey: evalModel.identity,
      family: model.family,
      dataset: options.dataset,
      samples: all.length,
      limit: options.limit ?? null,
      metrics: options.metrics.filter((m) => metrics.has(m)),
      dexar: { layerIndex: dexar.layerIndex, topK: dexar.topK, compat: dexar.compat },
      perturbation,
      segmentation: { threshold },
      seed,
    };
    const configKey = configKeyOf(config);
    const file = recordsFile(options.out, shard);
    await mkdir(options.out, { recursive: true });
    releaseLock = await lockRecordsFile(file);
    const done = await readDone(file, configKey);
    const missing = (s: EvalSample) => methods.filter((m) => !done.has(`${s.id}\u0000${m.name}`));
    const todo = mine.filter(({ sample }) => missing(sample).length > 0);
    const resumed = mine.length - todo.length;
    const header: RunHeader = {
      kind: 'run',
      version: RECORDS_VERSION,
      configKey,
      config,
      shard,
      methods: methods.map((m) => m.name),
      started: new Date().toISOString(),
      host: hostname(),
    };
    await appendFile(file, `${JSON.stringify(header)}\n`);
    if (resumed) log(`resuming: ${resumed} of ${mine.length} samples already on file`);

    const start = performance.now();
    let computed = 0;
    let records = 0;
    const report = (sample?: string) => {
      const elapsed = (performance.now() - start) / 1000;
      const left = todo.length - computed;
      options.onProgress?.({
        done: resumed + computed,
        total: mine.length,
        resumed,
        elapsedSeconds: elapsed,
        ...(computed > 0 ? { etaSeconds: (elapsed / computed) * left } : {}),
        ...(sample ? { sample } : {}),
      });
    };
    report();
    let cachedImage: { path: string; image: RgbaImage } | undefined;
    for (const { sample, index } of todo) {
      if (cachedImage?.path !== sample.image) {
        const bytes = await readRegularFile(sample.image, {
          maxBytes: FILE_LIMITS.image,
          what: 'image',
          code: 'invalid-dataset',
        });
        cachedImage = { path: sample.image, image: await decodeImage(bytes) };
      }
      const lines = await evaluateSample({
        sample,
        index,
        image: cachedImage.image,
        methods: missing(sample),
        metrics,
        perturbation,
        batchSize,
        threshold,
        seed,
        model,
        explain: evalModel.explain,
        layers: evalModel.layers,
        dexar,
      });
      await appendFile(file, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      records += lines.length;
      computed++;
      report(sample.id);
    }
    return { file, shardSamples: mine.length, computed, resumed, records };
  } finally {
    await releaseLock?.();
    await evalModel.release();
  }
}

/**
 * Takes `<records file>.lock` for this process, so two runs never append to one records file
 * (they would both compute, and duplicate, every sample). A lock whose process on this host is
 * gone (killed mid-run) is taken over; a live one is refused with one line.
 */
export async function lockRecordsFile(file: string): Promise<() => Promise<void>> {
  const lock = `${file}.lock`;
  const owner = `${process.pid} ${hostname()}`;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lock, owner, { flag: 'wx' });
      return () => rm(lock, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
    }
    const [pid, host] = (await readFile(lock, 'utf8').catch(() => '')).split(' ');
    if (host === hostname() && !isAlive(Number(pid))) {
      await rm(lock, { force: true });
      continue;
    }
    throw new DexarError(
      'invalid-options',
      `${file} is being written by another dexar eval (pid ${Number(pid) || 'unknown'} on ${host?.trim() || 'unknown host'}): wait for it to finish, or use another --out (remove ${lock} if no run is left)`,
    );
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** (sample, method) pairs on file; cuts a torn last line; refuses a file of another configuration. */
async function readDone(file: string, configKey: string): Promise<Set<string>> {
  const done = new Set<string>();
  if (!existsSync(file)) return done;
  const text = await readRecordsText(file);
  const end = text.lastIndexOf('\n') + 1;
  if (end < text.length) await truncate(file, Buffer.byteLength(text.slice(0, end)));
  const lines = text.slice(0, end).split('\n').filter(Boolean);
  lines.forEach((line, i) => {
    const record = parseRecordLine(line, `${file}:${i + 1}`);
    if (record.kind === 'run' && record.configKey !== configKey) {
      throw new DexarError(
        'invalid-options',
        `${file} holds records of another configuration (model, dataset, metrics or options differ): use another --out, or the same options as before`,
      );
    }
    if (record.kind === 'sample') done.add(`${record.sample}\u0000${record.method}`);
  });
  return done;
}

interface SampleJob {
  sample: EvalSample;
  index: number;
  image: RgbaImage;
  methods: ReturnType<typeof methodFor>[];
  metrics: ReadonlySet<MetricName>;
  perturbation: PerturbationConfig;
  batchSize: number;
  threshold: 'mean' | number;
  seed: number;
  model: FamilyModel;
  explain: (input: PreparedInput, targetIds: readonly number[]) => ReturnType<FamilyModel['explain']>;
  layers: number[];
  dexar: ReturnType<typeof parseOptions>;
}

const seconds = (since: number) => (performance.now() - since) / 1000;

async function evaluateSample(job: SampleJob): Promise<SampleRecord[]> {
  const { sample, model } = job;
  const input = await model.prepare(job.image, sample.prompt);
  const targetIds = model.tokenizeTarget(sample.target);
  if (targetIds.length === 0) {
    throw new DexarError(
      'invalid-dataset',
      `sample ${sample.id}: the target ${JSON.stringify(sample.target)} has no tokens`,
    );
  }
  const t0 = performance.now();
  const rows = await job.explain(input, targetIds);
  const explainSeconds = seconds(t0);
  const tokens = model.tokenStrings(targetIds);
  const methodInput: MethodInput = {
    gradientRows: rows.gradientRows as never,
    attentionRows: rows.attentionRows as never,
    layers: job.layers,
    numLayers: model.numLayers,
    layout: rows.layout,
    options: job.dexar,
    ...(rows.positionLens ? { positionLens: rows.positionLens as never } : {}),
    sampleKey: `${job.seed}:${sample.id}`,
  };
  const grid = rows.layout.grid;
  const N = grid.height * grid.width;

  const maps = new Map<string, { maps: MethodMaps; seconds: number }>();
  for (const m of job.methods) {
    const t = performance.now();
    maps.set(m.name, { maps: m.compute(methodInput), seconds: seconds(t) });
  }

  const curves = new Map<
    string,
    { clean: number; removedAll?: number; positive: Curve; negative: Curve; seconds: number }
  >();
  if (job.metrics.has('perturbation')) {
    const t = performance.now();
    const scored = await perturb(
      job,
      input,
      targetIds,
      grid,
      [...maps].map(([name, m]) => [name, m.maps.sentence]),
    );
    const share = seconds(t) / Math.max(maps.size, 1);
    for (const [name, c] of scored) curves.set(name, { ...c, seconds: share });
  }

  const segmentation = new Map<string, { value: SampleRecord['segmentation']; seconds: number }>();
  const spans = sample.words.length ? wordTokens(model, targetIds, sample.words) : [];
  if (job.metrics.has('segmentation') && (sample.words.length || sample.sentenceMasks.length)) {
    const window = input.pixels?.window;
    const wordMasks = await Promise.all(sample.words.map((w) => loadMask(w.mask).then((m) => cropMask(m, window))));
    const sentenceMask = sample.sentenceMasks.length
      ? cropMask(unionMask(await Promise.all(sample.sentenceMasks.map(loadMask))), window)
      : undefined;
    for (const [name, { maps: m }] of maps) {
      const t = performance.now();
      const options = { threshold: job.threshold };
      const words = sample.words.map((w, i) => ({
        word: w.word,
        token: spans[i].first,
        ...segmentationScores(
          m.perToken.subarray(spans[i].first * N, (spans[i].first + 1) * N),
          grid,
          wordMasks[i],
          options,
        ),
      }));
      const sentence = sentenceMask ? segmentationScores(m.sentence, grid, sentenceMask, options) : null;
      segmentation.set(name, { value: { words, sentence }, seconds: seconds(t) });
    }
  }

  return job.methods.map((m) => {
    const { maps: mm, seconds: methodSeconds } = maps.get(m.name) as { maps: MethodMaps; seconds: number };
    const curve = curves.get(m.name);
    const seg = segmentation.get(m.name);
    const record: SampleRecord = {
      kind: 'sample',
      sample: sample.id,
      index: job.index,
      method: m.name,
      ...(sample.group ? { group: sample.group } : {}),
      target: sample.target,
      tokens,
      seconds: {
        explain: explainSeconds,
        method: methodSeconds,
        ...(curve ? { perturbation: curve.seconds } : {}),
        ...(seg ? { segmentation: seg.seconds } : {}),
      },
    };
    if (curve) {
      const { seconds: _, ...rest } = curve;
      record.perturbation = rest;
    }
    if (seg) record.segmentation = seg.value;
    if (job.metrics.has('faithfulness')) {
      const grounded = [...new Set(spans.map((s) => s.first))];
      const inWords = new Set(spans.flatMap((s) => s.tokens));
      record.faithfulness = mm.tokenWeights
        ? tokenRanking(mm.tokenWeights, grounded, fillerTokens(tokens, inWords))
        : null;
    }
    return record;
  });
}

/** The part of a mask the model sees (its crop window), or the mask itself when it sees all of it. */
export function cropMask(mask: Mask, window: PixelValues['window']): Mask {
  if (!window) return mask;
  const x0 = Math.max(0, Math.round(window.left));
  const y0 = Math.max(0, Math.round(window.top));
  const x1 = Math.min(mask.width, Math.round(window.left + window.width));
  const y1 = Math.min(mask.height, Math.round(window.top + window.height));
  if (x0 === 0 && y0 === 0 && x1 === mask.width && y1 === mask.height) return mask;
  const width = x1 - x0;
  const height = y1 - y0;
  const data = new Uint8Array(width * height);
  const valid = mask.valid ? new Uint8Array(width * height) : undefined;
  for (let y = 0; y < height; y++) {
    const from = (y0 + y) * mask.width + x0;
    data.set(mask.data.subarray(from, from + width), y * width);
    if (valid && mask.valid) valid.set(mask.valid.subarray(from, from + width), y * width);
  }
  return { width, height, data, ...(valid ? { valid } : {}) };
}

/**
 * Perturbation curves of several maps of one sample. Every perturbed input of every method (plus
 * the clean input, and the fully removed one for min-max) is scored in batches of `batchSize`.
 */
async function perturb(
  job: SampleJob,
  input: PreparedInput,
  targetIds: readonly number[],
  layoutGrid: Grid,
  sentenceMaps: [string, Float64Array][],
) {
  const N = layoutGrid.height * layoutGrid.width;
  const { perturbation: p, model } = job;
  const score = model.scoreTargets?.bind(model);
  if (!score) throw new DexarError('invalid-options', `the ${model.family} adapter cannot score targets`);
  const pixels = input.pixels;
  if (p.space === 'pixels' && !pixels) {
    throw new DexarError('invalid-options', `the ${model.family} adapter keeps no pixel values: use --space tokens`);
  }
  if (p.space === 'pixels' && p.fill === 'black' && !pixels?.black) {
    throw new DexarError(
      'invalid-options',
      `the ${model.family} adapter does not report the value of a black pixel: use another --fill`,
    );
  }
  const tieSeed = hashString(`${job.seed}:ties:${job.sample.id}`);
  // rows: the cells removed per scored input
  const rows: Uint8Array[] = [new Uint8Array(N)];
  const removedAllRow = p.normalization === 'minmax' ? rows.push(new Uint8Array(N).fill(1)) - 1 : -1;
  const plan = sentenceMaps.map(([name, map]) => {
    const at = { positive: [] as number[], negative: [] as number[] };
    for (const direction of ['positive', 'negative'] as const) {
      const order = removalOrder(map, direction, tieSeed);
      for (const f of p.fractions) {
        const count = removedCount(f, N);
        if (count === 0) at[direction].push(0);
        else if (count === N && removedAllRow >= 0) at[direction].push(removedAllRow);
        else at[direction].push(rows.push(removedCells(order, count)) - 1);
      }
    }
    return { name, at };
  });
  const logProbs: Float64Array[] = new Array(rows.length);
  const replacement =
    p.space === 'pixels' && pixels
      ? fillImage(pixels, layoutGrid, p.fill, hashString(`${job.seed}:noise:${job.sample.id}`))
      : undefined;
  for (let from = 0; from < rows.length; from += job.batchSize) {
    const chunk = rows.slice(from, from + job.batchSize);
    const B = chunk.length;
    let out: Float64Array;
    if (p.space === 'pixels' && pixels && replacement) {
      const size = pixels.data.length;
      const data = new Float32Array(B * size);
      for (const [b, removed] of chunk.entries()) {
        perturbPixels(pixels, layoutGrid, removed, replacement, data.subarray(b * size, (b + 1) * size));
      }
      out = await score(input, targetIds, { size: B, pixels: { data, dims: [B, ...pixels.dims.slice(1)] } });
    } else {
      const mask = new Uint8Array(B * N);
      chunk.forEach((removed, b) => {
        for (let j = 0; j < N; j++) mask[b * N + j] = removed[j] ? 0 : 1;
      });
      out = await score(input, targetIds, { size: B, imageTokenMask: mask });
    }
    const T = targetIds.length;
    for (let b = 0; b < B; b++) logProbs[from + b] = out.subarray(b * T, (b + 1) * T);
  }
  const ppl = logProbs.map((lp) => perplexity(lp));
  const clean = ppl[0];
  const removedAll = removedAllRow >= 0 ? ppl[removedAllRow] : undefined;
  const curve = (at: number[]): Curve => {
    const values = at.map((i) => ppl[i]);
    const nppl = values.map((v) => normalizedPerplexity(v, clean, p.normalization, removedAll));
    return { fractions: [...p.fractions], ppl: values, nppl, auc: trapezoidAuc(p.fractions, nppl) };
  };
  return new Map(
    plan.map(({ name, at }) => [
      name,
      {
        clean,
        ...(removedAll !== undefined ? { removedAll } : {}),
        positive: curve(at.positive),
        negative: curve(at.negative),
      },
    ]),
  );
}
