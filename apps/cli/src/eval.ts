/**
 * `dexar eval`: explanation methods x metrics over a dataset shard, appended to JSONL records;
 * `dexar eval report DIR...`: merges shards into a Markdown table and SVG curves.
 */
import { parseArgs } from 'node:util';
import {
  type CiMethod,
  methodNames,
  metricNames,
  oneOf,
  parseFractions,
  parseMethods,
  parseMetrics,
  parseShard,
  parseThreshold,
} from '@dexar/eval';
import { type EvalProgress, runEvaluation, writeReport } from '@dexar/eval/node';
import { integer, joinNegativeValues, reportFailure, usageError } from './args.js';
import { builtin } from './builtin.js';
import { adapters } from './library.js';

export const EVAL_USAGE = `usage: dexar eval [options]              evaluate explanation methods on a dataset
       dexar eval report DIR... [--out DIR] [--ci t|bootstrap]
                                       merge run folders (shards) into report.md and curves.svg

options of dexar eval:
  --model DIR            model folder; default: the built-in shapes model
  --variant NAME         graph variant: fp32 (default), fp16, q4, q8, quantized
  --dataset SPEC         shapes (the built-in held-out set, default), a JSONL manifest (a .jsonl
                         file, or a folder with samples.jsonl or manifest.jsonl: one
                         {image, prompt, target, mask?, word?} per line), or a PASCAL VOC folder
  --split NAME           VOC: ImageSets/Segmentation/NAME.txt (default val)
  --prompt-template T    VOC: prompt with {class} (default "USER: <image>\\nWhat is in the image? ASSISTANT:")
  --target-template T    VOC: target with {class} (default "a {class}")
  --methods LIST         comma-separated, default all: ${methodNames().join(',')}
  --metrics LIST         comma-separated, default all: ${metricNames.join(',')}
  --out DIR              run folder (default dexar-eval); writes records-<i>-of-<N>.jsonl, resumes
  --report DIR           after the run, write report.md and curves.svg of the run folder into DIR
  --shard i/N            shard i of N, 0-based (default 0/1): every N-th sample from the i-th
  --limit K              only the first K samples of the dataset (before sharding)
  --fractions LIST       removed fractions (default 0.1,0.2,...,0.9; 0 = clean)
  --fill F               pixel fill of removed patches: mean (default), black, blur, noise
  --space S              pixels (perturb the encoder's patches, default) or tokens (hide image tokens)
  --normalize N          ratio (PPL(f)/PPL(clean), default) or minmax (between clean and all removed)
  --batch-size B         perturbed inputs per run (default 32); a run holds B x sequence x vocabulary
                         float logits (LLaVA-7B: ~80 MB per input), so lower it for large models
  --threshold T          segmentation threshold on the normalised map: mean (default) or a number in [0, 1]
  --layer-index I        first layer used, negative from the end (default -10)
  --top-k K              DEX-AR head score top-k (default 1)
  --compat MODE          official (default) or paper
  --seed N               seeds the random method, tie-breaking and noise (default 0)
  --device D             cpu (default) or cuda
  --threads N            ONNX Runtime intra-op threads
  --quiet                no progress on stderr
  --debug                show stack traces
  -h, --help             this help`;

