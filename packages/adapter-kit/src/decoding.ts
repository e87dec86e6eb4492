import type { ProgressCallback } from '@dexar/core/adapter';
import { type Backend, floatData, type Session, type TypedTensor } from '@dexar/core/runtime';

/**
 * Shape of a decoder's KV cache: per layer, `past_key_values.{i}.key/value` `[1, kvHeads, past, headDim]`
 * (`self`), or `past_key_values.{i}.{decoder,encoder}.key/value` for an encoder-decoder (`cross`).
 */
export interface CacheShape {
  readonly numLayers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Which attention DEX-AR reads, and so how the cache inputs are named. @defaultValue 'self' */
  readonly attention?: 'self' | 'cross';
}

/** Token embeddings of a sequence, row-major `[S, D]`. */
export interface Embeddings {
  readonly data: Float32Array;
  readonly length: number;
  readonly hidden: number;
}

export type Cache = Record<string, TypedTensor>;

/** An empty KV cache for `batch` rows (1 unless scoring a batch of variants). */
export function emptyCache(backend: Backend, shape: CacheShape, batch = 1): Cache {
  return cacheOf(backend, shape, batch, 0);
}

/**
 * A KV cache of `past` positions of fixed values (batch 1): the past of a probe call, which asks how
 * a graph treats the tokens of one call (docs/architecture.md) and not what any cached key holds.
 */
export function syntheticCache(backend: Backend, shape: CacheShape, past: number): Cache {
  return cacheOf(backend, shape, 1, past);
}

/** `[batch, kvHeads, past, headDim]` per cache input, filled with cos(0.7 i). */
function cacheOf(backend: Backend, shape: CacheShape, batch: number, past: number): Cache {
  const cache: Cache = {};
  const parts = shape.attention === 'cross' ? ['decoder.', 'encoder.'] : [''];
  const size = batch * shape.kvHeads * past * shape.headDim;
  for (let i = 0; i < shape.numLayers; i++) {
    for (const part of parts) {
      for (const kind of ['key', 'value']) {
        cache[`past_key_values.${i}.${part}${kind}`] = backend.tensor(
          'float32',
          Float32Array.from({ length: size }, (_, k) => Math.cos(k * 0.7)),
          [batch, shape.kvHeads, past, shape.headDim],
        );
      }
    }
  }
  return cache;
}

/** The `present.*` outputs of a run as the `past_key_values.*` feeds of the next. */
export function nextCache(outputs: Record<string, TypedTensor>): Cache {
  const cache: Cache = {};
  for (const [name, value] of Object.entries(outputs)) {
    if (name.startsWith('present.')) cache[name.replace(/^present\./, 'past_key_values.')] = value;
  }
  return cache;
}

/**
 * Feeds of one decoder call over `embeddings` after `pastLength` cached
 * positions (batch 1, no padding). `firstPosition` is the position id of the
 * first token: 0 in transformers' Llama, 1 in PaliGemma.
 */
export function decoderFeeds(
  backend: Backend,
  embeddings: Embeddings,
  cache: Cache,
  pastLength: number,
  firstPosition = 0,
): Record<string, TypedTensor> {
  const S = embeddings.length;
  const total = pastLength + S;
  const start = firstPosition + pastLength;
  return {
    inputs_embeds: backend.tensor('float32', embeddings.data, [1, S, embeddings.hidden]),
    attention_mask: backend.tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    position_ids: backend.tensor(
      'int64',
      BigInt64Array.from({ length: S }, (_, i) => BigInt(start + i)),
      [1, S],
    ),
    ...cache,
  };
}

export function concatEmbeddings(parts: readonly Embeddings[]): Embeddings {
  const hidden = parts[0].hidden;
  const length = parts.reduce((sum, p) => sum + p.length, 0);
  const data = new Float32Array(length * hidden);
  let offset = 0;
  for (const part of parts) {
    data.set(part.data.subarray(0, part.length * hidden), offset);
    offset += part.length * hidden;
  }
  return { data, length, hidden };
}

export function sliceEmbeddings(e: Embeddings, start: number, end: number): Embeddings {
  return {
    data: e.data.slice(start * e.hidden, end * e.hidden),
    length: end - start,
    hidden: e.hidden,
  };
}

/** Index of the largest logit of the last position. `logits` is `[1, S, V]`. */
export function argmaxLast(logits: TypedTensor): number {
  const [, S, V] = logits.dims as [number, number, number];
  const data = floatData(logits);
  let best = 0;
  for (let v = 1; v < V; v++) if (data[(S - 1) * V + v] > data[(S - 1) * V + best]) best = v;
  return best;
}

/** One greedy step: the token chosen and the outputs of the call that chose it. */
export interface GreedyStep {
  readonly tokenId: number;
  readonly outputs: Record<string, TypedTensor>;
  /** Cached positions before this call. */
  readonly pastLength: number;
}

/**
 * Greedy decoding with the KV cache: one call over the prefix, then one per
 * new token. Stops at an EOS id (not yielded) or after `maxNewTokens`.
 */
export async function* greedySteps(options: {
  decoder: Session;
  embed: (ids: readonly number[]) => Promise<Embeddings>;
  prefix: Embeddings;
  /** The feeds of one call over `input` after `pastLength` cached positions; an empty `cache` on the first. */
  feeds: (input: Embeddings, cache: Cache | undefined, pastLength: number) => Record<string, TypedTensor>;
  eos: readonly number[];
  maxNewTokens: number;
  /** The token a call chose: the argmax of its last logits unless the graph chose it itself. */
  pick?: (outputs: Record<string, TypedTensor>) => number;
}): AsyncGenerator<GreedyStep> {
  const { decoder, eos, maxNewTokens } = options;
  const pick = options.pick ?? ((outputs) => argmaxLast(outputs.logits));
  let cache: Cache | undefined;
  let input = options.prefix;
  let pastLength = 0;
  for (let generated = 0; generated < maxNewTokens; generated++) {
    const outputs = await decoder.run(options.feeds(input, cache, pastLength));
    const tokenId = pick(outputs);
    if (eos.includes(tokenId)) return;
    yield { tokenId, outputs, pastLength };
    pastLength += input.length;
    cache = nextCache(outputs);
    input = await options.embed([tokenId]);
  }
}

/** `greedySteps` collected: the generated ids. */
export async function greedyDecode(
  options: Parameters<typeof greedySteps>[0] & { onProgress?: ProgressCallback },
): Promise<number[]> {
  const generated: number[] = [];
  for await (const { tokenId } of greedySteps(options)) {
    generated.push(tokenId);
    options.onProgress?.({ stage: 'generate', done: generated.length, total: options.maxNewTokens });
  }
  return generated;
}

/** Runs an `embed_tokens` graph: ids to `inputs_embeds` rows. */
export async function embedTokens(backend: Backend, embed: Session, ids: readonly number[]): Promise<Embeddings> {
  const { inputs_embeds: out } = await embed.run({
    input_ids: backend.tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
  });
  return { data: floatData(out).slice(), length: ids.length, hidden: out.dims[2] };
}
