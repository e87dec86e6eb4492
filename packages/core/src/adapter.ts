import { checkConfigLimits } from './config-limits.js';
import { DexarError } from './errors.js';
import type { TokenLayout } from './layout.js';
import type { Compat } from './options.js';
import type { RgbaImage } from './render/heatmap.js';
import type { Backend, ModelFolder, Session, TypedTensor } from './runtime.js';

/**
 * A model family (transformers.js's one folder per family): it knows its
 * config, preprocessing, prompt and token layout, and how to feed its ONNX
 * sessions. Register one with `registerAdapter`; `config.json`'s
 * `model_type` picks it. Adding a family touches no other package.
 */
export interface ModelAdapter {
  readonly family: string;
  /** `config.json` `model_type` values this adapter loads. */
  readonly modelTypes: readonly string[];
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

export interface FamilyModel {
  readonly family: string;
  readonly numLayers: number;
  /** The decoder graph DEX-AR augments, and which of its attentions it differentiates. */
  readonly decoder: { readonly path: string; readonly attention: 'self' | 'cross' };
  prepare(image: RgbaImage, prompt: string): Promise<PreparedInput>;
  /** Target text to ids, as the model would have produced it after the prompt. */
  tokenizeTarget(text: string): number[];
  /** Each id decoded on its own, for display. */
  tokenStrings(ids: readonly number[]): string[];
  decode(ids: readonly number[]): string;
  /** Greedy decoding with the KV cache; stops at EOS (not returned) or after `maxNewTokens`. */
  generate(input: PreparedInput, maxNewTokens: number, onProgress?: ProgressCallback): Promise<number[]>;
  /**
   * Teacher-forced explain run of the augmented decoder over prompt + y_0 .. y_{T-2}: the rows of
   * every target in one pass (two for a prefix LM). The pipeline's `stepwise` strategy replays the
   * authors' loop by calling it once per prefix of the targets.
   */
  explain(
    input: PreparedInput,
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
    input: PreparedInput,
    maxNewTokens: number,
    session: Session,
    options: { compat: Compat },
  ): AsyncIterable<StreamedRows>;
  /**
   * Optional (evaluation): teacher-forced log-probabilities `log p(y_n | image, prompt, y_<n)` of
   * the targets for each row of a batch of variants of `input`, in one batched run of the vision
   * encoder and of the decoder. Returns `[B, T]`, natural logarithms.
   */
  scoreTargets?(input: PreparedInput, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array>;
  /**
   * Releases the plain decoder's session, and with it the decoder's weights: the pipeline holds one
   * decoder at a time (this one or an explain graph). The next generation opens it again.
   */
  releaseDecoder(): Promise<void>;
  release(): Promise<void>;
}

const adapters = new Map<string, ModelAdapter>();

export function registerAdapter(adapter: ModelAdapter): void {
  for (const type of adapter.modelTypes) adapters.set(type, adapter);
}

export function registeredFamilies(): string[] {
  return [...new Set([...adapters.values()].map((a) => a.family))];
}

/** The adapter for a parsed `config.json`, or a clear error listing what is supported. */
export function adapterFor(config: unknown, location: string): ModelAdapter {
  checkConfigLimits(config, `${location}/config.json`);
  const modelType = (config as { model_type?: unknown } | null)?.model_type;
  const adapter = typeof modelType === 'string' ? adapters.get(modelType) : undefined;
  if (!adapter) {
    const known = [...adapters.keys()].join(', ') || 'none registered';
    throw new DexarError(
      'unsupported-model',
      `${location}/config.json has model_type ${JSON.stringify(modelType)}, which no registered adapter supports (model types: ${known}); point --model at a supported model folder`,
    );
  }
  return adapter;
}
