import { DexarError } from './errors.js';
import { type Grid, type TokenLayout, validateGrid, validateStep, validateStepCount } from './layout.js';
import { type DexarOptions, type DexarOptionsInput, layersUsed, parseOptions } from './options.js';
import type { FloatData, Tensor } from './tensor.js';

/** The raw signal of docs/algorithm.md, "The signal: a gradient per layer". */
export interface GradientRows {
  /** `G_{n,l}[h, k] = d z_{n,l} / d A_l[h, q_n, k]`, unclamped. `[T, layers, heads, keys]`; keys past `keyCounts[n]` are ignored. */
  readonly rows: Tensor<FloatData>;
  /** Absolute layer index of each entry on the layers axis, ascending. */
  readonly layers: readonly number[];
  /** The model's depth L, against which `layerIndex` is resolved. */
  readonly numLayers: number;
}

/** What DEX-AR computes for one explanation; maps are flat `[T, N]` / `[N]` with `N = gh * gw`, row-major. */
export interface DexarMaps {
  readonly options: DexarOptions;
  readonly layersUsed: number[];
  readonly grid: Grid;
  readonly numHeads: number;
  /** `M_n`, filtered per-token maps. `[T, N]` */
  readonly perToken: Float64Array;
  /** `U_n`, unfiltered per-token maps. `[T, N]` */
  readonly perTokenUnfiltered: Float64Array;
  /** `delta_n` (paper Eq. 6). `[T]` */
  readonly tokenWeights: Float64Array;
  /** `S`, the filtered sentence map. `[N]` */
  readonly sentence: Float64Array;
  /** `Su`, the unfiltered sentence map. `[N]` */
  readonly sentenceUnfiltered: Float64Array;
  /** `w_{n,l,h}` (paper Eq. 5). `[T, layersUsed, H]` */
  readonly headWeights: Float64Array;
  /** `Simg_{n,l,h}` and `Stxt_{n,l,h}`. `[T, layersUsed, H]` */
  readonly headScoreImage: Float64Array;
  readonly headScoreText: Float64Array;
}

/**
 * DEX-AR aggregation (paper Eqs. 5 and 6) from raw gradient rows to per-token
 * maps, token weights and sentence maps, in one of the two compat modes of
 * docs/algorithm.md. Reads each input row once (it stays in cache between its
 * uses) and never copies the input.
 */
export function aggregate(gradients: GradientRows, layout: TokenLayout, options: DexarOptionsInput = {}): DexarMaps {
  const { rows } = gradients;
  if (rows.dims.length !== 4) {
    throw new DexarError(
      'invalid-input',
      `gradient rows must be [T, layers, heads, keys], got dims [${rows.dims.join(', ')}]`,
    );
  }
  const [T, layerAxis, H, K] = rows.dims as [number, number, number, number];
  if (T === 0)
    throw new DexarError(
      'empty-target',
      'nothing to explain: the gradient rows hold no token (give a non-empty target)',
    );
  if (gradients.layers.length !== layerAxis) {
    throw new DexarError(
      'invalid-input',
      `gradient rows hold ${layerAxis} layers but ${gradients.layers.length} layer indices were given`,
    );
  }
  validateStepCount(layout, T);
  const aggregation = startAggregation(
    { layers: gradients.layers, numLayers: gradients.numLayers, heads: H },
    layout,
    options,
  );
  for (let n = 0; n < T; n++) {
    aggregation.addToken(
      { data: rows.data, offset: n * layerAxis * H * K, keys: K },
      layout.keyCounts[n],
      layout.textKeys[n],
    );
  }
  return aggregation.finish();
}

/** What the rows of one token give on their own (Eqs. 5 and 6), before any other token is known. */
export interface TokenAggregate {
  /** `w_{n,l,h}`, `Simg_{n,l,h}`, `Stxt_{n,l,h}`. `[layersUsed, H]` */
  readonly headWeights: Float64Array;
  readonly headScoreImage: Float64Array;
  readonly headScoreText: Float64Array;
  /** `delta_n`. */
  readonly tokenWeight: number;
  /**
   * `M_n` and `U_n`, normalised. Final in `paper` mode; in `official` mode too
   * unless the map is constant, which `official` leaves unnormalised at a value
   * set by the global rescale of all tokens (`provisional` is then true).
   */
  readonly perToken: Float64Array;
  readonly perTokenUnfiltered: Float64Array;
  readonly provisional: boolean;
}

