import { type Compat, DexarError } from '@dexar/core';
import type { FamilyModel, ProgressCallback } from '@dexar/core/adapter';
import {
  type Backend,
  type GraphInputShapes,
  inputShapesOf,
  type ModelFolder,
  readJson,
  type Session,
} from '@dexar/core/runtime';
import {
  buildExplainGraph,
  explainCacheKeyFromDigest,
  explainGraphRecord,
  hexDigest,
  OnnxGraphError,
  type OnnxModel,
  readModel,
  readModelStructure,
  sealExplainGraph,
  sha256,
  toNumber,
  writeModel,
} from '@dexar/onnx-graph';
import { z } from 'zod';

/** What an explain graph is built for (with the decoder's structure, its cache key). */
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
  return sha256(await folder.readBytes(path));
}

/** A decoder graph without its weights: what explain graphs are built from and keyed by. */
export interface DecoderStructure {
  /** The decoder's ModelProto, its weights of 4 KiB or more external data in the decoder file itself. */
  bytes: Uint8Array;
  /** SHA-256 of `bytes`: the nodes, the small constants and where each weight lies. */
  digest: Uint8Array;
}

/**
 * The decoder's structure, read in ranges where the folder can (paligemma-scale's 487 MB decoder: 4 MB read, in 0.05 s),
 * else picked out of the whole file (see `readModelStructure`).
 */
export async function readDecoderStructure(folder: ModelFolder, path: string): Promise<DecoderStructure> {
  const readRange = folder.readRange?.bind(folder);
  const read = readRange
    ? (offset: number, length: number) => readRange(path, offset, length)
    : await folder
        .readBytes(path)
        .then((whole) => async (offset: number, length: number) => whole.subarray(offset, offset + length));
  const { bytes } = await readModelStructure(read, folder.fileName(path)).catch((error: unknown) => {
    throw asDexarError(folder, path, error);
  });
  return { bytes, digest: await sha256(bytes) };
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
 * decoder's structure and the options and sealed with that key and its digest. A cache file that is
 * missing, unreadable, not sealed for this key (a foreign graph, one built with other options) or
 * changed since is rebuilt and written; nothing unsealed is ever loaded. Whether its answer call
 * is causal is probed once and remembered beside it (`<graph>.json`).
 */
export async function openExplainGraph(o: {
  backend: Backend;
  folder: ModelFolder;
  model: FamilyModel;
  /** `readDecoderStructure` of the model's decoder. */
  structure: DecoderStructure;
  options: ExplainGraphOptions;
  onProgress?: ProgressCallback;
}): Promise<OpenedExplainGraph> {
  const { folder, model, onProgress } = o;
  const key = await explainCacheKeyFromDigest(o.structure.digest, { ...o.options, attention: model.decoder.attention });
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

/**
 * The sealed cache file's session, or a freshly built, sealed and written graph's. A graph built
 * from the decoder's structure references its weights in place; where ONNX Runtime refuses that,
 * the weights go inside, and the cached graph is trusted only while the decoder hashes the same.
 */
async function explainGraphSession(
  o: Parameters<typeof openExplainGraph>[0],
  key: string,
  path: string,
): Promise<Session> {
  const { backend, folder, model, options, onProgress } = o;
  const decoderPath = model.decoder.path;
  if (await folder.exists(path)) {
    const bytes = await folder.readBytes(path).catch(() => undefined);
    const record = bytes && (await explainGraphRecord(bytes, key));
    if (record && (!record.weights || record.weights === hexDigest(await graphDigest(folder, decoderPath)))) {
      onProgress?.({ stage: 'load', detail: `explain graph from cache ${path}` });
      const cached = await backend.createSession(folder, path, { weightsOnce: true }).catch(() => undefined);
      if (cached) return checkedSession(model, cached, path);
    }
  }
  const { layers, compat, positionLens } = options;
  onProgress?.({
    stage: 'load',
    detail: `building the explain graph for layers ${layers[0]}-${layers.at(-1)} (${compat}${positionLens ? ', position lens' : ''})`,
  });
  const build = (bytes: Uint8Array): Uint8Array => {
    try {
      const source = readModel(bytes);
      // the config's layer count and cache shape against the graph, before anything is built on them
      model.checkDecoder(declaredInputs(source), decoderPath);
      return writeModel(buildExplainGraph(source, { ...options, attention: model.decoder.attention }).model);
    } catch (error) {
      throw asDexarError(folder, decoderPath, error);
    }
  };
  await folder.writeBytes(path, await sealExplainGraph(build(o.structure.bytes), key));
  const referencing = await backend.createSession(folder, path, { weightsOnce: true }).catch(() => undefined);
  if (referencing) return checkedSession(model, referencing, path);
  // ONNX Runtime reads external data only from the graph's own directory, links resolved: a
  // decoder that lies elsewhere (a linked file, the user cache's mirror of a read-only folder)
  // lends nothing, and the weights go inside
  const decoder = await folder.readBytes(decoderPath);
  const weights = hexDigest(await sha256(decoder));
  await folder.writeBytes(path, await sealExplainGraph(build(decoder), key, weights));
  return checkedSession(model, await backend.createSession(folder, path, { weightsOnce: true }), path);
}

/** onnx-graph's errors name the graph problem; as DexarErrors they reach the CLI as one line. */
function asDexarError(folder: ModelFolder, path: string, error: unknown): unknown {
  if (!(error instanceof OnnxGraphError)) return error;
  return new DexarError('unsupported-graph', `${folder.location}/${path}: ${error.message}`, { cause: error });
}

/** The explain graph's session once its inputs pass the family's check (a cached graph may predate an edited config). */
async function checkedSession(model: FamilyModel, session: Session, path: string): Promise<Session> {
  try {
    model.checkDecoder(inputShapesOf(session), path);
    return session;
  } catch (error) {
    await session.release();
    throw error;
  }
}

/** A graph's inputs with their declared shapes, as a session reports them. */
function declaredInputs(model: OnnxModel): GraphInputShapes {
  return Object.fromEntries(
    model.graph.inputs.map((input) => [
      input.name ?? '',
      (input.type?.tensorType?.shape?.dim ?? []).map((d) =>
        d.dimParam ? d.dimParam : Object.hasOwn(d, 'dimValue') ? toNumber(d.dimValue) : '?',
      ),
    ]),
  );
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
