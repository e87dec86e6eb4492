/** What the pipeline's reference tests share: one explanation setting checked against a PyTorch reference case. */
import type { Compat, Explanation } from '@dexar/core';
import { expect } from 'vitest';
import {
  caseImage,
  expectMatchesReference,
  maxAbs,
  type ReferenceCase,
} from '../../adapter-kit/test/reference-cases.js';
import type { Explainer } from '../src/index.js';

function rawOf(result: Explanation) {
  if (!result.raw) throw new Error('returnRaw was set but the result has no raw rows');
  return result.raw;
}

/**
 * The single pass and the stepwise strategy both match the reference's maps and token weights, and
 * each other's gradient rows; at the first layer range in `official` mode the raw rows match
 * PyTorch autograd within 1e-4 (measured on the fixtures: gradients 6.4e-6, attention 1.24e-5, the
 * float32 forwards of ONNX Runtime and PyTorch differing by 1.35e-5 on logits).
 */
export async function expectSinglePassAndStepwiseMatch(
  explainer: Explainer,
  c: ReferenceCase,
  compat: Compat,
  layerIndex: number,
): Promise<void> {
  const image = await caseImage(c);
  const ref = c.results[compat][`layer_index_${layerIndex}`];
  const request = { prompt: c.prompt, targetIds: c.target_ids, compat, layerIndex, returnRaw: true };
  const single = await explainer.explain(image, request);
  expectMatchesReference(single, ref);
  expect(single.tokens).toEqual(c.tokens);
  const stepwise = await explainer.explain(image, { ...request, strategy: 'stepwise' });
  expectMatchesReference(stepwise, ref);
  expect(maxAbs(rawOf(stepwise).gradientRows.flat(3), rawOf(single).gradientRows.flat(3))).toBeLessThan(1e-4);
  if (compat === 'official' && layerIndex === 0) {
    expect(maxAbs(rawOf(single).gradientRows.flat(3), c.raw.grad_rows.flat(3))).toBeLessThan(1e-4);
    expect(maxAbs(rawOf(single).attentionRows.flat(3), c.raw.attn_rows.flat(3))).toBeLessThan(1e-4);
  }
}