/** Rows arrive one token at a time; `aggregate` is `addToken` for each token, then `finish`. */
export interface Aggregation {
  /** The rows of the next token and the keys it sees (the first `keyCount`, `textKeys` its text set). */
  addToken(rows: TokenRows, keyCount: number, textKeys: readonly number[]): TokenAggregate;
  /** All maps over the tokens added so far (at least one). */
  finish(): DexarMaps;
}

/** The layers and heads of the rows each token brings. */
export interface RowShape {
  /** Absolute layer index of each entry on the layers axis, ascending. */
  readonly layers: readonly number[];
  /** The model's depth L, against which `layerIndex` is resolved. */
  readonly numLayers: number;
  readonly heads: number;
}

/** One token's rows: `[layers, heads, keys]` from `offset` in `data`. */
export interface TokenRows {
  readonly data: FloatData;
  readonly offset: number;
  readonly keys: number;
}

/**
 * Aggregation token by token: each token's head weights, token weight and maps
 * as soon as its rows exist (streaming), all fields of `aggregate` at the end.
 *
 * `official` rescales Gimg over all tokens before weighting (quirk 3):
 * `M_n = sum_{l,h} w (relu(G) - m) / (M - m)`. As `m` and `M` are global, the
 * token keeps the sums `A_n = sum w relu(G)` and `W_n = sum w`, and `finish`
 * forms `(A_n - m W_n) / (M - m)` once `m` and `M` are known (the same sum
 * rearranged). Min-max normalisation removes that positive affine map, so a
 * token's normalised map is final at once except when it is constant.
 */
export function startAggregation(
  shape: RowShape,
  layout: Pick<TokenLayout, 'imageKeys' | 'grid'>,
  options: DexarOptionsInput = {},
): Aggregation {
  const opts = parseOptions(options);
  validateGrid(layout.imageKeys, layout.grid);
  const { layers, heads: H } = shape;
  const used = layersUsed(opts.layerIndex, shape.numLayers);
  const slots = used.map((layer) => {
    const slot = layers.indexOf(layer);
    if (slot < 0) {
      throw new DexarError(
        'invalid-input',
        `layer ${layer} is needed for layerIndex ${opts.layerIndex} but the gradient rows hold layers [${layers.join(', ')}]: compute them for layers ${used[0]} to ${shape.numLayers - 1}`,
      );
    }
    return slot;
  });
  const { start: i0, end: i1 } = layout.imageKeys;
  const N = i1 - i0;
  const Lu = used.length;
  if (opts.topK > N) {
    // the authors' torch.topk refuses it too; a huge k would also allocate k slots here
    throw new DexarError(
      'invalid-options',
      `topK ${opts.topK} is more than the ${N} image tokens: use a value from 1 to ${N}`,
    );
  }
  const official = opts.compat === 'official';
  const top = new TopK(opts.topK);
  const rows = new TokenRowsAggregator(top, slots, H, i0, N);
  const tokens: TokenSums[] = [];
  let imageMin = Number.POSITIVE_INFINITY;
  let imageMax = Number.NEGATIVE_INFINITY;

  const rescale = () => {
    // min of the clamped values, as max/min commute with relu
    const shift = official ? Math.max(imageMin, 0) : 0;
    const range = imageMax - shift;
    return { shift, scale: official && range > 0 ? 1 / range : 1 };
  };

  return {
    addToken(token, keyCount, textKeys) {
      const n = tokens.length;
      validateStep(layout.imageKeys, n, keyCount, textKeys, token.keys);
      const sums = rows.add(token, keyCount, textKeys, n, used);
      tokens.push(sums);
      if (sums.imageMin < imageMin) imageMin = sums.imageMin;
      if (sums.imageMax > imageMax) imageMax = sums.imageMax;
      const { shift, scale } = rescale();
      const perToken = rescaled(sums.weighted, sums.weightTotal, shift, scale);
      const perTokenUnfiltered = rescaled(sums.unweighted, Lu * H, shift, scale);
      const provisional = official && (isConstant(perToken) || isConstant(perTokenUnfiltered));
      minMaxNormalize(perToken, !official);
      minMaxNormalize(perTokenUnfiltered, !official);
      return { ...sums, perToken, perTokenUnfiltered, provisional };
    },

    finish() {
      const T = tokens.length;
      if (T === 0) {
        throw new DexarError('empty-target', 'nothing to explain: no token was added (give a non-empty target)');
      }
      const { shift, scale } = rescale();
      const perToken = new Float64Array(T * N);
      const perTokenUnfiltered = new Float64Array(T * N);
      const tokenWeights = new Float64Array(T);
      const headWeights = new Float64Array(T * Lu * H);
      const headScoreImage = new Float64Array(T * Lu * H);
      const headScoreText = new Float64Array(T * Lu * H);
      tokens.forEach((sums, n) => {
        perToken.set(rescaled(sums.weighted, sums.weightTotal, shift, scale), n * N);
        perTokenUnfiltered.set(rescaled(sums.unweighted, Lu * H, shift, scale), n * N);
        tokenWeights[n] = sums.tokenWeight;
        headWeights.set(sums.headWeights, n * Lu * H);
        headScoreImage.set(sums.headScoreImage, n * Lu * H);
        headScoreText.set(sums.headScoreText, n * Lu * H);
      });

      // Sentence maps: `official` sums the maps before their per-token
      // normalisation, `paper` after it (docs/algorithm.md).
      const sentence = new Float64Array(N);
      const sentenceUnfiltered = new Float64Array(N);
      const accumulateSentence = () => {
        for (let n = 0; n < T; n++) {
          const delta = tokenWeights[n];
          for (let j = 0; j < N; j++) {
            sentence[j] += delta * perToken[n * N + j];
            sentenceUnfiltered[j] += perTokenUnfiltered[n * N + j];
          }
        }
      };
      const constantToZero = !official;
      if (official) accumulateSentence();
      for (let n = 0; n < T; n++) {
        minMaxNormalize(perToken.subarray(n * N, (n + 1) * N), constantToZero);
        minMaxNormalize(perTokenUnfiltered.subarray(n * N, (n + 1) * N), constantToZero);
      }
      if (!official) accumulateSentence();
      minMaxNormalize(sentence, constantToZero);
      minMaxNormalize(sentenceUnfiltered, constantToZero);

      return {
        options: opts,
        layersUsed: used,
        grid: layout.grid,
        numHeads: H,
        perToken,
        perTokenUnfiltered,
        tokenWeights,
        sentence,
        sentenceUnfiltered,
        headWeights,
        headScoreImage,
        headScoreText,
      };
    },
  };
}

