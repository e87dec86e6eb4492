/**
 * `dexar eval`: explanation methods x metrics over a dataset shard, appended to JSONL records;
 * `dexar eval report DIR...`: merges shards into a Markdown table and SVG curves.
 */
import {
  type CiMethod,
  methodNames,
  metricNames,
  parseFractions,
  parseMethods,
  parseMetrics,
  parseShard,
  parseThreshold,
} from '@dexar/eval';
import { type EvalProgress, runEvaluation, writeReport } from '@dexar/eval/node';
import { loadAdapters } from './adapters.js';
import {
  integer,
  type OptionSpec,
  oneOf,
  optionHelp,
  runCommand,
  SHARED_OPTIONS,
  sharedValues,
  usageError,
} from './args.js';
import { builtin } from './builtin.js';

/** The options of `dexar eval` and `dexar eval report`; the shared ones follow them in the help. */
const OWN_OPTIONS = {
  dataset: {
    type: 'string',
    usage: '--dataset SPEC',
    help: 'shapes (the built-in held-out set, default), a JSONL manifest (a .jsonl\nfile, or a folder with samples.jsonl or manifest.jsonl: one\n{image, prompt, target, mask?, word?} per line), or a PASCAL VOC folder',
  },
  split: { type: 'string', usage: '--split NAME', help: 'VOC: ImageSets/Segmentation/NAME.txt (default val)' },
  'prompt-template': {
    type: 'string',
    usage: '--prompt-template T',
    help: 'VOC: prompt with {class} (default "USER: <image>\\nWhat is in the image? ASSISTANT:")',
  },
  'target-template': {
    type: 'string',
    usage: '--target-template T',
    help: 'VOC: target with {class} (default "a {class}")',
  },
  methods: {
    type: 'string',
    usage: '--methods LIST',
    help: `comma-separated, default all: ${methodNames().join(',')}`,
  },
  metrics: { type: 'string', usage: '--metrics LIST', help: `comma-separated, default all: ${metricNames.join(',')}` },
  out: {
    type: 'string',
    usage: '--out DIR',
    help: 'run folder (default dexar-eval); writes records-<i>-of-<N>.jsonl, resumes\n(dexar eval report: where report.md and curves.svg go)',
  },
  report: {
    type: 'string',
    usage: '--report DIR',
    help: 'after the run, write report.md and curves.svg of the run folder into DIR',
  },
  shard: {
    type: 'string',
    usage: '--shard i/N',
    help: 'shard i of N, 0-based (default 0/1): every N-th sample from the i-th',
  },
  limit: { type: 'string', usage: '--limit K', help: 'only the first K samples of the dataset (before sharding)' },
  fractions: {
    type: 'string',
    usage: '--fractions LIST',
    help: 'removed fractions (default 0.1,0.2,...,0.9; 0 = clean)',
  },
  fill: {
    type: 'string',
    usage: '--fill F',
    help: 'pixel fill of removed patches: mean (default), black, blur, noise',
  },
  space: {
    type: 'string',
    usage: '--space S',
    help: "pixels (perturb the encoder's patches, default) or tokens (hide image tokens)",
  },
  normalize: {
    type: 'string',
    usage: '--normalize N',
    help: 'ratio (PPL(f)/PPL(clean), default) or minmax (between clean and all removed)',
  },
  'batch-size': {
    type: 'string',
    usage: '--batch-size B',
    help: 'perturbed inputs per run (default 32); a run holds B x sequence x vocabulary\nfloat logits (LLaVA-7B: ~80 MB per input), so lower it for large models',
  },
  threshold: {
    type: 'string',
    usage: '--threshold T',
    help: 'segmentation threshold on the normalised map: mean (default) or a number in [0, 1]',
  },
  seed: { type: 'string', usage: '--seed N', help: 'seeds the random method, tie-breaking and noise (default 0)' },
  ci: { type: 'string', usage: '--ci t|bootstrap', help: 'dexar eval report: confidence intervals (default t)' },
} as const satisfies Record<string, OptionSpec>;

const OPTIONS = { ...OWN_OPTIONS, ...SHARED_OPTIONS };

export const EVAL_USAGE = `usage: dexar eval [options]              evaluate explanation methods on a dataset
       dexar eval report DIR... [--out DIR] [--ci t|bootstrap]
                                       merge run folders (shards) into report.md and curves.svg

options:
${optionHelp(OPTIONS)}`;

const HELP = 'dexar eval --help';

/** `{ [name]: value }` when the value is given, else nothing to spread. */
const optional = <K extends string, V>(name: K, value: V | undefined) =>
  (value === undefined ? {} : { [name]: value }) as Partial<Record<K, V>>;
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
  return runCommand(argv, OPTIONS, HELP, async ({ values, positionals }) => {
    if (values.help) {
      process.stdout.write(`${EVAL_USAGE}\n`);
      return 0;
    }
    if (positionals[0] === 'report') {
      const dirs = positionals.slice(1);
      if (dirs.length === 0) throw usage('dexar eval report needs the run folders to merge');
      const ci = oneOf<CiMethod>('ci', values.ci, ['t', 'bootstrap'], HELP);
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
    const seed = integer('seed', values.seed, HELP);
    const batchSize = integer('batch-size', values['batch-size'], HELP);
    const shared = sharedValues(values, HELP);
    const perturbation = {
      ...(values.fractions !== undefined ? { fractions: parseFractions(values.fractions) } : {}),
      ...optional('fill', oneOf('fill', values.fill, ['mean', 'black', 'blur', 'noise'] as const, HELP)),
      ...optional('space', oneOf('space', values.space, ['pixels', 'tokens'] as const, HELP)),
      ...optional('normalization', oneOf('normalize', values.normalize, ['ratio', 'minmax'] as const, HELP)),
    };
    const quiet = values.quiet ?? false;
    const out = values.out ?? 'dexar-eval';
    await loadAdapters(shared.adapters, HELP);
    const outcome = await runEvaluation({
      model: shared.model ?? builtin.model,
      ...(shared.variant ? { variant: shared.variant } : {}),
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
      dexar: shared.dexar,
      perturbation,
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(values.threshold !== undefined ? { threshold: parseThreshold(values.threshold) } : {}),
      ...(seed !== undefined ? { seed } : {}),
      backend: shared.backend,
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
  });
}
