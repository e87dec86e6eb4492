// The CLI on exports written by other exporters (fixtures/zoo): a merged decoder generates (it fed no
// use_cache_branch before), and an export whose multi-token calls are bidirectional is explained one
// token per call, with a one-line notice.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dexar, root } from './helpers.js';

const zoo = (name: string) => join(root, 'fixtures/zoo', name);
const referenceOf = async (name: string) =>
  JSON.parse(await readFile(join(zoo('references'), name, 'case0/case.json'), 'utf8'));

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
});
