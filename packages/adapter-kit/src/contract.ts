import { DexarError } from '@dexar/core';
import type { GraphInputShapes } from '@dexar/core/runtime';
import type { CacheShape } from './decoding.js';

/** The graphs of a model folder in the transformers.js layout (docs/adapters.md, "The ONNX contract"). */
export const GRAPHS = {
  /** `pixel_values` `[B, 3, H, W]` -> `image_features` `[B, features, D]`. */
  vision: 'onnx/vision_encoder.onnx',
  /** `input_ids` `[B, S]` -> `inputs_embeds` `[B, S, D]`. */
  embed: 'onnx/embed_tokens.onnx',
  /** Encoder-decoder families: `inputs_embeds`, `attention_mask` -> `last_hidden_state` `[B, E, D]`. */
  encoder: 'onnx/encoder_model.onnx',
  /** The decoder with its KV cache, which DEX-AR augments into the explain graph. */
  decoder: 'onnx/decoder_model_merged.onnx',
} as const;

/** Where a family's numbers come from, for one-line errors that name the config field. */
export interface ConfigFields {
  /** The field giving the decoder's layer count, e.g. `text_config.num_hidden_layers`. */
  readonly numLayers: string;
  /** The field (or rule) giving the KV heads, e.g. `text_config.num_key_value_heads`. */
  readonly kvHeads: string;
  /** The field (or rule) giving the size of a head, e.g. `text_config.head_dim`. */
  readonly headDim: string;
}

/** The KV-cache inputs of layer `i`: `past_key_values.{i}.key` (decoder-only) or `.decoder.key` (encoder-decoder). */
export function cacheInputName(i: number, kind: 'key' | 'value', shape: Pick<CacheShape, 'attention'>): string {
  return shape.attention === 'cross' ? `past_key_values.${i}.decoder.${kind}` : `past_key_values.${i}.${kind}`;
}

/**
 * Refuses a decoder graph whose KV cache disagrees with the config: its layer count (the
 * `past_key_values.{i}.key` inputs), and where the graph declares them, the KV heads and head size
 * of `past_key_values.0.key` `[batch, kvHeads, past, headDim]`. One line naming the config field,
 * before any session runs (ONNX Runtime's own error would name neither).
 */
export function checkDecoderInputs(
  inputs: GraphInputShapes,
  path: string,
  shape: CacheShape,
  fields: ConfigFields,
  /** The model folder's location, for messages. */
  location: string,
): void {
  const pattern = shape.attention === 'cross' ? /^past_key_values\.\d+\.decoder\.key$/ : /^past_key_values\.\d+\.key$/;
  const layers = Object.keys(inputs).filter((name) => pattern.test(name)).length;
  if (layers === 0) {
    throw new DexarError(
      'unsupported-graph',
      `${location}/${path} has no ${cacheInputName(0, 'key', shape).replace('.0.', '.{i}.')} inputs: use a decoder_model_merged.onnx exported with use_cache`,
    );
  }
  const mismatch = (field: string, configured: number, found: number, what: string) =>
    new DexarError(
      'unsupported-model',
      `${location}/config.json: ${field} gives ${configured} but ${path} has ${found} ${what}: the config does not match the graph`,
    );
  if (layers !== shape.numLayers) throw mismatch(fields.numLayers, shape.numLayers, layers, 'decoder layers');
  const first = cacheInputName(0, 'key', shape);
  const [, kvHeads, , headDim] = inputs[first] ?? [];
  if (typeof kvHeads === 'number' && kvHeads !== shape.kvHeads) {
    throw mismatch(fields.kvHeads, shape.kvHeads, kvHeads, `KV heads (${first} is [${inputs[first]?.join(', ')}])`);
  }
  if (typeof headDim === 'number' && headDim !== shape.headDim) {
    throw mismatch(
      fields.headDim,
      shape.headDim,
      headDim,
      `values per head (${first} is [${inputs[first]?.join(', ')}])`,
    );
  }
}
