import { z } from 'zod';

/** The parts of a HuggingFace `PaliGemmaConfig` the adapter uses, with transformers' defaults (PaliGemma-3B). */
export const PaliGemmaConfigSchema = z.object({
  model_type: z.literal('paligemma'),
  text_config: z
    .object({
      model_type: z.enum(['gemma', 'gemma2']).default('gemma'),
      hidden_size: z.number().int().positive().default(2048),
      num_hidden_layers: z.number().int().positive().default(18),
      num_attention_heads: z.number().int().positive().default(8),
      num_key_value_heads: z.number().int().positive().default(1),
      head_dim: z.number().int().positive().default(256),
      eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).optional(),
    })
    .prefault({}),
  vision_config: z
    .object({
      image_size: z.number().int().positive().default(224),
      patch_size: z.number().int().positive().default(14),
    })
    .prefault({}),
  image_token_index: z.number().int().nonnegative().default(257152),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).optional(),
});
export type PaliGemmaConfig = z.infer<typeof PaliGemmaConfigSchema>;

/** SigLIP image processor settings: a square resize, rescale, normalise (mean and std 0.5). */
export const SiglipPreprocessorSchema = z.object({
  size: z
    .object({ height: z.number().int().positive(), width: z.number().int().positive() })
    .default({ height: 224, width: 224 }),
  resample: z.number().int().default(3),
  do_rescale: z.boolean().default(true),
  rescale_factor: z.number().default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: z.array(z.number()).length(3).default([0.5, 0.5, 0.5]),
  image_std: z.array(z.number()).length(3).default([0.5, 0.5, 0.5]),
});
export type SiglipPreprocessor = z.infer<typeof SiglipPreprocessorSchema>;
