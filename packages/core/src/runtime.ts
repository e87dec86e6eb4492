/**
 * `@dexar/core/runtime`: the contract between adapters and runtimes (onnxruntime-common's split).
 * An adapter drives sessions through a `Backend`; `runtime-node` and `runtime-web` implement it;
 * nothing else changes between Node and the browser.
 */
import { DexarError } from './errors.js';
import type { RgbaImage } from './render/heatmap.js';
import type { Tensor } from './tensor.js';

export { castFeeds, floatData, fromFloat16Bits, toFloat16Bits } from './float16.js';
export { checkImageHeader, type ImageFormat, type ImageHeader } from './image/header.js';
export { checkImageSize, IMAGE_LIMITS, workingSize } from './image/limits.js';

export type DType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8';

/** A tensor with its element type, as sessions take and return it (an `ort.Tensor` is one). */
export interface TypedTensor extends Tensor {
  readonly type: string;
}

/** Shapes of a graph's inputs as the graph declares them: a number per fixed dim, a name per symbolic one. */
export type GraphInputShapes = Readonly<Record<string, readonly (number | string)[]>>;

export interface Session {
  readonly inputNames: readonly string[];
  /** The declared shapes of the inputs, where the runtime reports them (contract checks read them). */
  readonly inputShapes?: GraphInputShapes;
  readonly outputNames: readonly string[];
  run(feeds: Readonly<Record<string, TypedTensor>>): Promise<Record<string, TypedTensor>>;
  release(): Promise<void>;
}

/** A model folder in the transformers.js layout, wherever it lives: a directory, picked files, URLs. */
/** Weight variants exported beside the fp32 graphs, chosen by file-name suffix (the transformers.js layout). */
export const VARIANTS = ['fp32', 'fp16', 'q4', 'q8', 'quantized', 'int8', 'uint8', 'bnb4', 'q4f16'] as const;
export type Variant = (typeof VARIANTS)[number];

/** A file dexar derives from a model and caches with it: an explain graph (`NAME.dexar-KEY.onnx`) and its probe record (`NAME.dexar-KEY.json`). */
export const isDerivedFile = (path: string): boolean => /\.dexar-[0-9a-f]+\.(onnx|json)$/.test(path);

/** The file-name suffix of a variant where it is not the variant's name: transformers.js writes its q8 files as `_quantized`. */
const VARIANT_SUFFIX: Partial<Record<Variant, string>> = { q8: 'quantized' };

/**
 * The file a model path opens for a weight variant: `onnx/NAME.onnx` becomes `onnx/NAME_SUFFIX.onnx`
 * (the suffix is the variant's name, `quantized` for q8). Derived files and paths that already name
 * the variant's file (external data refers to it by its own name) are left as they are.
 */
export function variantPath(path: string, variant: Variant): string {
  if (variant === 'fp32' || !/^onnx\/[^/]+\.onnx$/.test(path) || isDerivedFile(path)) return path;
  const suffix = VARIANT_SUFFIX[variant] ?? variant;
  return path.endsWith(`_${suffix}.onnx`) ? path : path.replace(/\.onnx$/, `_${suffix}.onnx`);
}

export interface ModelFolder {
  /** Where it is, for messages. */
  readonly location: string;
  exists(path: string): Promise<boolean>;
  readBytes(path: string): Promise<Uint8Array>;
  /**
   * Up to `length` bytes of a file at `offset` (fewer past its end), where the folder can read part
   * of a file: the explain graph reads a decoder's structure and leaves its weights in place.
   */
  readRange?(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** Stores a derived file (a cached explain graph) atomically: readers see all of it or nothing. */
  writeBytes(path: string, bytes: Uint8Array): Promise<void>;
  /** The name of the file `path` opens, in its own directory (a weight variant's file has its own): what external data calls it. */
  fileName(path: string): string;
  /** SHA-256 of a file, where the folder can hash it without holding it in memory (a decoder may be gigabytes). */
  sha256?(path: string): Promise<Uint8Array>;
}

export interface SessionOptions {
  /**
   * Hold each weight once. ONNX Runtime pre-packs the constant weight of every MatMul/Gemm node
   * into a copy of its own, so a graph whose nodes share weights (the explain graph re-runs each
   * layer's tail on the query rows) would hold one packed copy per node. Off: no pre-packing.
   */
  weightsOnce?: boolean;
}

/**
 * ONNX Runtime's session configuration for `weightsOnce`: no pre-packing, and no MatMul + scale
 * fusion, whose FusedMatMul runs a general path on weights it has not pre-packed (paligemma-scale's
 * LM head, [1, 1024] x [1024, 32768] on one thread: 16.2 ms fused, 4.5 ms as MatMul and Mul; pre-packed, 5.3 ms).
 */
export const WEIGHTS_ONCE_CONFIG = {
  session: { disable_prepacking: '1' },
  optimization: { disable_specified_optimizers: 'MatMulScaleFusion' },
} as const;

export interface Backend {
  readonly name: string;
  /** Opens the ONNX file at `path` in the folder; its external data resolves beside it. */
  createSession(folder: ModelFolder, path: string, options?: SessionOptions): Promise<Session>;
  tensor(type: 'float32', data: Float32Array, dims: readonly number[]): TypedTensor;
  tensor(type: 'int64', data: BigInt64Array, dims: readonly number[]): TypedTensor;
  tensor(type: 'bool', data: Uint8Array, dims: readonly number[]): TypedTensor;
  /** Decodes PNG, JPEG or WebP bytes to RGBA with EXIF orientation applied. */
  decodeImage(bytes: Uint8Array): Promise<RgbaImage>;
}

export async function readText(folder: ModelFolder, path: string): Promise<string> {
  return new TextDecoder().decode(await folder.readBytes(path));
}

/**
 * A JSON file of the folder, or a one-line error naming the file and where parsing stopped: never
 * the parser's own message, which quotes the file's first characters (a `config.json` linked to a
 * system file would be echoed).
 */
export async function readJson(folder: ModelFolder, path: string): Promise<unknown> {
  const text = await readText(folder, path);
  try {
    return JSON.parse(text);
  } catch (error) {
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    const message = (error as Error).message;
    const where =
      text.trim() === ''
        ? 'it is empty'
        : position
          ? `at character ${position}`
          : /end of JSON/.test(message)
            ? 'it ends early'
            : 'it is not JSON text';
    throw new DexarError(
      'unsupported-model',
      `${folder.location}/${path} is not valid JSON (${where}): re-export or re-download the model`,
    );
  }
}

/** A session's inputs with their declared shapes (empty where the runtime does not report them). */
export function inputShapesOf(session: Session): GraphInputShapes {
  return session.inputShapes ?? Object.fromEntries(session.inputNames.map((name) => [name, []]));
}

/** `GraphInputShapes` from ONNX Runtime's `session.inputMetadata` (the same in onnxruntime-node and -web). */
export function inputShapesFromMetadata(
  metadata: readonly {
    readonly name: string;
    readonly isTensor: boolean;
    readonly shape?: readonly (number | string)[];
  }[],
): GraphInputShapes {
  return Object.fromEntries(metadata.map((m) => [m.name, m.isTensor ? [...(m.shape ?? [])] : []]));
}
