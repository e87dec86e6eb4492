import { eosTokenIds, parseConfig } from '@dexar/adapter-kit';
import { DexarError } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { repoJson as json, pretrained } from '../../adapter-kit/test/hf-config.js';
import { PaliGemmaConfigSchema, SiglipPreprocessorSchema } from '../src/config.js';

const EXPECTED = 'the paligemma adapter loads model_type "paligemma" with a gemma or gemma2 text model';
const parse = (raw: unknown) => parseConfig(PaliGemmaConfigSchema, raw, 'config.json', EXPECTED);

/** google/paligemma-3b-pt-224 as transformers 4.41 wrote it: `hidden_size` on top, no `image_size`, no `head_dim`. */
const paligemma1 = {
  _name_or_path: '',
  architectures: ['PaliGemmaForConditionalGeneration'],
  bos_token_id: 2,
  eos_token_id: 1,
  hidden_size: 2048,
  ignore_index: -100,
  image_token_index: 257152,
  model_type: 'paligemma',
  pad_token_id: 0,
  projection_dim: 2048,
  text_config: {
    hidden_size: 2048,
    intermediate_size: 16384,
    model_type: 'gemma',
    num_attention_heads: 8,
    num_hidden_layers: 18,
    num_image_tokens: 256,
    num_key_value_heads: 1,
    torch_dtype: 'float32',
    vocab_size: 257216,
  },
  torch_dtype: 'float32',
  transformers_version: '4.41.0.dev0',
  vision_config: {
    hidden_size: 1152,
    intermediate_size: 4304,
    model_type: 'siglip_vision_model',
    num_attention_heads: 16,
    num_hidden_layers: 27,
    num_image_tokens: 256,
    patch_size: 14,
    projection_dim: 2048,
    projector_hidden_act: 'gelu_fast',
    vision_use_head: false,
  },
  vocab_size: 257216,
};

/** google/paligemma2-3b-pt-448 as `save_pretrained` writes it in full: a Gemma 2 text model, many nulls. */
const paligemma2 = {
  architectures: ['PaliGemmaForConditionalGeneration'],
  bos_token_id: 2,
  eos_token_id: 1,
  hidden_size: null,
  image_token_index: 257152,
  model_type: 'paligemma',
  num_hidden_layers: 26,
  pad_token_id: 0,
  projection_dim: 2304,
  text_config: {
    ...pretrained,
    architectures: ['Gemma2ForCausalLM'],
    model_type: 'gemma2',
    vocab_size: 257216,
    max_position_embeddings: 8192,
    hidden_size: 2304,
    intermediate_size: 9216,
    num_hidden_layers: 26,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 256,
    hidden_act: 'gelu_pytorch_tanh',
    hidden_activation: 'gelu_pytorch_tanh',
    initializer_range: 0.02,
    rms_norm_eps: 1e-6,
    use_cache: true,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    sliding_window_size: 4096,
    final_logit_softcapping: 30.0,
    attn_logit_softcapping: 50.0,
    cache_implementation: 'hybrid',
    num_image_tokens: 1024,
    bos_token_id: 2,
    eos_token_id: 1,
    pad_token_id: 0,
    torch_dtype: 'bfloat16',
  },
  vision_config: {
    ...pretrained,
    model_type: 'siglip_vision_model',
    hidden_size: 1152,
    intermediate_size: 4304,
    num_hidden_layers: 27,
    num_attention_heads: 16,
    num_channels: 3,
    image_size: 448,
    patch_size: 14,
    hidden_act: 'gelu_pytorch_tanh',
    layer_norm_eps: 1e-6,
    attention_dropout: 0.0,
    num_image_tokens: 1024,
    num_positions: 1024,
    projection_dim: 2304,
    projector_hidden_act: 'gelu_fast',
    vision_use_head: false,
  },
  torch_dtype: 'bfloat16',
  transformers_version: '4.47.0.dev0',
};

