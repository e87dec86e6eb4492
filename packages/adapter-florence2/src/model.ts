import {
  batchAttentionMask,
  batchImageFeatures,
  type Cache,
  checkScoreBatch,
  chunkCallsAreCausal,
  concatEmbeddings,
  type Embeddings,
  embedTokens,
  eosTokenIds,
  explainFeeds,
  greedyDecode,
  LazyDecoder,
  pixelValues,
  readLogProbabilities,
  readModelFiles,
  sliceEmbeddings,
  stackRows,
  streamExplainSteps,
  tileRows,
} from '@dexar/adapter-kit';
import {
  type Backend,
  type Compat,
  DexarError,
  type ExplainRows,
  type FamilyModel,
  floatData,
  type KeySpan,
  type ModelFolder,
  type PreparedInput,
  type ProgressCallback,
  type RgbaImage,
  type ScoreBatch,
  type Session,
  type StreamedRows,
  type TokenLayout,
  type TypedTensor,
} from '@dexar/core';
import type { Tokenizer } from '@huggingface/tokenizers';
import {
  type Florence2Config,
  Florence2ConfigSchema,
  type Florence2Preprocessor,
  Florence2PreprocessorSchema,
} from './config.js';

const DECODER = 'onnx/decoder_model_merged.onnx';

export async function loadFlorence2(folder: ModelFolder, backend: Backend, rawConfig: unknown): Promise<FamilyModel> {
  const { config, preprocessor, generation, tokenizer } = await readModelFiles(folder, rawConfig, {
    config: Florence2ConfigSchema,
    configExpected: 'the florence2 adapter loads model_type "florence2"',
    preprocessor: Florence2PreprocessorSchema,
    preprocessorExpected: 'expected Florence-2 image processor settings',
  });
  const [vision, embed, encoder] = await Promise.all(
    ['onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx', 'onnx/encoder_model.onnx'].map((p) =>
      backend.createSession(folder, p),
    ),
  );
  const decoder = new LazyDecoder(backend, folder, DECODER, config.text_config.decoder_layers);
  return new Florence2Model(backend, tokenizer, { vision, embed, encoder, decoder }, config, preprocessor, generation);
}

/** The encoder's output for one image and task: the decoder cross-attends to it. */
interface EncodedInput extends PreparedInput {
  /** The encoder's input, [vision features, task prompt embeddings]. `[E, D]` */
  readonly encoderInput: Embeddings;
  readonly encoderHidden: TypedTensor;
  /** Encoder positions of the grid features (the pooled token is not a grid cell). */
  readonly imageKeys: KeySpan;
  /** Encoder positions of the task prompt tokens. */
  readonly promptKeys: number[];
}

/**
 * Florence-2: DaViT features, then a BART-like encoder over [image features,
 * task prompt]; DEX-AR differentiates the decoder's CROSS-attention to it
 * (docs/algorithm.md, per-family table). The decoder context is
 * `decoder_start_token_id` then `forced_bos_token_id`, as in generation.
 */
class Florence2Model implements FamilyModel {
  readonly family = 'florence2';
  readonly decoder = { path: DECODER, attention: 'cross' } as const;
  readonly numLayers: number;
  private readonly heads: number;
  private readonly headDim: number;
  private readonly context: number[];
  private readonly eos: number[];

  constructor(
    private readonly backend: Backend,
    private readonly tokenizer: Tokenizer,
    private readonly sessions: {
      vision: Session;
      embed: Session;
      encoder: Session;
      decoder: LazyDecoder;
    },
    private readonly config: Florence2Config,
    private readonly preprocessor: Florence2Preprocessor,
    generation: unknown,
  ) {
    this.numLayers = config.text_config.decoder_layers;
    this.heads = config.text_config.decoder_attention_heads;
    this.headDim = config.text_config.d_model / this.heads;
    const g = (generation ?? {}) as {
      decoder_start_token_id?: number;
      forced_bos_token_id?: number;
    };
    this.context = [
      g.decoder_start_token_id ?? config.text_config.decoder_start_token_id,
      g.forced_bos_token_id ?? config.text_config.forced_bos_token_id,
    ];
    this.eos = eosTokenIds([generation, config.text_config, config], 2);
  }

