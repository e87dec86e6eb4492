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
import type * as Ort from 'onnxruntime-web';
import { WebModelFolder } from './folder.js';
import { decodeImage } from './image.js';

export type WebExecutionProvider = 'wasm' | 'webgpu';

export interface WebBackendOptions {
  /** `auto` (default): WebGPU where the browser has an adapter, WebAssembly otherwise. */
  executionProvider?: 'auto' | WebExecutionProvider;
  /**
   * WebAssembly threads. Default: the cores the browser reports (at most 8)
   * when the page is cross-origin isolated (COOP/COEP headers, needed for
   * SharedArrayBuffer), 1 otherwise.
   */
  threads?: number;
  /**
   * URL prefix (ending in `/`) that serves onnxruntime-web's
   * `ort-wasm-simd-threaded{,.jsep}.{mjs,wasm}`, copied from the npm package
   * into the app's own assets. ONNX Runtime's default is beside its script.
   */
  wasmPaths?: string;
  /** ONNX Runtime's graph optimisations; `all` (default) as in Node. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface WebBackendInfo {
  executionProvider: WebExecutionProvider;
  threads: number;
  crossOriginIsolated: boolean;
  /** Things the user should know: a fallback from WebGPU, single-threaded WebAssembly. */
  notices: string[];
}

export interface WebBackend extends Backend {
  readonly info: WebBackendInfo;
}

interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

async function hasWebGpu(): Promise<boolean> {
  const gpu = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) != null;
  } catch {
    return false;
  }
}

type OrtModule = typeof Ort;

/**
 * onnxruntime-web's CPU-only build for WebAssembly (`onnxruntime-web/wasm`,
 * `ort-wasm-simd-threaded.{mjs,wasm}`), its JSEP build for WebGPU
 * (`onnxruntime-web`, `ort-wasm-simd-threaded.jsep.{mjs,wasm}`): the JSEP
 * build is instrumented for asynchronous GPU calls and runs CPU kernels
 * slower, so each provider loads its own build, on demand.
 */
const builds: Record<WebExecutionProvider, () => Promise<OrtModule>> = {
  wasm: () => import('onnxruntime-web/wasm'),
  webgpu: () => import('onnxruntime-web'),
};

const configured = new Map<WebExecutionProvider, { threads: number }>();

/**
 * The browser backend over onnxruntime-web. ONNX Runtime's WebAssembly
 * settings are global to each build and fixed by its first session, so the
 * first backend of a provider made on a page (or worker) sets them; later
 * ones report what is in force.
 */
