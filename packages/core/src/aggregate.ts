import { DexarError } from './errors.js';
import { type Grid, type TokenLayout, validateLayout } from './layout.js';
import { type DexarOptions, type DexarOptionsInput, layersUsed, parseOptions } from './options.js';
import type { FloatData, Tensor } from './tensor.js';

/** The raw signal of dexar-algorithm.md, "Per-layer gradient". */
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
 * dexar-algorithm.md. Reads the input twice and never copies it.
 */
export function aggregate(gradients: GradientRows, layout: TokenLayout, options: DexarOptionsInput = {}): DexarMaps {
  const opts = parseOptions(options);
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
  validateLayout(layout, T, K);
  const used = layersUsed(opts.layerIndex, gradients.numLayers);
  const slots = used.map((layer) => {
    const slot = gradients.layers.indexOf(layer);
    if (slot < 0) {
      throw new DexarError(
        'invalid-input',
        `layer ${layer} is needed for layerIndex ${opts.layerIndex} but the gradient rows hold layers [${gradients.layers.join(', ')}]: compute them for layers ${used[0]} to ${gradients.numLayers - 1}`,
      );
    }
    return slot;
  });

  const data = rows.data;
  const { start: i0, end: i1 } = layout.imageKeys;
  const N = i1 - i0;
  const Lu = used.length;
  const rowOffset = (n: number, u: number, h: number) => ((n * layerAxis + slots[u]) * H + h) * K;

  // Pass 1: head scores (Eq. 5), token weights (Eq. 6) and, for `official`,
  // the global min/max of the positive image gradients (quirk 3).
  const headScoreImage = new Float64Array(T * Lu * H);
  const headScoreText = new Float64Array(T * Lu * H);
  const headWeights = new Float64Array(T * Lu * H);
  const tokenWeights = new Float64Array(T);
  if (opts.topK > N) {
    // the authors' torch.topk refuses it too; a huge k would also allocate k slots here
    throw new DexarError(
      'invalid-options',
      `topK ${opts.topK} is more than the ${N} image tokens: use a value from 1 to ${N}`,
    );
  }
  const top = new TopK(opts.topK);
  let globalMin = Number.POSITIVE_INFINITY;
  let globalMax = Number.NEGATIVE_INFINITY;
  for (let n = 0; n < T; n++) {
    const text = layout.textKeys[n] as readonly number[];
    const visible = layout.keyCounts[n];
    let maxImage = 0;
    let maxText = 0;
    for (let u = 0; u < Lu; u++) {
      for (let h = 0; h < H; h++) {
        const base = rowOffset(n, u, h);
        assertFinite(data, base, visible, n, used[u], h);
        top.reset();
        for (let j = base + i0; j < base + i1; j++) {
          top.push(data[j]);
          if (data[j] < globalMin) globalMin = data[j];
        }
        if (top.max() > globalMax) globalMax = top.max();
        const sImg = top.mean();
        top.reset();
        for (const k of text) top.push(data[base + k]);
        const sTxt = top.mean();
        const s = (n * Lu + u) * H + h;
        headScoreImage[s] = sImg;
        headScoreText[s] = sTxt;
        headWeights[s] = Math.max(sImg - sTxt, 0);
        if (sImg > maxImage) maxImage = sImg;
        if (sTxt > maxText) maxText = sTxt;
      }
    }
    tokenWeights[n] = Math.max(maxImage - maxText, 0);
  }

  // Pass 2: per-token maps. `official` rescales Gimg once over the whole
  // [T, layers used, H, N] tensor before weighting (quirk 3); `paper` uses it raw.
  globalMin = Math.max(globalMin, 0); // min of the clamped values, as max/min commute with relu
  const official = opts.compat === 'official';
  const shift = official ? globalMin : 0;
  const range = globalMax - globalMin;
  const scale = official && range > 0 ? 1 / range : 1;
  const perToken = new Float64Array(T * N);
  const perTokenUnfiltered = new Float64Array(T * N);
  for (let n = 0; n < T; n++) {
    const out = n * N;
    for (let u = 0; u < Lu; u++) {
      for (let h = 0; h < H; h++) {
        const base = rowOffset(n, u, h) + i0;
        const w = headWeights[(n * Lu + u) * H + h];
        for (let j = 0; j < N; j++) {
          const g = (relu(data[base + j]) - shift) * scale;
          perToken[out + j] += w * g;
          perTokenUnfiltered[out + j] += g;
        }
      }
    }
  }

  // Sentence maps: `official` sums the maps before their per-token
  // normalisation, `paper` after it (dexar-algorithm.md).
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
}

const relu = (x: number) => Math.max(x, 0);

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

function assertFinite(data: FloatData, base: number, count: number, step: number, layer: number, head: number) {
  // A sum is finite exactly when every float32 term is: one cheap pass, and the slow search only on failure.
  let sum = 0;
  for (let k = base; k < base + count; k++) sum += data[k];
  if (Number.isFinite(sum)) return;
  for (let k = 0; k < count; k++) {
    if (!Number.isFinite(data[base + k])) {
      throw new DexarError(
        'non-finite',
        `gradient row of token ${step}, layer ${layer}, head ${head} holds ${data[base + k]} at key ${k}: the model produced non-finite values (try fp32 weights instead of a quantised variant)`,
      );
    }
  }
}

/**
 * Mean of the k largest positive values pushed since the last reset (the
 * top-k mean of the clamped row; fewer when fewer were pushed, 0 when none).
 */
class TopK {
  private readonly best: Float64Array;
  private count = 0;
  constructor(private readonly k: number) {
    this.best = new Float64Array(k);
  }
  reset(): void {
    this.count = 0;
  }
  push(v: number): void {
    const { best, k } = this;
    if (v <= 0 || (this.count === k && v <= best[k - 1])) return;
    let i = this.count < k ? this.count++ : k - 1;
    while (i > 0 && best[i - 1] < v) {
      best[i] = best[i - 1];
      i--;
    }
    best[i] = v;
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
