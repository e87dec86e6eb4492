import { z } from 'zod';

/**
 * The parts of a HuggingFace `LlavaConfig` the adapter uses. Defaults are the
 * transformers defaults, since real exports leave many fields out.
 */
export const LlavaConfigSchema = z.object({
  model_type: z.literal('llava'),
  text_config: z
    .object({
      model_type: z.enum(['llama', 'mistral']),
      hidden_size: z.number().int().positive().default(4096),
      num_hidden_layers: z.number().int().positive().default(32),
      num_attention_heads: z.number().int().positive().default(32),
      num_key_value_heads: z.number().int().positive().optional(),
      head_dim: z.number().int().positive().optional(),
      eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).optional(),
    })
    .transform((t) => ({
      ...t,
      // transformers' defaults: Llama keeps every KV head, Mistral shares 8.
      num_key_value_heads: t.num_key_value_heads ?? (t.model_type === 'mistral' ? 8 : t.num_attention_heads),
      head_dim: t.head_dim ?? t.hidden_size / t.num_attention_heads,
    })),
  vision_config: z
    .object({
      image_size: z.number().int().positive().default(224),
      patch_size: z.number().int().positive().default(32),
    })
    .prefault({}),
  image_token_index: z.number().int().nonnegative().default(32000),
  vision_feature_select_strategy: z.enum(['default', 'full']).default('default'),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).optional(),
});
export type LlavaConfig = z.infer<typeof LlavaConfigSchema>;

/** CLIP image processor settings (`preprocessor_config.json`). */
export const ClipPreprocessorSchema = z.object({
  do_resize: z.boolean().default(true),
  size: z
    .union([z.object({ shortest_edge: z.number().int().positive() }), z.number().int().positive()])
    .default({ shortest_edge: 224 }),
  resample: z.number().int().default(3),
  do_center_crop: z.boolean().default(true),
  crop_size: z
    .union([
      z.object({ height: z.number().int().positive(), width: z.number().int().positive() }),
      z.number().int().positive(),
    ])
    .default({ height: 224, width: 224 }),
  do_rescale: z.boolean().default(true),
  rescale_factor: z.number().default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: z.array(z.number()).length(3).default([0.48145466, 0.4578275, 0.40821073]),
  image_std: z.array(z.number()).length(3).default([0.26862954, 0.26130258, 0.27577711]),
});
export type ClipPreprocessor = z.infer<typeof ClipPreprocessorSchema>;
