import {
  type Backend,
  type Compat,
  DexarError,
  type FamilyModel,
  type ModelFolder,
  type ProgressCallback,
  type Session,
} from '@dexar/core';
import {
  buildExplainGraph,
  explainCacheKeyFromDigest,
  isSealedExplainGraph,
  OnnxGraphError,
  readModel,
  sealExplainGraph,
  writeModel,
} from '@dexar/onnx-graph';

/** What an explain graph is built for (with the decoder's digest, its cache key). */
export interface ExplainGraphOptions {
  /** Absolute decoder layers whose rows it returns, ascending. */
  layers: number[];
  compat: Compat;
  /** Also the logit lens of every target at every position (gradient-free baselines read it). */
  positionLens: boolean;
}

/** SHA-256 of a graph file, streamed where the folder can (a decoder may be gigabytes). */
export async function graphDigest(folder: ModelFolder, path: string): Promise<Uint8Array> {
  if (folder.sha256) return folder.sha256(path);
  const bytes = await folder.readBytes(path);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/**
 * The explain graph's session: cached as `<decoder>.dexar-<key>.onnx` (beside the decoder, so
 * external weights resolve; the folder decides where when it is read-only), keyed by the
 * decoder's digest and the options and sealed with that key and its digest. A cache file that is
 * missing, unreadable, not sealed for this key (a foreign graph, one built with other options) or
 * changed since is rebuilt and written; nothing unsealed is ever loaded.
 */
export async function openExplainGraph(o: {
  backend: Backend;
  folder: ModelFolder;
  model: FamilyModel;
  /** `graphDigest` of the model's decoder. */
  digest: Uint8Array;
  options: ExplainGraphOptions;
  onProgress?: ProgressCallback;
}): Promise<{ session: Session; key: string; path: string }> {
  const { backend, folder, model, options, onProgress } = o;
  const graphOptions = { ...options, attention: model.decoder.attention };
  const key = await explainCacheKeyFromDigest(o.digest, graphOptions);
  const path = model.decoder.path.replace(/\.onnx$/, `.dexar-${key}.onnx`);
  if (await folder.exists(path)) {
    const bytes = await folder.readBytes(path).catch(() => undefined);
    if (bytes && (await isSealedExplainGraph(bytes, key))) {
      onProgress?.({ stage: 'load', detail: `explain graph from cache ${path}` });
      const cached = await backend.createSession(folder, path).catch(() => undefined);
      if (cached) return { session: cached, key, path };
    }
  }
  const { layers, compat, positionLens } = options;
  onProgress?.({
    stage: 'load',
    detail: `building the explain graph for layers ${layers[0]}-${layers.at(-1)} (${compat}${positionLens ? ', position lens' : ''})`,
  });
  let bytes: Uint8Array;
  try {
    const graph = buildExplainGraph(readModel(await folder.readBytes(model.decoder.path)), graphOptions);
    bytes = await sealExplainGraph(writeModel(graph.model), key);
  } catch (error) {
    // onnx-graph's errors name the graph problem; as DexarErrors they reach the CLI as one line
    if (error instanceof OnnxGraphError) {
      throw new DexarError('unsupported-graph', `${folder.location}/${model.decoder.path}: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
  await folder.writeBytes(path, bytes);
  return { session: await backend.createSession(folder, path), key, path };
}