  async prepare(image: RgbaImage, prompt: string): Promise<EncodedInput> {
    const ids = this.tokenizer.encode(this.taskText(prompt)).ids;
    const pp = this.preprocessor;
    const resized = await this.backend.resizeImage(
      image,
      pp.size.width,
      pp.size.height,
      pp.resample === 2 ? 'bilinear' : 'bicubic',
    );
    const pixels = pixelValues(
      resized,
      { top: 0, left: 0, height: pp.size.height, width: pp.size.width },
      {
        scale: pp.do_rescale ? pp.rescale_factor : 1,
        mean: pp.do_normalize ? pp.image_mean : [0, 0, 0],
        std: pp.do_normalize ? pp.image_std : [1, 1, 1],
      },
    );
    const { image_features: features } = await this.sessions.vision.run({
      pixel_values: this.backend.tensor('float32', pixels.data, pixels.dims),
    });
    const [, count, hidden] = features.dims as [number, number, number];
    const imageKeys = this.gridSpan(count);
    const encoderInput = concatEmbeddings([
      { data: floatData(features), length: count, hidden },
      await this.embed(ids),
    ]);
    const E = encoderInput.length;
    const { last_hidden_state: encoderHidden } = await this.sessions.encoder.run({
      inputs_embeds: this.backend.tensor('float32', encoderInput.data, [1, E, hidden]),
      attention_mask: this.ones(E),
    });
    return {
      image: { width: image.width, height: image.height },
      promptIds: ids,
      pixels,
      encoderInput,
      encoderHidden,
      imageKeys,
      promptKeys: Array.from({ length: ids.length }, (_, i) => count + i),
    };
  }

