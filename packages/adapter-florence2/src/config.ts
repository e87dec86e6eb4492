import { configObject, imageProcessorFields, tokenIds } from '@dexar/adapter-kit';
import { z } from 'zod';

const count = z.number().int().positive();

/**
 * The parts of a HuggingFace `Florence2Config` the adapter uses, with Florence-2-base defaults. A `null`
 * field counts as left out and fields the adapter does not use are ignored. The decoder's start and
 * forced-BOS ids come from `text_config`, else the top level (where `PretrainedConfig` also writes them).
 */
export const Florence2ConfigSchema = configObject({
  model_type: z.literal('florence2'),
  text_config: configObject({
    d_model: count.default(768),
    decoder_attention_heads: count.default(12),
    decoder_layers: count.default(6),
    decoder_start_token_id: z.number().int().optional(),
    forced_bos_token_id: z.number().int().optional(),
    eos_token_id: tokenIds.optional(),
  }).prefault({}),
  vision_config: configObject({
    /** The order of the image features: a pooled token per `spatial_avg_pool`, the patch grid per `temporal_avg_pool`. */
    image_feature_source: z
      .array(z.enum(['spatial_avg_pool', 'temporal_avg_pool']))
      .default(['spatial_avg_pool', 'temporal_avg_pool']),
  }).prefault({}),
  decoder_start_token_id: z.number().int().optional(),
  forced_bos_token_id: z.number().int().optional(),
  eos_token_id: tokenIds.optional(),
}).transform(({ decoder_start_token_id, forced_bos_token_id, ...c }) => ({
  ...c,
  text_config: {
    ...c.text_config,
    decoder_start_token_id: c.text_config.decoder_start_token_id ?? decoder_start_token_id ?? 2,
    forced_bos_token_id: c.text_config.forced_bos_token_id ?? forced_bos_token_id ?? 0,
  },
}));
export type Florence2Config = z.infer<typeof Florence2ConfigSchema>;

/**
 * The Florence-2 processor's task prompts (its processing code holds them;
 * a `preprocessor_config.json` may override them).
 */
const taskPrompts = {
  '<CAPTION>': 'What does the image describe?',
  '<DETAILED_CAPTION>': 'Describe in detail what is shown in the image.',
  '<MORE_DETAILED_CAPTION>': 'Describe with a paragraph what is shown in the image.',
  '<OD>': 'Locate the objects with category name in the image.',
  '<DENSE_REGION_CAPTION>': 'Locate the objects in the image, with their descriptions.',
  '<REGION_PROPOSAL>': 'Locate the region proposals in the image.',
  '<OCR>': 'What is the text in the image?',
  '<OCR_WITH_REGION>': 'What is the text in the image, with regions?',
};
const taskPromptsWithInput = {
  '<CAPTION_TO_PHRASE_GROUNDING>': 'Locate the phrases in the caption: {input}',
  '<REFERRING_EXPRESSION_SEGMENTATION>': 'Locate {input} in the image with mask',
  '<REGION_TO_SEGMENTATION>': 'What is the polygon mask of region {input}',
  '<OPEN_VOCABULARY_DETECTION>': 'Locate {input} in the image.',
  '<REGION_TO_CATEGORY>': 'What is the region {input}?',
  '<REGION_TO_DESCRIPTION>': 'What does the region {input} describe?',
  '<REGION_TO_OCR>': 'What text is in the region {input}?',
};

/** Florence-2 image processor settings: a plain resize to `size`, rescale, ImageNet normalisation; its task prompts. */
export const Florence2PreprocessorSchema = configObject({
  ...imageProcessorFields({
    size: { height: 768, width: 768 },
    default_to_square: true,
    do_center_crop: false,
    image_mean: [0.485, 0.456, 0.406],
    image_std: [0.229, 0.224, 0.225],
  }),
  task_prompts_without_inputs: z.record(z.string(), z.string()).default(taskPrompts),
  task_prompts_with_input: z.record(z.string(), z.string()).default(taskPromptsWithInput),
});
export type Florence2Preprocessor = z.infer<typeof Florence2PreprocessorSchema>;
