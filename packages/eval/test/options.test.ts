import { DexarError } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { parseFractions, parseMethods, parseMetrics, parseShard, parseThreshold } from '../src/options.js';

const fails = (fn: () => unknown, message: RegExp) => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(DexarError);
    expect((error as DexarError).code).toBe('invalid-options');
    expect((error as DexarError).isUsageError).toBe(true);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
    return;
  }
  throw new Error('expected a DexarError');
};

describe('option parsing', () => {
  it('shards are 0-based i/N', () => {
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard(' 3/4 ')).toEqual({ index: 3, count: 4 });
    fails(() => parseShard('3/2'), /shard index 3 must be below the shard count 2/);
    fails(() => parseShard('2/2'), /must be below/);
    fails(() => parseShard('0/0'), /must be below/);
    fails(() => parseShard('a/b'), /--shard takes i\/N/);
    fails(() => parseShard('1'), /--shard takes i\/N/);
  });

  it('methods and metrics are checked against what exists', () => {
    expect(parseMethods('dexar, attention,dexar')).toEqual(['dexar', 'attention']);
    fails(() => parseMethods('dexar,gradcam'), /unknown method "gradcam": use one of dexar, dexar-unfiltered/);
    fails(() => parseMethods(''), /empty/);
    expect(parseMetrics('segmentation,perturbation')).toEqual(['segmentation', 'perturbation']);
    fails(
      () => parseMetrics('perturbation,accuracy'),
      /unknown metric "accuracy": use one of perturbation, segmentation, faithfulness/,
    );
  });

  it('fractions and thresholds', () => {
    expect(parseFractions('0.5,0.1,0.5,1')).toEqual([0.1, 0.5, 1]);
    fails(() => parseFractions('0.1,1.5'), /numbers in \[0, 1\]/);
    fails(() => parseFractions('0.5'), /at least two/);
    expect(parseThreshold('mean')).toBe('mean');
    expect(parseThreshold('0.25')).toBe(0.25);
    fails(() => parseThreshold('high'), /--threshold/);
  });
});
