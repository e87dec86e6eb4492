import { z } from 'zod';
import { DexarError } from './errors.js';

/**
 * `official` reproduces the authors' code, quirks included; `paper` follows the
 * published equations (docs/algorithm.md, "Maps, token weights and the sentence map").
 */
export const CompatSchema = z.enum(['official', 'paper']);
export type Compat = z.infer<typeof CompatSchema>;

export const DexarOptionsSchema = z.strictObject({
  /** First layer used; negative counts from the end (L + layerIndex, clamped to 0). */
  layerIndex: z.number().int().default(-10),
  /** Head scores are the mean of the top-k positive gradients (paper Eq. 5; k = 1 is the authors' choice). */
  topK: z.number().int().min(1).default(1),
  compat: CompatSchema.default('official'),
});
export type DexarOptions = z.infer<typeof DexarOptionsSchema>;
export type DexarOptionsInput = z.input<typeof DexarOptionsSchema>;

export function parseOptions(options: DexarOptionsInput = {}): DexarOptions {
  const parsed = DexarOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw new DexarError(
      'invalid-options',
      `invalid DEX-AR options: ${where}${issue?.message ?? 'unknown problem'} (layerIndex and topK are integers, topK >= 1, compat is "official" or "paper")`,
    );
  }
  return parsed.data;
}

/**
 * The layers DEX-AR aggregates: `start .. numLayers - 1`, where a negative
 * `layerIndex` counts from the end and is clamped to 0, as the authors' code does.
 */
export function layersUsed(layerIndex: number, numLayers: number): number[] {
  const start = layerIndex < 0 ? Math.max(0, numLayers + layerIndex) : layerIndex;
  if (start >= numLayers) {
    throw new DexarError(
      'layer-out-of-range',
      `layer index ${layerIndex} is out of range for a model with ${numLayers} layers: use a value below ${numLayers} (negative values count from the end, and below ${-numLayers} start at layer 0)`,
    );
  }
  return Array.from({ length: numLayers - start }, (_, i) => start + i);
}
