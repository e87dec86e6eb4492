import { mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DexarError } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { configKeyOf } from '../src/node/record-lines.js';
import { readRecords } from '../src/node/report-files.js';
import { lockRecordsFile } from '../src/node/runner.js';
import { parseShard } from '../src/options.js';
import type { EvalConfig, RunHeader } from '../src/records.js';

const config: EvalConfig = {
  model: 'm',
  modelKey: 'k',
  family: 'llava',
  dataset: 'd',
  samples: 1,
  limit: null,
  metrics: ['faithfulness'],
  dexar: { layerIndex: -10, topK: 1, compat: 'official' },
  perturbation: { fractions: [0.5], fill: 'mean', space: 'pixels', normalization: 'ratio' },
  segmentation: { threshold: 'mean' },
  seed: 0,
};
const header: RunHeader = {
  kind: 'run',
  version: 1,
  configKey: configKeyOf(config),
  config,
  shard: { index: 0, count: 1 },
  methods: ['dexar'],
  started: '2026-01-01T00:00:00Z',
};
const sample = {
  kind: 'sample',
  sample: 's',
  index: 0,
  method: 'dexar',
  target: 't',
  tokens: ['t'],
  faithfulness: { groundedMean: 1, fillerMean: 0, ok: 1, strictOk: 1 },
  seconds: { explain: 0.1, method: 0.01 },
};

async function runFolder(...lines: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dexar-records-'));
  await writeFile(join(dir, 'records-0-of-1.jsonl'), lines.map((l) => `${l}\n`).join(''));
  return dir;
}

describe('records files', () => {
  it('reads a valid file', async () => {
    const set = await readRecords([await runFolder(JSON.stringify(header), JSON.stringify(sample))]);
    expect(set.records).toHaveLength(1);
  });

  it.each([
    ['null', 'null', /:2 is not a dexar eval record/],
    ['a record without fields', '{"kind":"sample"}', /:2 is not a dexar eval record \(sample: /],
    ['deep nesting', `${'['.repeat(100_000)}${']'.repeat(100_000)}`, /:2 is not a dexar eval record/],
    [
      'a number where a name goes',
      JSON.stringify({ ...sample, method: 5 }),
      /:2 is not a dexar eval record \(method: /,
    ],
    [
      'a forged header',
      JSON.stringify({ ...header, config: { ...config, seed: 1 } }),
      /:2 holds a run header whose configKey does not match its configuration/,
    ],
  ])('refuses %s with a typed one-line error', async (_, line, message) => {
    const failure = readRecords([await runFolder(JSON.stringify(header), line)]);
    await expect(failure).rejects.toBeInstanceOf(DexarError);
    await expect(failure).rejects.toThrowError(message);
  });

  it('refuses a records file linked to /dev/zero', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-records-'));
    await symlink('/dev/zero', join(dir, 'records-0-of-1.jsonl'));
    await expect(readRecords([dir])).rejects.toThrowError(/records file .* is a device: give a regular file/);
  });

  it('refuses a shard count beyond 2^53', () => {
    expect(() => parseShard('0/99999999999999999999')).toThrowError(/the shard count must be at most 9007199254740991/);
  });
});

describe('the records-file lock', () => {
  it('refuses a second run on the same records file, and takes over the lock of a run that is gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-lock-'));
    const file = join(dir, 'records-0-of-1.jsonl');
    const release = await lockRecordsFile(file);
    await expect(lockRecordsFile(file)).rejects.toThrowError(
      new RegExp(`is being written by another dexar eval \\(pid ${process.pid} on `),
    );
    await release();
    await (await lockRecordsFile(file))();

    await writeFile(`${file}.lock`, `999999999 ${hostname()}`);
    await (await lockRecordsFile(file))();
  });
});