export async function webBackend(options: WebBackendOptions = {}): Promise<WebBackend> {
  const notices: string[] = [];
  const isolated = globalThis.crossOriginIsolated === true;
  const cores = globalThis.navigator?.hardwareConcurrency || 1;
  let threads = options.threads ?? (isolated ? Math.min(cores, 8) : 1);
  if (!isolated && (threads > 1 || cores > 1)) {
    notices.push(
      'WebAssembly runs on one thread: the page is not cross-origin isolated (serve it with the COOP/COEP headers for threads)',
    );
    threads = 1;
  }

  const wanted = options.executionProvider ?? 'auto';
  let executionProvider: WebExecutionProvider = 'wasm';
  if (wanted !== 'wasm') {
    if (await hasWebGpu()) executionProvider = 'webgpu';
    else
      notices.push(
        `WebGPU is not available in this browser${wanted === 'webgpu' ? ' (asked for)' : ''}: running on WebAssembly with ${threads} thread${threads === 1 ? '' : 's'}`,
      );
  }

  const ort = await builds[executionProvider]();
  const settled = configured.get(executionProvider);
  if (settled) {
    threads = settled.threads;
  } else {
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
    configured.set(executionProvider, { threads });
  }

  const info: WebBackendInfo = { executionProvider, threads, crossOriginIsolated: isolated, notices };

  const createSession = async (
    folder: ModelFolder,
    path: string,
    sessionOptions: SessionOptions = {},
  ): Promise<Session> => {
    if (!(await folder.exists(path))) {
      throw new DexarError(
        'missing-file',
        `${folder.location}/${path} is missing: the model folder needs onnx/ graphs in the transformers.js layout`,
      );
    }
    const bytes = await folder.readBytes(path);
    const externalData = await externalDataOf(folder, path, bytes);
    const create = (providers: string[]) =>
      ort.InferenceSession.create(bytes, {
        executionProviders: providers,
        graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
        ...(externalData.length ? { externalData } : {}),
        ...(sessionOptions.weightsOnce ? { extra: WEIGHTS_ONCE_CONFIG } : {}),
      });
    let session: Ort.InferenceSession;
    try {
      // With both listed, nodes WebGPU lacks kernels for run on the CPU provider.
      session = await create(info.executionProvider === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm']);
    } catch (error) {
      if (info.executionProvider !== 'webgpu') throw loadError(folder, path, error);
      info.notices.push(`WebGPU could not run ${path} (${firstLine(error)}): that graph runs on WebAssembly`);
      try {
        session = await create(['wasm']);
      } catch (again) {
        throw loadError(folder, path, again);
      }
    }
    const inputTypes = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.type : '']));
    const float16 = (bits: Uint16Array, dims: readonly number[]) => new ort.Tensor('float16', bits, dims);
    return {
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      inputShapes: inputShapesFromMetadata(session.inputMetadata),
      run: (feeds) =>
        session.run(castFeeds(feeds, inputTypes, float16) as Record<string, Ort.Tensor>) as Promise<
          Record<string, TypedTensor>
        >,
      release: () => session.release(),
    };
  };

  return {
    name: `onnxruntime-web (${executionProvider}${executionProvider === 'wasm' ? `, ${threads} thread${threads === 1 ? '' : 's'}` : ''})`,
    info,
    createSession,
    tensor: (type: string, data: Float32Array | BigInt64Array | Uint8Array, dims: readonly number[]) =>
      new ort.Tensor(type as 'float32', data as Float32Array, dims),
    decodeImage,
  } as WebBackend;
}

const firstLine = (error: unknown) => String((error as Error)?.message ?? error).split('\n')[0];

function loadError(folder: ModelFolder, path: string, error: unknown): DexarError {
  return new DexarError(
    'unsupported-graph',
    `ONNX Runtime cannot load ${folder.location}/${path}: ${firstLine(error)}`,
    {
      cause: error,
    },
  );
}

// StringStringEntryProto { key: "location", value: ... } as protobuf bytes: field 1, length 8, "location", field 2.
const LOCATION = [0x0a, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x12];

/**
 * The external-data `location`s a graph names, found by scanning its bytes
 * for the encoded entries (no protobuf decode, so large graphs cost nothing
 * extra). A false hit names a file that does not exist and is dropped.
 */
export function externalLocations(bytes: Uint8Array): string[] {
  const found = new Set<string>();
  const first = LOCATION[0];
  for (let i = bytes.indexOf(first); i >= 0 && i < bytes.length - LOCATION.length; i = bytes.indexOf(first, i + 1)) {
    let match = true;
    for (let j = 1; j < LOCATION.length; j++) {
      if (bytes[i + j] !== LOCATION[j]) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    let p = i + LOCATION.length;
    let length = 0;
    for (let shift = 0; p < bytes.length && shift < 28; shift += 7) {
      const b = bytes[p++];
      length |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (length > 0 && length < 1024 && p + length <= bytes.length) {
      found.add(new TextDecoder().decode(bytes.subarray(p, p + length)));
    }
  }
  return [...found];
}

async function externalDataOf(
  folder: ModelFolder,
  path: string,
  bytes: Uint8Array,
): Promise<{ path: string; data: Uint8Array | string }[]> {
  const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
  const out: { path: string; data: Uint8Array | string }[] = [];
  for (const location of externalLocations(bytes)) {
    const relative = dir + location.replace(/^\.\//, '');
    if (location.startsWith('/') || location.split('/').includes('..') || !(await folder.exists(relative))) continue;
    const url = folder instanceof WebModelFolder ? folder.sourceUrl(folder.sourcePath(relative)) : undefined;
    out.push({ path: location, data: url ?? (await folder.readBytes(relative)) });
  }
  return out;
}
