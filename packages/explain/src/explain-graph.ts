import {
  type Backend,
  type Compat,
  DexarError,
  type FamilyModel,
  type ModelFolder,
  type ProgressCallback,
  readJson,
  type Session,
} from '@dexar/core';
import {
  buildExplainGraph,
  explainCacheKeyFromDigest,
  isSealedExplainGraph,
  OnnxGraphError,
  readModel,
  referenceWeightsIn,
  sealExplainGraph,
  writeModel,
} from '@dexar/onnx-graph';
import { z } from 'zod';

/** What an explain graph is built for (with the decoder's digest, its cache key). */
export interface ExplainGraphOptions {
  /** Absolute decoder layers whose rows it returns, ascending. */
  layers: number[];
  compat: Compat;
  /** Also the logit lens of every target at every position (gradient-free baselines read it). */
  positionLens: boolean;
  /** Targets are the argmax of the graph's own logits (streaming: generate and explain in one call). */
  greedyTargets?: boolean;
}

/** SHA-256 of a graph file, streamed where the folder can (a decoder may be gigabytes). */
export async function graphDigest(folder: ModelFolder, path: string): Promise<Uint8Array> {
  if (folder.sha256) return folder.sha256(path);
  const bytes = await folder.readBytes(path);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** An opened explain graph and what was learnt about it. */
export interface OpenedExplainGraph {
  session: Session;
  key: string;
  path: string;
  /** Its teacher-forced answer call is causal among its tokens (else: one token per call). */
  answerCallIsCausal: boolean;
}

/**
 * The explain graph's session: cached as `<decoder>.dexar-<key>.onnx` (beside the decoder, so
 * external weights resolve; the folder decides where when it is read-only), keyed by the
 * decoder's digest and the options and sealed with that key and its digest. A cache file that is
 * missing, unreadable, not sealed for this key (a foreign graph, one built with other options) or
 * changed since is rebuilt and written; nothing unsealed is ever loaded. Whether its answer call
 * is causal is probed once and remembered beside it (`<graph>.json`).
 */
export async function openExplainGraph(o: {
  backend: Backend;
  folder: ModelFolder;
  model: FamilyModel;
  /** `graphDigest` of the model's decoder. */
  digest: Uint8Array;
  options: ExplainGraphOptions;
  onProgress?: ProgressCallback;
}): Promise<OpenedExplainGraph> {
  const { folder, model, onProgress } = o;
  const key = await explainCacheKeyFromDigest(o.digest, { ...o.options, attention: model.decoder.attention });
  const path = model.decoder.path.replace(/\.onnx$/, `.dexar-${key}.onnx`);
  const session = await explainGraphSession(o, key, path);
  // a greedy graph runs one new token per call, and takes no targets to probe with
  if (o.options.greedyTargets) return { session, key, path, answerCallIsCausal: false };
  const answerCallIsCausal = await probedCausality(folder, model, session, `${path.replace(/\.onnx$/, '')}.json`, key);
  if (!answerCallIsCausal) {
    onProgress?.({
      stage: 'load',
      detail: `${model.decoder.path} attends bidirectionally within a call of several tokens: explaining one token per call, as generation ran`,
    });
  }
  return { session, key, path, answerCallIsCausal };
}

/** The sealed cache file's session, or a freshly built, sealed and written graph's. */
async function explainGraphSession(
  o: Parameters<typeof openExplainGraph>[0],
  key: string,
  path: string,
): Promise<Session> {
  const { backend, folder, model, options, onProgress } = o;
  if (await folder.exists(path)) {
    const bytes = await folder.readBytes(path).catch(() => undefined);
    if (bytes && (await isSealedExplainGraph(bytes, key))) {
      onProgress?.({ stage: 'load', detail: `explain graph from cache ${path}` });
      const cached = await backend.createSession(folder, path, { weightsOnce: true }).catch(() => undefined);
      if (cached) return cached;
    }
  }
  const { layers, compat, positionLens } = options;
  onProgress?.({
    stage: 'load',
    detail: `building the explain graph for layers ${layers[0]}-${layers.at(-1)} (${compat}${positionLens ? ', position lens' : ''})`,
  });
  const decoder = await folder.readBytes(model.decoder.path);
  const build = async (referenced: boolean): Promise<Uint8Array> => {
    try {
      const source = readModel(decoder);
      // the graph sits beside the decoder and reads its weights there: nothing is copied or re-parsed
      if (referenced) referenceWeightsIn(source, decoder, folder.fileName(model.decoder.path));
      const graph = buildExplainGraph(source, { ...options, attention: model.decoder.attention });
      return await sealExplainGraph(writeModel(graph.model), key);
    } catch (error) {
      // onnx-graph's errors name the graph problem; as DexarErrors they reach the CLI as one line
      if (error instanceof OnnxGraphError) {
        throw new DexarError('unsupported-graph', `${folder.location}/${model.decoder.path}: ${error.message}`, {
          cause: error,
        });
      }
      throw error;
    }
  };
  await folder.writeBytes(path, await build(true));
  const session = await backend.createSession(folder, path, { weightsOnce: true }).catch(() => undefined);
  if (session) return session;
  // ONNX Runtime reads external data only from the graph's own directory, links resolved: a decoder
  // that lies elsewhere (a linked file, the user cache's mirror of a read-only folder) lends nothing
  await folder.writeBytes(path, await build(false));
  return backend.createSession(folder, path, { weightsOnce: true });
}

const ProbeRecord = z.strictObject({ key: z.string(), answerCallIsCausal: z.boolean() });

/** The causality probe's answer for this graph: read from its record, or probed and recorded. */
async function probedCausality(
  folder: ModelFolder,
  model: FamilyModel,
  session: Session,
  recordPath: string,
  key: string,
): Promise<boolean> {
  if (await folder.exists(recordPath)) {
    const record = ProbeRecord.safeParse(await readJson(folder, recordPath).catch(() => undefined));
    if (record.success && record.data.key === key) return record.data.answerCallIsCausal;
  }
  const answerCallIsCausal = await model.answerCallIsCausal(session);
  const record: z.infer<typeof ProbeRecord> = { key, answerCallIsCausal };
  await folder.writeBytes(recordPath, new TextEncoder().encode(`${JSON.stringify(record)}\n`));
  return answerCallIsCausal;
}
