/**
 * Explanation methods as pure functions over what one run of the explain graph returns (raw
 * gradient and attention rows `[T, layers, heads, keys]`, the token layout, optionally the logit
 * lens at every position). DEX-AR and five baselines are built in; `registerMethod` adds one.
 */
import {
  aggregate,
  DexarError,
  type DexarOptions,
  type Explanation,
  type FloatData,
  heatmapRows,
  type Tensor,
  type TokenLayout,
} from '@dexar/core';
import { hashString, prng } from './random.js';

/** What a method reads: one explain run of one sample. */
export interface MethodInput {
  /** `G_{n,l}[h, k]`, unclamped. `[T, layers, H, keys]`, keys past `layout.keyCounts[n]` ignored. */
  readonly gradientRows: Tensor<FloatData>;
  /** `A_l[h, q_n, k]`, the attention probabilities of the query rows. `[T, layers, H, keys]` */
  readonly attentionRows: Tensor<FloatData>;
  /** Absolute layer of each entry of the layers axis (the layers used), ascending. */
  readonly layers: readonly number[];
  /** The model's depth L. */
  readonly numLayers: number;
  readonly layout: TokenLayout;
  readonly options: DexarOptions;
  /** Logit-lens logit of each target at every position, `[T, layers, positions]` (explain graph with `positionLens`). */
  readonly positionLens?: Tensor<FloatData>;
  /** Identifies the sample: seeds the `random` method. */
  readonly sampleKey: string;
}

/** What a method yields; maps are flat, row-major over the grid, each in [0, 1]. */
export interface MethodMaps {
  /** `[T, N]` per-token maps. */
  readonly perToken: Float64Array;
  /** `[N]` sentence map. */
  readonly sentence: Float64Array;
  /** `[T]` token weights, where the method defines them (DEX-AR's delta). */
  readonly tokenWeights?: Float64Array;
}

export interface ExplanationMethod {
  readonly name: string;
  /** One line for `--help` and the report. */
  readonly description: string;
  /** Needs the explain graph's position lens (`positionLens: true`). */
  readonly needsPositionLens?: boolean;
  compute(input: MethodInput): MethodMaps;
}

const methods = new Map<string, ExplanationMethod>();

export function registerMethod(method: ExplanationMethod): void {
  methods.set(method.name, method);
}

export function methodNames(): string[] {
  return [...methods.keys()];
}

/** The method of that name, or a usage error listing the known ones. */
export function methodFor(name: string): ExplanationMethod {
  const method = methods.get(name);
  if (!method) {
    throw new DexarError(
      'invalid-options',
      `unknown method ${JSON.stringify(name)}: use one of ${methodNames().join(', ')}`,
    );
  }
  return method;
}

/** Min-max normalisation of each `[N]` slice in place; constant slices become 0 (paper convention). */
function normalizeRows(maps: Float64Array, N: number): Float64Array {
  for (let o = 0; o < maps.length; o += N) {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (let j = o; j < o + N; j++) {
      if (maps[j] < lo) lo = maps[j];
      if (maps[j] > hi) hi = maps[j];
    }
    for (let j = o; j < o + N; j++) maps[j] = hi > lo ? (maps[j] - lo) / (hi - lo) : 0;
  }
  return maps;
}

/** Sentence map of a method without token weights: the sum of the raw per-token maps, normalised. */
function sumTokens(raw: Float64Array, T: number, N: number): Float64Array {
  const out = new Float64Array(N);
  for (let n = 0; n < T; n++) for (let j = 0; j < N; j++) out[j] += raw[n * N + j];
  return normalizeRows(out, N);
}

function dims(input: MethodInput) {
  const [T, L, H, K] = input.gradientRows.dims as [number, number, number, number];
  const { start: i0, end: i1 } = input.layout.imageKeys;
  return { T, L, H, K, i0, N: i1 - i0 };
}

/** Slots of the layers axis used by the options' `layerIndex`. */
function usedSlots(input: MethodInput): number[] {
  const start =
    input.options.layerIndex < 0 ? Math.max(0, input.numLayers + input.options.layerIndex) : input.options.layerIndex;
  const slots = input.layers.flatMap((l, i) => (l >= start ? [i] : []));
  if (slots.length === 0) {
    throw new DexarError(
      'invalid-input',
      `no layer from ${start} on among the rows' layers [${input.layers.join(', ')}]`,
    );
  }
  return slots;
}

/**
 * Per-token raw maps from a per-(token, layer, head, image key) score, averaged over heads and the
 * layers used.
 */
