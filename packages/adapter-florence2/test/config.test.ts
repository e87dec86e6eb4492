import { eosTokenIds, parseConfig } from '@dexar/adapter-kit';
import { DexarError } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { repoJson as json, pretrained } from '../../adapter-kit/test/hf-config.js';
import { Florence2ConfigSchema, Florence2PreprocessorSchema } from '../src/config.js';

const EXPECTED = 'the florence2 adapter loads model_type "florence2"';
const parse = (raw: unknown) => parseConfig(Florence2ConfigSchema, raw, 'config.json', EXPECTED);

/** microsoft/Florence-2-base (remote code) saved in full: a `florence2_language` BART and a DaViT, many nulls. */
const florenceBase = {
  ...pretrained,
  architectures: ['Florence2ForConditionalGeneration'],
  auto_map: {
    AutoConfig: 'configuration_florence2.Florence2Config',
    AutoModelForCausalLM: 'modeling_florence2.Florence2ForConditionalGeneration',
  },
  model_type: 'florence2',
  bos_token_id: 0,
  pad_token_id: 1,
  eos_token_id: 2,
  decoder_start_token_id: null,
  forced_bos_token_id: null,
  ignore_index: -100,
  projection_dim: 768,
  vocab_size: 51289,
  is_encoder_decoder: true,
  torch_dtype: 'float16',
  transformers_version: '4.41.0.dev0',
  text_config: {
    ...pretrained,
    model_type: 'florence2_language',
    vocab_size: 51289,
    max_position_embeddings: 1024,
    d_model: 768,
    encoder_layers: 6,
    decoder_layers: 6,
    encoder_attention_heads: 12,
    decoder_attention_heads: 12,
    encoder_ffn_dim: 3072,
    decoder_ffn_dim: 3072,
    encoder_layerdrop: 0.0,
    decoder_layerdrop: 0.0,
    activation_function: 'gelu',
    dropout: 0.1,
    attention_dropout: 0.1,
    activation_dropout: 0.1,
    classifier_dropout: 0.0,
    init_std: 0.02,
    scale_embedding: false,
    use_cache: true,
    num_hidden_layers: 6,
    is_encoder_decoder: true,
    early_stopping: true,
    no_repeat_ngram_size: 3,
    num_beams: 3,
    bos_token_id: 0,
    pad_token_id: 1,
    eos_token_id: 2,
    decoder_start_token_id: 2,
    forced_bos_token_id: 0,
    forced_eos_token_id: 2,
  },
  vision_config: {
    ...pretrained,
    model_type: 'davit',
    drop_path_rate: 0.1,
    patch_size: [7, 3, 3, 3],
    patch_stride: [4, 2, 2, 2],
    patch_padding: [3, 1, 1, 1],
    patch_prenorm: [false, true, true, true],
    enable_checkpoint: false,
    dim_embed: [128, 256, 512, 1024],
    num_heads: [4, 8, 16, 32],
    num_groups: [4, 8, 16, 32],
    depths: [1, 1, 9, 1],
    window_size: 12,
    projection_dim: 768,
    visual_temporal_embedding: { type: 'COSINE', max_temporal_embeddings: 100 },
    image_pos_embed: { type: 'learned_abs_2d', max_pos_embeddings: 50 },
    image_feature_source: ['spatial_avg_pool', 'temporal_avg_pool'],
  },
};

/** Florence-2-large in transformers' own `florence2` (4.56+): a `bart` text_config, `florence_vision`, `image_token_id`. */
const florenceLargeNative = {
  architectures: ['Florence2ForConditionalGeneration'],
  model_type: 'florence2',
  image_token_id: 51289,
  is_encoder_decoder: true,
  dtype: 'float32',
  transformers_version: '4.56.0.dev0',
  text_config: {
    model_type: 'bart',
    vocab_size: 51289,
    d_model: 1024,
    encoder_layers: 12,
    decoder_layers: 12,
    encoder_attention_heads: 16,
    decoder_attention_heads: 16,
    encoder_ffn_dim: 4096,
    decoder_ffn_dim: 4096,
    num_hidden_layers: 12,
    max_position_embeddings: 4096,
    activation_function: 'gelu',
    classifier_dropout: 0.0,
    dropout: 0.1,
    scale_embedding: false,
    bos_token_id: 0,
    pad_token_id: 1,
    eos_token_id: 2,
    decoder_start_token_id: 2,
    forced_bos_token_id: null,
    forced_eos_token_id: 2,
    id2label: null,
    label2id: null,
    dtype: 'float32',
  },
  vision_config: {
    model_type: 'florence_vision',
    in_channels: 3,
    depths: [1, 1, 9, 1],
    patch_size: [7, 3, 3, 3],
    patch_stride: [4, 2, 2, 2],
    patch_padding: [3, 1, 1, 1],
    patch_prenorm: [false, true, true, true],
    embed_dim: [256, 512, 1024, 2048],
    num_heads: [8, 16, 32, 64],
    num_groups: [8, 16, 32, 64],
    window_size: 12,
    drop_path_rate: 0.1,
    mlp_ratio: 4.0,
    qkv_bias: true,
    activation_function: 'gelu',
    projection_dim: 1024,
    max_temporal_embeddings: 100,
    max_position_embeddings: 50,
    initializer_range: 0.02,
  },
};

