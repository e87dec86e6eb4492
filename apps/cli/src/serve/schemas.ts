/**
 * The bodies of `dexar serve`'s API as zod schemas: the library's request schemas with the CLI's
 * text limits, and the library's result schema. `/api/schema` publishes them as JSON Schema.
 */
import { ExplanationSchema } from '@dexar/core';
import { VARIANTS } from '@dexar/core/runtime';
import { methodNames } from '@dexar/eval';
import { ExplainRequestSchema, GenerateRequestSchema } from '@dexar/explain';
import { z } from 'zod';
import { MAX_TEXT_CHARS } from '../args.js';

const text = z.string().max(MAX_TEXT_CHARS);
const maxNewTokens = z.number().int().min(1).max(MAX_TEXT_CHARS).default(32);

/** `ExplainRequest` (`@dexar/explain`) plus the method (`@dexar/eval`), prompt and target within the CLI's limits. */
export const ExplainBodySchema = ExplainRequestSchema.extend({
  prompt: text,
  target: text.optional(),
  targetIds: z.array(z.number().int().nonnegative()).max(MAX_TEXT_CHARS).optional(),
  maxNewTokens,
  method: z.enum(methodNames() as [string, ...string[]]).default('dexar'),
});
export type ExplainBody = z.output<typeof ExplainBodySchema>;

/** `GenerateRequest` (`@dexar/explain`) within the CLI's limits. */
export const GenerateBodySchema = GenerateRequestSchema.extend({ prompt: text, maxNewTokens });

export const GenerationSchema = z.strictObject({
  text: z.string(),
  tokenIds: z.array(z.number().int()),
  tokens: z.array(z.string()),
});

const map2d = z.array(z.array(z.number()));

/** `StreamedToken` (`@dexar/explain`): one token of the answer with its map, as it is generated. */
export const StreamedTokenSchema = z.strictObject({
  kind: z.literal('token'),
  index: z.number().int().nonnegative(),
  token: z.string(),
  tokenId: z.number().int(),
  heatmap: map2d,
  heatmapUnfiltered: map2d,
  tokenWeight: z.number(),
  headWeights: map2d,
  provisional: z.boolean(),
});

/** `ProgressEvent` (`@dexar/core/adapter`). */
export const ProgressSchema = z.strictObject({
  stage: z.enum(['load', 'prepare', 'generate', 'explain', 'aggregate']),
  done: z.number().int().optional(),
  total: z.number().int().optional(),
  detail: z.string().optional(),
});

export const InfoSchema = z.strictObject({
  model: z.strictObject({
    name: z.string(),
    family: z.string(),
    numLayers: z.number().int(),
    variant: z.enum(VARIANTS),
  }),
  runtime: z.strictObject({
    name: z.literal('onnxruntime-node'),
    executionProvider: z.enum(['cpu', 'cuda']),
    threads: z.number().int().nullable(),
  }),
  example: z.strictObject({ image: z.string(), prompt: z.string() }),
  limits: z.strictObject({
    bodyBytes: z.number().int(),
    imageBytes: z.number().int(),
    imagePixels: z.number().int(),
    imageAspectRatio: z.number(),
    textChars: z.number().int(),
    queue: z.number().int(),
  }),
});
export type Info = z.output<typeof InfoSchema>;

export const HealthSchema = z.strictObject({
  status: z.literal('ok'),
  running: z.boolean(),
  queued: z.number().int(),
});

export const ErrorSchema = z.strictObject({
  error: z.strictObject({
    name: z.literal('DexarError'),
    code: z.string(),
    message: z.string(),
    status: z.number().int(),
  }),
});

/** The JSON Schema document at `/api/schema`: every body by name, and the routes that take and return them. */
export function apiSchema() {
  const defs = {
    ExplainRequest: z.toJSONSchema(ExplainBodySchema, { io: 'input' }),
    GenerateRequest: z.toJSONSchema(GenerateBodySchema, { io: 'input' }),
    Explanation: z.toJSONSchema(ExplanationSchema, { unrepresentable: 'any' }),
    Generation: z.toJSONSchema(GenerationSchema),
    StreamedToken: z.toJSONSchema(StreamedTokenSchema),
    ProgressEvent: z.toJSONSchema(ProgressSchema),
    Info: z.toJSONSchema(InfoSchema),
    Health: z.toJSONSchema(HealthSchema),
    Error: z.toJSONSchema(ErrorSchema),
  };
  const upload = (request: string) =>
    `multipart/form-data: "image" (a PNG, JPEG or WebP file) and "request" (JSON, ${request})`;
  return {
    title: 'dexar serve',
    description:
      'The HTTP API of `dexar serve`: one model, loaded once. Every error is an Error body with a 4xx status for bad input, 503 (with Retry-After) when the queue is full, 500 for faults.',
    routes: {
      'POST /api/explain': {
        body: upload('#/$defs/ExplainRequest'),
        response:
          'application/json: #/$defs/Explanation; with "Accept: text/event-stream", server-sent events "progress" (ProgressEvent), "token" (StreamedToken, DEX-AR on the model\'s answer), then "result" (Explanation) or "error" (Error)',
      },
      'POST /api/generate': { body: upload('#/$defs/GenerateRequest'), response: '#/$defs/Generation' },
      'GET /api/info': { response: '#/$defs/Info' },
      'GET /api/health': { response: '#/$defs/Health' },
      'GET /api/schema': { response: 'this document' },
    },
    $defs: defs,
  };
}
