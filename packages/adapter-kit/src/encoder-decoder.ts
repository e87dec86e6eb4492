import { type Compat, DexarError, type Grid, type KeySpan, type TokenLayout } from '@dexar/core';
import type { ExplainRows, PixelValues, PreparedInput, ScoreBatch } from '@dexar/core/adapter';
import { type Backend, floatData, type ModelFolder, type Session, type TypedTensor } from '@dexar/core/runtime';
import { GRAPHS } from './contract.js';
import { type Cache, concatEmbeddings, type Embeddings, emptyCache } from './decoding.js';
import { chunkCallsAreCausal, explainFeeds, stackRows } from './explain-runs.js';
import { FamilyModelBase, type FamilySettings, type OpenedSessions } from './family-model.js';
import { batchAttentionMask, batchImageFeatures, checkScoreBatch, readLogProbabilities, tileRows } from './scoring.js';
import type { TextTokenizer } from './tokenizer.js';

/** The encoder's output for one image and prompt: the decoder cross-attends to it. */
export interface EncodedInput extends PreparedInput {
  /** The encoder's input, [vision features, prompt embeddings]. `[E, D]` */
  readonly encoderInput: Embeddings;
  /** `[1, E, D]` */
  readonly encoderHidden: TypedTensor;
  /** Encoder positions of the grid's features: DEX-AR's image keys. */
  readonly imageKeys: KeySpan;
  readonly grid: Grid;
  /** Encoder positions of the prompt tokens: the text set of every step. */
  readonly promptKeys: number[];
  readonly pixels: PixelValues;
}

export interface EncoderDecoderSettings extends FamilySettings {
  /** Decoder tokens before the answer (Florence-2: `decoder_start_token_id`, `forced_bos_token_id`): context, never explained. */
  readonly context: readonly number[];
}

/** Where the grid's features sit among `count` vision features, and the grid they form. */
export type GridRule = (count: number) => { imageKeys: KeySpan; grid: Grid };

/**
 * What every encoder-decoder VLM family shares (Florence-2): the encoder over [vision features,
 * prompt] once, and DEX-AR on the decoder's CROSS-attention to it (docs/algorithm.md, "Per
 * family"): every step sees all encoder keys, the image keys are the grid features' positions and
 * the text set is the prompt's. The decoder reads `encoder_hidden_states` and
 * `encoder_attention_mask` besides `inputs_embeds` and its cache. A family adds its preprocessing
 * and prompt text (`prepare`, ending in `encode`).
 */
export abstract class EncoderDecoderModel extends FamilyModelBase<EncodedInput> {
  readonly decoder = { path: GRAPHS.decoder, attention: 'cross' } as const;
  declare protected readonly settings: EncoderDecoderSettings;

  constructor(
    backend: Backend,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    /** `openSessions(folder, backend, ['vision', 'embed', 'encoder'])`. */
    sessions: OpenedSessions,
    settings: EncoderDecoderSettings,
  ) {
    super(backend, folder, tokenizer, sessions, { ...settings, cache: { ...settings.cache, attention: 'cross' } });
  }

