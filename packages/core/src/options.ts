// zod's tree-shakable build: a bundle that only aggregates carries a few KB of it, not the whole
// library (measured in test/bundle.test.ts). Its schemas mix with the classic ones (`ExplanationSchema`).
import * as z from 'zod/mini';
import { DexarError } from './errors.js';

/**
 * `official` reproduces the authors' code, quirks included; `paper` follows the
 * published equations (docs/algorithm.md, "Maps").
 */
export type Compat = 'official' | 'paper';

/** The DEX-AR options, every field resolved (what `parseOptions` returns). */
export interface DexarOptions {
  /**
   * First decoder layer aggregated; a negative value counts from the end (`L + layerIndex`, clamped
   * to 0, as the authors' code does). docs/algorithm.md, "Layers".
   * @defaultValue -10
   */
  readonly layerIndex: number;
  /**
   * Head scores are the mean of the `topK` largest positive gradients (paper Eq. 5); at most the
   * number of image tokens. `1` is the authors' choice.
   * @defaultValue 1
   */
  readonly topK: number;
  /**
   * `official`: the authors' code, quirks included; `paper`: the published equations.
   * @defaultValue 'official'
   */
  readonly compat: Compat;
}

/** DEX-AR options as a caller gives them: any field left out takes its documented default. */
export type DexarOptionsInput = Partial<DexarOptions>;

/** The defaults of `DexarOptions`, as documented on its fields. */
export const DEFAULT_OPTIONS: DexarOptions = { layerIndex: -10, topK: 1, compat: 'official' };

export const CompatSchema = z.enum(['official', 'paper']);

/** `DexarOptions` as a zod schema (unknown keys refused, defaults filled in). */
export const DexarOptionsSchema = z.strictObject({
  layerIndex: z._default(z.int(), DEFAULT_OPTIONS.layerIndex),
  topK: z._default(z.int().check(z.minimum(1)), DEFAULT_OPTIONS.topK),
  compat: z._default(CompatSchema, DEFAULT_OPTIONS.compat),
});

/** Validates options and fills in the defaults; a bad value is a `DexarError` (`invalid-options`) naming the field. */
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