const evalOptions = {
  model: { type: 'string' },
  variant: { type: 'string' },
  dataset: { type: 'string' },
  split: { type: 'string' },
  'prompt-template': { type: 'string' },
  'target-template': { type: 'string' },
  methods: { type: 'string' },
  metrics: { type: 'string' },
  out: { type: 'string' },
  report: { type: 'string' },
  shard: { type: 'string' },
  limit: { type: 'string' },
  fractions: { type: 'string' },
  fill: { type: 'string' },
  space: { type: 'string' },
  normalize: { type: 'string' },
  'batch-size': { type: 'string' },
  threshold: { type: 'string' },
  'layer-index': { type: 'string' },
  'top-k': { type: 'string' },
  compat: { type: 'string' },
  seed: { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  ci: { type: 'string' },
  quiet: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const HELP = 'dexar eval --help';
const usage = (message: string) => usageError(message, HELP);

const duration = (s: number) => {
  if (!Number.isFinite(s)) return '?';
  const r = Math.round(s);
  return r >= 3600
    ? `${Math.floor(r / 3600)}h${String(Math.floor((r % 3600) / 60)).padStart(2, '0')}m`
    : r >= 60
      ? `${Math.floor(r / 60)}m${String(r % 60).padStart(2, '0')}s`
      : `${r}s`;
};

/** Progress with ETA: a redrawn line on a terminal; otherwise at most one line per 10% or 15 s. */
function progressLine(enabled: boolean): (p: EvalProgress) => void {
  if (!enabled) return () => {};
  const tty = process.stderr.isTTY;
  let lastTime = 0;
  let lastTenth = -1;
  return (p) => {
    const pct = p.total ? (100 * p.done) / p.total : 100;
    const computed = p.done - p.resumed;
    const rate = computed > 0 ? `, ${(computed / p.elapsedSeconds).toFixed(2)} samples/s` : '';
    const eta = p.etaSeconds !== undefined ? `, ETA ${duration(p.etaSeconds)}` : '';
    const line = `dexar eval: ${p.done}/${p.total} samples (${pct.toFixed(0)}%)${rate}${eta}${p.sample ? ` [${p.sample}]` : ''}`;
    if (tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      if (p.done === p.total) process.stderr.write('\n');
      return;
    }
    const tenth = Math.floor(pct / 10);
    const now = Date.now();
    if (p.done === p.total || tenth > lastTenth || now - lastTime > 15_000) {
      process.stderr.write(`${line}\n`);
      lastTenth = tenth;
      lastTime = now;
    }
  };
}

/** `dexar eval ...` (argv after "eval"); returns the exit code. */
export async function evalMain(argv: string[]): Promise<number> {
  let debug = argv.includes('--debug');
  try {
    const { values, positionals } = parseArgs({
      args: joinNegativeValues(argv, evalOptions),
      options: evalOptions,
      allowPositionals: true,
      strict: true,
    });
    debug = values.debug ?? false;
    if (values.help) {
      process.stdout.write(`${EVAL_USAGE}\n`);
      return 0;
    }
    void adapters; // importing the library registers the model families
    if (positionals[0] === 'report') {
      const dirs = positionals.slice(1);
      if (dirs.length === 0) throw usage('dexar eval report needs the run folders to merge');
      const ci = values.ci === undefined ? undefined : oneOf<CiMethod>('ci', values.ci, ['t', 'bootstrap']);
      const { files } = await writeReport(dirs, { ...(values.out ? { out: values.out } : {}), ...(ci ? { ci } : {}) });
      process.stdout.write(`wrote ${files.join(', ')}\n`);
      return 0;
    }
    if (positionals.length > 0)
      throw usage(
        `unknown eval command ${JSON.stringify(positionals.join(' '))}: use dexar eval [options] or dexar eval report DIR...`,
      );
    if (values.ci !== undefined) throw usage('--ci belongs to dexar eval report');
    if (values.report === '') throw usage('--report takes the folder to write the report into');
    const methods = parseMethods(values.methods ?? methodNames().join(','));
    const metrics = parseMetrics(values.metrics ?? metricNames.join(','));
    const shard = values.shard !== undefined ? parseShard(values.shard) : undefined;
    const limit = integer('limit', values.limit, HELP);
    const layerIndex = integer('layer-index', values['layer-index'], HELP);
    const topK = integer('top-k', values['top-k'], HELP);
    const seed = integer('seed', values.seed, HELP);
    const batchSize = integer('batch-size', values['batch-size'], HELP);
    const threads = integer('threads', values.threads, HELP);
    const compat =
      values.compat === undefined ? undefined : oneOf('compat', values.compat, ['official', 'paper'] as const);
    const device = values.device === undefined ? undefined : oneOf('device', values.device, ['cpu', 'cuda'] as const);
    const variant =
      values.variant === undefined
        ? undefined
        : oneOf('variant', values.variant, [
            'fp32',
            'fp16',
            'q4',
            'q8',
            'quantized',
            'int8',
            'uint8',
            'bnb4',
            'q4f16',
          ] as const);
    const perturbation = {
      ...(values.fractions !== undefined ? { fractions: parseFractions(values.fractions) } : {}),
      ...(values.fill !== undefined
        ? { fill: oneOf('fill', values.fill, ['mean', 'black', 'blur', 'noise'] as const) }
        : {}),
      ...(values.space !== undefined ? { space: oneOf('space', values.space, ['pixels', 'tokens'] as const) } : {}),
      ...(values.normalize !== undefined
        ? { normalization: oneOf('normalize', values.normalize, ['ratio', 'minmax'] as const) }
        : {}),
    };
    const quiet = values.quiet ?? false;
    const out = values.out ?? 'dexar-eval';
    const outcome = await runEvaluation({
      model: values.model ?? builtin.model,
      ...(variant ? { variant } : {}),
      dataset: values.dataset ?? 'shapes',
      voc: {
        ...(values.split ? { split: values.split } : {}),
        ...(values['prompt-template'] ? { promptTemplate: values['prompt-template'].replaceAll('\\n', '\n') } : {}),
        ...(values['target-template'] ? { targetTemplate: values['target-template'] } : {}),
      },
      methods,
      metrics,
      out,
      ...(shard ? { shard } : {}),
      ...(limit !== undefined ? { limit } : {}),
      dexar: {
        ...(layerIndex !== undefined ? { layerIndex } : {}),
        ...(topK !== undefined ? { topK } : {}),
        ...(compat ? { compat } : {}),
      },
      perturbation,
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(values.threshold !== undefined ? { threshold: parseThreshold(values.threshold) } : {}),
      ...(seed !== undefined ? { seed } : {}),
      backend: { ...(device ? { executionProvider: device } : {}), ...(threads ? { threads } : {}) },
      onProgress: progressLine(!quiet),
      onLog: (line) => {
        if (!quiet) process.stderr.write(`dexar eval: ${line}\n`);
      },
    });
    process.stdout.write(
      `wrote ${outcome.records} records to ${outcome.file} (${outcome.computed} samples computed, ${outcome.resumed} already there, ${outcome.shardSamples} in this shard)${values.report ? '' : `; dexar eval report ${out} makes the table`}\n`,
    );
    if (values.report) {
      const { files } = await writeReport([out], { out: values.report });
      process.stdout.write(`wrote ${files.join(', ')}\n`);
    }
    return 0;
  } catch (error) {
    return reportFailure(error, debug, HELP);
  }
}