/** One token's sums over its used layers and heads, before the global rescale. */
interface TokenSums {
  readonly headWeights: Float64Array;
  readonly headScoreImage: Float64Array;
  readonly headScoreText: Float64Array;
  readonly tokenWeight: number;
  /** `A_n[j] = sum_{l,h} w_{n,l,h} relu(G[j])` and `B_n[j] = sum_{l,h} relu(G[j])` over the image keys. `[N]` */
  readonly weighted: Float64Array;
  readonly unweighted: Float64Array;
  /** `W_n = sum_{l,h} w_{n,l,h}`. */
  readonly weightTotal: number;
  /** Smallest image gradient and largest positive one (0 when none is positive). */
  readonly imageMin: number;
  readonly imageMax: number;
}

/** The one pass over a token's rows: each row is read from memory once and reused from cache. */
class TokenRowsAggregator {
  constructor(
    private readonly top: TopK,
    private readonly slots: readonly number[],
    private readonly H: number,
    private readonly i0: number,
    private readonly N: number,
  ) {}

  add(
    { data, offset, keys: K }: TokenRows,
    visible: number,
    text: readonly number[],
    step: number,
    used: readonly number[],
  ): TokenSums {
    const { top, slots, H, i0, N } = this;
    const Lu = slots.length;
    const headScoreImage = new Float64Array(Lu * H);
    const headScoreText = new Float64Array(Lu * H);
    const headWeights = new Float64Array(Lu * H);
    const weighted = new Float64Array(N);
    const unweighted = new Float64Array(N);
    let weightTotal = 0;
    let maxImage = 0;
    let maxText = 0;
    let imageMin = Number.POSITIVE_INFINITY;
    let imageMax = 0;
    for (let u = 0; u < Lu; u++) {
      for (let h = 0; h < H; h++) {
        const base = offset + (slots[u] * H + h) * K;
        top.reset();
        const image = base + i0;
        let imageSum = 0;
        for (let j = image; j < image + N; j++) {
          const g = data[j];
          imageSum += g;
          if (g < imageMin) imageMin = g;
          top.push(g);
        }
        // A sum is finite exactly when every float32 term is: the slow search only on failure.
        const rowSum = imageSum + sum(data, base, image) + sum(data, image + N, base + visible);
        if (!Number.isFinite(rowSum)) throwNonFinite(data, base, visible, step, used[u], h);
        if (top.max() > imageMax) imageMax = top.max();
        const sImg = top.mean();
        top.reset();
        for (const k of text) top.push(data[base + k]);
        const sTxt = top.mean();
        const w = Math.max(sImg - sTxt, 0); // Eq. 5
        const s = u * H + h;
        headScoreImage[s] = sImg;
        headScoreText[s] = sTxt;
        headWeights[s] = w;
        weightTotal += w;
        if (sImg > maxImage) maxImage = sImg;
        if (sTxt > maxText) maxText = sTxt;
        for (let j = 0; j < N; j++) {
          const g = data[image + j];
          // relu(g), exactly and without a branch: random signs would mispredict one
          const r = 0.5 * (g + Math.abs(g));
          weighted[j] += w * r;
          unweighted[j] += r;
        }
      }
    }
    const tokenWeight = Math.max(maxImage - maxText, 0); // Eq. 6
    return {
      headWeights,
      headScoreImage,
      headScoreText,
      tokenWeight,
      weighted,
      unweighted,
      weightTotal,
      imageMin,
      imageMax,
    };
  }
}

