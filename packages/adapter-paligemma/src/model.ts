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
import {
  type PaliGemmaConfig,
  PaliGemmaConfigSchema,
  type SiglipPreprocessor,
  SiglipPreprocessorSchema,
} from './config.js';

export async function loadPaliGemma(folder: ModelFolder, backend: Backend, rawConfig: unknown): Promise<FamilyModel> {
  const { config, preprocessor, generation, tokenizer, tokenizerConfig } = await readModelFiles(folder, rawConfig, {
    config: PaliGemmaConfigSchema,
    configExpected: 'the paligemma adapter loads model_type "paligemma" with a gemma or gemma2 text model',
    preprocessor: SiglipPreprocessorSchema,
    preprocessorExpected: 'expected SigLIP image processor settings',
  });
  const sessions = await openSessions(folder, backend, ['vision', 'embed']);
  const bosToken = (tokenizerConfig.bos_token as string | undefined) ?? '<bos>';
  return new PaliGemmaModel(backend, folder, tokenizer, sessions, config, preprocessor, generation, bosToken);
}

/**
 * PaliGemma: image tokens first, then BOS, the prefix text and "\n"; the
 * prefix is attended bidirectionally and the answer causally. Exports without
 * `token_type_ids` decide that from the call, so the prefix runs alone first.
 */
class PaliGemmaModel extends DecoderOnlyModel {
  private readonly imageTokens: number;
  private readonly imageToken: string;

  constructor(
    backend: Backend,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    sessions: OpenedSessions,
    config: PaliGemmaConfig,
    private readonly preprocessor: SiglipPreprocessor,
    generation: unknown,
    private readonly bosToken: string,
  ) {
    const side = config.vision_config.image_size / config.vision_config.patch_size;
    super(backend, folder, tokenizer, sessions, {
      family: 'paligemma',
      cache: {
        numLayers: config.text_config.num_hidden_layers,
        kvHeads: config.text_config.num_key_value_heads,
        headDim: config.text_config.head_dim,
      },
      eos: eosTokenIds([generation, config.text_config, config], 1),
      grid: { height: side, width: side },
      imageTokenId: config.image_token_index,
      firstPosition: 1, // transformers' PaliGemma counts positions from 1
      prefixCall: true,
      fields: {
        numLayers: 'text_config.num_hidden_layers',
        kvHeads: 'text_config.num_key_value_heads',
        headDim: 'text_config.head_dim',
        grid: 'vision_config.image_size / vision_config.patch_size',
        imageTokenId: 'image_token_index',
      },
    });
    this.imageTokens = side * side;
    this.imageToken = tokenizer.id_to_token(config.image_token_index) ?? '<image>';
  }

  async prepare(image: RgbaImage, prompt: string): Promise<MergedPrompt> {
    if (prompt.includes(this.imageToken)) {
      throw new DexarError(
        'invalid-options',
        `PaliGemma prompts carry no ${this.imageToken} placeholder (the image always comes first): give the task text alone, e.g. "caption en"`,
      );
    }
    const text = `${this.imageToken.repeat(this.imageTokens)}${this.bosToken}${prompt}\n`;
    const promptIds = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    return this.mergeImage(image, promptIds, processImage(image, this.preprocessor));
  }

  /** Quirk 2 is the LLaVA code's; PaliGemma's text set keeps every non-image key. */
  protected officialTextExclusions(): number[] {
    return [];
  }
}
