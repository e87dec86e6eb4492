import { configObject, imageProcessorFields, tokenIds } from '@dexar/adapter-kit';
import { z } from 'zod';

const count = z.number().int().positive();
const tokenId = z.number().int().nonnegative();

/**
 * The parts of a HuggingFace `LlavaConfig` the adapter uses. Defaults are the
 * transformers defaults, since real exports leave many fields out; a `null`
 * field counts as left out and fields the adapter does not use are ignored.
 */
export const LlavaConfigSchema = configObject({
  model_type: z.literal('llava'),
  // transformers builds a `LlamaConfig` when `text_config` (or its `model_type`) is missing.
  text_config: configObject({
    model_type: z.enum(['llama', 'mistral']).default('llama'),
    hidden_size: count.default(4096),
    num_hidden_layers: count.default(32),
    num_attention_heads: count.default(32),
    num_key_value_heads: count.optional(),
    head_dim: count.optional(),
    eos_token_id: tokenIds.optional(),
  })
    .transform((t) => ({
      ...t,
      // transformers' defaults: Llama keeps every KV head, Mistral shares 8.
      num_key_value_heads: t.num_key_value_heads ?? (t.model_type === 'mistral' ? 8 : t.num_attention_heads),
      head_dim: t.head_dim ?? t.hidden_size / t.num_attention_heads,
    }))
    .prefault({}),
  // A `vision_config` without a field takes `CLIPVisionConfig`'s default; without the whole
  // sub-config, transformers builds LLaVA-1.5's CLIP ViT-L/14 at 336 px.
  vision_config: configObject({
    image_size: count.default(224),
    patch_size: count.default(32),
  }).default({ image_size: 336, patch_size: 14 }),
  image_token_index: tokenId.optional(),
  /** transformers' newer name for `image_token_index`. */
  image_token_id: tokenId.optional(),
  vision_feature_select_strategy: z.enum(['default', 'full']).default('default'),
  eos_token_id: tokenIds.optional(),
}).transform(({ image_token_id, ...c }) => ({
  ...c,
  image_token_index: c.image_token_index ?? image_token_id ?? 32000,
}));
export type LlavaConfig = z.infer<typeof LlavaConfigSchema>;

/** CLIP image processor settings (`preprocessor_config.json`): shortest-edge resize, centre crop, CLIP's mean and std. */
export const ClipPreprocessorSchema = configObject(
  imageProcessorFields({
    size: { shortest_edge: 224 },
    default_to_square: false,
    do_center_crop: true,
    crop_size: { height: 224, width: 224 },
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
  }),
);
export type ClipPreprocessor = z.infer<typeof ClipPreprocessorSchema>;
