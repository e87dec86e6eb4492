/**
 * Reading records files, which may be damaged or forged: every line is checked against the
 * record schemas before any field is used, and a run header must carry the key of its own
 * configuration. A line that fails names its file and line and the first problem, never its contents.
 */
import { createHash } from 'node:crypto';
import { DexarError } from '@dexar/core';
import { FILE_LIMITS, readRegularFile } from '@dexar/runtime-node';
import { z } from 'zod';
import { metricNames } from '../options.js';
import type { EvalConfig, RunHeader, SampleRecord } from '../records.js';

/** Names and other short text of a record: long enough for any sample id or method, short enough for a table. */
const name = z.string().max(1024);
/** A metric: JSON writes NaN (an undefined score) as null. */
const metric = z.number().nullable();
const index = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const CurveSchema = z.object({
  fractions: z.array(z.number()),
  ppl: z.array(metric),
  nppl: z.array(metric),
  auc: metric,
});
const SegmentationSchema = z.object({
  pointing: metric,
  pixelAccuracy: metric,
  iou: metric,
  miou: metric,
  ap: metric,
  softIou: metric,
  threshold: metric,
  constant: metric,
});

const SampleRecordSchema = z.object({
  kind: z.literal('sample'),
  sample: name,
  index,
  method: name,
  group: name.optional(),
  target: z.string(),
  tokens: z.array(z.string()),
  perturbation: z
    .object({ clean: metric, removedAll: metric.optional(), positive: CurveSchema, negative: CurveSchema })
    .optional(),
  segmentation: z
    .object({
      words: z.array(SegmentationSchema.extend({ word: z.string(), token: index })),
      sentence: SegmentationSchema.nullable(),
    })
    .optional(),
  faithfulness: z
    .object({ groundedMean: metric, fillerMean: metric, ok: metric, strictOk: metric })
    .nullable()
    .optional(),
  seconds: z.object({
    explain: z.number(),
    method: z.number(),
    perturbation: z.number().optional(),
    segmentation: z.number().optional(),
  }),
});

const EvalConfigSchema = z.object({
  model: z.string(),
  modelKey: z.string(),
  family: name,
  dataset: z.string(),
  samples: index,
  limit: index.nullable(),
  metrics: z.array(z.enum(metricNames)),
  dexar: z.object({
    layerIndex: z.number().int(),
    topK: z.number().int().min(1),
    compat: z.enum(['official', 'paper']),
  }),
  perturbation: z.object({
    fractions: z.array(z.number().min(0).max(1)),
    fill: z.enum(['mean', 'black', 'blur', 'noise']),
    space: z.enum(['pixels', 'tokens']),
    normalization: z.enum(['ratio', 'minmax']),
  }),
  segmentation: z.object({ threshold: z.union([z.literal('mean'), z.number().min(0).max(1)]) }),
  seed: z.number().int(),
});

const RunHeaderSchema = z.object({
  kind: z.literal('run'),
  version: z.number().int(),
  configKey: z.string(),
  config: EvalConfigSchema,
  shard: z.object({ index, count: index.min(1) }),
  methods: z.array(name),
  started: z.string(),
  host: z.string().optional(),
});

const RecordSchema = z.discriminatedUnion('kind', [RunHeaderSchema, SampleRecordSchema]);

/**
 * The key of what decides a run's numbers: not the model folder's path, the samples' count (a
 * longer --limit extends a run) or the methods (one added later is computed for every sample).
 */
export function configKeyOf(config: EvalConfig): string {
  return createHash('sha256')
    .update(JSON.stringify({ ...config, model: undefined, samples: undefined, limit: undefined }))
    .digest('hex')
    .slice(0, 16);
}

const damaged = (where: string, problem: string) =>
  new DexarError('invalid-dataset', `${where} ${problem}: the records file is damaged or forged; move it away`);

/** One line of a records file, checked; `where` is `file:line`. */
export function parseRecordLine(line: string, where: string): RunHeader | SampleRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw damaged(where, 'is not a JSON record');
  }
  const parsed = RecordSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw damaged(where, `is not a dexar eval record (${issue?.path.join('.') || 'the line'}: ${issue?.message})`);
  }
  const record = parsed.data as RunHeader | SampleRecord;
  if (record.kind === 'run' && record.configKey !== configKeyOf(record.config)) {
    throw damaged(where, 'holds a run header whose configKey does not match its configuration');
  }
  return record;
}

/** A records file's text: a regular file within `FILE_LIMITS.records` (a link to /dev/zero is refused). */
export async function readRecordsText(file: string): Promise<string> {
  const bytes = await readRegularFile(file, {
    maxBytes: FILE_LIMITS.records,
    what: 'records file',
    code: 'invalid-dataset',
  });
  return new TextDecoder().decode(bytes);
}
