import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Compat, causalTextKeys, type GradientRows, type TokenLayout, tensor } from '../src/index.js';

/** One reference case of the authors' algorithm (see conformance/README.md for every field). */
export interface ConformanceCase {
  num_layers: number;
  num_heads: number;
  grid: [number, number];
  idx_img_tok_start: number;
  idx_img_tok_end: number;
  skipped_text_position: number;
  seq_len_per_step: number[];
  tokens: string[];
  target_ids: number[];
  raw: {
    grad_rows: number[][][][];
    grad_rows_clean_last_layer: number[][][];
    attn_rows: number[][][][];
  };
  results: Record<Compat, Record<string, ReferenceResult>>;
}

export interface ReferenceResult {
  per_token_heatmaps: number[][][];
  per_token_heatmaps_unfiltered: number[][][];
  token_weights: number[];
  sentence_heatmap: number[][];
  sentence_heatmap_unfiltered: number[][];
  head_filter_weights: number[][][];
}

export const conformanceCases = ['llava_tiny-case0', 'bakllava_tiny-case0'];

export function loadCase(name: string): ConformanceCase {
  const path = fileURLToPath(new URL(`./conformance/${name}/case.json`, import.meta.url));
  return JSON.parse(readFileSync(path, 'utf8'));
}

/**
 * The case's gradient rows as core takes them, `[T, L, H, maxKeys]`: the
 * official lens for every layer, or for `paper` the clean lens at the last layer.
 */
export function gradientRowsOf(c: ConformanceCase, compat: Compat): GradientRows {
  const T = c.seq_len_per_step.length;
  const L = c.num_layers;
  const H = c.num_heads;
  const K = Math.max(...c.seq_len_per_step);
  const data = new Float32Array(T * L * H * K);
  for (let n = 0; n < T; n++) {
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const row =
          compat === 'paper' && l === L - 1 ? c.raw.grad_rows_clean_last_layer[n][h] : c.raw.grad_rows[n][l][h];
        data.set(row, ((n * L + l) * H + h) * K);
      }
    }
  }
  return {
    rows: tensor(data, [T, L, H, K]),
    layers: Array.from({ length: L }, (_, l) => l),
    numLayers: L,
  };
}

/** The LLaVA layout of the case: quirk 2 leaves `skipped_text_position` out of the official text set. */
export function layoutOf(c: ConformanceCase, compat: Compat): TokenLayout {
  const imageKeys = { start: c.idx_img_tok_start, end: c.idx_img_tok_end };
  return {
    imageKeys,
    grid: { height: c.grid[0], width: c.grid[1] },
    keyCounts: c.seq_len_per_step,
    textKeys: causalTextKeys(c.seq_len_per_step, imageKeys, compat === 'official' ? [c.skipped_text_position] : []),
  };
}
