import { mkdtemp, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import { DexarError, parseOptions } from '@dexar/core';
import { Explainer } from '@dexar/explain';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  cropMask,
  openEvalModel,
  readRecords,
  runEvaluation,
  shardSamples,
  wordTokens,
  writeReport,
} from '../src/node/index.js';
import type { RunHeader, SampleRecord } from '../src/records.js';
import { writeShapesDataset } from './helpers/dataset.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const llavaTiny = join(root, 'fixtures/models/llava-tiny');
const methods = ['dexar', 'dexar-unfiltered', 'attention', 'grad-x-attention', 'logit-lens-image', 'random'];
const fast = { fractions: [0.25, 0.5, 0.75] };

let dir: string;
let data: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dexar-eval-run-'));
  data = await writeShapesDataset(join(dir, 'data'), 5);
});

async function lines(file: string): Promise<(RunHeader | SampleRecord)[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

const samplesOf = (rs: (RunHeader | SampleRecord)[]) => rs.filter((r): r is SampleRecord => r.kind === 'sample');

describe('the explain graph with the position lens, through the adapter', () => {
  it('returns the logit lens at every position, equal to the query rows logit lens there', async () => {
    const folder = await openModelFolder(llavaTiny);
    const backend = nodeBackend({ threads: 1 });
    const m = await openEvalModel({ folder, backend, dexar: parseOptions({ compat: 'paper' }), positionLens: true });
    try {
      const image = await decodeImage(new Uint8Array(await readFile(join(data, 'images', '0001.png'))));
      const input = await m.model.prepare(image, 'USER: <image>\nDescribe the image. ASSISTANT:');
      const ids = m.model.tokenizeTarget('a blue square and a green square');
      const rows = await m.explain(input, ids);
      const lens = rows.positionLens as NonNullable<typeof rows.positionLens>;
      const P = input.promptIds.length;
      const T = ids.length;
      const S = P + T - 1;
      expect(lens.dims).toEqual([T, 4, S]);
      const values = lens.data as Float32Array;
      const ll = rows.logitLens.data as Float32Array;
      for (let n = 0; n < T; n++) {
        for (let l = 0; l < 4; l++) expect(values[(n * 4 + l) * S + P - 1 + n]).toBeCloseTo(ll[n * 4 + l], 4);
      }
      // the default graph is untouched: same gradient rows without the lens
      const plain = await openEvalModel({
        folder,
        backend,
        dexar: parseOptions({ compat: 'paper' }),
        positionLens: false,
      });
      expect(plain.key).not.toBe(m.key);
      expect(plain.identity).toBe(m.identity);
      // without the lens it is the Explainer's explain graph, same cache file
      const explainer = await Explainer.open({ backend, folder });
      expect(await explainer.prepare({ compat: 'paper' })).toBe(`onnx/decoder_model_merged.dexar-${plain.key}.onnx`);
      await explainer.release();
      const again = await plain.explain(input, ids);
      expect(again.positionLens).toBeUndefined();
      const g0 = rows.gradientRows.data as Float32Array;
      const g1 = again.gradientRows.data as Float32Array;
      const scale = g0.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const worst = g1.reduce((m, v, i) => Math.max(m, Math.abs(v - g0[i])), 0);
      expect(worst / scale).toBeLessThan(1e-5); // the same graph but for the added output (ORT may fuse differently)
      await plain.release();
      // word -> token spans by decoding prefixes
      expect(
        wordTokens(m.model, ids, [
          { word: 'green', char: 20 },
          { word: 'a', char: 0 },
        ]),
      ).toEqual([
        { first: 5, tokens: [5] },
        { first: 0, tokens: [0] },
      ]);
    } finally {
      await m.release();
    }
  });
});

describe('dexar eval runs', () => {
  it('writes one record per sample and method with every metric', async () => {
    const out = join(dir, 'full');
    const progress: number[] = [];
    const outcome = await runEvaluation({
      model: llavaTiny,
      dataset: data,
      methods,
      metrics: ['perturbation', 'segmentation', 'faithfulness'],
      out,
      limit: 2,
      perturbation: fast,
      onProgress: (p) => progress.push(p.done),
    });
    expect(outcome).toMatchObject({ shardSamples: 2, computed: 2, resumed: 0, records: 12 });
    expect(progress).toEqual([0, 1, 2]);
    const rs = await lines(outcome.file);
    expect(rs[0].kind).toBe('run');
    const samples = samplesOf(rs);
    expect(samples.map((r) => `${r.sample}:${r.method}`)).toEqual(
      ['0000-caption', '0001-caption'].flatMap((s) => methods.map((m) => `${s}:${m}`)),
    );
    for (const r of samples) {
      const p = r.perturbation as NonNullable<SampleRecord['perturbation']>;
      expect(p.positive.fractions).toEqual([0.25, 0.5, 0.75]);
      expect(p.positive.nppl.every(Number.isFinite)).toBe(true);
      expect(p.positive.auc).toBeCloseTo(
        0.25 * ((p.positive.nppl[0] + p.positive.nppl[1]) / 2 + (p.positive.nppl[1] + p.positive.nppl[2]) / 2),
        10,
      );
      expect(p.positive.nppl[0]).toBeCloseTo(p.positive.ppl[0] / p.clean, 10);
      expect(r.segmentation?.words.length).toBe(r.sample === '0000-caption' ? 2 : 4);
      expect(r.segmentation?.sentence?.iou).toBeGreaterThanOrEqual(0);
    }
    // the clean perplexity is shared by the methods of a sample
    expect(new Set(samples.filter((r) => r.sample === '0001-caption').map((r) => r.perturbation?.clean)).size).toBe(1);
    const byMethod = (m: string) => samples.find((r) => r.sample === '0001-caption' && r.method === m) as SampleRecord;
    expect(byMethod('dexar').faithfulness).not.toBeNull();
    expect(byMethod('dexar-unfiltered').faithfulness).toBeNull();
    expect(byMethod('logit-lens-image').faithfulness).toBeNull();
    // the token layout: "a blue square and a green square" -> grounded 1, 2, 5, 6; filler 0, 3, 4
    expect(byMethod('dexar').segmentation?.words.map((w) => w.token)).toEqual([1, 2, 5, 6]);

    const report = await writeReport([out]);
    expect(report.markdown).toMatch(/\| `dexar` \| 2 \|/);
    expect(report.markdown).toContain('positive AUC');
    expect(report.markdown).toContain('pointing game (%)');
    expect(await readdir(out)).toEqual(expect.arrayContaining(['report.md', 'curves.svg']));
    expect(await readFile(join(out, 'curves.svg'), 'utf8')).toMatch(/^<svg[\s\S]*polyline[\s\S]*<\/svg>\n$/);
  });

  it('resumes where it stopped: no sample twice, a torn last line cut off', async () => {
    const out = join(dir, 'resume');
    const options = {
      model: llavaTiny,
      dataset: data,
      methods: ['dexar', 'random'],
      metrics: ['segmentation', 'faithfulness'] as const,
      out,
    };
    const first = await runEvaluation({ ...options, metrics: [...options.metrics], limit: 3 });
    expect(first.computed).toBe(3);
    // a crash in the middle of writing the last record
    const text = await readFile(first.file, 'utf8');
    await truncate(first.file, Buffer.byteLength(text) - 40);
    const second = await runEvaluation({ ...options, metrics: [...options.metrics], limit: 3 });
    expect(second).toMatchObject({ computed: 1, resumed: 2, records: 1 });
    const third = await runEvaluation({ ...options, metrics: [...options.metrics], limit: 3 });
    expect(third).toMatchObject({ computed: 0, resumed: 3, records: 0 });
    const samples = samplesOf(await lines(first.file));
    const keys = samples.map((r) => `${r.sample}:${r.method}`);
    expect(keys).toHaveLength(6);
    expect(new Set(keys).size).toBe(6);
    // a method added later is computed for every sample, the others are not recomputed
    const fourth = await runEvaluation({
      ...options,
      methods: ['dexar', 'random', 'attention'],
      metrics: [...options.metrics],
      limit: 3,
    });
    expect(fourth).toMatchObject({ computed: 3, resumed: 0, records: 3 });
    // a longer --limit extends the run
    const fifth = await runEvaluation({
      ...options,
      methods: ['dexar', 'random', 'attention'],
      metrics: [...options.metrics],
      limit: 4,
    });
    expect(fifth).toMatchObject({ computed: 1, resumed: 3, records: 3 });
    // another configuration into the same folder is refused
    const error = await runEvaluation({ ...options, metrics: ['segmentation'], limit: 3 }).catch((e) => e);
    expect(error).toBeInstanceOf(DexarError);
    expect(error.message).toMatch(/holds records of another configuration/);
  });

  it('splits deterministically into shards that the report merges', async () => {
    expect(shardSamples(['a', 'b', 'c', 'd', 'e'], { index: 1, count: 2 })).toEqual([
      { sample: 'b', index: 1 },
      { sample: 'd', index: 3 },
    ]);
    const base = {
      model: llavaTiny,
      dataset: data,
      methods: ['dexar', 'attention'],
      metrics: ['segmentation' as const],
    };
    const a = await runEvaluation({ ...base, out: join(dir, 'shard-a'), shard: { index: 0, count: 2 } });
    const b = await runEvaluation({ ...base, out: join(dir, 'shard-b'), shard: { index: 1, count: 2 } });
    expect([a.shardSamples, b.shardSamples]).toEqual([3, 2]);
    const set = await readRecords([join(dir, 'shard-a'), join(dir, 'shard-b')]);
    expect(set.shards).toEqual({ count: 2, present: [0, 1] });
    expect(new Set(set.records.map((r) => r.sample)).size).toBe(5);
    const onlyA = await writeReport([join(dir, 'shard-a')], { out: join(dir, 'report-a') });
    expect(onlyA.markdown).toMatch(/Shards: 1 of 2 present \(missing: 1\)/);
    const both = await writeReport([join(dir, 'shard-a'), join(dir, 'shard-b')], { out: join(dir, 'report') });
    expect(both.markdown).toMatch(/Shards: 2 of 2 present\./);
    expect(both.markdown).toMatch(/\| `dexar` \| 5 \|/);
    expect(both.files).toEqual([join(dir, 'report', 'report.md')]); // no perturbation, no curves
  });

  it('token-space perturbation with min-max normalisation', async () => {
    const out = join(dir, 'tokens');
    const o = await runEvaluation({
      model: llavaTiny,
      dataset: data,
      methods: ['dexar', 'random'],
      metrics: ['perturbation'],
      out,
      limit: 1,
      perturbation: { fractions: [0, 0.5, 1], space: 'tokens', normalization: 'minmax' },
      batchSize: 2,
    });
    const [r] = samplesOf(await lines(o.file));
    const p = r.perturbation as NonNullable<SampleRecord['perturbation']>;
    expect(p.positive.nppl[0]).toBe(0); // fraction 0 is the clean input
    expect(p.positive.nppl[2]).toBeCloseTo(1, 12); // everything removed
    expect(p.removedAll).toBeGreaterThan(0);
    expect(p.positive.ppl[2]).toBe(p.negative.ppl[2]);
  });

  it.each(['pixels', 'tokens'] as const)(
    'scores Florence-2 (encoder-decoder) with %s-space perturbation',
    async (space) => {
      const florence = await writeShapesDataset(join(dir, `florence-${space}`), 2, 64, '<CAPTION>');
      const o = await runEvaluation({
        model: join(root, 'fixtures/models/florence2-tiny'),
        dataset: florence,
        methods: ['dexar', 'attention'],
        metrics: ['perturbation', 'segmentation'],
        out: join(dir, `florence-out-${space}`),
        limit: 2,
        perturbation: { fractions: [0, 0.5, 1], space },
        batchSize: 3,
      });
      const samples = samplesOf(await lines(o.file));
      expect(samples.map((r) => r.method)).toEqual(['dexar', 'attention', 'dexar', 'attention']);
      for (const r of samples) {
        const p = r.perturbation as NonNullable<SampleRecord['perturbation']>;
        expect(p.positive.ppl[0]).toBeCloseTo(p.clean, 6); // nothing removed
        expect(p.positive.nppl.every(Number.isFinite)).toBe(true);
        expect(p.positive.ppl[2]).toBeCloseTo(p.negative.ppl[2], 6); // everything removed, in either order
        expect(Math.abs(p.positive.ppl[2] - p.clean)).toBeGreaterThan(1e-6);
      }
    },
  );

  it('crops a mask to the window the model sees', () => {
    const mask = { width: 4, height: 2, data: Uint8Array.from([1, 0, 0, 1, 0, 1, 1, 0]) };
    expect(cropMask(mask, { left: 1, top: 0, width: 2, height: 2 })).toEqual({
      width: 2,
      height: 2,
      data: Uint8Array.from([0, 0, 1, 1]),
    });
    expect(cropMask(mask, undefined)).toBe(mask);
  });

  it('rejects bad options and datasets with one-line usage errors', async () => {
    const base = {
      model: llavaTiny,
      dataset: data,
      methods: ['dexar'],
      metrics: ['segmentation' as const],
      out: join(dir, 'bad'),
    };
    const fail = async (p: Promise<unknown>, code: string, message: RegExp) => {
      const e = (await p.catch((x: unknown) => x)) as DexarError;
      expect(e).toBeInstanceOf(DexarError);
      expect(e.code).toBe(code);
      expect(e.isUsageError).toBe(true);
      expect(e.message).toMatch(message);
    };
    await fail(runEvaluation({ ...base, methods: ['nope'] }), 'invalid-options', /unknown method "nope"/);
    await fail(runEvaluation({ ...base, dataset: join(dir, 'nowhere') }), 'invalid-dataset', /does not exist/);
    await fail(runEvaluation({ ...base, limit: 0 }), 'invalid-options', /--limit/);
    await writeFile(join(dir, 'not-a-manifest.txt'), 'x');
    await fail(
      runEvaluation({ ...base, dataset: join(dir, 'not-a-manifest.txt') }),
      'invalid-dataset',
      /not a \.jsonl manifest/,
    );
  });
});
