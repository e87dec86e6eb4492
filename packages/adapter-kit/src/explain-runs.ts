import { EXPLAIN_GRAPH } from '@dexar/core/adapter';
import { type Backend, floatData, type Session, type TypedTensor } from '@dexar/core/runtime';
import {
  type Cache,
  type CacheShape,
  concatEmbeddings,
  decoderFeeds,
  type Embeddings,
  emptyCache,
  greedySteps,
  nextCache,
  sliceEmbeddings,
} from './decoding.js';

/** The explain graph's outputs for T steps: `[T, layers, heads, keys]` rows and `[T, layers]` logit lenses. */
export interface ExplainOutputs {
  gradientRows: TypedTensor;
  attentionRows: TypedTensor;
  logitLens: TypedTensor;
  /**
   * `[T, layers, positions]` when the explain graph was built with `positionLens` and every run
   * started at position 0 (not after a prefix call): each target's logit lens at every position.
   */
  positionLens?: TypedTensor;
}

export interface DecoderOnlyExplain {
  backend: Backend;
  /** The augmented decoder (onnx-graph's explain graph). */
  session: Session;
  shape: CacheShape;
  /** Prompt embeddings, image features merged. `[P, D]` */
  prompt: Embeddings;
  /** Embeddings of the answer fed as context: `y_0 .. y_{T-2}` (more are ignored). */
  answer: Embeddings;
  targetIds: readonly number[];
  /**
   * Prefix-LM families whose export has no `token_type_ids` (PaliGemma): a
   * call with an empty past is bidirectional, so the prompt runs alone and the
   * answer follows with its past (docs/algorithm.md, "Per family").
   */
  prefixCall: boolean;
  /**
   * The graph's multi-token calls are not causal among their tokens (`chunkCallsAreCausal` said
   * so): the prompt runs alone, then the answer one token per call with the cache, exactly as
   * generation fed it. T calls instead of one or two.
   */
  perToken?: boolean;
  firstPosition?: number;
}

/** The explain graph's own feeds: the targets y_n and their query rows on the call's sequence axis. */
export function explainFeeds(
  backend: Backend,
  targetIds: readonly number[],
  queryPositions: readonly number[],
): Record<string, TypedTensor> {
  return {
    [EXPLAIN_GRAPH.targetIds]: backend.tensor('int64', BigInt64Array.from(targetIds, BigInt), [targetIds.length]),
    ...queryFeeds(backend, queryPositions),
  };
}

/** The query rows alone: what an explain graph built with `greedyTargets` takes (it picks y_n itself). */
export function queryFeeds(backend: Backend, queryPositions: readonly number[]): Record<string, TypedTensor> {
  return {
    [EXPLAIN_GRAPH.queryPositions]: backend.tensor('int64', BigInt64Array.from(queryPositions, BigInt), [
      queryPositions.length,
    ]),
  };
}

/** A greedy explain graph's step as explain rows of one token: `[1, layers, heads, keys]`. */
export interface StreamedStep {
  readonly tokenId: number;
  readonly gradientRows: TypedTensor;
  readonly attentionRows: TypedTensor;
  readonly logitLens: TypedTensor;
}

/**
 * Generation and explanation in one call per token (streaming): greedy decoding with the KV cache
 * run on an explain graph built with `greedyTargets`, each call asking for the row of its last
 * position, whose argmax the graph takes as the target. The calls are generation's calls, so the
 * tokens are generation's tokens; the weights are held once, in the explain graph's session.
 */
export async function* streamExplainSteps(o: {
  backend: Backend;
  /** The explain graph built with `greedyTargets`. */
  session: Session;
  embed: (ids: readonly number[]) => Promise<Embeddings>;
  prefix: Embeddings;
  /** The decoder feeds of one call, as generation builds them. */
  feeds: (input: Embeddings, cache: Cache | undefined, pastLength: number) => Record<string, TypedTensor>;
  eos: readonly number[];
  maxNewTokens: number;
}): AsyncGenerator<StreamedStep> {
  const steps = greedySteps({
    ...o,
    decoder: o.session,
    feeds: (input, cache, pastLength) => ({
      ...o.feeds(input, cache, pastLength),
      ...queryFeeds(o.backend, [input.length - 1]),
    }),
    pick: (outputs) => Number(outputs[EXPLAIN_GRAPH.targetIds].data[0]),
  });
  for await (const { tokenId, outputs } of steps) {
    yield {
      tokenId,
      gradientRows: outputs[EXPLAIN_GRAPH.gradientRows],
      attentionRows: outputs[EXPLAIN_GRAPH.attentionRows],
      logitLens: outputs[EXPLAIN_GRAPH.logitLens],
    };
  }
}

/**
 * The teacher-forced explain run of a decoder-only model: step n predicts y_n
 * from query q_n = P + n - 1, and one pass over prompt + y_0 .. y_{T-2} asks
 * for every query row (two passes for a prefix LM, T with `perToken`).
 */
