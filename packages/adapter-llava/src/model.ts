import {
  type Backend,
  type Compat,
  causalTextKeys,
  DexarError,
  type ExplainRows,
  type ExplainStrategy,
  type FamilyModel,
  type ModelFolder,
  type PreparedInput,
  type ProgressCallback,
  type RgbaImage,
  readJson,
  type Session,
  type TypedTensor,
} from '@dexar/core';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  type ClipPreprocessor,
  ClipPreprocessorSchema,
  eosIds,
  type LlavaConfig,
  LlavaConfigSchema,
  parseWith,
} from './config.js';
import {
  type CacheShape,
  concatEmbeddings,
  decoderFeeds,
  type Embeddings,
  emptyCache,
  greedyDecode,
  layersOfDecoder,
  sliceEmbeddings,
} from './decoder.js';
import { clipPixelValues } from './preprocess.js';

const DECODER = 'onnx/decoder_model_merged.onnx';

/** A prompt with its image placeholder expanded and the image features merged in. */
interface LlavaInput extends PreparedInput {
  readonly embeddings: Embeddings;
  /** The expanded image placeholder: `[i0, i1)`. */
  readonly imageKeys: { start: number; end: number };
}

export async function loadLlava(
  folder: ModelFolder,
  backend: Backend,
  rawConfig: unknown,
): Promise<FamilyModel> {
  const config = parseWith(
    LlavaConfigSchema,
    rawConfig,
    `${folder.location}/config.json`,
    'the llava adapter loads model_type "llava" with a llama or mistral text model',
  );
  const preprocessor = parseWith(
    ClipPreprocessorSchema,
    await readJson(folder, 'preprocessor_config.json'),
    `${folder.location}/preprocessor_config.json`,
    'expected CLIP image processor settings',
  );
  const generation = (await folder.exists('generation_config.json'))
    ? await readJson(folder, 'generation_config.json')
    : undefined;
  const tokenizer = new Tokenizer(
    await readJson(folder, 'tokenizer.json'),
    await readJson(folder, 'tokenizer_config.json'),
  );
  const [vision, embed, decoder] = await Promise.all(
    ['onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx', DECODER].map((path) =>
      backend.createSession(folder, path),
    ),
  );
  return new LlavaModel(backend, config, preprocessor, eosIds(config, generation), tokenizer, {
    vision,
    embed,
    decoder,
  });
}

class LlavaModel implements FamilyModel {
  readonly family = 'llava';
  readonly decoder = { path: DECODER, attention: 'self' } as const;
  readonly numLayers: number;
  private readonly cacheShape: CacheShape;
  private readonly imageToken: string;
  /** Features the vision tower yields per image: grid² (`default` drops CLS) or grid² + 1 (`full`). */
  private readonly imageTokens: number;
  private readonly grid: { height: number; width: number };

  constructor(
    private readonly backend: Backend,
    private readonly config: LlavaConfig,
    private readonly preprocessor: ClipPreprocessor,
    private readonly eos: number[],
    private readonly tokenizer: Tokenizer,
    private readonly sessions: { vision: Session; embed: Session; decoder: Session },
  ) {
    this.numLayers = layersOfDecoder(sessions.decoder);
    const text = config.text_config;
    this.cacheShape = {
      numLayers: this.numLayers,
      kvHeads: text.num_key_value_heads,
      headDim: text.head_dim,
    };
    const side = config.vision_config.image_size / config.vision_config.patch_size;
    this.grid = { height: side, width: side };
    // Expanded from the config, not by transformers.js's processor, which adds one too many for `default`.
    this.imageTokens = side * side + (config.vision_feature_select_strategy === 'full' ? 1 : 0);
    this.imageToken = tokenizer.id_to_token(config.image_token_index) ?? '<image>';
  }

