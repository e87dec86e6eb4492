/**
 * `@dexar/core/adapter`: the plugin boundary. A model family is a `ModelAdapter`; the pipeline
 * (`@dexar/explain`) takes one explicitly (`Explainer.open({ adapter })`) or finds it in the
 * registry by `config.json`'s `model_type`. docs/adapters.md builds one step by step.
 */
import { checkConfigLimits } from './config-limits.js';
import { DexarError } from './errors.js';
import type { TokenLayout } from './layout.js';
import type { Compat } from './options.js';
import type { RgbaImage } from './render/heatmap.js';
import type { Backend, GraphInputShapes, ModelFolder, Session, TypedTensor } from './runtime.js';

export { checkConfigLimits } from './config-limits.js';

/**
 * A model family (transformers.js's one folder per family): it knows its
 * config, preprocessing, prompt and token layout, and how to feed its ONNX
 * sessions. Adding a family touches no other package.
 */
export interface ModelAdapter {
  readonly family: string;
  /** `config.json` `model_type` values this adapter loads. */
  readonly modelTypes: readonly string[];
  /** Opens the family's sessions (the decoder may open on first use); `config` is the parsed `config.json`. */
  load(folder: ModelFolder, backend: Backend, config: unknown): Promise<FamilyModel>;
}

export interface ProgressEvent {
  stage: 'load' | 'prepare' | 'generate' | 'explain' | 'aggregate';
  /** Units done and total (tokens, runs), when the stage counts them. */
  done?: number;
  total?: number;
  detail?: string;
}
export type ProgressCallback = (event: ProgressEvent) => void;

/**
 * The vision encoder's input for one image, as the adapter preprocessed it (evaluation perturbs it
 * patch by patch: the explanation grid divides `height` and `width` into the encoder's patches).
 */
export interface PixelValues {
  /** `[1, 3, height, width]`, row-major. */
  readonly data: Float32Array;
  readonly dims: readonly number[];
  /** The value a black pixel (byte 0) takes after rescaling and normalisation, per channel. */
  readonly black?: readonly number[];
  /** The region of the original image the pixels show, in original pixels (after a crop); the whole image when absent. */
  readonly window?: { readonly left: number; readonly top: number; readonly width: number; readonly height: number };
}

/** An image and prompt made ready for the decoder: what generation and explanation start from. */
export interface PreparedInput {
  readonly image: { width: number; height: number };
  readonly promptIds: readonly number[];
  /** The preprocessed image, where the adapter keeps it (needed by `scoreTargets` perturbations). */
  readonly pixels?: PixelValues;
}

/**
 * B variants of one prepared input for `FamilyModel.scoreTargets`: other images (perturbed pixel
 * values) and/or image tokens hidden from the decoder's attention.
 */
export interface ScoreBatch {
  /** Rows in the batch. */
  readonly size: number;
  /** `[B, 3, height, width]` pixel values, one image per row; the prepared image in every row when absent. */
  readonly pixels?: { readonly data: Float32Array; readonly dims: readonly number[] };
  /** `[B, N]` over the image tokens (row-major grid): 0 hides the token from the decoder's attention, 1 keeps it. */
  readonly imageTokenMask?: Uint8Array;
}

/** What one explain run returns, in the layout `aggregate` takes. */
export interface ExplainRows {
  /** `[T, layers, heads, keys]` raw gradients and attention probabilities of the query rows. */
  readonly gradientRows: TypedTensor;
  readonly attentionRows: TypedTensor;
  /** Logit-lens logits of the targets. `[T, layers]` */
  readonly logitLens: TypedTensor;
  /**
   * Only from an explain graph built with `positionLens`: the logit-lens logit of each target at
   * every position of the sequence, `[T, layers, positions]` (absolute positions from 0).
   */
  readonly positionLens?: TypedTensor;
  readonly layout: TokenLayout;
}