function headLayerMean(input: MethodInput, score: (offset: number) => number): Float64Array {
  const { T, L, H, K, i0, N } = dims(input);
  const slots = usedSlots(input);
  const raw = new Float64Array(T * N);
  const scale = 1 / (slots.length * H);
  for (let n = 0; n < T; n++) {
    for (const u of slots) {
      for (let h = 0; h < H; h++) {
        const base = ((n * L + u) * H + h) * K + i0;
        for (let j = 0; j < N; j++) raw[n * N + j] += score(base + j) * scale;
      }
    }
  }
  return raw;
}

/**
 * Maps of a method that scores each (token, layer, head, image key): per token the mean over heads
 * and the layers used, its total over the image as the token's weight, and the sum of the raw maps
 * as the sentence map.
 */
function headLayerMaps(input: MethodInput, score: (offset: number) => number): MethodMaps {
  const { T, N } = dims(input);
  const raw = headLayerMean(input, score);
  const tokenWeights = new Float64Array(T);
  for (let n = 0; n < T; n++) for (let j = 0; j < N; j++) tokenWeights[n] += raw[n * N + j];
  const sentence = sumTokens(raw, T, N);
  return { perToken: normalizeRows(raw, N), sentence, tokenWeights };
}

const dexar: ExplanationMethod = {
  name: 'dexar',
  description: 'DEX-AR: head-filtered layer-wise gradients, sentence map weighted by delta (the default)',
  compute(input) {
    const maps = aggregate(
      { rows: input.gradientRows, layers: input.layers, numLayers: input.numLayers },
      input.layout,
      input.options,
    );
    return { perToken: maps.perToken, sentence: maps.sentence, tokenWeights: maps.tokenWeights };
  },
};

const dexarUnfiltered: ExplanationMethod = {
  name: 'dexar-unfiltered',
  description: 'DEX-AR without head filtering or token weighting: plain sum over heads and layers (LeGrad-like)',
  compute(input) {
    const maps = aggregate(
      { rows: input.gradientRows, layers: input.layers, numLayers: input.numLayers },
      input.layout,
      input.options,
    );
    return { perToken: maps.perTokenUnfiltered, sentence: maps.sentenceUnfiltered };
  },
};

const attention: ExplanationMethod = {
  name: 'attention',
  description: 'raw attention of each query row to the image keys, averaged over heads and the layers used',
  compute(input) {
    const a = input.attentionRows.data;
    // token weight: the attention mass on the image
    return headLayerMaps(input, (k) => a[k]);
  },
};

const gradXAttention: ExplanationMethod = {
  name: 'grad-x-attention',
  description:
    'Chefer-style positive part of gradient x attention, averaged over heads and layers (layer-local, no rollout)',
  compute(input) {
    const g = input.gradientRows.data;
    const a = input.attentionRows.data;
    return headLayerMaps(input, (k) => Math.max(g[k] * a[k], 0));
  },
};

const logitLensImage: ExplanationMethod = {
  name: 'logit-lens-image',
  description:
    "gradient-free: each layer's image-position hidden states projected on the target's LM-head row, averaged over the layers used (TAM-like, without its filtering)",
  needsPositionLens: true,
  compute(input) {
    const lens = input.positionLens;
    if (!lens) {
      throw new DexarError(
        'invalid-input',
        'logit-lens-image needs the logit lens at every position: build the explain graph with positionLens (a decoder-only family explained in one pass)',
      );
    }
    const [T, L, S] = lens.dims as [number, number, number];
    const { start: i0, end: i1 } = input.layout.imageKeys;
    const N = i1 - i0;
    if (i1 > S)
      throw new DexarError('invalid-input', `the position lens covers ${S} positions, the image ends at ${i1}`);
    const slots = usedSlots(input);
    const raw = new Float64Array(T * N);
    for (let n = 0; n < T; n++) {
      for (const u of slots) {
        const base = (n * L + u) * S + i0;
        for (let j = 0; j < N; j++) raw[n * N + j] += lens.data[base + j] / slots.length;
      }
    }
    // logits of different targets are on different scales: normalise each, then sum
    normalizeRows(raw, N);
    return { perToken: raw, sentence: sumTokens(raw, T, N) };
  },
};

const random: ExplanationMethod = {
  name: 'random',
  description: 'uniform random maps and token weights, seeded by the sample (the chance baseline)',
  compute(input) {
    const { T, N } = dims(input);
    const uniform = prng(hashString(`random:${input.sampleKey}`));
    const perToken = normalizeRows(Float64Array.from({ length: T * N }, uniform), N);
    const sentence = normalizeRows(Float64Array.from({ length: N }, uniform), N);
    return { perToken, sentence, tokenWeights: Float64Array.from({ length: T }, uniform) };
  },
};

