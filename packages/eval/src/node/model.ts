/**
 * A model opened for evaluation: its family adapter (given, or the registered one), and the explain graph's
 * session, built (or found in the cache beside the decoder) with the position lens when a method
 * needs it. The default explain graph and its cache file are the Explainer's; the one with the
 * position lens has its own cache key.
 */
import { DexarError, type DexarOptions, layersUsed } from '@dexar/core';
import type { ExplainRows, FamilyModel, ModelAdapter, PreparedInput, ProgressCallback } from '@dexar/core/adapter';
import type { Backend, ModelFolder } from '@dexar/core/runtime';
import { graphDigest, openExplainGraph, openFamilyModel, readDecoderStructure } from '@dexar/explain';
import { explainCacheKeyFromDigest, sha256 } from '@dexar/onnx-graph';

export interface EvalModel {
  readonly model: FamilyModel;
  readonly layers: number[];
  /** The explain graph's cache key (its file is `<decoder>.dexar-<key>.onnx`). */
  readonly key: string;
  /** The model and DEX-AR options, whatever the graph's extra outputs: the default explain graph's key and config.json. */
  readonly identity: string;
  readonly positionLens: boolean;
  explain(input: PreparedInput, targetIds: readonly number[]): Promise<ExplainRows>;
  release(): Promise<void>;
}

export async function openEvalModel(options: {
  folder: ModelFolder;
  backend: Backend;
  /** The model's family adapter; the registered one for its `model_type` when left out. */
  adapter?: ModelAdapter;
  dexar: DexarOptions;
  positionLens: boolean;
  onProgress?: ProgressCallback;
}): Promise<EvalModel> {
  const { folder, backend, dexar, onProgress } = options;
  const { model, config } = await openFamilyModel({
    backend,
    folder,
    ...(options.adapter ? { adapter: options.adapter } : {}),
  });
  const layers = layersUsed(dexar.layerIndex, model.numLayers);
  const positionLens = options.positionLens && model.decoder.attention === 'self';
  if (options.positionLens && !positionLens) {
    throw new DexarError(
      'invalid-options',
      `logit-lens-image needs image positions in the decoder sequence; the ${model.family} family explains cross-attention: leave the method out`,
    );
  }
  const digest = await graphDigest(folder, model.decoder.path);
  const { session, key, answerCallIsCausal } = await openExplainGraph({
    backend,
    folder,
    model,
    structure: await readDecoderStructure(folder, model.decoder.path),
    options: { layers, compat: dexar.compat, positionLens },
    ...(onProgress ? { onProgress } : {}),
  });
  // identity of the model and options in records: config.json and the decoder, whatever extra outputs the graph has
  const configBytes = new TextEncoder().encode(`${JSON.stringify(config)}\u0000`);
  const tagged = new Uint8Array(configBytes.length + digest.length);
  tagged.set(configBytes, 0);
  tagged.set(digest, configBytes.length);
  const identity = await explainCacheKeyFromDigest(await sha256(tagged), {
    layers,
    compat: dexar.compat,
    attention: model.decoder.attention,
  });
  return {
    model,
    layers,
    key,
    identity,
    positionLens,
    explain: (input, targetIds) =>
      model.explain(input, targetIds, session, { compat: dexar.compat, perToken: !answerCallIsCausal }),
    async release() {
      await session.release();
      await model.release();
    },
  };
}

/**
 * Token span of each word: the target tokens overlapping characters [char, char + length) of the
 * target, found by decoding growing prefixes of the tokens. `first` is the word's first token.
 */
export function wordTokens(
  model: Pick<FamilyModel, 'decode'>,
  targetIds: readonly number[],
  words: readonly { word: string; char: number }[],
): { first: number; tokens: number[] }[] {
  const ends: number[] = [];
  for (let n = 0; n < targetIds.length; n++) ends.push(model.decode(targetIds.slice(0, n + 1)).length);
  return words.map(({ word, char }) => {
    const tokens: number[] = [];
    for (let n = 0; n < ends.length; n++) {
      const start = n === 0 ? 0 : ends[n - 1];
      if (ends[n] > char && start < char + word.length) tokens.push(n);
    }
    if (tokens.length === 0) {
      throw new DexarError(
        'invalid-dataset',
        `the word ${JSON.stringify(word)} at character ${char} matches no token of the target`,
      );
    }
    return { first: tokens[0], tokens };
  });
}