/** One token of a streamed explanation: the token the model chose and its explain rows (T = 1). */
export interface StreamedRows extends ExplainRows {
  readonly tokenId: number;
}

/**
 * A loaded model of one family. `Input` is what its `prepare` returns (embeddings, encoder states,
 * the image span): the pipeline only carries it from `prepare` to the other calls.
 */
export interface FamilyModel<Input extends PreparedInput = PreparedInput> {
  readonly family: string;
  readonly numLayers: number;
  /** The decoder graph DEX-AR augments, and which of its attentions it differentiates. */
  readonly decoder: { readonly path: string; readonly attention: 'self' | 'cross' };
  /**
   * Refuses a decoder graph whose inputs disagree with the config (layer count, KV heads, head
   * size): one line naming the config field. The pipeline calls it with the decoder's inputs before
   * building the explain graph and with the explain graph's once opened (a cached graph may predate
   * an edited config).
   */
  checkDecoder(inputs: GraphInputShapes, path: string): void;
  prepare(image: RgbaImage, prompt: string): Promise<Input>;
  /** Target text to ids, as the model would have produced it after the prompt. */
  tokenizeTarget(text: string): number[];
  /** Each id decoded on its own, for display. */
  tokenStrings(ids: readonly number[]): string[];
  decode(ids: readonly number[]): string;
  /** Greedy decoding with the KV cache; stops at EOS (not returned) or after `maxNewTokens`. */
  generate(input: Input, maxNewTokens: number, onProgress?: ProgressCallback): Promise<number[]>;
  /**
   * Teacher-forced explain run of the augmented decoder over prompt + y_0 .. y_{T-2}: the rows of
   * every target in one pass (two for a prefix LM). The pipeline's `stepwise` strategy replays the
   * authors' loop by calling it once per prefix of the targets.
   */
  explain(
    input: Input,
    targetIds: readonly number[],
    session: Session,
    options: {
      compat: Compat;
      /**
       * The explain graph's multi-token calls are not causal among their tokens
       * (`answerCallIsCausal` said so): feed the answer one token per call with the cache, as
       * generation did.
       */
      perToken?: boolean;
    },
  ): Promise<ExplainRows>;
  /**
   * Whether the explain graph's teacher-forced answer call is causal among its tokens, probed on
   * the graph itself with synthetic inputs (some exports attend bidirectionally within any call of
   * several tokens). The pipeline asks once per explain graph and remembers the answer with it.
   */
  answerCallIsCausal(session: Session): Promise<boolean>;
  /**
   * Generation and explanation together: greedy decoding with the KV cache on an explain graph
   * built with `greedyTargets` (the target of each call is the argmax of its own logits), yielding
   * each generated token with its rows as the call that chose it returns. Stops at EOS (not
   * yielded) or after `maxNewTokens`. Holds the weights once: the plain decoder is not opened.
   */
  stream(
    input: Input,
    maxNewTokens: number,
    session: Session,
    options: { compat: Compat },
  ): AsyncIterable<StreamedRows>;
  /**
   * Optional (evaluation): teacher-forced log-probabilities `log p(y_n | image, prompt, y_<n)` of
   * the targets for each row of a batch of variants of `input`, in one batched run of the vision
   * encoder and of the decoder. Returns `[B, T]`, natural logarithms.
   */
  scoreTargets?(input: Input, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array>;
  /**
   * Releases the plain decoder's session, and with it the decoder's weights: the pipeline holds one
   * decoder at a time (this one or an explain graph). The next generation opens it again.
   */
  releaseDecoder(): Promise<void>;
  release(): Promise<void>;
}

/**
 * The registry lives on `globalThis` under a `Symbol.for` key, not in this module: an adapter
 * package linked from elsewhere loads its own copy of `@dexar/core`, and its registration must
 * reach the pipeline's copy.
 */
const REGISTRY = Symbol.for('dexar.adapters');

function registry(): Map<string, ModelAdapter> {
  const holder = globalThis as { [REGISTRY]?: Map<string, ModelAdapter> };
  holder[REGISTRY] ??= new Map();
  return holder[REGISTRY];
}

/** Makes an adapter's model types discoverable from `config.json` (a later registration of a type wins). */
export function registerAdapter(adapter: ModelAdapter): void {
  if (!isModelAdapter(adapter)) {
    throw new DexarError(
      'invalid-options',
      'registerAdapter takes a ModelAdapter: an object with a family name, a non-empty modelTypes list and a load function',
    );
  }
  for (const type of adapter.modelTypes) registry().set(type, adapter);
}

/** Whether a value is shaped as a `ModelAdapter` (the CLI's `--adapter` looks for them among a package's exports). */
export function isModelAdapter(value: unknown): value is ModelAdapter {
  const a = value as Partial<ModelAdapter> | null;
  return (
    typeof a === 'object' &&
    a !== null &&
    typeof a.family === 'string' &&
    Array.isArray(a.modelTypes) &&
    a.modelTypes.length > 0 &&
    a.modelTypes.every((t) => typeof t === 'string') &&
    typeof a.load === 'function'
  );
}

export function registeredFamilies(): string[] {
  return [...new Set([...registry().values()].map((a) => a.family))];
}

/**
 * The adapter for a parsed `config.json`: `explicit` when given (it must list the folder's
 * `model_type`), else the registered one; a clear error saying how to add one otherwise.
 */
export function adapterFor(config: unknown, location: string, explicit?: ModelAdapter): ModelAdapter {
  checkConfigLimits(config, `${location}/config.json`);
  const modelType = (config as { model_type?: unknown } | null)?.model_type;
  if (explicit) {
    if (typeof modelType === 'string' && explicit.modelTypes.includes(modelType)) return explicit;
    throw new DexarError(
      'unsupported-model',
      `${location}/config.json has model_type ${JSON.stringify(modelType)}, but the ${explicit.family} adapter given loads ${explicit.modelTypes.map((t) => JSON.stringify(t)).join(', ')}: give the adapter of this model's family`,
    );
  }
  const adapter = typeof modelType === 'string' ? registry().get(modelType) : undefined;
  if (!adapter) {
    const known = [...registry().keys()].join(', ') || 'none';
    throw new DexarError(
      'unsupported-model',
      `${location}/config.json has model_type ${JSON.stringify(modelType)}, which no registered adapter supports (registered model types: ${known}): register its family's adapter (CLI: --adapter <package>; library: Explainer.open({ adapter }) or import the adapter package) or point --model at a supported model folder`,
    );
  }
  return adapter;
}

/**
 * The explain graph's own inputs and outputs: `@dexar/onnx-graph` adds them to the decoder graph,
 * the families feed and read them (docs/adapters.md, "The ONNX contract").
 */
export const EXPLAIN_GRAPH = {
  /** int64 `[T]`: the targets y_n (an output of a graph built with `greedyTargets`). */
  targetIds: 'dexar_target_ids',
  /** int64 `[T]`: the query row q_n of each target on the call's sequence axis. */
  queryPositions: 'dexar_query_positions',
  /** float32 `[T, layers, heads, keys]`: `A_l[:, q_n, :]`. */
  attentionRows: 'dexar_attention_rows',
  /** float32 `[T, layers, heads, keys]`: `d z_{n,l} / d A_l[:, q_n, :]`, unclamped. */
  gradientRows: 'dexar_gradient_rows',
  /** float32 `[T, layers]`: the logit-lens logits `z_{n,l}`. */
  logitLens: 'dexar_logit_lens',
  /** float32 `[T, layers, positions]`, built with `positionLens` only: `z` at every position of the call. */
  positionLens: 'dexar_position_lens',
} as const;

/**
 * The boolean input of a decoder merged the way optimum merges them: an If over the with-past and
 * the without-past decoders. Callers feed it true exactly when the past is not empty.
 */
export const USE_CACHE_BRANCH = 'use_cache_branch';
