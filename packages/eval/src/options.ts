/** Parsing and validation of evaluation options: one-line `DexarError`s with a code for bad input. */
import { DexarError } from '@dexar/core';
import { methodFor } from './methods.js';
import { defaultFractions, type Fill, type Normalization, type Space } from './metrics/perturbation.js';

export const metricNames = ['perturbation', 'segmentation', 'faithfulness'] as const;
export type MetricName = (typeof metricNames)[number];

/** Shard `index` of `count` (0-based, as a Kubernetes indexed Job's completion index). */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

const invalid = (message: string) => new DexarError('invalid-options', message);

/** `"i/N"` with 0 <= i < N, e.g. `"0/4"` .. `"3/4"`. */
export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw invalid(`--shard takes i/N (shard i of N, 0-based, e.g. 0/4), got ${JSON.stringify(spec)}`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (!Number.isSafeInteger(count)) {
    throw invalid(`--shard ${spec}: the shard count must be at most ${Number.MAX_SAFE_INTEGER} (2^53 - 1)`);
  }
  if (count < 1 || index >= count) {
    throw invalid(
      `--shard ${spec}: shard index ${index} must be below the shard count ${count} (0-based: 0/${Math.max(count, 1)} .. ${Math.max(count, 1) - 1}/${Math.max(count, 1)})`,
    );
  }
  return { index, count };
}

function list(spec: string): string[] {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Comma-separated method names, each registered; duplicates dropped, order kept. */
export function parseMethods(spec: string): string[] {
  const names = [...new Set(list(spec))];
  if (names.length === 0) throw invalid('--methods is empty: name at least one method');
  for (const name of names) methodFor(name);
  return names;
}

export function parseMetrics(spec: string): MetricName[] {
  const names = [...new Set(list(spec))];
  if (names.length === 0) throw invalid('--metrics is empty: name at least one metric');
  for (const name of names) {
    if (!(metricNames as readonly string[]).includes(name)) {
      throw invalid(`unknown metric ${JSON.stringify(name)}: use one of ${metricNames.join(', ')}`);
    }
  }
  return names as MetricName[];
}

/** Comma-separated fractions in [0, 1], sorted ascending, duplicates dropped. */
export function parseFractions(spec: string): number[] {
  const values = list(spec).map((s) => {
    const v = Number(s);
    if (!/^\d*\.?\d+$/.test(s) || !(v >= 0 && v <= 1)) {
      throw invalid(`--fractions takes numbers in [0, 1] separated by commas, got ${JSON.stringify(s)}`);
    }
    return v;
  });
  if (values.length < 2) throw invalid('--fractions needs at least two fractions for an area under the curve');
  return [...new Set(values)].sort((a, b) => a - b);
}

export function parseThreshold(spec: string): 'mean' | number {
  if (spec === 'mean') return 'mean';
  const v = Number(spec);
  if (!(spec.trim() !== '' && v >= 0 && v <= 1)) {
    throw invalid(`--threshold takes "mean" or a number in [0, 1], got ${JSON.stringify(spec)}`);
  }
  return v;
}

export interface PerturbationConfig {
  fractions: number[];
  fill: Fill;
  space: Space;
  normalization: Normalization;
}

export const defaultPerturbation: PerturbationConfig = {
  fractions: [...defaultFractions],
  fill: 'mean',
  space: 'pixels',
  normalization: 'ratio',
};