describe('PaliGemma config.json as transformers writes it', () => {
  it('parses paligemma-3b-pt-224 as transformers 4.41 wrote it', () => {
    const config = parse(paligemma1);
    expect(config.text_config).toMatchObject({
      model_type: 'gemma',
      hidden_size: 2048,
      num_hidden_layers: 18,
      num_attention_heads: 8,
      num_key_value_heads: 1,
      head_dim: 256,
    });
    expect(config.vision_config).toMatchObject({ image_size: 224, patch_size: 14 });
    expect(config.image_token_index).toBe(257152);
    expect(eosTokenIds([undefined, config.text_config, config], 99)).toEqual([1]);
  });

  it('parses paligemma2-3b-pt-448 with every field, nulls and nested sub-configs included', () => {
    const config = parse(paligemma2);
    expect(config.text_config).toMatchObject({
      model_type: 'gemma2',
      hidden_size: 2304,
      num_hidden_layers: 26,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      head_dim: 256,
      eos_token_id: 1,
    });
    expect(config.vision_config).toMatchObject({ image_size: 448, patch_size: 14 });
    expect(config.image_token_index).toBe(257152);
  });

  it('reads the fixture config unchanged', () => {
    const config = parse(json('fixtures/models/paligemma-tiny/config.json'));
    expect(config.text_config).toMatchObject({ num_hidden_layers: 4, num_key_value_heads: 1, head_dim: 16 });
    expect(config.vision_config).toMatchObject({ image_size: 64, patch_size: 8 });
    expect(config.image_token_index).toBe(463);
  });

  it('takes the defaults for null or missing fields and sub-configs', () => {
    const config = parse({
      model_type: 'paligemma',
      text_config: null,
      vision_config: { image_size: null, patch_size: null, num_image_tokens: null },
      image_token_index: null,
      eos_token_id: null,
    });
    expect(config.text_config).toMatchObject({
      model_type: 'gemma',
      hidden_size: 2048,
      num_hidden_layers: 18,
      num_key_value_heads: 1,
      head_dim: 256,
    });
    expect(config.vision_config).toMatchObject({ image_size: 224, patch_size: 14 });
    expect(config.image_token_index).toBe(257152);
    expect(eosTokenIds([{ eos_token_id: null }, config.text_config, config], 1)).toEqual([1]);
    expect(parse({ model_type: 'paligemma', vision_config: null }).vision_config.image_size).toBe(224);
  });

  it('accepts the moved and renamed fields: image_token_id, top-level hidden_size, num_image_tokens', () => {
    const { image_token_index: _, ...rest } = paligemma2;
    expect(parse({ ...rest, image_token_id: 257152 }).image_token_index).toBe(257152);
    expect(
      parse({ ...paligemma1, text_config: { ...paligemma1.text_config, hidden_size: null } }).text_config,
    ).toMatchObject({ hidden_size: 2048 });
    // 448 px: image_size left out, the grid from num_image_tokens (32 × 32 patches of 14 px).
    const at448 = { ...paligemma1.vision_config, num_image_tokens: 1024 };
    expect(parse({ ...paligemma1, vision_config: at448 }).vision_config.image_size).toBe(448);
    const { num_image_tokens: __, ...visionWithout } = at448;
    expect(
      parse({
        ...paligemma1,
        vision_config: visionWithout,
        text_config: { ...paligemma1.text_config, num_image_tokens: 4096 },
      }).vision_config.image_size,
    ).toBe(896);
  });

  it('ignores unknown fields, nested objects included', () => {
    const config = parse({
      ...paligemma2,
      quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true },
      text_config: {
        ...paligemma2.text_config,
        rope_scaling: { rope_type: 'dynamic', factor: 2 },
        layer_types: [null],
      },
      vision_config: { ...paligemma2.vision_config, vision_use_head: null, unknown: { deeper: { x: null } } },
    });
    expect(config).not.toHaveProperty('quantization_config');
    expect(config.text_config).not.toHaveProperty('rope_scaling');
    expect(config.vision_config).not.toHaveProperty('unknown');
  });

  it('refuses a wrong type in a field it uses with a one-line typed error', () => {
    const cases: [unknown, string][] = [
      [
        { ...paligemma2, text_config: { ...paligemma2.text_config, num_hidden_layers: 'four' } },
        'config.json: text_config.num_hidden_layers must be an integer, got "four"',
      ],
      [
        { ...paligemma2, text_config: { ...paligemma2.text_config, model_type: 'llama' } },
        'config.json: text_config.model_type must be "gemma" or "gemma2", got "llama"',
      ],
      [{ ...paligemma2, text_config: 'gemma' }, 'config.json: text_config must be an object, got "gemma"'],
      [
        { ...paligemma2, vision_config: { ...paligemma2.vision_config, image_size: '448' } },
        'config.json: vision_config.image_size must be an integer, got "448"',
      ],
      [{ ...paligemma1, hidden_size: [2048] }, 'config.json: hidden_size must be an integer, got [2048]'],
      [
        { ...paligemma1, vision_config: { ...paligemma1.vision_config, num_image_tokens: 300 } },
        'config.json: vision_config.num_image_tokens must be a square number (the patch grid), got 300',
      ],
      [{ ...paligemma2, image_token_index: -1 }, 'config.json: image_token_index must be at least 0, got -1'],
      [
        { ...paligemma2, eos_token_id: [1, '<eos>'] },
        'config.json: eos_token_id must be an integer or a list of integers, got [1,"<eos>"]',
      ],
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
      SiglipPreprocessorSchema,
      {
        size: { height: 448, width: 448 },
        resample: null,
        image_seq_length: 1024,
        do_convert_rgb: null,
        image_mean: null,
      },
      'preprocessor_config.json',
      'a SigLIP image processor',
    );
    expect(pp).toMatchObject({ size: { height: 448, width: 448 }, resample: 3, image_mean: [0.5, 0.5, 0.5] });
  });
});
