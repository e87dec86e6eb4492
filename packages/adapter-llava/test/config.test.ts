import { eosTokenIds, parseConfig } from '@dexar/adapter-kit';
import { DexarError } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { repoJson as json, pretrained } from '../../adapter-kit/test/hf-config.js';
import { ClipPreprocessorSchema, LlavaConfigSchema } from '../src/config.js';

const EXPECTED = 'the llava adapter loads model_type "llava" with a llama or mistral text model';
const parse = (raw: unknown) => parseConfig(LlavaConfigSchema, raw, 'config.json', EXPECTED);

/** llava-hf/llava-1.5-7b-hf's `config.json` as `save_pretrained` writes it in full. */
const llava15 = {
  architectures: ['LlavaForConditionalGeneration'],
  ignore_index: -100,
  image_seq_length: 576,
  image_token_index: 32000,
  model_type: 'llava',
  multimodal_projector_bias: true,
  pad_token_id: 32001,
  projector_hidden_act: 'gelu',
  eos_token_id: null,
  bos_token_id: null,
  text_config: {
    ...pretrained,
    _name_or_path: 'lmsys/vicuna-7b-v1.5',
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 32064,
    max_position_embeddings: 4096,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    head_dim: 128,
    hidden_act: 'silu',
    initializer_range: 0.02,
    rms_norm_eps: 1e-5,
    pretraining_tp: 1,
    use_cache: true,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  vision_config: {
    ...pretrained,
    model_type: 'clip_vision_model',
    hidden_size: 1024,
    intermediate_size: 4096,
    projection_dim: 768,
    num_hidden_layers: 24,
    num_attention_heads: 16,
    num_channels: 3,
    patch_size: 14,
    image_size: 336,
    initializer_range: 0.02,
    initializer_factor: 1.0,
    attention_dropout: 0.0,
    layer_norm_eps: 1e-5,
    hidden_act: 'quick_gelu',
    vocab_size: 32000,
  },
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  transformers_version: '4.46.0',
  vision_feature_layer: -2,
  vision_feature_select_strategy: 'default',
  vocab_size: 32064,
};

/** llava-hf/bakLlava-v1-hf: a Mistral text model, with the `null`s its text config carries. */
const bakllava = {
  ...llava15,
  text_config: {
    ...pretrained,
    _name_or_path: 'SkunkworksAI/BakLLaVA-1',
    architectures: ['MistralForCausalLM'],
    model_type: 'mistral',
    vocab_size: 32064,
    max_position_embeddings: 32768,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: null,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    sliding_window: null,
    attention_dropout: 0.0,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: null,
  },
  eos_token_id: 2,
  pad_token_id: null,
};

describe('LLaVA config.json as transformers writes it', () => {
  it('parses llava-1.5-7b-hf with every field, nulls and nested sub-configs included', () => {
    const config = parse(llava15);
    expect(config.text_config).toMatchObject({
      model_type: 'llama',
      hidden_size: 4096,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      head_dim: 128,
      eos_token_id: 2,
    });
    expect(config.vision_config).toEqual({ image_size: 336, patch_size: 14 });
    expect(config.image_token_index).toBe(32000);
    expect(config.vision_feature_select_strategy).toBe('default');
    expect(config.eos_token_id).toBeUndefined();
    expect(eosTokenIds([undefined, config.text_config, config], 99)).toEqual([2]);
  });

  it('parses bakLlava-v1-hf: null head_dim, sliding_window and text eos_token_id fall back', () => {
    const config = parse(bakllava);
    expect(config.text_config).toMatchObject({ model_type: 'mistral', num_key_value_heads: 8, head_dim: 128 });
    expect(config.text_config.eos_token_id).toBeUndefined();
    expect(eosTokenIds([{ eos_token_id: null }, config.text_config, config], 99)).toEqual([2]);
  });

  it('reads the fixture and shipped model configs unchanged', () => {
    for (const path of ['fixtures/models/llava-tiny', 'fixtures/models/bakllava-tiny', 'models/shapes-llava']) {
      const raw = json(`${path}/config.json`) as { text_config: { num_key_value_heads: number } };
      const config = parse(raw);
      expect(config.text_config).toMatchObject({ num_hidden_layers: 4, head_dim: 16 });
      expect(config.text_config.num_key_value_heads).toBe(raw.text_config.num_key_value_heads);
    }
  });

  it('takes transformers defaults for null or missing fields and sub-configs', () => {
    const config = parse({
      model_type: 'llava',
      text_config: { model_type: null, hidden_size: null, num_attention_heads: 40, num_hidden_layers: null },
      vision_config: null,
      image_token_index: null,
      vision_feature_select_strategy: null,
    });
    expect(config.text_config).toMatchObject({
      model_type: 'llama',
      hidden_size: 4096,
      num_hidden_layers: 32,
      num_key_value_heads: 40,
      head_dim: 4096 / 40,
    });
    expect(config.vision_config).toEqual({ image_size: 336, patch_size: 14 });
    expect(config.image_token_index).toBe(32000);
    expect(config.vision_feature_select_strategy).toBe('default');
    expect(parse({ model_type: 'llava', text_config: null }).text_config.num_key_value_heads).toBe(32);
    expect(parse({ model_type: 'llava', vision_config: {} }).vision_config).toEqual({
      image_size: 224,
      patch_size: 32,
    });
  });

  it('accepts image_token_id, the newer name for image_token_index', () => {
    const { image_token_index: _, ...rest } = llava15;
    expect(parse({ ...rest, image_token_id: 32000 }).image_token_index).toBe(32000);
    expect(parse({ ...rest, image_token_index: null, image_token_id: 513 }).image_token_index).toBe(513);
    expect(parse({ ...llava15, image_token_id: null }).image_token_index).toBe(32000);
  });

  it('ignores unknown fields, nested objects included', () => {
    const config = parse({
      ...llava15,
      quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: 'nf4' },
      vision_feature_layer: [-2, -5, -8],
      text_config: { ...llava15.text_config, rope_scaling: { rope_type: 'llama3', factor: 8.0 }, extra: [1, null] },
      vision_config: { ...llava15.vision_config, some_future_field: { nested: null } },
    });
    expect(config).not.toHaveProperty('quantization_config');
    expect(config.text_config).not.toHaveProperty('rope_scaling');
    expect(config.vision_config).toEqual({ image_size: 336, patch_size: 14 });
  });

  it('refuses a wrong type in a field it uses with a one-line typed error', () => {
    const cases: [unknown, string][] = [
      [
        { ...llava15, text_config: { ...llava15.text_config, num_hidden_layers: 'four' } },
        'config.json: text_config.num_hidden_layers must be an integer, got "four"',
      ],
      [
        { ...llava15, text_config: { ...llava15.text_config, head_dim: 12.5 } },
        'config.json: text_config.head_dim must be an integer, got 12.5',
      ],
      [
        { ...llava15, text_config: { ...llava15.text_config, model_type: 'gpt2' } },
        'config.json: text_config.model_type must be "llama" or "mistral", got "gpt2"',
      ],
      [{ ...llava15, vision_config: 336 }, 'config.json: vision_config must be an object, got 336'],
      [
        { ...llava15, vision_config: { ...llava15.vision_config, patch_size: 0 } },
        'config.json: vision_config.patch_size must be greater than 0, got 0',
      ],
      [{ ...llava15, image_token_id: '<image>' }, 'config.json: image_token_id must be an integer, got "<image>"'],
      [
        { ...llava15, eos_token_id: '</s>' },
        'config.json: eos_token_id must be an integer or a list of integers, got "</s>"',
      ],
      [
        { ...llava15, vision_feature_select_strategy: 'cls' },
        'config.json: vision_feature_select_strategy must be "default" or "full", got "cls"',
      ],
      [{ ...llava15, model_type: null }, 'config.json: model_type is missing (it must be "llava")'],
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
      expect((error as DexarError).message).not.toContain('\n');
    }
  });

  it('treats null in preprocessor_config.json as absent', () => {
    const pp = parseConfig(
      ClipPreprocessorSchema,
      { do_resize: true, size: { shortest_edge: 336 }, crop_size: null, resample: null, image_mean: null },
      'preprocessor_config.json',
      'a CLIP image processor',
    );
    expect(pp).toMatchObject({ size: { shortest_edge: 336 }, crop_size: { height: 224, width: 224 }, resample: 3 });
    expect(pp.image_mean).toEqual([0.48145466, 0.4578275, 0.40821073]);
  });
});
