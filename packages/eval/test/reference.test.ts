// Cross-implementation check: where the repository holds the shapes model and its held-out set
// with the Python-side scores (tools/fixtures/shapes/score.py: the authors' step-by-step algorithm
// in PyTorch), dexar eval's `dexar` method reproduces the reference pointing game, IoU and delta
// ranking on the first samples.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-llava';
import { describe, expect, it } from 'vitest';
import { runEvaluation } from '../src/node/index.js';
import type { SampleRecord } from '../src/records.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const model = join(root, 'models/shapes-llava');
const referenceFile = join(root, 'datasets/shapes-heldout/reference-scores.json');
const present = existsSync(join(model, 'config.json')) && existsSync(referenceFile);
const LIMIT = 24;

interface ReferenceSample {
  id: string;
  words: { word: string; token_index: number; hit: number; iou: number }[];
  sentence: { hit: number; iou: number };
  delta_ranking?: { mean_ok: number };
}

describe.skipIf(!present)('the shapes model against the Python reference scores', () => {
  it(`matches the reference pointing game, IoU and delta ranking on the first ${LIMIT} samples`, async () => {
    const reference = JSON.parse(readFileSync(referenceFile, 'utf8')) as { samples: ReferenceSample[] };
    const byId = new Map(reference.samples.map((s) => [s.id, s]));
    const out = await mkdtemp(join(tmpdir(), 'dexar-eval-ref-'));
    const outcome = await runEvaluation({
      model,
      dataset: 'shapes',
      methods: ['dexar'],
      metrics: ['segmentation', 'faithfulness'],
      out,
      limit: Math.min(LIMIT, reference.samples.length),
    });
    const records = readFileSync(outcome.file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((r): r is SampleRecord => r.kind === 'sample');
    let words = 0;
    let hitsDiffer = 0;
    let worstIou = 0;
    let constant = 0;
    for (const r of records) {
      const ref = byId.get(r.sample) as ReferenceSample;
      expect(ref, r.sample).toBeDefined();
      const mine = r.segmentation?.words ?? [];
      expect(mine.map((w) => [w.word, w.token])).toEqual(ref.words.map((w) => [w.word, w.token_index]));
      // a constant map points nowhere here; the reference counts it as a hit
      const compare = (
        got: { pointing: number; iou: number; constant: number },
        want: { hit: number; iou: number },
      ) => {
        if (got.constant) {
          constant++;
          expect(want.hit).toBe(1);
        } else if (got.pointing !== want.hit) hitsDiffer++;
        worstIou = Math.max(worstIou, Math.abs(got.iou - want.iou));
      };
      mine.forEach((w, i) => {
        words++;
        compare(w, ref.words[i]);
      });
      compare(
        r.segmentation?.sentence as NonNullable<NonNullable<SampleRecord['segmentation']>['sentence']>,
        ref.sentence,
      );
      if (ref.delta_ranking) expect(r.faithfulness?.ok).toBe(ref.delta_ranking.mean_ok);
    }
    console.log(
      `reference check: ${records.length} samples, ${words} words + ${records.length} sentences, ${constant} constant maps, pointing differs on ${hitsDiffer} others, worst |IoU - reference| ${worstIou.toExponential(2)}`,
    );
    // float32 ONNX vs float64 PyTorch maps may flip a near-tie
    expect(hitsDiffer).toBeLessThanOrEqual(Math.ceil(words * 0.02));
    expect(worstIou).toBeLessThan(0.02);
  });
});
