import type { RgbaImage } from '@dexar/core';
import type { Explainer, ExplainRequest, StreamEvent } from '@dexar/explain';
import { methodFor, withMethod } from './methods.js';

/** An explanation request naming its method: `dexar` (the default) or a baseline of `methodNames()`. */
export interface MethodRequest extends ExplainRequest {
  method?: string;
}

/**
 * One explanation by any method, as the demo and `dexar serve` run it: DEX-AR on the model's own
 * answer streams each token and its map as it is generated, then the result; every other request
 * (a target, the stepwise strategy, a baseline) yields only the result. Baselines are computed from
 * the raw rows of the same explain run (their raw rows kept only with `returnRaw`).
 */
export async function* explainMethod(
  explainer: Pick<Explainer, 'explain' | 'stream'>,
  image: RgbaImage,
  { method = 'dexar', ...request }: MethodRequest,
): AsyncGenerator<StreamEvent> {
  const { target, targetIds, strategy, positionLens, ...streamed } = request;
  const baseline = method !== 'dexar';
  const single = (strategy ?? 'single') === 'single';
  if (!baseline && target === undefined && targetIds === undefined && single && !positionLens) {
    yield* explainer.stream(image, streamed);
    return;
  }
  const returnRaw = request.returnRaw ?? false;
  const result = await explainer.explain(image, {
    ...request,
    returnRaw: returnRaw || baseline,
    positionLens: (positionLens ?? false) || methodFor(method).needsPositionLens === true,
  });
  yield { kind: 'result', explanation: baseline ? withMethod(result, method, returnRaw) : result };
}
