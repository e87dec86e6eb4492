// The CLI on exports written by other exporters (fixtures/zoo): a merged decoder generates (it fed no
// use_cache_branch before), an export whose multi-token calls are bidirectional is explained one
// token per call, with a one-line notice, and `--variant fp16|q4|bnb4|q8` explains a folder's reduced graphs.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dexar, root } from './helpers.js';

const zoo = (name: string) => join(root, 'fixtures/zoo', name);
const referenceOf = async (name: string, variant = '') =>
  JSON.parse(await readFile(join(zoo('references'), name, variant, 'case0/case.json'), 'utf8'));
const argmax = (v: number[]) => v.reduce((best, x, i) => (x > (v[best] as number) ? i : best), 0);

describe('dexar on other exporters’ decoders', () => {
  it('generates with a decoder merged under an If on use_cache_branch', async () => {
    const reference = await referenceOf('llava-merged-if');
    const run = await dexar(
      'generate',
      '--model',
      join(zoo('models'), 'llava-merged-if'),
      '--image',
      join(zoo('references'), 'llava-merged-if/case0/image.png'),
      '--prompt',
      reference.prompt,
      '--max-new-tokens',
      String(reference.greedy_max_new_tokens),
      '--json',
      '--quiet',
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).tokenIds).toEqual(reference.greedy_ids);
  });

  it('explains a chunk-bidirectional export one token per call and says so', async () => {
    const reference = await referenceOf('paligemma-bidi-chunks');
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-zoo-'));
    try {
      const run = await dexar(
        'explain',
        '--model',
        join(zoo('models'), 'paligemma-bidi-chunks'),
        '--image',
        join(zoo('references'), 'paligemma-bidi-chunks/case0/image.png'),
        '--prompt',
        reference.prompt,
        '--target',
        reference.target,
        '--out',
        out,
        '--json',
      );
      expect(run.code).toBe(0);
      expect(run.stderr).toMatch(
        /attends bidirectionally within a call of several tokens: explaining one token per call/,
      );
      const result = JSON.parse(run.stdout);
      const expected = reference.results.official.layer_index_0.token_weights as number[];
      expect(result.tokenWeights).toHaveLength(expected.length);
      const worst = Math.max(...expected.map((w, n) => Math.abs(w - result.tokenWeights[n])));
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  // fp16 runs in half precision: its greedy answer, each map pointing where the fp16-weights reference points.
  // q4 and bnb4 compute in float32 on dequantised weights, as the reference does: its greedy answer, maps within
  // 1e-4. q8 quantizes activations at run time: an answer of the requested length, maps pointing where the
  // reference's point.
  it.each([
    ['fp16', 'fp16', { sameAnswer: true, maps: 'pointing' }],
    ['q4', 'q4', { sameAnswer: true, maps: 'within 1e-4' }],
    ['bnb4', 'bnb4', { sameAnswer: true, maps: 'within 1e-4' }],
    ['q8', 'quantized', { sameAnswer: false, maps: 'pointing' }],
  ] as const)('explains --variant %s end to end', async (variant, referenceName, checks) => {
    const reference = await referenceOf('llava-hf-eager14', referenceName);
    const out = await mkdtemp(join(tmpdir(), `dexar-cli-${variant}-`));
    const explainVariant = (folder: string, ...options: string[]) =>
      dexar(
        'explain',
        '--model',
        join(zoo('models'), 'llava-hf-eager14'),
        '--variant',
        variant,
        '--image',
        join(zoo('references'), 'llava-hf-eager14/case0/image.png'),
        '--prompt',
        reference.prompt,
        '--layer-index',
        '0',
        '--out',
        join(out, folder),
        '--json',
        '--quiet',
        ...options,
      );
    try {
      const generated = await explainVariant('generated', '--max-new-tokens', String(reference.greedy_max_new_tokens));
      expect(generated.stderr).toBe('');
      expect(generated.code).toBe(0);
      const tokenIds = JSON.parse(generated.stdout).tokenIds as number[];
      if (checks.sameAnswer) expect(tokenIds).toEqual(reference.greedy_ids);
      else expect(tokenIds).toHaveLength(reference.greedy_max_new_tokens);
      const forced = await explainVariant('forced', '--target', reference.target);
      expect(forced.code).toBe(0);
      const maps = JSON.parse(forced.stdout).perTokenHeatmaps as number[][][];
      const expected = reference.results.official.layer_index_0.per_token_heatmaps as number[][][];
      if (checks.maps === 'pointing') {
        expect(maps.map((m) => argmax(m.flat()))).toEqual(expected.map((m) => argmax(m.flat())));
      } else {
        const wanted = expected.flat(2);
        expect(Math.max(...maps.flat(2).map((v, i) => Math.abs(v - (wanted[i] as number))))).toBeLessThan(1e-4);
      }
      await readFile(join(out, 'forced', 'sentence.png'));
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