  async prepare(image: RgbaImage, prompt: string): Promise<LlavaInput> {
    const placeholders = prompt.split(this.imageToken).length - 1;
    if (placeholders !== 1) {
      throw new DexarError(
        'no-image-placeholder',
        `the prompt holds ${placeholders} ${this.imageToken} placeholders, it needs exactly one where the image goes (e.g. "USER: ${this.imageToken}\\nDescribe the image. ASSISTANT:")`,
      );
    }
    const ids = this.tokenizer.encode(prompt).ids;
    const at = ids.indexOf(this.config.image_token_index);
    const promptIds = [
      ...ids.slice(0, at),
      ...Array(this.imageTokens).fill(this.config.image_token_index),
      ...ids.slice(at + 1),
    ];
    const pixels = await clipPixelValues(image, this.preprocessor, this.backend);
    const { image_features: features } = await this.sessions.vision.run({
      pixel_values: this.backend.tensor('float32', pixels.data, pixels.dims),
    });
    const [, count, hidden] = features.dims as [number, number, number];
    if (count !== this.imageTokens) {
      throw new DexarError(
        'unsupported-model',
        `the vision encoder yields ${count} features but the config implies ${this.imageTokens} (image_size / patch_size and vision_feature_select_strategy): the folder's config does not match its graphs`,
      );
    }
    const embeddings = await this.embed(promptIds);
    embeddings.data.set((features.data as Float32Array).subarray(0, count * hidden), at * hidden);
    return {
      image: { width: image.width, height: image.height },
      promptIds,
      embeddings,
      imageKeys: { start: at, end: at + count },
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

  generate(
    input: PreparedInput,
    maxNewTokens: number,
    onProgress?: ProgressCallback,
  ): Promise<number[]> {
    return greedyDecode({
      backend: this.backend,
      decoder: this.sessions.decoder,
      embed: (ids) => this.embed(ids),
      prefix: (input as LlavaInput).embeddings,
      shape: this.cacheShape,
      eos: this.eos,
      maxNewTokens,
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /**
   * Teacher forcing: the sequence is prompt + y_0 .. y_{T-2}; step n reads
   * row q_n = P + n - 1 (dexar-algorithm.md, "Why one forward pass is enough").
   */
  async explain(
    prepared: PreparedInput,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; strategy: ExplainStrategy; onProgress?: ProgressCallback },
  ): Promise<ExplainRows> {
    const input = prepared as LlavaInput;
    const P = input.promptIds.length;
    const T = targetIds.length;
    const sequence = concatEmbeddings([
      input.embeddings,
      await this.embed(targetIds.slice(0, T - 1)),
    ]);
    const keyCounts = targetIds.map((_, n) => P + n);
    const run = async (length: number, steps: number[]) => {
      const feeds = decoderFeeds(
        this.backend,
        sliceEmbeddings(sequence, 0, length),
        emptyCache(this.backend, this.cacheShape),
        0,
      );
      feeds.dexar_target_ids = this.backend.tensor(
        'int64',
        BigInt64Array.from(steps, (n) => BigInt(targetIds[n])),
        [steps.length],
      );
      feeds.dexar_query_positions = this.backend.tensor(
        'int64',
        BigInt64Array.from(steps, (n) => BigInt(P + n - 1)),
        [steps.length],
      );
      return session.run(feeds);
    };
    let outputs: Record<string, TypedTensor>;
    if (options.strategy === 'single') {
      options.onProgress?.({ stage: 'explain', done: 0, total: 1 });
      outputs = await run(
        P + T - 1,
        targetIds.map((_, n) => n),
      );
      options.onProgress?.({ stage: 'explain', done: 1, total: 1 });
    } else {
      // The authors' loop: one full run per token over prompt + y_<n.
      const steps: Record<string, TypedTensor>[] = [];
      for (let n = 0; n < T; n++) {
        steps.push(await run(P + n, [n]));
        options.onProgress?.({ stage: 'explain', done: n + 1, total: T });
      }
      outputs = stackSteps(this.backend, steps, P + T - 1);
    }
    // Quirk 2 (official only): the LLaVA code leaves the first key after the image out of the text set.
    const exclude = options.compat === 'official' ? [input.imageKeys.end] : [];
    return {
      gradientRows: outputs.dexar_gradient_rows,
      attentionRows: outputs.dexar_attention_rows,
      logitLens: outputs.dexar_logit_lens,
      layout: {
        imageKeys: input.imageKeys,
        grid: this.grid,
        keyCounts,
        textKeys: causalTextKeys(keyCounts, input.imageKeys, exclude),
      },
    };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }

  private async embed(ids: readonly number[]): Promise<Embeddings> {
    const { inputs_embeds: out } = await this.sessions.embed.run({
      input_ids: this.backend.tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    });
    const hidden = out.dims[2];
    return { data: (out.data as Float32Array).slice(), length: ids.length, hidden };
  }
}

/** Stacks per-step outputs `[1, L, H, K_n]` into `[T, L, H, K]`, zero-padding keys a step did not see. */
function stackSteps(
  backend: Backend,
  steps: Record<string, TypedTensor>[],
  keys: number,
): Record<string, TypedTensor> {
  const stacked: Record<string, TypedTensor> = {};
  for (const name of ['dexar_gradient_rows', 'dexar_attention_rows']) {
    const [, L, H] = steps[0][name].dims as [number, number, number, number];
    const out = new Float32Array(steps.length * L * H * keys);
    steps.forEach((step, n) => {
      const K = step[name].dims[3];
      const data = step[name].data as Float32Array;
      for (let row = 0; row < L * H; row++)
        out.set(data.subarray(row * K, (row + 1) * K), (n * L * H + row) * keys);
    });
    stacked[name] = backend.tensor('float32', out, [steps.length, L, H, keys]);
  }
  const lens = steps.map((s) => s.dexar_logit_lens);
  const L = lens[0].dims[1];
  const data = new Float32Array(steps.length * L);
  lens.forEach((t, n) => data.set(t.data as Float32Array, n * L));
  stacked.dexar_logit_lens = backend.tensor('float32', data, [steps.length, L]);
  return stacked;
}