/** `sum_{l,h} c (relu(G) - m) s = (sum c relu(G) - m sum c) s`, from the token's sums. */
function rescaled(sum: Float64Array, coefficientTotal: number, shift: number, scale: number): Float64Array {
  const offset = shift * coefficientTotal;
  return sum.map((v) => (v - offset) * scale);
}

function isConstant(map: Float64Array): boolean {
  return map.every((v) => v === map[0]);
}

/**
 * `N(x)`: min-max normalisation of one map. A constant map is left as it is
 * (`official`) or set to zero (`paper`).
 */
function minMaxNormalize(map: Float64Array, constantToZero: boolean): void {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of map) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi > lo) {
    const inv = 1 / (hi - lo);
    for (let i = 0; i < map.length; i++) map[i] = (map[i] - lo) * inv;
  } else if (constantToZero) {
    map.fill(0);
  }
}

function sum(data: FloatData, from: number, to: number): number {
  let total = 0;
  for (let k = from; k < to; k++) total += data[k];
  return total;
}

function throwNonFinite(data: FloatData, base: number, count: number, step: number, layer: number, head: number) {
  const k = data.subarray(base, base + count).findIndex((v) => !Number.isFinite(v));
  throw new DexarError(
    'non-finite',
    `gradient row of token ${step}, layer ${layer}, head ${head} holds ${data[base + k]} at key ${k}: the model produced non-finite values (try fp32 weights instead of a quantised variant)`,
  );
}

/**
 * Mean of the k largest positive values pushed since the last reset (the
 * top-k mean of the clamped row; fewer when fewer were pushed, 0 when none).
 */
class TopK {
  private readonly best: Float64Array;
  private count = 0;
  /** What a value must exceed to enter: 0 until k are held, then the k-th best (one predictable branch per value). */
  private floor = 0;
  constructor(private readonly k: number) {
    this.best = new Float64Array(k);
  }
  reset(): void {
    this.count = 0;
    this.floor = 0;
  }
  push(v: number): void {
    if (v <= this.floor) return;
    const { best, k } = this;
    let i = this.count < k ? this.count++ : k - 1;
    while (i > 0 && best[i - 1] < v) {
      best[i] = best[i - 1];
      i--;
    }
    best[i] = v;
    if (this.count === k) this.floor = best[k - 1];
  }
  max(): number {
    return this.count === 0 ? 0 : this.best[0];
  }
  mean(): number {
    let sum = 0;
    for (let i = 0; i < this.count; i++) sum += this.best[i];
    return this.count === 0 ? 0 : sum / this.count;
  }
}
