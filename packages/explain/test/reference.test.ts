import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, modelDir, referenceCases, referenceSettings } from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';
import { expectSinglePassAndStepwiseMatch } from './reference-check.js';

describe.each(['llava-tiny', 'bakllava-tiny', 'paligemma-tiny', 'florence2-tiny'])(
  '%s against the PyTorch reference',
  (model) => {
    let explainer: Explainer;
    beforeAll(async () => {
      explainer = await Explainer.open({
        backend: nodeBackend({ threads: 1 }),
        folder: await openModelFolder(modelDir(model)),
      });
    });
    afterAll(() => explainer.release());

    describe.each(referenceCases(model))('$name', (c) => {
      it.each(referenceSettings)('%s, layerIndex %i: single pass and stepwise match', (compat, layerIndex) =>
        expectSinglePassAndStepwiseMatch(explainer, c, compat, layerIndex),
      );
    });
  },
);

describe('the position lens request option', () => {
  it.each([
    ['llava-tiny', { returnRaw: false }, /positionLens needs returnRaw/],
    ['llava-tiny', { returnRaw: true, strategy: 'stepwise' as const }, /the single strategy .*stepwise/],
    ['florence2-tiny', { returnRaw: true }, /a decoder-only family \(this is florence2/],
  ])('%s refuses %j with a typed usage error', async (model, extra, message) => {
    const explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(modelDir(model)),
    });
    try {
      const c = referenceCases(model)[0];
      const image = await caseImage(c);
      const request = { prompt: c.prompt, target: 'a red circle', positionLens: true, ...extra };
      const error = await explainer.explain(image, request).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(error?.code).toBe('invalid-options');
      expect(error?.message).toMatch(message);
    } finally {
      await explainer.release();
    }
  });
});
