import {
  DecoderOnlyModel,
  type DecoderOnlySessions,
  eosTokenIds,
  type MergedPrompt,
  openDecoderOnlySessions,
  pixelValues,
  readModelFiles,
} from '@dexar/adapter-kit';
import { type Backend, DexarError, type FamilyModel, type ModelFolder, type RgbaImage } from '@dexar/core';
import type { Tokenizer } from '@huggingface/tokenizers';
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
  const sessions = await openDecoderOnlySessions(folder, backend, config.text_config.num_hidden_layers);
  return new PaliGemmaModel(
    backend,
    tokenizer,
    sessions,
    config,
    preprocessor,
    generation,
    (tokenizerConfig.bos_token as string | undefined) ?? '<bos>',
  );
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
    tokenizer: Tokenizer,
    sessions: DecoderOnlySessions,
    config: PaliGemmaConfig,
    private readonly preprocessor: SiglipPreprocessor,
    generation: unknown,
    private readonly bosToken: string,
  ) {
    const side = config.vision_config.image_size / config.vision_config.patch_size;
    super(backend, tokenizer, sessions, {
      family: 'paligemma',
      cache: {
        numLayers: config.text_config.num_hidden_layers,
        kvHeads: config.text_config.num_key_value_heads,
        headDim: config.text_config.head_dim,
      },
      eos: eosTokenIds([generation, config.text_config, config], 1),
      grid: { height: side, width: side },
      firstPosition: 1, // transformers' PaliGemma counts positions from 1
      prefixCall: true,
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
    return this.mergeImage({ width: image.width, height: image.height }, promptIds, 0, pixels, this.imageTokens);
  }

  /** Quirk 2 is the LLaVA code's; PaliGemma's text set keeps every non-image key. */
  protected officialTextExclusions(): number[] {
    return [];
  }
}
