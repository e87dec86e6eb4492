import { DexarOptionsSchema } from '@dexar/core';
import { z } from 'zod';

/** One explanation request: DEX-AR options plus what to explain and how to run it. */
export const ExplainRequestSchema = DexarOptionsSchema.extend({
  prompt: z.string(),
  /** Text to explain by teacher forcing; when neither it nor `targetIds` is given, the model's greedy answer is explained. */
  target: z.string().optional(),
  targetIds: z.array(z.number().int().nonnegative()).optional(),
  maxNewTokens: z.number().int().positive().default(32),
  /** `single`: one pass for all tokens; `stepwise`: the authors' loop, one run per token (for verification). */
  strategy: z.enum(['single', 'stepwise']).default('single'),
  /** Add the raw gradient and attention rows and the head weights to the result. */
  returnRaw: z.boolean().default(false),
  /** Add the head weights (`[T][layersUsed][H]`, paper Eq. 5) without the raw rows, which can be large. */
  headWeights: z.boolean().default(false),
  /**
   * With `returnRaw`: also the logit-lens logit of each target at every position (`raw.positionLens`),
   * which gradient-free baselines read (decoder-only families, single pass; an explain graph of its own).
   */
  positionLens: z.boolean().default(false),
});
export type ExplainRequest = z.input<typeof ExplainRequestSchema>;

export const GenerateRequestSchema = z.strictObject({
  prompt: z.string(),
  maxNewTokens: z.number().int().positive().default(32),
});
export type GenerateRequest = z.input<typeof GenerateRequestSchema>;

/** A streamed explanation: the model's own greedy answer, each token explained as it is generated. */
export const StreamRequestSchema = DexarOptionsSchema.extend({
  prompt: z.string(),
  maxNewTokens: z.number().int().positive().default(32),
  /** Add the raw gradient and attention rows and the head weights to the final result. */
  returnRaw: z.boolean().default(false),
  /** Add the head weights to the final result. */
  headWeights: z.boolean().default(false),
});
export type StreamRequest = z.input<typeof StreamRequestSchema>;
