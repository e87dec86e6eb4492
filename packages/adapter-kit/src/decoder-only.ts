import {
  type Backend,
  type Compat,
  causalTextKeys,
  DexarError,
  type ExplainRows,
  type FamilyModel,
  floatData,
  type Grid,
  type KeySpan,
  type ModelFolder,
  type PixelValues,
  type PreparedInput,
  type ProgressCallback,
  type RgbaImage,
  type ScoreBatch,
  type Session,
  type StreamedRows,
  type TypedTensor,
} from '@dexar/core';
import type { Tokenizer } from '@huggingface/tokenizers';
import {
  type Cache,
  type CacheShape,
  concatEmbeddings,
  decoderFeeds,
  type Embeddings,
  embedTokens,
  emptyCache,
  greedyDecode,
  nextCache,
} from './decoding.js';
import { chunkCallsAreCausal, explainDecoderOnly, explainFeeds, streamExplainSteps } from './explain-runs.js';
import { LazyDecoder } from './lazy-session.js';
import { batchAttentionMask, batchImageFeatures, checkScoreBatch, readLogProbabilities, tileRows } from './scoring.js';

export const DECODER_PATH = 'onnx/decoder_model_merged.onnx';

/** The three graphs of a decoder-only VLM export (transformers.js layout); the decoder opens on first use. */
export interface DecoderOnlySessions {
  vision: Session;
  embed: Session;
  decoder: LazyDecoder;
}

export async function openDecoderOnlySessions(
  folder: ModelFolder,
  backend: Backend,
  numLayers: number,
): Promise<DecoderOnlySessions> {
  const [vision, embed] = await Promise.all(
    ['onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx'].map((path) => backend.createSession(folder, path)),
  );
  return { vision, embed, decoder: new LazyDecoder(backend, folder, DECODER_PATH, numLayers) };
}

/** A prompt with its image features merged in at `imageKeys`. */
export interface MergedPrompt extends PreparedInput {
  readonly embeddings: Embeddings;
  readonly imageKeys: KeySpan;
  /** The vision encoder's input the features came from. */
  readonly pixels: PixelValues;
}

export interface DecoderOnlySettings {
  readonly family: string;
  /** Decoder layers, KV cache heads and head size, from the config. */
  readonly cache: CacheShape;
  readonly eos: readonly number[];
  readonly grid: Grid;
  /** Position id of the first token (0 for Llama, 1 for PaliGemma). */
  readonly firstPosition: number;
  /** The export is a prefix LM without `token_type_ids`: the prompt runs alone, bidirectionally. */
  readonly prefixCall: boolean;
}

/**
 * What every decoder-only VLM family shares: tokens, embeddings, greedy
 * decoding with the KV cache, teacher-forced explain runs. A family adds its
 * preprocessing and prompt layout (`prepare`) and its official-code text-set
 * exclusions.
 */
export abstract class DecoderOnlyModel implements FamilyModel {
  readonly decoder = { path: DECODER_PATH, attention: 'self' } as const;
  readonly family: string;
  readonly numLayers: number;
  protected readonly cacheShape: CacheShape;

  constructor(
    protected readonly backend: Backend,
    protected readonly tokenizer: Tokenizer,
    protected readonly sessions: DecoderOnlySessions,
    protected readonly settings: DecoderOnlySettings,
  ) {
    this.family = settings.family;
    this.numLayers = settings.cache.numLayers;
    this.cacheShape = settings.cache;
  }

  abstract prepare(image: RgbaImage, prompt: string): Promise<MergedPrompt>;

  /** Keys the authors' code leaves out of the text set in `official` mode (docs/algorithm.md, quirk 2). */
  protected abstract officialTextExclusions(input: MergedPrompt): number[];