  /**
   * Teacher forcing over [context, y_0 .. y_{T-2}]: y_n is predicted at decoder position
   * `context + n - 1`; its cross-attention row sees every encoder key. One call.
   */
  async explain(
    input: EncodedInput,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; perToken?: boolean },
  ): Promise<ExplainRows> {
    if (options.perToken) {
      throw new DexarError(
        'unsupported-graph',
        `${this.decoder.path}: its calls over several tokens are not causal, and explaining an encoder-decoder one token per call is not supported; export the decoder with a causal self-attention mask`,
      );
    }
    const C = this.settings.context.length;
    const sequence = await this.embed([...this.settings.context, ...targetIds.slice(0, -1)]);
    const steps = targetIds.map((_, n) => n);
    const outputs = await session.run({
      ...this.callFeeds(input, sequence, undefined),
      ...explainFeeds(
        this.backend,
        targetIds,
        steps.map((n) => C + n - 1),
      ),
    });
    return {
      ...stackRows(this.backend, [outputs], input.encoderHidden.dims[1]),
      layout: this.layout(input, steps),
    };
  }

  /** Whether a decoder call over several tokens is causal among them (synthetic encoder states). */
  async answerCallIsCausal(session: Session): Promise<boolean> {
    const hidden = (await this.embed([0])).hidden;
    const E = 3;
    const encoder = Float32Array.from({ length: E * hidden }, (_, i) => Math.cos(i * 0.7));
    const encoderHidden = this.backend.tensor('float32', encoder, [1, E, hidden]);
    return chunkCallsAreCausal(hidden, async (rows) => {
      const feeds = { ...this.decoderFeeds(encoderHidden, rows, undefined), ...explainFeeds(this.backend, [0], [0]) };
      return (await session.run(feeds)).logits;
    });
  }

  /**
   * Teacher-forced log-probabilities of the targets for B variants of the prepared input: one
   * vision run over the batch's images, one encoder run (hidden image tokens masked out of its
   * self-attention and so of the decoder's cross-attention) and one decoder run over
   * [context, y_0 .. y_{T-2}]. Returns `[B, T]` natural-log probabilities.
   */
  async scoreTargets(input: EncodedInput, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array> {
    const T = targetIds.length;
    const { start: i0, end: i1 } = input.imageKeys;
    const N = i1 - i0;
    const B = checkScoreBatch(batch, N, T);
    const { length: E, hidden: D } = input.encoderInput;
    const rows = tileRows(input.encoderInput, B);
    if (batch.pixels) {
      // every vision feature (pooled and grid) comes first in the encoder input
      const count = E - input.promptKeys.length;
      const features = await batchImageFeatures(this.backend, this.sessions.vision, batch.pixels, count, D);
      for (let b = 0; b < B; b++) {
        rows.set(features.data.subarray(b * features.count * D, (b * features.count + count) * D), b * E * D);
      }
    }
    const mask = batchAttentionMask(this.backend, batch, E, i0, N);
    const { last_hidden_state: encoderHidden } = await this.sessions.encoder.run({
      inputs_embeds: this.backend.tensor('float32', rows, [B, E, D]),
      attention_mask: mask,
    });
    const C = this.settings.context.length;
    const sequence = await this.embed([...this.settings.context, ...targetIds.slice(0, -1)]);
    const decoder = await this.decoderSession.get();
    const { logits } = await decoder.run({
      inputs_embeds: this.backend.tensor('float32', tileRows(sequence, B), [B, sequence.length, D]),
      encoder_hidden_states: encoderHidden,
      encoder_attention_mask: mask,
      ...emptyCache(this.backend, this.settings.cache, B),
    });
    const out = new Float64Array(B * T);
    for (let n = 0; n < T; n++) readLogProbabilities(logits, C + n - 1, targetIds[n], out, n, T);
    return out;
  }

  /**
   * Runs the vision encoder on `pixels`, then the encoder over [its features, the prompt's
   * embeddings]; `gridRule` says where the grid's features are among the vision features.
   */
  protected async encode(
    image: { readonly width: number; readonly height: number },
    promptIds: readonly number[],
    pixels: PixelValues,
    gridRule: GridRule,
  ): Promise<EncodedInput> {
    const { image_features: features } = await this.sessions.vision.run({
      pixel_values: this.backend.tensor('float32', pixels.data, pixels.dims),
    });
    const [, count, hidden] = features.dims as [number, number, number];
    const { imageKeys, grid } = gridRule(count);
    const encoderInput = concatEmbeddings([
      { data: floatData(features), length: count, hidden },
      await this.embed(promptIds),
    ]);
    const E = encoderInput.length;
    const { last_hidden_state: encoderHidden } = await this.sessions.encoder.run({
      inputs_embeds: this.backend.tensor('float32', encoderInput.data, [1, E, hidden]),
      attention_mask: this.ones(E),
    });
    return {
      image: { width: image.width, height: image.height },
      promptIds: [...promptIds],
      pixels,
      encoderInput,
      encoderHidden,
      imageKeys,
      grid,
      promptKeys: Array.from({ length: promptIds.length }, (_, i) => count + i),
    };
  }

  protected generationPrefix(): Promise<Embeddings> {
    return this.embed(this.settings.context);
  }

  protected callFeeds(
    input: EncodedInput,
    embeddings: Embeddings,
    cache: Cache | undefined,
  ): Record<string, TypedTensor> {
    return this.decoderFeeds(input.encoderHidden, embeddings, cache);
  }

  /** One decoder call over `embeddings` reading the encoder states `[1, E, D]`. */
  private decoderFeeds(
    encoderHidden: TypedTensor,
    embeddings: Embeddings,
    cache: Cache | undefined,
  ): Record<string, TypedTensor> {
    return {
      inputs_embeds: this.backend.tensor('float32', embeddings.data, [1, embeddings.length, embeddings.hidden]),
      encoder_hidden_states: encoderHidden,
      encoder_attention_mask: this.ones(encoderHidden.dims[1]),
      ...(cache ?? emptyCache(this.backend, this.settings.cache)),
    };
  }

  /** Every step sees all E encoder keys; the text set is the prompt's keys. */
  protected layout(input: EncodedInput, steps: readonly number[]): TokenLayout {
    const E = input.encoderHidden.dims[1] as number;
    return {
      imageKeys: input.imageKeys,
      grid: input.grid,
      keyCounts: steps.map(() => E),
      textKeys: steps.map(() => input.promptKeys),
    };
  }

  private ones(length: number): TypedTensor {
    return this.backend.tensor('int64', new BigInt64Array(length).fill(1n), [1, length]);
  }
}
