import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, maxAbs, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { Explainer, type StreamedToken } from '../src/index.js';

// issue #16: the streamed numbers equal the teacher-forced single pass on the same tokens within 1e-5
const TOLERANCE = 1e-5;

describe.each(['llava-tiny', 'bakllava-tiny', 'paligemma-tiny', 'florence2-tiny'])('%s streamed', (model) => {
  let explainer: Explainer;
  beforeAll(async () => {
    explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(modelDir(model)),
    });
  });
  afterAll(() => explainer.release());

  it.each(['official', 'paper'] as const)(
    '%s: tokens are the greedy answer and every number equals the teacher-forced single pass',
    async (compat) => {
      const c = referenceCases(model)[0];
      const image = await caseImage(c);
      const request = { prompt: c.prompt, compat, layerIndex: 0, maxNewTokens: 6 };
      const tokens: StreamedToken[] = [];
      let final: Awaited<ReturnType<Explainer['explain']>> | undefined;
      for await (const event of explainer.stream(image, { ...request, headWeights: true })) {
        if (event.kind === 'token') tokens.push(event);
        else final = event.explanation;
      }
      if (!final) throw new Error('the stream ended without a result');
      const generated = await explainer.generate(image, { prompt: c.prompt, maxNewTokens: 6 });
      expect(tokens.map((t) => t.tokenId)).toEqual(generated.tokenIds);
      expect(final.tokenIds).toEqual(generated.tokenIds);
      const forced = await explainer.explain(image, { ...request, targetIds: generated.tokenIds, headWeights: true });
      const flat = (x: number[][][]) => x.flat(2);
      expect(maxAbs(flat(final.perTokenHeatmaps), flat(forced.perTokenHeatmaps))).toBeLessThan(TOLERANCE);
      expect(maxAbs(flat(final.perTokenHeatmapsUnfiltered), flat(forced.perTokenHeatmapsUnfiltered))).toBeLessThan(
        TOLERANCE,
      );
      expect(maxAbs(final.tokenWeights, forced.tokenWeights)).toBeLessThan(TOLERANCE);
      expect(maxAbs(final.sentenceHeatmap.flat(), forced.sentenceHeatmap.flat())).toBeLessThan(TOLERANCE);
      expect(maxAbs(final.sentenceHeatmapUnfiltered.flat(), forced.sentenceHeatmapUnfiltered.flat())).toBeLessThan(
        TOLERANCE,
      );
      expect(maxAbs(flat(final.headWeights ?? []), flat(forced.headWeights ?? []))).toBeLessThan(TOLERANCE);
      // what arrived with each token is already the final value (a provisional map only where official's constant-map case hits)
      tokens.forEach((t, n) => {
        expect(t.token).toBe(forced.tokens[n]);
        expect(Math.abs(t.tokenWeight - forced.tokenWeights[n])).toBeLessThan(TOLERANCE);
        expect(maxAbs(t.headWeights.flat(), (forced.headWeights?.[n] ?? []).flat())).toBeLessThan(TOLERANCE);
        if (!t.provisional) {
          expect(maxAbs(t.heatmap.flat(), forced.perTokenHeatmaps[n].flat())).toBeLessThan(TOLERANCE);
          expect(maxAbs(t.heatmapUnfiltered.flat(), forced.perTokenHeatmapsUnfiltered[n].flat())).toBeLessThan(
            TOLERANCE,
          );
        }
      });
    },
  );
});

describe('stream requests', () => {
  it('refuses a target (a stream explains the model its own answer) with a typed usage error', async () => {
    const explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(modelDir('llava-tiny')),
    });
    try {
      const c = referenceCases('llava-tiny')[0];
      const image = await caseImage(c);
      const events = explainer.stream(image, { prompt: c.prompt, target: 'a red circle' } as never);
      const error = await events.next().then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(error?.code).toBe('invalid-options');
      expect(error?.message).toMatch(/invalid request: .*target/);
    } finally {
      await explainer.release();
    }
  });
});
