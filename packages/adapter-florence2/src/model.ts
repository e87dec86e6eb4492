import {
  type EncodedInput,
  EncoderDecoderModel,
  eosTokenIds,
  type GridRule,
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
  type Florence2Config,
  Florence2ConfigSchema,
  type Florence2Preprocessor,
  Florence2PreprocessorSchema,
} from './config.js';

export async function loadFlorence2(folder: ModelFolder, backend: Backend, rawConfig: unknown): Promise<FamilyModel> {
  const { config, preprocessor, generation, tokenizer } = await readModelFiles(folder, rawConfig, {
    config: Florence2ConfigSchema,
    configExpected: 'the florence2 adapter loads model_type "florence2"',
    preprocessor: Florence2PreprocessorSchema,
    preprocessorExpected: 'expected Florence-2 image processor settings',
  });
  const sessions = await openSessions(folder, backend, ['vision', 'embed', 'encoder']);
  return new Florence2Model(backend, folder, tokenizer, sessions, config, preprocessor, generation);
}

/**
 * Florence-2: DaViT features, then a BART-like encoder over [image features, task prompt]; DEX-AR
 * differentiates the decoder's CROSS-attention to it (docs/algorithm.md, "Per family"). The
 * decoder context is `decoder_start_token_id` then `forced_bos_token_id`, as in generation.
 */
class Florence2Model extends EncoderDecoderModel {
  constructor(
    backend: Backend,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    sessions: OpenedSessions,
    private readonly config: Florence2Config,
    private readonly preprocessor: Florence2Preprocessor,
    generation: unknown,
  ) {
    const text = config.text_config;
    const g = (generation ?? {}) as { decoder_start_token_id?: number; forced_bos_token_id?: number };
    super(backend, folder, tokenizer, sessions, {
      family: 'florence2',
      cache: {
        numLayers: text.decoder_layers,
        kvHeads: text.decoder_attention_heads,
        headDim: text.d_model / text.decoder_attention_heads,
      },
      eos: eosTokenIds([generation, text, config], 2),
      context: [
        g.decoder_start_token_id ?? text.decoder_start_token_id,
        g.forced_bos_token_id ?? text.forced_bos_token_id,
      ],
      fields: {
        numLayers: 'text_config.decoder_layers',
        kvHeads: 'text_config.decoder_attention_heads',
        headDim: 'text_config.d_model / text_config.decoder_attention_heads',
      },
    });
  }

  async prepare(image: RgbaImage, prompt: string): Promise<EncodedInput> {
    const ids = this.tokenizer.encode(this.taskText(prompt)).ids;
    return this.encode(image, ids, processImage(image, this.preprocessor), this.gridRule);
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

  /** The grid features' encoder positions: one pooled token per `spatial_avg_pool`, the square grid at `temporal_avg_pool`. */
  private readonly gridRule: GridRule = (count) => {
    const sources = this.config.vision_config.image_feature_source;
    const pooled = sources.filter((s) => s === 'spatial_avg_pool').length;
    const gridSize = count - pooled;
    const side = Math.round(Math.sqrt(gridSize));
    if (side * side !== gridSize || !sources.includes('temporal_avg_pool')) {
      throw new DexarError(
        'unsupported-model',
        `${this.location}/config.json: vision_config.image_feature_source (${sources.join(', ')}) gives ${pooled} pooled features and a square grid, but the vision encoder yields ${count} features: the config does not match the graph`,
      );
    }
    // Every source before the grid contributes one pooled token.
    const start = sources.indexOf('temporal_avg_pool');
    return { imageKeys: { start, end: start + gridSize }, grid: { height: side, width: side } };
  };
}
