import {
  DecoderOnlyModel,
  type DecoderOnlySessions,
  eosTokenIds,
  type MergedPrompt,
  openDecoderOnlySessions,
  readModelFiles,
} from '@dexar/adapter-kit';
import { type Backend, DexarError, type FamilyModel, type ModelFolder, type RgbaImage } from '@dexar/core';
import type { Tokenizer } from '@huggingface/tokenizers';
import { type ClipPreprocessor, ClipPreprocessorSchema, type LlavaConfig, LlavaConfigSchema } from './config.js';
import { clipPixelValues } from './preprocess.js';

export async function loadLlava(folder: ModelFolder, backend: Backend, rawConfig: unknown): Promise<FamilyModel> {
  const { config, preprocessor, generation, tokenizer } = await readModelFiles(folder, rawConfig, {
    config: LlavaConfigSchema,
    configExpected: 'the llava adapter loads model_type "llava" with a llama or mistral text model',
    preprocessor: ClipPreprocessorSchema,
    preprocessorExpected: 'expected CLIP image processor settings',
  });
  return new LlavaModel(
    backend,
    tokenizer,
    await openDecoderOnlySessions(folder, backend, config.text_config.num_hidden_layers),
    config,
    preprocessor,
    generation,
  );
}

/** LLaVA-1.5 and BakLLaVA: the `<image>` placeholder expanded in place, all causal. */
class LlavaModel extends DecoderOnlyModel {
  private readonly imageToken: string;
  /** Features the vision tower yields per image: grid² (`default` drops CLS) or grid² + 1 (`full`). */
  private readonly imageTokens: number;

  constructor(
    backend: Backend,
    tokenizer: Tokenizer,
    sessions: DecoderOnlySessions,
    private readonly config: LlavaConfig,
    private readonly preprocessor: ClipPreprocessor,
    generation: unknown,
  ) {
    const side = config.vision_config.image_size / config.vision_config.patch_size;
    super(backend, tokenizer, sessions, {
      family: 'llava',
      cache: {
        numLayers: config.text_config.num_hidden_layers,
        kvHeads: config.text_config.num_key_value_heads,
        headDim: config.text_config.head_dim,
      },
      eos: eosTokenIds([generation, config.text_config, config], 2),
      grid: { height: side, width: side },
      firstPosition: 0,
      prefixCall: false,
    });
    // Expanded from the config, not by transformers.js's processor, which adds one too many for `default`.
    this.imageTokens = side * side + (config.vision_feature_select_strategy === 'full' ? 1 : 0);
    this.imageToken = tokenizer.id_to_token(config.image_token_index) ?? '<image>';
  }

  async prepare(image: RgbaImage, prompt: string): Promise<MergedPrompt> {
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
    return this.mergeImage({ width: image.width, height: image.height }, promptIds, at, pixels, this.imageTokens);
  }

  /** The LLaVA code leaves the first key after the image (a lone `▁`) out of the text set. */
  protected officialTextExclusions(input: MergedPrompt): number[] {
    return [input.imageKeys.end];
  }
}
