import { DexarError } from './errors.js';

const LAYERS = 1024;
const SIDE = 4096;

/**
 * Upper bounds on the sizes a model's config.json or preprocessor_config.json may give, by field
 * name wherever it is nested. Adapters allocate from these (caches per layer, pixel buffers per
 * side) before any graph could contradict them, so a damaged or hostile value (`num_hidden_layers:
 * 1e9`, `shortest_edge: 1e9`) must stop here. Each bound is far above any released model.
 */
const FIELD_LIMITS: Readonly<Record<string, number>> = {
  num_hidden_layers: LAYERS,
  encoder_layers: LAYERS,
  decoder_layers: LAYERS,
  num_attention_heads: LAYERS,
  num_key_value_heads: LAYERS,
  encoder_attention_heads: LAYERS,
  decoder_attention_heads: LAYERS,
  hidden_size: 65_536,
  intermediate_size: 1 << 20,
  vocab_size: 1 << 22,
  max_position_embeddings: 1 << 22,
  image_size: SIDE,
  patch_size: SIDE,
  shortest_edge: SIDE,
  longest_edge: SIDE,
  height: SIDE,
  width: SIDE,
  size: SIDE,
  crop_size: SIDE,
};

/** Nesting deeper than any model config: a deeper file is refused rather than walked. */
const MAX_DEPTH = 16;

/**
 * Checks every size field of a parsed config file against `FIELD_LIMITS` (a positive integer within
 * the bound) and that an `image_size` divides by its `patch_size`; `file` names it in the one-line error.
 */
export function checkConfigLimits(config: unknown, file: string): void {
  const refuse = (path: string, problem: string) =>
    new DexarError(
      'unsupported-model',
      `${file}: ${path} ${problem}: the file is damaged or not from a supported model`,
    );
  const walk = (value: unknown, path: string, depth: number): void => {
    if (depth > MAX_DEPTH) throw refuse(path, `nests deeper than ${MAX_DEPTH} levels`);
    if (typeof value !== 'object' || value === null) return;
    const entries = Object.entries(value);
    for (const [key, field] of entries) {
      const where = path ? `${path}.${key}` : key;
      const limit = FIELD_LIMITS[key];
      if (
        limit !== undefined &&
        typeof field === 'number' &&
        !(Number.isInteger(field) && field >= 1 && field <= limit)
      ) {
        throw refuse(where, `is ${field}, not an integer from 1 to ${limit}`);
      }
      walk(field, where, depth + 1);
    }
    const { image_size: image, patch_size: patch } = value as { image_size?: unknown; patch_size?: unknown };
    if (typeof image === 'number' && typeof patch === 'number' && image % patch !== 0) {
      throw refuse(path ? `${path}.image_size` : 'image_size', `(${image}) does not divide by patch_size (${patch})`);
    }
  };
  walk(config, '', 0);
}