describe('Florence-2 config.json as transformers writes it', () => {
  it('parses Florence-2-base (remote code) with every field, nulls and nested sub-configs included', () => {
    const config = parse(florenceBase);
    expect(config.text_config).toEqual({
      d_model: 768,
      decoder_attention_heads: 12,
      decoder_layers: 6,
      decoder_start_token_id: 2,
      forced_bos_token_id: 0,
      eos_token_id: 2,
    });
    expect(config.vision_config.image_feature_source).toEqual(['spatial_avg_pool', 'temporal_avg_pool']);
    expect(eosTokenIds([undefined, config.text_config, config], 99)).toEqual([2]);
  });

  it("parses transformers' own florence2 (bart text_config, no image_feature_source)", () => {
    const config = parse(florenceLargeNative);
    expect(config.text_config).toEqual({
      d_model: 1024,
      decoder_attention_heads: 16,
      decoder_layers: 12,
      decoder_start_token_id: 2,
      forced_bos_token_id: 0,
      eos_token_id: 2,
    });
    expect(config.vision_config.image_feature_source).toEqual(['spatial_avg_pool', 'temporal_avg_pool']);
  });

  it('reads the fixture config unchanged', () => {
    const config = parse(json('fixtures/models/florence2-tiny/config.json'));
    expect(config.text_config).toMatchObject({ d_model: 64, decoder_attention_heads: 4, decoder_layers: 4 });
    expect(config.text_config).toMatchObject({ decoder_start_token_id: 2, forced_bos_token_id: 0 });
  });

  it('takes the Florence-2-base defaults for null or missing fields and sub-configs', () => {
    const config = parse({
      model_type: 'florence2',
      text_config: { d_model: null, decoder_layers: null, eos_token_id: null, decoder_start_token_id: null },
      vision_config: null,
      eos_token_id: null,
    });
    expect(config.text_config).toEqual({
      d_model: 768,
      decoder_attention_heads: 12,
      decoder_layers: 6,
      decoder_start_token_id: 2,
      forced_bos_token_id: 0,
    });
    expect(config.vision_config.image_feature_source).toEqual(['spatial_avg_pool', 'temporal_avg_pool']);
    expect(eosTokenIds([{ eos_token_id: null }, config.text_config, config], 2)).toEqual([2]);
    expect(parse({ model_type: 'florence2', text_config: null }).text_config.decoder_layers).toBe(6);
  });

  it("falls back to the top level's decoder_start_token_id and forced_bos_token_id", () => {
    const config = parse({
      ...florenceBase,
      decoder_start_token_id: 0,
      forced_bos_token_id: 5,
      text_config: { ...florenceBase.text_config, decoder_start_token_id: null, forced_bos_token_id: null },
    });
    expect(config.text_config).toMatchObject({ decoder_start_token_id: 0, forced_bos_token_id: 5 });
  });

  it('ignores unknown fields, nested objects included', () => {
    const config = parse({
      ...florenceBase,
      quantization_config: { quant_method: 'awq', bits: 4 },
      text_config: { ...florenceBase.text_config, task_specific_params: { summarization: { num_beams: 4 } } },
      vision_config: { ...florenceBase.vision_config, image_pos_embed: null, extra: { nested: [null] } },
    });
    expect(config).not.toHaveProperty('quantization_config');
    expect(config.text_config).not.toHaveProperty('task_specific_params');
    expect(config.vision_config).toEqual({ image_feature_source: ['spatial_avg_pool', 'temporal_avg_pool'] });
  });

  it('refuses a wrong type in a field it uses with a one-line typed error', () => {
    const cases: [unknown, string][] = [
      [
        { ...florenceBase, text_config: { ...florenceBase.text_config, decoder_layers: 'six' } },
        'config.json: text_config.decoder_layers must be an integer, got "six"',
      ],
      [
        { ...florenceBase, text_config: { ...florenceBase.text_config, d_model: 76.8 } },
        'config.json: text_config.d_model must be an integer, got 76.8',
      ],
      [
        { ...florenceBase, vision_config: { ...florenceBase.vision_config, image_feature_source: 'spatial_avg_pool' } },
        'config.json: vision_config.image_feature_source must be a list of "spatial_avg_pool" or "temporal_avg_pool", got "spatial_avg_pool"',
      ],
      [
        { ...florenceBase, vision_config: { ...florenceBase.vision_config, image_feature_source: ['last_frame'] } },
        'config.json: vision_config.image_feature_source.0 must be "spatial_avg_pool" or "temporal_avg_pool", got "last_frame"',
      ],
      [
        { ...florenceBase, decoder_start_token_id: '2' },
        'config.json: decoder_start_token_id must be an integer, got "2"',
      ],
      [{ ...florenceBase, vision_config: [] }, 'config.json: vision_config must be an object, got []'],
    ];
    for (const [raw, message] of cases) {
      let error: unknown;
      try {
        parse(raw);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(DexarError);
      expect((error as DexarError).code).toBe('unsupported-model');
      expect((error as DexarError).message).toBe(`${message} (${EXPECTED})`);
    }
  });

  it('treats null in preprocessor_config.json as absent', () => {
    const pp = parseConfig(
      Florence2PreprocessorSchema,
      { size: { height: 768, width: 768 }, resample: null, task_prompts_without_inputs: null, image_seq_length: 577 },
      'preprocessor_config.json',
      'a Florence-2 image processor',
    );
    expect(pp.resample).toBe(3);
    expect(pp.task_prompts_without_inputs['<CAPTION>']).toBe('What does the image describe?');
  });
});
