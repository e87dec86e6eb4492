import {
  type Backend,
  DexarError,
  type ModelFolder,
  type Session,
  type SessionOptions,
  type TypedTensor,
} from '@dexar/core';
import * as ort from 'onnxruntime-node';
import { NodeModelFolder } from './folder.js';
import { decodeImage, resizeImage } from './image.js';

export interface NodeBackendOptions {
  /** `cpu` (default) or `cuda`; CUDA fails with a clear error where its binaries are absent. */
  executionProvider?: 'cpu' | 'cuda';
  /** Intra-op threads; ONNX Runtime's default (one per core) when left out. */
  threads?: number;
}

/** The Node backend: ONNX Runtime sessions from model folders on disk, sharp for images. */
export function nodeBackend(options: NodeBackendOptions = {}): Backend {
  const executionProvider = options.executionProvider ?? 'cpu';
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
      try {
        const session = await ort.InferenceSession.create(file, {
          executionProviders: [executionProvider],
          graphOptimizationLevel: 'all',
          ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
          ...(sessionOptions.weightsOnce ? { extra: { session: { disable_prepacking: '1' } } } : {}),
        });
        return {
          inputNames: session.inputNames,
          outputNames: session.outputNames,
          run: (feeds) => session.run(feeds as Record<string, ort.Tensor>) as Promise<Record<string, TypedTensor>>,
          release: () => session.release(),
        };
      } catch (error) {
        const message = (error as Error).message.split('\n')[0];
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
    resizeImage,
  } as Backend;
}
