// The export zoo (fixtures/zoo, tools/fixtures/generate.py --zoo): decoder graphs written the way other
// exporters write them (transformers' reference code through torch.onnx at opset 14, SDPA form simplified to
// opset 21, optimum's If-merged decoders, a chunk-bidirectional PaliGemma, Florence-2's 3-D attention, fused
// attention ops). Each model must explain its PyTorch reference case like the tiny fixtures do (same
// tolerances as reference.test.ts) and generate PyTorch's greedy tokens; a fused-attention twin is held to
// the reference of the model it was fused from (MANIFEST.json `reference_of`: the same weights).
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { readdirSync, readFileSync } from 'node:fs';
import type { ExplainRows } from '@dexar/core/adapter';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  caseImage,
  maxAbs,
  type ReferenceCase,
  referenceCases,
  referenceSettings,
  repoRoot,
} from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';
import { expectSinglePassAndStepwiseMatch } from './reference-check.js';

const zoo = `${repoRoot}fixtures/zoo`;
const zooModels = readdirSync(`${zoo}/models`).sort();
const manifest = JSON.parse(readFileSync(`${zoo}/MANIFEST.json`, 'utf8')) as {
  models: Record<string, { reference_of?: string }>;
};

interface ZooCase extends ReferenceCase {
  /** Keys step n sees (its gradient row's length). */
  seq_len_per_step: number[];
  /** PyTorch greedy decoding (prompt call, then one cached call per token; EOS not included). */
  greedy_ids: number[];
  greedy_max_new_tokens: number;
}

/** Gradient rows `[T, layers, heads, keys]`, each step's row cut to the keys it saw, flattened like the reference's. */
function croppedRows(rows: ExplainRows, c: ZooCase): number[] {
  const [T, L, H, K] = rows.gradientRows.dims as [number, number, number, number];
  const data = rows.gradientRows.data as Float32Array;
  const out: number[] = [];
  for (let n = 0; n < T; n++) {
    for (let i = 0; i < L * H; i++) {
      const base = (n * L * H + i) * K;
      out.push(...data.subarray(base, base + c.seq_len_per_step[n]));
    }
  }
  return out;
}

describe.each(zooModels)('zoo model %s', (model) => {
  const c = referenceCases(manifest.models[model]?.reference_of ?? model, `${zoo}/references`)[0] as ZooCase;
  let explainer: Explainer;
  beforeAll(async () => {
    explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(`${zoo}/models/${model}`),
    });
  });
  afterAll(() => explainer?.release());

  it.each(referenceSettings)(
    '%s, layerIndex %i: single pass and stepwise match the PyTorch reference',
    (compat, layerIndex) => expectSinglePassAndStepwiseMatch(explainer, c, compat, layerIndex),
  );

  it('the causality probe sends only the chunk-bidirectional export to one token per call', async () => {
    const backend = nodeBackend({ threads: 1 });
    const folder = await openModelFolder(`${zoo}/models/${model}`);
    const session = await backend.createSession(folder, await explainer.prepare({ compat: 'official', layerIndex: 0 }));
    try {
      const causal = await explainer.model.answerCallIsCausal(session);
      expect(causal).toBe(model !== 'paligemma-bidi-chunks');
      if (causal) return;
      // there the teacher-forced answer call is not what the model saw: only the fallback matches
      const input = await explainer.model.prepare(await caseImage(c), c.prompt);
      const rows = async (perToken: boolean) =>
        croppedRows(await explainer.model.explain(input, c.target_ids, session, { compat: 'official', perToken }), c);
      expect(maxAbs(await rows(true), c.raw.grad_rows.flat(3))).toBeLessThan(1e-4);
      expect(maxAbs(await rows(false), c.raw.grad_rows.flat(3))).toBeGreaterThan(1e-2);
    } finally {
      await session.release();
    }
  });

  it('greedy generation gives the PyTorch greedy tokens', async () => {
    const generation = await explainer.generate(await caseImage(c), {
      prompt: c.prompt,
      maxNewTokens: c.greedy_max_new_tokens,
    });
    expect(generation.tokenIds).toEqual(c.greedy_ids);
  });
});