export async function explainDecoderOnly(o: DecoderOnlyExplain): Promise<ExplainOutputs> {
  const P = o.prompt.length;
  const T = o.targetIds.length;
  const firstPosition = o.firstPosition ?? 0;
  const empty = emptyCache(o.backend, o.shape);
  /** One explain call over `input` after `pastLength` cached keys, for the given steps' query rows. */
  const call = (input: Embeddings, cache: typeof empty, pastLength: number, steps: readonly number[]) =>
    o.session.run({
      ...decoderFeeds(o.backend, input, cache, pastLength, firstPosition),
      ...explainFeeds(
        o.backend,
        steps.map((n) => o.targetIds[n]),
        steps.map((n) => P + n - 1 - pastLength),
      ),
    });
  const full = concatEmbeddings([o.prompt, o.answer]);
  const sequence = (n: number) => sliceEmbeddings(full, 0, P + n);
  const parts: Record<string, TypedTensor>[] = [];
  if (o.perToken) {
    let outputs = await call(o.prompt, empty, 0, [0]);
    parts.push(outputs);
    for (let n = 1; n < T; n++) {
      outputs = await call(sliceEmbeddings(o.answer, n - 1, n), nextCache(outputs), P + n - 1, [n]);
      parts.push(outputs);
    }
  } else if (!o.prefixCall) {
    parts.push(await call(sequence(T - 1), empty, 0, range(0, T)));
  } else {
    const prefix = await call(o.prompt, empty, 0, [0]);
    parts.push(prefix);
    if (T > 1) parts.push(await call(sliceEmbeddings(o.answer, 0, T - 1), nextCache(prefix), P, range(1, T)));
  }
  const rows = stackRows(o.backend, parts, P + T - 1);
  // The position lens covers the positions of its own call: absolute only when no call had a past.
  if (parts.length === 1 && parts.every((p) => p[EXPLAIN_GRAPH.positionLens])) {
    return { ...rows, positionLens: stackAxis(o.backend, parts, EXPLAIN_GRAPH.positionLens, P + T - 1) };
  }
  return rows;
}

/**
 * Whether a call over several tokens is causal among them (issue "any export opens": check
 * semantics, don't guess them from structure). Some exports attend bidirectionally within every
 * call of more than one token (a prefix LM's mask applied to each chunk); teacher forcing in one
 * call is then not what the model saw while it generated. `call(rows)` runs the graph on synthetic
 * embeddings `[S, D]` (after whatever context the family's explain run puts before its answer
 * call) and returns the logits `[1, S, V]`; it runs twice, the second time with the last row
 * changed, and the logits of every other row must not move. Row-wise arithmetic makes them
 * bit-identical in a causal graph; the tolerance only absorbs a backend that blocks its matrix
 * products differently by row count.
 */
export async function chunkCallsAreCausal(
  hidden: number,
  call: (rows: Embeddings) => Promise<TypedTensor>,
): Promise<boolean> {
  const S = 4;
  const data = Float32Array.from({ length: S * hidden }, (_, i) => Math.sin(i * 1.618 + 0.5));
  const changed = data.slice();
  for (let i = (S - 1) * hidden; i < S * hidden; i++) changed[i] += 1;
  const a = await call({ data, length: S, hidden });
  const b = await call({ data: changed, length: S, hidden });
  const V = a.dims[2] as number;
  const x = floatData(a);
  const y = floatData(b);
  let scale = 0;
  let moved = 0;
  for (let i = 0; i < (S - 1) * V; i++) {
    scale = Math.max(scale, Math.abs(x[i] as number));
    moved = Math.max(moved, Math.abs((x[i] as number) - (y[i] as number)));
  }
  return moved <= 1e-5 * (1 + scale);
}

/** Stacks `[t_i, ..., K_i]` outputs along their first axis into `[sum t_i, ..., keys]`, zero-padding the last axis. */
function stackAxis(
  backend: Backend,
  parts: readonly Record<string, TypedTensor>[],
  name: string,
  keys: number,
): TypedTensor {
  const middle = parts[0][name].dims.slice(1, -1);
  const T = parts.reduce((sum, p) => sum + p[name].dims[0], 0);
  const inner = middle.reduce((a, b) => a * b, 1);
  const out = new Float32Array(T * inner * keys);
  let row = 0;
  for (const part of parts) {
    const K = part[name].dims.at(-1) as number;
    const data = part[name].data as Float32Array;
    for (let r = 0; r < data.length / K; r++, row++) out.set(data.subarray(r * K, (r + 1) * K), row * keys);
  }
  return backend.tensor('float32', out, [T, ...middle, keys]);
}

const range = (start: number, end: number) => Array.from({ length: end - start }, (_, i) => start + i);

/** Stacks explain outputs `[t, L, H, K_i]` along steps into `[T, L, H, keys]`, zero-padding keys a step did not see. */
export function stackRows(
  backend: Backend,
  parts: readonly Record<string, TypedTensor>[],
  keys: number,
): ExplainOutputs {
  const stack = (name: string) => stackAxis(backend, parts, name, keys);
  const lens = parts.map((p) => p[EXPLAIN_GRAPH.logitLens]);
  const L = lens[0].dims[1];
  const lensData = new Float32Array(lens.reduce((sum, t) => sum + t.dims[0], 0) * L);
  let offset = 0;
  for (const t of lens) {
    lensData.set(t.data as Float32Array, offset);
    offset += t.data.length;
  }
  return {
    gradientRows: stack(EXPLAIN_GRAPH.gradientRows),
    attentionRows: stack(EXPLAIN_GRAPH.attentionRows),
    logitLens: backend.tensor('float32', lensData, [lensData.length / L, L]),
  };
}
