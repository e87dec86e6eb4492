import type { RgbaImage } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import type { Variant } from '@dexar/core/runtime';
import type { StreamedToken } from '@dexar/explain';
import type { WebBackendInfo } from '@dexar/runtime-web';
import type { BuiltinManifest } from './builtin.js';
import type { Explained, ExplainInput, ModelSource, Opened, Reply, Request } from './protocol.js';

/**
 * The runtime seam: the page talks to a pipeline, chosen once at start. `WorkerPipeline` runs the
 * model in this browser (onnxruntime-web in a Web Worker); `ServerPipeline` (served.ts) asks the
 * `dexar serve` process that served the page, which holds the model (onnxruntime-node).
 */
export interface Pipeline {
  /** What the page opens with: the example, the model and its label (and the built-in manifest, in the browser). */
  start(): Promise<PageStart>;
  /** Starts the runtime (the browser's picks an execution provider); says what runs the model and where. */
  init(executionProvider: 'auto' | 'wasm' | 'webgpu', threads?: number): Promise<RuntimeInfo>;
  /** `variant`: the weight variant to open (a folder's fp32 graphs, else its first variant, when left out). */
  open(source: PageModel, onProgress: (e: ProgressEvent) => void, variant?: Variant): Promise<Opened>;
  /** The image as the pipeline decodes it (the end-to-end test compares it with sharp's). */
  decode(bytes: Uint8Array): Promise<RgbaImage>;
  /** Explains; DEX-AR on the model's own answer reports each token with its map as it is generated. */
  explain(
    input: ExplainInput,
    onProgress: (e: ProgressEvent) => void,
    onToken: (token: StreamedToken, image?: RgbaImage) => void,
  ): Promise<Explained>;
}

/** A model the browser opens, or the one the server holds (fixed when it started). */
export type PageModel = ModelSource | { kind: 'server' };

export interface PageStart {
  prompt: string;
  /** The example image's URL, relative to the page. */
  image: string;
  expectedAnswer?: string;
  model: PageModel;
  label: string;
  manifest?: BuiltinManifest;
}

export interface RuntimeInfo {
  /** Where the model runs: `browser` (this tab) or `server` (the process that served the page). */
  where: 'browser' | 'server';
  /** The footer's line: the runtime and where it runs. */
  label: string;
  /** The timing line's: "WebAssembly (4 threads)". */
  short: string;
  executionProvider: string;
  threads: number;
  notices: string[];
}

/** The browser's own runtime: onnxruntime-web in a Web Worker, so the page stays responsive. */
export class WorkerPipeline implements Pipeline {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    {
      resolve: (v: unknown) => void;
      reject: (e: Error) => void;
      onProgress?: (e: ProgressEvent) => void;
      onToken?: (token: StreamedToken, image?: RgbaImage) => void;
    }
  >();

  async start(): Promise<PageStart> {
    const response = await fetch('builtin/manifest.json');
    if (!response.ok) throw new Error(`builtin/manifest.json: HTTP ${response.status}`);
    const manifest = (await response.json()) as BuiltinManifest;
    // ?model=PATH opens another model folder served with the page (the page may fetch only its own origin).
    const other = new URLSearchParams(location.search).get('model');
    const url = new URL(other ?? manifest.model, document.baseURI).href;
    return {
      prompt: manifest.prompt,
      image: manifest.image,
      ...(manifest.expectedAnswer ? { expectedAnswer: manifest.expectedAnswer } : {}),
      model: { kind: 'url', url },
      label: other ? (url.replace(/\/+$/, '').split('/').at(-1) ?? other) : `${manifest.name} (built-in)`,
      manifest,
    };
  }

  async init(executionProvider: 'auto' | 'wasm' | 'webgpu', threads?: number): Promise<RuntimeInfo> {
    this.restart();
    const info = await this.call<WebBackendInfo>({
      type: 'init',
      executionProvider,
      wasmPaths: new URL('ort/', document.baseURI).href,
      ...(threads ? { threads } : {}),
    });
    const webgpu = info.executionProvider === 'webgpu';
    const plural = info.threads === 1 ? '' : 's';
    return {
      where: 'browser',
      label: webgpu
        ? 'onnxruntime-web on WebGPU'
        : `onnxruntime-web on WebAssembly, ${info.threads} thread${plural}${info.crossOriginIsolated ? '' : ' (not cross-origin isolated)'}`,
      short: webgpu ? 'WebGPU' : `WebAssembly (${info.threads} threads)`,
      executionProvider: info.executionProvider,
      threads: info.threads,
      notices: info.notices,
    };
  }

  open(source: PageModel, onProgress: (e: ProgressEvent) => void, variant?: Variant): Promise<Opened> {
    if (source.kind === 'server') throw new Error('this page runs the model itself: open a model folder or URL');
    return this.call<Opened>({ type: 'open', source, ...(variant ? { variant } : {}) }, onProgress);
  }

  decode(bytes: Uint8Array): Promise<RgbaImage> {
    return this.call<RgbaImage>({ type: 'decode', image: bytes });
  }

  explain(
    input: ExplainInput,
    onProgress: (e: ProgressEvent) => void,
    onToken: (token: StreamedToken, image?: RgbaImage) => void,
  ): Promise<Explained> {
    return this.call<Explained>({ type: 'explain', input }, onProgress, onToken);
  }

  /** A fresh worker (another execution provider is another ONNX Runtime); calls in flight fail. */
  private restart() {
    this.worker?.terminate();
    for (const p of this.pending.values()) p.reject(new Error('the worker was restarted'));
    this.pending.clear();
    const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'dexar-pipeline' });
    worker.onmessage = (message: MessageEvent<Reply>) => {
      const reply = message.data;
      const p = this.pending.get(reply.id);
      if (!p) return;
      if (reply.type === 'progress') p.onProgress?.(reply.event);
      else if (reply.type === 'token') p.onToken?.(reply.token, reply.image);
      else {
        this.pending.delete(reply.id);
        if (reply.type === 'ok') p.resolve(reply.value);
        else p.reject(Object.assign(new Error(reply.message), { code: reply.code }));
      }
    };
    worker.onerror = (event) => {
      for (const p of this.pending.values()) p.reject(new Error(event.message || 'the pipeline worker failed'));
      this.pending.clear();
    };
    this.worker = worker;
  }

  private call<T>(
    body: Body,
    onProgress?: (e: ProgressEvent) => void,
    onToken?: (token: StreamedToken, image?: RgbaImage) => void,
  ): Promise<T> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new Error('the pipeline was not started'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        ...(onProgress ? { onProgress } : {}),
        ...(onToken ? { onToken } : {}),
      });
      worker.postMessage({ ...body, id });
    });
  }
}

type Body = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;
