import { configObject, imageProcessorFields, tokenIds } from '@dexar/adapter-kit';
import { z } from 'zod';

const count = z.number().int().positive();
const tokenId = z.number().int().nonnegative();

/**
 * The parts of a HuggingFace `PaliGemmaConfig` the adapter uses, with transformers' defaults (PaliGemma-3B).
 * A `null` field counts as left out and fields the adapter does not use are ignored. Older transformers
 * wrote `hidden_size` at the top level and left `image_size` out for `num_image_tokens`; both are read.
 */
export const PaliGemmaConfigSchema = configObject({
  model_type: z.literal('paligemma'),
  text_config: configObject({
    model_type: z.enum(['gemma', 'gemma2']).default('gemma'),
    hidden_size: count.optional(),
    num_hidden_layers: count.default(18),
    num_attention_heads: count.default(8),
    num_key_value_heads: count.default(1),
    head_dim: count.default(256),
    num_image_tokens: count.optional(),
    eos_token_id: tokenIds.optional(),
  }).prefault({}),
  vision_config: configObject({
    image_size: count.optional(),
    patch_size: count.default(14),
    num_image_tokens: count.optional(),
  }).prefault({}),
  /** The text model's width, where the first PaliGemma configs kept it. */
  hidden_size: count.optional(),
  image_token_index: tokenId.optional(),
  /** transformers' newer name for `image_token_index`. */
  image_token_id: tokenId.optional(),
  eos_token_id: tokenIds.optional(),
}).transform(({ hidden_size, image_token_id, ...c }, ctx) => {
  const { patch_size } = c.vision_config;
  // transformers derives `num_image_tokens` as (image_size / patch_size)², so the side follows from it.
  const tokens = c.vision_config.num_image_tokens ?? c.text_config.num_image_tokens;
  const side = tokens === undefined ? undefined : Math.sqrt(tokens);
  if (c.vision_config.image_size === undefined && side !== undefined && !Number.isInteger(side)) {
    ctx.addIssue({
      code: 'custom',
      path: [c.vision_config.num_image_tokens === undefined ? 'text_config' : 'vision_config', 'num_image_tokens'],
      message: `must be a square number (the patch grid), got ${tokens}`,
    });
    return z.NEVER;
  }
  return {
    ...c,
    text_config: { ...c.text_config, hidden_size: c.text_config.hidden_size ?? hidden_size ?? 2048 },
    vision_config: {
      ...c.vision_config,
      image_size: c.vision_config.image_size ?? (side === undefined ? 224 : side * patch_size),
    },
    image_token_index: c.image_token_index ?? image_token_id ?? 257152,
  };
});
export type PaliGemmaConfig = z.infer<typeof PaliGemmaConfigSchema>;

/** SigLIP image processor settings: a square resize, rescale, normalise (mean and std 0.5). */
export const SiglipPreprocessorSchema = configObject(
  imageProcessorFields({
    size: { height: 224, width: 224 },
    default_to_square: true,
    do_center_crop: false,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
  }),
);
export type SiglipPreprocessor = z.infer<typeof SiglipPreprocessorSchema>;
