// Cross-implementation check: on the whole shapes held-out set, dexar eval's `dexar` method (the
// single-pass explain graph in ONNX Runtime) reproduces the Python-side scores of the shapes model
// (tools/fixtures/shapes/score.py: the authors' step-by-step algorithm with PyTorch autograd) sample
// by sample, and the headline pointing-game figures within one percentage point.
import { readFileSync } from 'node:fs';
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

interface ReferenceSample {
  id: string;
  words: { word: string; token_index: number; hit: number; iou: number }[];
  sentence: { hit: number; iou: number };
  delta_ranking?: { mean_ok: number };
}

interface ReferenceSummary {
  pointing_game_words_constant_as_miss_pct: number;
  pointing_game_sentence_constant_as_miss_pct: number;
  delta_ranking_pct: number;
}

describe('the shapes model against the Python reference scores', () => {
  it('matches the reference pointing game, IoU and delta ranking on every held-out sample', async () => {
    const reference = JSON.parse(readFileSync(referenceFile, 'utf8')) as {
      samples: ReferenceSample[];
      summary: ReferenceSummary;
    };
    const byId = new Map(reference.samples.map((s) => [s.id, s]));
    const out = await mkdtemp(join(tmpdir(), 'dexar-eval-ref-'));
    const outcome = await runEvaluation({
      model,
      dataset: 'shapes',
      methods: ['dexar'],
      metrics: ['segmentation', 'faithfulness'],
      out,
    });
    const records = readFileSync(outcome.file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((r): r is SampleRecord => r.kind === 'sample');
    expect(records.length).toBe(reference.samples.length);
    let words = 0;
    let wordHits = 0;
    let sentenceHits = 0;
    let rankings = 0;
    let rankedRight = 0;
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
        wordHits += w.pointing;
        compare(w, ref.words[i]);
      });
      const sentence = r.segmentation?.sentence as NonNullable<NonNullable<SampleRecord['segmentation']>['sentence']>;
      sentenceHits += sentence.pointing;
      compare(sentence, ref.sentence);
      if (ref.delta_ranking) {
        rankings++;
        rankedRight += r.faithfulness?.ok ?? 0;
        expect(r.faithfulness?.ok).toBe(ref.delta_ranking.mean_ok);
      }
    }
    const pct = (a: number, b: number) => (100 * a) / b;
    // dexar eval counts a constant map (it points nowhere) as a miss: compare with the reference's figures counted so
    const figures = {
      words: [pct(wordHits, words), reference.summary.pointing_game_words_constant_as_miss_pct],
      sentences: [pct(sentenceHits, records.length), reference.summary.pointing_game_sentence_constant_as_miss_pct],
      deltaRanking: [pct(rankedRight, rankings), reference.summary.delta_ranking_pct],
    };
    console.log(`pointing game and delta ranking, dexar vs Python (%): ${JSON.stringify(figures)}`);
    for (const [mine, python] of Object.values(figures)) expect(Math.abs(mine - python)).toBeLessThanOrEqual(1);
    console.log(
      `reference check: ${records.length} samples, ${words} words + ${records.length} sentences, ${constant} constant maps, pointing differs on ${hitsDiffer} others, worst |IoU - reference| ${worstIou.toExponential(2)}`,
    );
    // float32 ONNX vs float64 PyTorch maps may flip a near-tie
    expect(hitsDiffer).toBeLessThanOrEqual(Math.ceil(words * 0.02));
    expect(worstIou).toBeLessThan(0.02);
  });
});
