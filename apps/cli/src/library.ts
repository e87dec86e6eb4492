import { florence2Adapter } from '@dexar/adapter-florence2';
import { llavaAdapter } from '@dexar/adapter-llava';
import { paligemmaAdapter } from '@dexar/adapter-paligemma';
import { DexarError, type Explanation, type ProgressCallback, type RgbaImage } from '@dexar/core';
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
import { builtin } from './builtin.js';

/** Adapters the CLI and library load; importing a package registers it. */
export const adapters = [llavaAdapter, paligemmaAdapter, florence2Adapter];

export interface NodeOptions extends NodeBackendOptions {
  /** Model folder (transformers.js layout); the built-in shapes model when left out. */
  model?: string;
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
    const { model, variant, onProgress, executionProvider, threads, image: _, ...request } = options;
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
