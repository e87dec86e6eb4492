import {
  DecoderOnlyModel,
  eosTokenIds,
  type MergedPrompt,
  type OpenedSessions,
  openSessions,
  processImage,
  readModelFiles,
  type TextTokenizer,
} from '@dexar/adapter-kit';
import { DexarError, type RgbaImage } from '@dexar/core';
import type { FamilyModel } from '@dexar/core/adapter';
import type { Backend, ModelFolder } from '@dexar/core/runtime';
import { type ClipPreprocessor, ClipPreprocessorSchema, type LlavaConfig, LlavaConfigSchema } from './config.js';

export async function loadLlava(folder: ModelFolder, backend: Backend, rawConfig: unknown): Promise<FamilyModel> {
  const { config, preprocessor, generation, tokenizer } = await readModelFiles(folder, rawConfig, {
    config: LlavaConfigSchema,
    configExpected: 'the llava adapter loads model_type "llava" with a llama or mistral text model',
    preprocessor: ClipPreprocessorSchema,
    preprocessorExpected: 'expected CLIP image processor settings',
  });
  const sessions = await openSessions(folder, backend, ['vision', 'embed']);
  return new LlavaModel(backend, folder, tokenizer, sessions, config, preprocessor, generation);
}

/** LLaVA-1.5 and BakLLaVA: the `<image>` placeholder expanded in place, all causal. */
class LlavaModel extends DecoderOnlyModel {
  private readonly imageToken: string;
  /** Features the vision tower yields per image: grid² (`default` drops CLS) or grid² + 1 (`full`). */
  private readonly imageTokens: number;

  constructor(
    backend: Backend,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    sessions: OpenedSessions,
    private readonly config: LlavaConfig,
    private readonly preprocessor: ClipPreprocessor,
    generation: unknown,
  ) {
    const side = config.vision_config.image_size / config.vision_config.patch_size;
    const leadingFeatures = config.vision_feature_select_strategy === 'full' ? 1 : 0;
    super(backend, folder, tokenizer, sessions, {
      family: 'llava',
      cache: {
        numLayers: config.text_config.num_hidden_layers,
        kvHeads: config.text_config.num_key_value_heads,
        headDim: config.text_config.head_dim,
      },
      eos: eosTokenIds([generation, config.text_config, config], 2),
      grid: { height: side, width: side },
      leadingFeatures,
      imageTokenId: config.image_token_index,
      firstPosition: 0,
      prefixCall: false,
      fields: {
        numLayers: 'text_config.num_hidden_layers',
        kvHeads: 'text_config.num_key_value_heads',
        headDim: 'text_config.head_dim (else hidden_size / num_attention_heads)',
        grid: 'vision_config.image_size / vision_config.patch_size',
        imageTokenId: 'image_token_index',
      },
    });
    // Expanded from the config, not by transformers.js's processor, which adds one too many for `default`.
    this.imageTokens = side * side + leadingFeatures;
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
    return this.mergeImage(image, promptIds, processImage(image, this.preprocessor));
  }

  /** The LLaVA code leaves the first key after the image (a lone `▁`) out of the text set. */
  protected officialTextExclusions(input: MergedPrompt): number[] {
    return [input.imageKeys.end];
  }
}
