import {
  type Backend,
  type Compat,
  causalTextKeys,
  DexarError,
  type ExplainRows,
  type ExplainStrategy,
  type FamilyModel,
  type Grid,
  type KeySpan,
  type ModelFolder,
  type PreparedInput,
  type ProgressCallback,
  type RgbaImage,
  type Session,
} from '@dexar/core';
import type { Tokenizer } from '@huggingface/tokenizers';
import { type CacheShape, decoderFeeds, type Embeddings, embedTokens, emptyCache, greedyDecode } from './decoding.js';
import { explainDecoderOnly } from './explain-runs.js';
import { LazyDecoder } from './lazy-session.js';

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

  /** Keys the authors' code leaves out of the text set in `official` mode (dexar-algorithm.md, quirk 2). */
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
    const empty = emptyCache(this.backend, this.cacheShape);
    return greedyDecode({
      decoder: await this.sessions.decoder.get(),
      embed: (ids) => this.embed(ids),
      prefix: (input as MergedPrompt).embeddings,
      feeds: (embeddings, cache, pastLength) =>
        decoderFeeds(this.backend, embeddings, cache ?? empty, pastLength, this.settings.firstPosition),
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
    options: { compat: Compat; strategy: ExplainStrategy; onProgress?: ProgressCallback },
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
      strategy: options.strategy,
      prefixCall: this.settings.prefixCall,
      firstPosition: this.settings.firstPosition,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
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
    pixels: { data: Float32Array; dims: readonly number[] },
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
    embeddings.data.set((features.data as Float32Array).subarray(0, count * hidden), imageStart * hidden);
    return {
      image,
      promptIds,
      embeddings,
      imageKeys: { start: imageStart, end: imageStart + count },
    };
  }

  protected embed(ids: readonly number[]): Promise<Embeddings> {
    return embedTokens(this.backend, this.sessions.embed, ids);
  }
}