for (const m of [dexar, dexarUnfiltered, attention, gradXAttention, logitLensImage, random]) registerMethod(m);

/**
 * The token layout of an explanation made with `returnRaw`: image keys and text sets as the model's
 * adapter chose them (they travel with the rows, family rules such as LLaVA's quirk 2 included),
 * key counts from the cropped row lengths.
 */
export function layoutFromExplanation(explanation: Explanation): TokenLayout {
  const raw = explanation.raw;
  if (!raw) {
    throw new DexarError('invalid-input', 'the explanation has no raw rows: explain with returnRaw (CLI: --raw)');
  }
  const keyCounts = raw.gradientRows.map((perLayer) => perLayer[0]?.[0]?.length ?? 0);
  return {
    imageKeys: { start: raw.imageKeys.start, end: raw.imageKeys.end },
    grid: explanation.grid,
    keyCounts,
    textKeys: raw.textKeys,
  };
}

/**
 * Method input from an explanation made with `returnRaw` (the Explainer's or the CLI's `--raw`):
 * the cropped rows are zero-padded back to `[T, layers, H, keys]`. The layers used run to the last
 * layer, so the model's depth is the last one + 1.
 */
export function methodInputFromExplanation(
  explanation: Explanation,
  sampleKey = explanation.prompt ?? '',
): MethodInput {
  const layout = layoutFromExplanation(explanation);
  const raw = explanation.raw as NonNullable<Explanation['raw']>;
  const T = raw.gradientRows.length;
  const L = raw.layers.length;
  const H = raw.gradientRows[0]?.[0]?.length ?? 0;
  const K = Math.max(...layout.keyCounts);
  const pack = (rows: number[][][][]) => {
    const data = new Float32Array(T * L * H * K);
    for (const [n, perLayer] of rows.entries()) {
      for (const [l, perHead] of perLayer.entries()) {
        for (const [h, row] of perHead.entries()) data.set(row, ((n * L + l) * H + h) * K);
      }
    }
    return { data, dims: [T, L, H, K] };
  };
  const lens = raw.positionLens;
  const S = lens?.[0]?.[0]?.length ?? 0;
  return {
    gradientRows: pack(raw.gradientRows),
    attentionRows: pack(raw.attentionRows),
    ...(lens ? { positionLens: { data: Float32Array.from(lens.flat(2)), dims: [T, L, S] } } : {}),
    layers: raw.layers,
    numLayers: (raw.layers.at(-1) ?? 0) + 1,
    layout,
    options: explanation.options,
    sampleKey,
  };
}

/**
 * An explanation in the shared result schema with a method's maps: `method` names it, the
 * unfiltered maps repeat the method's maps, and token weights are the method's or 1 where it has none.
 */
export function methodExplanation(base: Explanation, method: string, maps: MethodMaps): Explanation {
  const N = base.grid.height * base.grid.width;
  const T = base.tokens.length;
  const grid = (flat: Float64Array, offset: number) => heatmapRows(flat, base.grid, offset);
  const perToken = Array.from({ length: T }, (_, n) => grid(maps.perToken, n * N));
  const { raw: _raw, headWeights: _hw, ...rest } = base;
  return {
    ...rest,
    method,
    perTokenHeatmaps: perToken,
    perTokenHeatmapsUnfiltered: perToken.map((m) => m.map((r) => [...r])),
    tokenWeights: maps.tokenWeights ? Array.from(maps.tokenWeights) : new Array(T).fill(1),
    sentenceHeatmap: grid(maps.sentence, 0),
    sentenceHeatmapUnfiltered: grid(maps.sentence, 0),
  };
}

/**
 * Another method's maps for an explanation made with `returnRaw` (and `positionLens` where the
 * method needs it), in the same result schema with `method` naming it. The raw rows stay only
 * when `keepRaw`. (`dexar explain --method`, the demo's method picker.)
 */
export function withMethod(explanation: Explanation, name: string, keepRaw: boolean): Explanation {
  const maps = methodFor(name).compute(
    methodInputFromExplanation(explanation, `${explanation.prompt ?? ''}\u0000${explanation.tokens.join('')}`),
  );
  const out = methodExplanation(explanation, name, maps);
  return keepRaw && explanation.raw ? { ...out, raw: explanation.raw } : out;
}
