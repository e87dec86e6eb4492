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

/** An image and prompt made ready for the decoder: what generation and explanation start from. */
export interface PreparedInput {
  readonly image: { width: number; height: number };
  readonly promptIds: readonly number[];
}

/** What one explain run returns, in the layout `aggregate` takes. */
export interface ExplainRows {
  /** `[T, layers, heads, keys]` raw gradients and attention probabilities of the query rows. */
  readonly gradientRows: TypedTensor;
  readonly attentionRows: TypedTensor;
  /** Logit-lens logits of the targets. `[T, layers]` */
  readonly logitLens: TypedTensor;
  readonly layout: TokenLayout;
}

export type ExplainStrategy = 'single' | 'stepwise';

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
   * Teacher-forced explain runs of the augmented decoder: one pass (`single`)
   * or the authors' loop of one run per token (`stepwise`), same numbers.
   */
  explain(
    input: PreparedInput,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; strategy: ExplainStrategy; onProgress?: ProgressCallback },
  ): Promise<ExplainRows>;
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
