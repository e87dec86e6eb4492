import { type DexarOptionsInput, DexarOptionsSchema } from '@dexar/core';
import { z } from 'zod';

/** One explanation request: DEX-AR options plus what to explain and how to run it. */
export interface ExplainRequest extends DexarOptionsInput {
  /** The prompt, with the family's image placeholder where it takes one (LLaVA: `<image>`). */
  prompt: string;
  /**
   * Text to explain by teacher forcing. When neither it nor `targetIds` is given, the model's
   * greedy answer is explained while it is generated.
   */
  target?: string;
  /** Token ids to explain by teacher forcing, instead of `target`. */
  targetIds?: number[];
  /**
   * Generation limit when the answer is generated.
   * @defaultValue 32
   */
  maxNewTokens?: number;
  /**
   * `single`: one pass for all tokens; `stepwise`: the authors' loop, one run per token (for verification).
   * @defaultValue 'single'
   */
  strategy?: 'single' | 'stepwise';
  /**
   * Add the raw gradient and attention rows, the text sets and the head weights to the result.
   * @defaultValue false
   */
  returnRaw?: boolean;
  /**
   * Add the head weights (`[T][layersUsed][H]`, paper Eq. 5) without the raw rows, which can be large.
   * @defaultValue false
   */
  headWeights?: boolean;
  /**
   * With `returnRaw`: also the logit-lens logit of each target at every position (`raw.positionLens`),
   * which gradient-free baselines read (decoder-only families, single pass; an explain graph of its own).
   * @defaultValue false
   */
  positionLens?: boolean;
}

/** A generation request. */
export interface GenerateRequest {
  prompt: string;
  /** @defaultValue 32 */
  maxNewTokens?: number;
}

/** A streamed explanation: the model's own greedy answer, each token explained as it is generated. */
export interface StreamRequest extends DexarOptionsInput {
  prompt: string;
  /** @defaultValue 32 */
  maxNewTokens?: number;
  /**
   * Add the raw gradient and attention rows, the text sets and the head weights to the final result.
   * @defaultValue false
   */
  returnRaw?: boolean;
  /**
   * Add the head weights to the final result.
   * @defaultValue false
   */
  headWeights?: boolean;
}

const maxNewTokens = z.number().int().positive().default(32);

export const ExplainRequestSchema = z.strictObject({
  ...DexarOptionsSchema.shape,
  prompt: z.string(),
  target: z.string().optional(),
  targetIds: z.array(z.number().int().nonnegative()).optional(),
  maxNewTokens,
  strategy: z.enum(['single', 'stepwise']).default('single'),
  returnRaw: z.boolean().default(false),
  headWeights: z.boolean().default(false),
  positionLens: z.boolean().default(false),
});

export const GenerateRequestSchema = z.strictObject({ prompt: z.string(), maxNewTokens });

export const StreamRequestSchema = z.strictObject({
  ...DexarOptionsSchema.shape,
  prompt: z.string(),
  maxNewTokens,
  returnRaw: z.boolean().default(false),
  headWeights: z.boolean().default(false),
});
