import type { Compat, Explanation, RgbaImage } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import type { Variant } from '@dexar/core/runtime';
import type { StreamedToken } from '@dexar/explain';
import type { PickedFile, WebBackendInfo } from '@dexar/runtime-web';

/** Messages between the page and the worker that runs the pipeline (so the page stays responsive). */

export type ModelSource =
  | { kind: 'url'; url: string }
  | { kind: 'files'; files: PickedFile[]; name?: string }
  | { kind: 'directory'; handle: FileSystemDirectoryHandle };

export interface ExplainInput {
  /** The image file's bytes (PNG, JPEG, WebP): decoded in the worker as the Node path decodes them. */
  image: Uint8Array;
  prompt: string;
  /** Teacher-forced text to explain; the model's greedy answer when left out. */
  target?: string;
  maxNewTokens: number;
  layerIndex: number;
  topK: number;
  compat: Compat;
  /** An explanation method of @dexar/eval (`dexar`, or a baseline computed from the raw rows). */
  method: string;
}

export type Request =
  | { id: number; type: 'init'; executionProvider: 'auto' | 'wasm' | 'webgpu'; wasmPaths: string; threads?: number }
  /** `variant`: the weight variant to open; the folder's fp32 graphs, or else its first variant, when left out. */
  | { id: number; type: 'open'; source: ModelSource; variant?: Variant }
  | { id: number; type: 'decode'; image: Uint8Array }
  | { id: number; type: 'explain'; input: ExplainInput }
  | { id: number; type: 'clear-cache' };

export interface Opened {
  family: string;
  numLayers: number;
  location: string;
  /** The weight variant opened, and every variant whose decoder the folder holds (in `VARIANTS` order). */
  variant: Variant;
  variants: Variant[];
}

export interface Explained {
  result: Explanation;
  image: RgbaImage;
  /** Wall time of `Explainer.explain` (preprocess, generation, explain run, aggregation). */
  ms: number;
}

export type Reply =
  | { id: number; type: 'ok'; value: unknown }
  | { id: number; type: 'error'; message: string; code?: string }
  | { id: number; type: 'progress'; event: ProgressEvent }
  /** A token of the model's answer, explained as it was generated (DEX-AR without a target); the image with the first. */
  | { id: number; type: 'token'; token: StreamedToken; image?: RgbaImage };

export type { WebBackendInfo };
