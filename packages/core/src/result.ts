import { z } from 'zod';
import type { DexarMaps } from './aggregate.js';
import type { Grid, TokenLayout } from './layout.js';
import { DexarOptionsSchema } from './options.js';
import type { FloatData, Tensor } from './tensor.js';

const map2d = z.array(z.array(z.number()));
const map3d = z.array(map2d);

/**
 * The JSON form of one explanation, shared by the library, the CLI
 * (`result.json`, `--json`) and the demo's export. Field names follow
 * docs/algorithm.md, "Outputs".
 */
export const ExplanationSchema = z
  .strictObject({
    schemaVersion: z.literal(1),
    method: z.string().min(1),
    model: z.strictObject({ family: z.string(), path: z.string().optional() }).optional(),
    prompt: z.string().optional(),
    image: z.strictObject({ width: z.number().int().positive(), height: z.number().int().positive() }).optional(),
    options: DexarOptionsSchema,
    layersUsed: z.array(z.number().int().nonnegative()).min(1),
    grid: z.strictObject({
      height: z.number().int().positive(),
      width: z.number().int().positive(),
    }),
    tokens: z.array(z.string()),
    tokenIds: z.array(z.number().int()),
    /** `[T][gh][gw]` */
    perTokenHeatmaps: map3d,
    perTokenHeatmapsUnfiltered: map3d,
    /** `[T]` */
    tokenWeights: z.array(z.number()),
    /** `[gh][gw]` */
    sentenceHeatmap: map2d,
    sentenceHeatmapUnfiltered: map2d,
    /** `[T][layersUsed][H]` */
    headWeights: map3d.optional(),
    /** Unclamped rows per token, layer and head, cropped to the keys each step sees: `[T][layers][H][keys_n]`. */
    raw: z
      .strictObject({
        layers: z.array(z.number().int().nonnegative()),
        imageKeys: z.strictObject({ start: z.number().int(), end: z.number().int() }),
        gradientRows: z.array(map3d),
        attentionRows: z.array(map3d),
        /** Logit-lens logit of each target at every position `[T][layers][positions]` (explain with `positionLens`). */
        positionLens: map3d.optional(),
      })
      .optional(),
  })
  .superRefine((r, ctx) => {
    const T = r.tokens.length;
    const { height, width } = r.grid;
    const bad = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (r.tokenIds.length !== T) bad(`${T} tokens but ${r.tokenIds.length} token ids`);
    if (r.tokenWeights.length !== T) bad(`${T} tokens but ${r.tokenWeights.length} token weights`);
    for (const [name, maps] of [
      ['perTokenHeatmaps', r.perTokenHeatmaps],
      ['perTokenHeatmapsUnfiltered', r.perTokenHeatmapsUnfiltered],
    ] as const) {
      if (maps.length !== T) bad(`${name} has ${maps.length} maps for ${T} tokens`);
      if (maps.some((m) => !isGrid(m, height, width))) bad(`${name} maps must be ${height} x ${width}`);
    }
    if (!isGrid(r.sentenceHeatmap, height, width)) bad(`sentenceHeatmap must be ${height} x ${width}`);
    if (!isGrid(r.sentenceHeatmapUnfiltered, height, width)) {
      bad(`sentenceHeatmapUnfiltered must be ${height} x ${width}`);
    }
  });
export type Explanation = z.infer<typeof ExplanationSchema>;

function isGrid(map: number[][], height: number, width: number): boolean {
  return map.length === height && map.every((row) => row.length === width);
}

export interface ExplanationMeta {
  method?: string;
  tokens: readonly string[];
  tokenIds: readonly number[];
  model?: { family: string; path?: string };
  prompt?: string;
  image?: { width: number; height: number };
  includeHeadWeights?: boolean;
  /** Raw rows to include, as returned by the explain graph. `[T, layers, heads, keys]` each. */
  raw?: {
    layers: readonly number[];
    layout: TokenLayout;
    gradientRows: Tensor<FloatData>;
    attentionRows: Tensor<FloatData>;
    /** `[T, layers, positions]` */
    positionLens?: Tensor<FloatData>;
  };
}

/** A flat row-major map (from `offset`) as the result's `[gh][gw]` nested arrays. */
export function heatmapRows(flat: Float64Array, grid: Grid, offset = 0): number[][] {
  const { height, width } = grid;
  return Array.from({ length: height }, (_, r) =>
    Array.from(flat.subarray(offset + r * width, offset + (r + 1) * width)),
  );
}

/** Turns the typed-array maps of `aggregate` into the JSON result (nested arrays). */
export function toExplanation(maps: DexarMaps, meta: ExplanationMeta): Explanation {
  const { height, width } = maps.grid;
  const N = height * width;
  const grid = (flat: Float64Array, offset: number) => heatmapRows(flat, maps.grid, offset);
  const T = maps.tokenWeights.length;
  const Lu = maps.layersUsed.length;
  const H = maps.numHeads;
  return {
    schemaVersion: 1,
    method: meta.method ?? 'dexar',
    ...(meta.model ? { model: meta.model } : {}),
    ...(meta.prompt !== undefined ? { prompt: meta.prompt } : {}),
    ...(meta.image ? { image: meta.image } : {}),
    options: maps.options,
    layersUsed: maps.layersUsed,
    grid: { height, width },
    tokens: [...meta.tokens],
    tokenIds: [...meta.tokenIds],
    perTokenHeatmaps: Array.from({ length: T }, (_, n) => grid(maps.perToken, n * N)),
    perTokenHeatmapsUnfiltered: Array.from({ length: T }, (_, n) => grid(maps.perTokenUnfiltered, n * N)),
    tokenWeights: Array.from(maps.tokenWeights),
    sentenceHeatmap: grid(maps.sentence, 0),
    sentenceHeatmapUnfiltered: grid(maps.sentenceUnfiltered, 0),
    ...(meta.includeHeadWeights
      ? {
          headWeights: Array.from({ length: T }, (_, n) =>
            Array.from({ length: Lu }, (_, u) =>
              Array.from(maps.headWeights.subarray((n * Lu + u) * H, (n * Lu + u + 1) * H)),
            ),
          ),
        }
      : {}),
    ...(meta.raw ? { raw: rawRows(meta.raw) } : {}),
  };
}

function rawRows(raw: NonNullable<ExplanationMeta['raw']>): NonNullable<Explanation['raw']> {
  const crop = (rows: Tensor<FloatData>) => {
    const [T, L, H, K] = rows.dims as [number, number, number, number];
    return Array.from({ length: T }, (_, n) => {
      const keys = raw.layout.keyCounts[n];
      return Array.from({ length: L }, (_, l) =>
        Array.from({ length: H }, (_, h) => {
          const base = ((n * L + l) * H + h) * K;
          return Array.from(rows.data.subarray(base, base + keys));
        }),
      );
    });
  };
  return {
    layers: [...raw.layers],
    imageKeys: { start: raw.layout.imageKeys.start, end: raw.layout.imageKeys.end },
    gradientRows: crop(raw.gradientRows),
    attentionRows: crop(raw.attentionRows),
    ...(raw.positionLens ? { positionLens: nested3d(raw.positionLens) } : {}),
  };
}

function nested3d(t: Tensor<FloatData>): number[][][] {
  const [A, B, C] = t.dims as [number, number, number];
  return Array.from({ length: A }, (_, a) =>
    Array.from({ length: B }, (_, b) => Array.from(t.data.subarray((a * B + b) * C, (a * B + b + 1) * C))),
  );
}