  tokenizeTarget(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  tokenStrings(ids: readonly number[]): string[] {
    return ids.map((id) => this.tokenizer.decode([id]));
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  async generate(input: PreparedInput, maxNewTokens: number, onProgress?: ProgressCallback): Promise<number[]> {
    return greedyDecode({
      decoder: await this.sessions.decoder.get(),
      embed: (ids) => this.embed(ids),
      prefix: (input as MergedPrompt).embeddings,
      feeds: (embeddings, cache, pastLength) => this.callFeeds(embeddings, cache, pastLength),
      eos: this.settings.eos,
      maxNewTokens,
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /** Teacher forcing over prompt + y_0 .. y_{T-2}; step n reads the attention row of q_n = P + n - 1. */
  async explain(
    prepared: PreparedInput,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; perToken?: boolean },
  ): Promise<ExplainRows> {
    const input = prepared as MergedPrompt;
    const P = input.promptIds.length;
    const outputs = await explainDecoderOnly({
      backend: this.backend,
      session,
      shape: this.cacheShape,
      prompt: input.embeddings,
      answer: await this.embed(targetIds.slice(0, -1)),
      targetIds,
      prefixCall: this.settings.prefixCall,
      perToken: options.perToken ?? false,
      firstPosition: this.settings.firstPosition,
    });
    const keyCounts = targetIds.map((_, n) => P + n);
    const exclude = options.compat === 'official' ? this.officialTextExclusions(input) : [];
    return {
      ...outputs,
      layout: {
        imageKeys: input.imageKeys,
        grid: this.settings.grid,
        keyCounts,
        textKeys: causalTextKeys(keyCounts, input.imageKeys, exclude),
      },
    };
  }

  /** Greedy decoding on the explain graph: step n reads the row of its call's last position, q_n = P + n - 1. */
  async *stream(
    prepared: PreparedInput,
    maxNewTokens: number,
    session: Session,
    options: { compat: Compat },
  ): AsyncIterable<StreamedRows> {
    const input = prepared as MergedPrompt;
    const P = input.promptIds.length;
    const exclude = options.compat === 'official' ? this.officialTextExclusions(input) : [];
    const steps = streamExplainSteps({
      backend: this.backend,
      session,
      embed: (ids) => this.embed(ids),
      prefix: input.embeddings,
      feeds: (embeddings, cache, pastLength) => this.callFeeds(embeddings, cache, pastLength),
      eos: this.settings.eos,
      maxNewTokens,
    });
    let n = 0;
    for await (const step of steps) {
      const keyCounts = [P + n++];
      yield {
        ...step,
        layout: {
          imageKeys: input.imageKeys,
          grid: this.settings.grid,
          keyCounts,
          textKeys: causalTextKeys(keyCounts, input.imageKeys, exclude),
        },
      };
    }
  }

  /** Whether the explain run's answer call (after the prefix call, for a prefix LM) is causal among its tokens. */
  async answerCallIsCausal(session: Session): Promise<boolean> {
    const hidden = (await this.embed([0])).hidden;
    const run = (rows: Embeddings, cache: Cache, pastLength: number) =>
      session.run({
        ...decoderFeeds(this.backend, rows, cache, pastLength, this.settings.firstPosition),
        ...explainFeeds(this.backend, [0], [0]),
      });
    let cache = emptyCache(this.backend, this.cacheShape);
    let pastLength = 0;
    if (this.settings.prefixCall) {
      pastLength = 2;
      const prefix = Float32Array.from({ length: pastLength * hidden }, (_, i) => Math.cos(i * 0.7));
      cache = nextCache(await run({ data: prefix, length: pastLength, hidden }, cache, 0));
    }
    return chunkCallsAreCausal(hidden, async (rows) => (await run(rows, cache, pastLength)).logits);
  }

  /**
   * Teacher-forced log-probabilities of the targets for B variants of the prepared input (other
   * pixel values per row, image tokens hidden per row), from one vision-encoder run over the batch
   * and one decoder run with batch B over prompt + y_0 .. y_{T-2} (two for a prefix LM: the prompt,
   * then the answer with its past). Returns `[B, T]` natural-log probabilities.
   */
  async scoreTargets(prepared: PreparedInput, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array> {
    const input = prepared as MergedPrompt;
    const T = targetIds.length;
    const P = input.promptIds.length;
    const { start: i0, end: i1 } = input.imageKeys;
    const N = i1 - i0;
    const B = checkScoreBatch(batch, N, T);
    const D = input.embeddings.hidden;
    const features = batch.pixels
      ? await batchImageFeatures(this.backend, this.sessions.vision, batch.pixels, N, D)
      : undefined;
    const rowEmbeddings = (prompt: Embeddings) => {
      const S = prompt.length;
      const data = tileRows(prompt, B);
      for (let b = 0; b < B; b++) {
        if (features) {
          const perRow = features.count * D;
          data.set(features.data.subarray(b * perRow, b * perRow + N * D), (b * S + i0) * D);
        }
      }
      return this.backend.tensor('float32', data, [B, S, D]);
    };
    const mask = (total: number) => batchAttentionMask(this.backend, batch, total, i0, N);
    const positions = (start: number, length: number) =>
      this.backend.tensor(
        'int64',
        BigInt64Array.from({ length: B * length }, (_, i) =>
          BigInt(this.settings.firstPosition + start + (i % length)),
        ),
        [B, length],
      );
    const empty = emptyCache(this.backend, this.cacheShape, B);
    const decoder = await this.sessions.decoder.get();
    const answer = await this.embed(targetIds.slice(0, -1));
    const out = new Float64Array(B * T);
    const read = (logits: TypedTensor, position: number, n: number) =>
      readLogProbabilities(logits, position, targetIds[n], out, n, T);
    if (!this.settings.prefixCall) {
      const sequence = concatEmbeddings([input.embeddings, answer]);
      const S = sequence.length;
      const { logits } = await decoder.run({
        inputs_embeds: rowEmbeddings(sequence),
        attention_mask: mask(S),
        position_ids: positions(0, S),
        ...empty,
      });
      for (let n = 0; n < T; n++) read(logits, P - 1 + n, n);
    } else {
      const prefix = await decoder.run({
        inputs_embeds: rowEmbeddings(input.embeddings),
        attention_mask: mask(P),
        position_ids: positions(0, P),
        ...empty,
      });
      read(prefix.logits, P - 1, 0);
      if (T > 1) {
        const A = answer.length;
        const rest = await decoder.run({
          inputs_embeds: this.backend.tensor('float32', tileRows(answer, B), [B, A, D]),
          attention_mask: mask(P + A),
          position_ids: positions(P, A),
          ...nextCache(prefix),
        });
        for (let n = 1; n < T; n++) read(rest.logits, n - 1, n);
      }
    }
    return out;
  }

  releaseDecoder(): Promise<void> {
    return this.sessions.decoder.release();
  }

  async release(): Promise<void> {
    await Promise.all([this.sessions.vision.release(), this.sessions.embed.release(), this.sessions.decoder.release()]);
  }

  /**
   * Embeds `promptIds` and writes the vision tower's features over the image
   * positions `[imageStart, imageStart + count)`.
   */
  protected async mergeImage(
    image: { width: number; height: number },
    promptIds: number[],
    imageStart: number,
    pixels: PixelValues,
    expectedFeatures: number,
  ): Promise<MergedPrompt> {
    const { image_features: features } = await this.sessions.vision.run({
      pixel_values: this.backend.tensor('float32', pixels.data, pixels.dims),
    });
    const [, count, hidden] = features.dims as [number, number, number];
    if (count !== expectedFeatures) {
      throw new DexarError(
        'unsupported-model',
        `the vision encoder yields ${count} features but the config implies ${expectedFeatures}: the folder's config does not match its graphs`,
      );
    }
    const embeddings = await this.embed(promptIds);
    embeddings.data.set(floatData(features).subarray(0, count * hidden), imageStart * hidden);
    return {
      image,
      promptIds,
      embeddings,
      imageKeys: { start: imageStart, end: imageStart + count },
      pixels,
    };
  }

  /** The feeds of one generation call over `embeddings` after `pastLength` cached positions (an empty cache first). */
  private callFeeds(embeddings: Embeddings, cache: Cache | undefined, pastLength: number) {
    const past = cache ?? emptyCache(this.backend, this.cacheShape);
    return decoderFeeds(this.backend, embeddings, past, pastLength, this.settings.firstPosition);
  }

  protected embed(ids: readonly number[]): Promise<Embeddings> {
    return embedTokens(this.backend, this.sessions.embed, ids);
  }
}
