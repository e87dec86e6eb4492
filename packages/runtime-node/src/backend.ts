import { DexarError } from '@dexar/core';
import {
  type Backend,
  castFeeds,
  inputShapesFromMetadata,
  type ModelFolder,
  type Session,
  type SessionOptions,
  type TypedTensor,
  WEIGHTS_ONCE_CONFIG,
} from '@dexar/core/runtime';
import * as ort from 'onnxruntime-node';
import { checkRegularFile } from './files.js';
import { NodeModelFolder } from './folder.js';
import { decodeImage } from './image.js';

export interface NodeBackendOptions {
  /** `cpu` (default) or `cuda`; CUDA fails with a clear error where its binaries are absent. */
  executionProvider?: 'cpu' | 'cuda';
  /** Intra-op threads (1 to `MAX_THREADS`); ONNX Runtime's default (one per core) when left out. */
  threads?: number;
}

/**
 * ONNX Runtime's own logger prints coloured lines on stderr for failures dexar reports itself
 * (a missing CUDA provider library, an unloadable graph), and its telemetry writes under the
 * user's home (warning on stderr where it cannot). Both are read when its environment starts,
 * at the first session, so they are set before that; a user's own ORT_DISABLE_TELEMETRY wins.
 */
function quietOnnxRuntime(): void {
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  ort.env.logLevel = 'fatal';
}

/** ONNX Runtime's message without its internal source paths and function signatures, first line only. */
export function runtimeMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error))
    .split('\n')[0]
    .replace(/\/onnxruntime_src\/\S*:\d+ (?:[^[]*\[ONNXRuntimeError\] : \d+ : )?/g, '')
    .trim();
}

/** Intra-op threads a backend accepts: each has its own arena, and ONNX Runtime gains nothing past the cores. */
export const MAX_THREADS = 256;

/** The Node backend: ONNX Runtime sessions from model folders on disk, sharp for images. */
export function nodeBackend(options: NodeBackendOptions = {}): Backend {
  const executionProvider = options.executionProvider ?? 'cpu';
  if (
    options.threads !== undefined &&
    !(Number.isInteger(options.threads) && options.threads >= 1 && options.threads <= MAX_THREADS)
  ) {
    throw new DexarError(
      'invalid-options',
      `threads must be an integer from 1 to ${MAX_THREADS}, got ${options.threads}: use at most the machine's cores`,
    );
  }
  quietOnnxRuntime();
  return {
    name: `onnxruntime-node (${executionProvider})`,
    async createSession(folder: ModelFolder, path: string, sessionOptions: SessionOptions = {}): Promise<Session> {
      if (!(folder instanceof NodeModelFolder)) {
        throw new TypeError('the Node backend opens sessions from folders made by openModelFolder()');
      }
      const file = folder.filePath(path);
      if (!(await folder.exists(path))) {
        throw new DexarError(
          'missing-file',
          `${file} is missing: the model folder needs onnx/ graphs in the transformers.js layout`,
        );
      }
      // ONNX Runtime would read a device or FIFO forever: only a regular graph file within the limit reaches it
      await checkRegularFile(file, NodeModelFolder.limitOf(path));
      try {
        const session = await ort.InferenceSession.create(file, {
          executionProviders: [executionProvider],
          graphOptimizationLevel: 'all',
          ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
          ...(sessionOptions.weightsOnce ? { extra: WEIGHTS_ONCE_CONFIG } : {}),
        });
        const inputTypes = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.type : '']));
        const float16 = (bits: Uint16Array, dims: readonly number[]) => new ort.Tensor('float16', bits, dims);
        return {
          inputNames: session.inputNames,
          outputNames: session.outputNames,
          inputShapes: inputShapesFromMetadata(session.inputMetadata),
          run: (feeds) =>
            session.run(castFeeds(feeds, inputTypes, float16) as Record<string, ort.Tensor>) as Promise<
              Record<string, TypedTensor>
            >,
          release: () => session.release(),
        };
      } catch (error) {
        const message = runtimeMessage(error);
        if (executionProvider === 'cuda') {
          throw new DexarError(
            'runtime',
            `cannot start the CUDA execution provider (${message}): install onnxruntime-node with its CUDA binaries, or use --device cpu`,
            { cause: error },
          );
        }
        throw new DexarError('unsupported-graph', `ONNX Runtime cannot load ${file}: ${message}`, {
          cause: error,
        });
      }
    },
    tensor: (type: string, data: Float32Array | BigInt64Array | Uint8Array, dims: readonly number[]) =>
      new ort.Tensor(type as 'float32', data as Float32Array, dims),
    decodeImage,
  } as Backend;
}
