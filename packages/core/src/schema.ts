import { z } from 'zod';
import { DexarOptionsSchema } from './options.js';

const map2d = z.array(z.array(z.number()));
const map3d = z.array(map2d);

/**
 * `Explanation` as a zod schema: what a reader of `result.json` (or of the demo's export) checks
 * before trusting it. A module of its own, so a bundle that only aggregates leaves zod's full build out.
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
    perTokenHeatmaps: map3d,
    perTokenHeatmapsUnfiltered: map3d,
    tokenWeights: z.array(z.number()),
    sentenceHeatmap: map2d,
    sentenceHeatmapUnfiltered: map2d,
    headWeights: map3d.optional(),
    raw: z
      .strictObject({
        layers: z.array(z.number().int().nonnegative()),
        imageKeys: z.strictObject({ start: z.number().int(), end: z.number().int() }),
        textKeys: z.array(z.array(z.number().int().nonnegative())),
        gradientRows: z.array(map3d),
        attentionRows: z.array(map3d),
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
    if (r.raw && r.raw.textKeys.length !== r.raw.gradientRows.length) {
      bad(`raw.textKeys has ${r.raw.textKeys.length} text sets for ${r.raw.gradientRows.length} steps`);
    }
  });

function isGrid(map: number[][], height: number, width: number): boolean {
  return map.length === height && map.every((row) => row.length === width);
}
