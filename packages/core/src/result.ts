import type { DexarMaps } from './aggregate.js';
import { DexarError } from './errors.js';
import type { Grid, TokenLayout } from './layout.js';
import type { DexarOptions } from './options.js';
import type { FloatData, Tensor } from './tensor.js';

/**
 * The JSON form of one explanation, shared by the library, the CLI (`result.json`, `--json`) and
 * the demo's export; `ExplanationSchema` validates it. Maps are nested `[row][column]` arrays over
 * the patch grid, row-major, values in [0, 1] (`flatHeatmap` turns one into the flat form
 * `overlayHeatmap` takes). Notation: docs/algorithm.md, "Notation" and "Maps".
 */
export interface Explanation {
  readonly schemaVersion: 1;
  /** The method that made the maps: `dexar`, or an evaluation baseline (`@dexar/eval`). */
  readonly method: string;
  /** The model family and folder. */
  readonly model?: { readonly family: string; readonly path?: string };
  readonly prompt?: string;
  /** The input image's size in pixels. */
  readonly image?: { readonly width: number; readonly height: number };
  /** The options the maps were computed with, defaults filled in. */
  readonly options: DexarOptions;
  /** Absolute decoder layers aggregated, ascending. */
  readonly layersUsed: number[];
  /** The patch grid every map covers. */
  readonly grid: Grid;
  /** The answer tokens y_0 .. y_{T-1}, each decoded on its own. `[T]` */
  readonly tokens: string[];
  readonly tokenIds: number[];
  /** `M_n`, the head-filtered map of each token. `[T][gh][gw]` */
  readonly perTokenHeatmaps: number[][][];
  /** `U_n`, the unfiltered map of each token. `[T][gh][gw]` */
  readonly perTokenHeatmapsUnfiltered: number[][][];
  /** `delta_n` (paper Eq. 6): how much the image drives each token. `[T]` */
  readonly tokenWeights: number[];
  /** `S`, the sentence map (token maps weighted by `delta_n`). `[gh][gw]` */
  readonly sentenceHeatmap: number[][];
  /** `Su`, the unweighted sentence map. `[gh][gw]` */
  readonly sentenceHeatmapUnfiltered: number[][];
  /** `w_{n,l,h}` (paper Eq. 5), with `returnRaw` or `headWeights`. `[T][layersUsed][H]` */
  readonly headWeights?: number[][][];
  /** The explain run's rows, with `returnRaw`. */
  readonly raw?: RawRows;
}

/** The raw rows of an explanation, cropped to the keys each step sees. */
export interface RawRows {
  /** Absolute layer of each entry of the layers axis. */
  readonly layers: number[];
  /** The image keys `[start, end)` on the key axis. */
  readonly imageKeys: { readonly start: number; readonly end: number };
  /**
   * `Text_n`, the text keys of each step as the model's adapter chose them (family rules such as
   * LLaVA's quirk 2 included): recomputing maps from the rows needs no knowledge of the family. `[T][*]`
   */
  readonly textKeys: number[][];
  /** `G_{n,l}[h, k]`, unclamped. `[T][layers][H][keys_n]` */
  readonly gradientRows: number[][][][];
  /** `A_l[h, q_n, k]`. `[T][layers][H][keys_n]` */
  readonly attentionRows: number[][][][];
  /** Logit-lens logit of each target at every position, with `positionLens`. `[T][layers][positions]` */
  readonly positionLens?: number[][][];
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

/** A flat row-major map (from `offset`) as the result's `[gh][gw]` nested arrays; `flatHeatmap` inverts it. */
export function heatmapRows(flat: FloatData, grid: Grid, offset = 0): number[][] {
  const { height, width } = grid;
  return Array.from({ length: height }, (_, r) =>
    Array.from(flat.subarray(offset + r * width, offset + (r + 1) * width)),
  );
}

/**
 * A result's nested `[gh][gw]` map as the flat row-major map and grid that `upsampleBilinear`,
 * `renderHeatmap` and `overlayHeatmap` take; `heatmapRows` inverts it.
 */
export function flatHeatmap(rows: readonly (readonly number[])[]): { map: Float64Array; grid: Grid } {
  const height = rows.length;
  const width = rows[0]?.length ?? 0;
  if (height === 0 || width === 0 || rows.some((row) => row.length !== width)) {
    throw new DexarError(
      'invalid-input',
      `a heatmap must be a non-empty grid of equal rows, got ${height} rows of lengths ${rows.map((r) => r.length).join(', ')}`,
    );
  }
  const map = new Float64Array(height * width);
  for (const [r, row] of rows.entries()) map.set(row, r * width);
  return { map, grid: { height, width } };
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

function rawRows(raw: NonNullable<ExplanationMeta['raw']>): RawRows {
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
    textKeys: raw.layout.textKeys.map((keys) => [...keys]),
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