  tokenizeTarget(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  tokenStrings(ids: readonly number[]): string[] {
    return ids.map((id) => this.tokenizer.decode([id]));
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  async generate(prepared: PreparedInput, maxNewTokens: number, onProgress?: ProgressCallback): Promise<number[]> {
    const input = prepared as EncodedInput;
    return greedyDecode({
      decoder: await this.sessions.decoder.get(),
      embed: (ids) => this.embed(ids),
      prefix: await this.embed(this.context),
      feeds: (embeddings, cache) => this.feeds(input.encoderHidden, embeddings, cache),
      eos: this.eos,
      maxNewTokens,
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /**
   * Teacher forcing over [start, bos, y_0 .. y_{T-2}]: y_n is predicted at
   * decoder position n + 1; its cross-attention row sees every encoder key.
   */
  async explain(
    prepared: PreparedInput,
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
    const input = prepared as EncodedInput;
    const T = targetIds.length;
    const sequence = await this.embed([...this.context, ...targetIds.slice(0, -1)]);
    const call = (length: number, steps: number[]) =>
      session.run({
        ...this.feeds(input.encoderHidden, sliceEmbeddings(sequence, 0, length), undefined),
        ...explainFeeds(
          this.backend,
          steps.map((n) => targetIds[n]),
          steps.map((n) => n + 1),
        ),
      });
    const parts = [
      await call(
        T + 1,
        targetIds.map((_, n) => n),
      ),
    ];
    return { ...stackRows(this.backend, parts, input.encoderHidden.dims[1]), layout: layoutOf(input, T) };
  }

  /** Greedy decoding on the explain graph: each call's last decoder position, its cross-attention rows over the encoder. */
  async *stream(prepared: PreparedInput, maxNewTokens: number, session: Session): AsyncIterable<StreamedRows> {
    const input = prepared as EncodedInput;
    const steps = streamExplainSteps({
      backend: this.backend,
      session,
      embed: (ids) => this.embed(ids),
      prefix: await this.embed(this.context),
      feeds: (embeddings, cache) => this.feeds(input.encoderHidden, embeddings, cache),
      eos: this.eos,
      maxNewTokens,
    });
    for await (const step of steps) yield { ...step, layout: layoutOf(input, 1) };
  }

  /** Whether a decoder call over several tokens is causal among them (synthetic encoder states). */
  async answerCallIsCausal(session: Session): Promise<boolean> {
    const hidden = (await this.embed([0])).hidden;
    const E = 3;
    const encoder = Float32Array.from({ length: E * hidden }, (_, i) => Math.cos(i * 0.7));
    const encoderHidden = this.backend.tensor('float32', encoder, [1, E, hidden]);
    return chunkCallsAreCausal(hidden, async (rows) => {
      const feeds = { ...this.feeds(encoderHidden, rows, undefined), ...explainFeeds(this.backend, [0], [0]) };
      return (await session.run(feeds)).logits;
    });
  }

  /**
   * Teacher-forced log-probabilities of the targets for B variants of the prepared input: one
   * vision run over the batch's images, one encoder run (hidden image tokens masked out of its
   * self-attention and so of the decoder's cross-attention) and one decoder run over
   * [start, bos, y_0 .. y_{T-2}]. Returns `[B, T]` natural-log probabilities.
   */
  async scoreTargets(prepared: PreparedInput, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array> {
    const input = prepared as EncodedInput;
    const T = targetIds.length;
    const { start: i0, end: i1 } = input.imageKeys;
    const N = i1 - i0;
    const B = checkScoreBatch(batch, N, T);
    const { length: E, hidden: D } = input.encoderInput;
    const rows = tileRows(input.encoderInput, B);
    if (batch.pixels) {
      // every vision feature (pooled and grid) comes first in the encoder input
      const count = E - input.promptIds.length;
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
    const sequence = await this.embed([...this.context, ...targetIds.slice(0, -1)]);
    const decoder = await this.sessions.decoder.get();
    const { logits } = await decoder.run({
      inputs_embeds: this.backend.tensor('float32', tileRows(sequence, B), [B, sequence.length, D]),
      encoder_hidden_states: encoderHidden,
      encoder_attention_mask: mask,
      ...this.emptyCache(B),
    });
    const out = new Float64Array(B * T);
    for (let n = 0; n < T; n++) readLogProbabilities(logits, n + 1, targetIds[n], out, n, T);
    return out;
  }

  releaseDecoder(): Promise<void> {
    return this.sessions.decoder.release();
  }

  async release(): Promise<void> {
    const { vision, embed, encoder, decoder } = this.sessions;
    await Promise.all([vision.release(), embed.release(), encoder.release(), decoder.release()]);
  }

  /** A task token expanded as the Florence-2 processor does; free text passes through. */
  private taskText(prompt: string): string {
    const task = /^<[A-Z_]+>/.exec(prompt)?.[0];
    if (!task) return prompt;
    const rest = prompt.slice(task.length);
    const plain = this.preprocessor.task_prompts_without_inputs[task];
    if (plain !== undefined && rest.trim() === '') return plain;
    const withInput = this.preprocessor.task_prompts_with_input[task];
    if (withInput !== undefined) return withInput.replace('{input}', rest);
    const known = [
      ...Object.keys(this.preprocessor.task_prompts_without_inputs),
      ...Object.keys(this.preprocessor.task_prompts_with_input),
    ];
    throw new DexarError(
      'invalid-options',
      `${task} is not a Florence-2 task this model knows (${known.join(', ')})${plain !== undefined ? ` and ${task} takes no input` : ''}: use one of them, or free text`,
    );
  }

  /** The grid features' encoder positions: one pooled token per `spatial_avg_pool`, the grid at `temporal_avg_pool`. */
  private gridSpan(count: number): KeySpan {
    const sources = this.config.vision_config.image_feature_source;
    const pooled = sources.filter((s) => s === 'spatial_avg_pool').length;
    const gridSize = count - pooled;
    const side = Math.round(Math.sqrt(gridSize));
    if (side * side !== gridSize || !sources.includes('temporal_avg_pool')) {
      throw new DexarError(
        'unsupported-model',
        `the vision encoder yields ${count} features, which is not ${pooled} pooled + a square grid (image_feature_source ${sources.join(', ')})`,
      );
    }
    // Every source before the grid contributes one pooled token.
    const start = sources.indexOf('temporal_avg_pool');
    return { start, end: start + gridSize };
  }

  /** One decoder call over `embeddings` reading the encoder states `[1, E, D]`. */
  private feeds(
    encoderHidden: TypedTensor,
    embeddings: Embeddings,
    cache: Cache | undefined,
  ): Record<string, TypedTensor> {
    const E = encoderHidden.dims[1];
    return {
      inputs_embeds: this.backend.tensor('float32', embeddings.data, [1, embeddings.length, embeddings.hidden]),
      encoder_hidden_states: encoderHidden,
      encoder_attention_mask: this.ones(E),
      ...(cache ?? this.emptyCache()),
    };
  }

  private emptyCache(batch = 1): Cache {
    const cache: Cache = {};
    for (let i = 0; i < this.numLayers; i++) {
      for (const part of ['decoder', 'encoder']) {
        for (const kind of ['key', 'value']) {
          cache[`past_key_values.${i}.${part}.${kind}`] = this.backend.tensor('float32', new Float32Array(0), [
            batch,
            this.heads,
            0,
            this.headDim,
          ]);
        }
      }
    }
    return cache;
  }

  private ones(length: number): TypedTensor {
    return this.backend.tensor('int64', new BigInt64Array(length).fill(1n), [1, length]);
  }

  private embed(ids: readonly number[]): Promise<Embeddings> {
    return embedTokens(this.backend, this.sessions.embed, ids);
  }
}

/** T steps of cross-attention: each sees every encoder key; the text set is the prompt's keys. */
function layoutOf(input: EncodedInput, T: number): TokenLayout {
  const side = Math.sqrt(input.imageKeys.end - input.imageKeys.start);
  const E = input.encoderHidden.dims[1] as number;
  return {
    imageKeys: input.imageKeys,
    grid: { height: side, width: side },
    keyCounts: Array.from({ length: T }, () => E),
    textKeys: Array.from({ length: T }, () => input.promptKeys),
  };
}
