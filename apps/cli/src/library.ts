import { DexarError, type Explanation, type RgbaImage } from '@dexar/core';
import type { ModelAdapter, ProgressCallback } from '@dexar/core/adapter';
import { Explainer, type ExplainRequest, type GenerateRequest, type Generation } from '@dexar/explain';
import {
  decodeImage,
  FILE_LIMITS,
  type NodeBackendOptions,
  nodeBackend,
  openModelFolder,
  readRegularFile,
  type Variant,
} from '@dexar/runtime-node';
// the built-in families register themselves when their packages load
import './adapters.js';
import { builtin } from './builtin.js';

export interface NodeOptions extends NodeBackendOptions {
  /** Model folder (transformers.js layout); the built-in shapes model when left out. */
  model?: string;
  /**
   * The model's family adapter. When left out, the registered one for the folder's `model_type`:
   * LLaVA, PaliGemma and Florence-2 are built in, and importing another adapter package registers it.
   */
  adapter?: ModelAdapter;
  variant?: Variant;
  onProgress?: ProgressCallback;
}

export async function openExplainer(options: NodeOptions = {}): Promise<Explainer> {
  const folder = await openModelFolder(options.model ?? builtin.model, options.variant);
  const backend = nodeBackend({
    ...(options.executionProvider ? { executionProvider: options.executionProvider } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
  });
  return Explainer.open({
    backend,
    folder,
    ...(options.adapter ? { adapter: options.adapter } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
}

/** Reads and decodes an image file (PNG, JPEG, WebP; EXIF orientation applied). */
export async function loadImage(image: string | Uint8Array): Promise<RgbaImage> {
  if (typeof image !== 'string') return decodeImage(image);
  const bytes = await readRegularFile(image, {
    maxBytes: FILE_LIMITS.image,
    what: 'image',
    code: 'unreadable-image',
  }).catch((error: NodeJS.ErrnoException) => {
    if (error instanceof DexarError) throw error;
    throw new DexarError(
      'unreadable-image',
      `cannot read image ${image}: ${error.code ?? error.message} (give a path to a PNG, JPEG or WebP file)`,
    );
  });
  return decodeImage(bytes);
}

type Input = { image?: string | Uint8Array };

/** One explanation from files: opens the model, explains, releases. */
export async function explain(options: NodeOptions & Input & Partial<ExplainRequest> = {}): Promise<Explanation> {
  const explainer = await openExplainer(options);
  try {
    const image = await loadImage(options.image ?? builtin.exampleImage);
    const { model, adapter, variant, onProgress, executionProvider, threads, image: _, ...request } = options;
    return await explainer.explain(image, { prompt: builtin.prompt, ...request });
  } finally {
    await explainer.release();
  }
}

/** The model's greedy answer, without explanation. */
export async function generate(options: NodeOptions & Input & Partial<GenerateRequest> = {}): Promise<Generation> {
  const explainer = await openExplainer(options);
  try {
    const image = await loadImage(options.image ?? builtin.exampleImage);
    return await explainer.generate(image, {
      prompt: options.prompt ?? builtin.prompt,
      ...(options.maxNewTokens ? { maxNewTokens: options.maxNewTokens } : {}),
    });
  } finally {
    await explainer.release();
  }
}
