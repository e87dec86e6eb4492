/// <reference lib="webworker" />
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import type { RgbaImage } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import { VARIANTS, type Variant, variantPath } from '@dexar/core/runtime';
import { explainMethod } from '@dexar/eval';
import { Explainer, type StreamedToken } from '@dexar/explain';
import {
  decodeImage,
  derivedStore,
  FileModelFolder,
  openDirectoryHandle,
  UrlModelFolder,
  type WebBackend,
  type WebModelFolder,
  webBackend,
} from '@dexar/runtime-web';
import type { Explained, ModelSource, Opened, Reply, Request } from './protocol.js';

declare const self: DedicatedWorkerGlobalScope;

let backend: WebBackend | undefined;
let explainer: Explainer | undefined;
let report: ((event: ProgressEvent) => void) | undefined;

const post = (reply: Reply, transfer: Transferable[] = []) => self.postMessage(reply, transfer);
const mb = (n: number) => (n / 1e6).toFixed(1);

async function folderOf(source: ModelSource, variant: Variant = 'fp32'): Promise<WebModelFolder> {
  if (source.kind === 'url') {
    return new UrlModelFolder(new URL(source.url, self.location.href), {
      variant,
      onDownload: ({ path, loaded, total }) =>
        report?.({
          stage: 'load',
          detail: `downloading ${path} ${mb(loaded)}${total ? ` / ${mb(total)}` : ''} MB`,
          ...(total ? { done: loaded, total } : {}),
        }),
    });
  }
  if (source.kind === 'files') {
    return new FileModelFolder(source.files, { variant, ...(source.name ? { name: source.name } : {}) });
  }
  return openDirectoryHandle(source.handle, { variant });
}

/** The weight variants whose decoder a picked folder holds (a URL folder is not listed: its fp32 graphs). */
async function variantsIn(source: ModelSource): Promise<Variant[]> {
  if (source.kind === 'url') return ['fp32'];
  const folder = await folderOf(source);
  const decoder = 'onnx/decoder_model_merged.onnx';
  const held = await Promise.all(VARIANTS.map((v) => folder.exists(variantPath(decoder, v))));
  // q8 and quantized name the same file
  return VARIANTS.filter((v, i) => held[i] && v !== 'quantized');
}

async function handle(
  request: Request,
  progress: (event: ProgressEvent) => void,
  streamed: (token: StreamedToken, image?: RgbaImage) => void,
): Promise<unknown> {
  switch (request.type) {
    case 'init': {
      backend = await webBackend({
        executionProvider: request.executionProvider,
        wasmPaths: request.wasmPaths,
        ...(request.threads ? { threads: request.threads } : {}),
      });
      return backend.info;
    }
    case 'open': {
      if (!backend) throw new Error('the worker was not initialised');
      const previous = explainer;
      explainer = undefined;
      await previous?.release();
      const variants = await variantsIn(request.source);
      const variant = request.variant ?? (variants.includes('fp32') ? 'fp32' : (variants[0] ?? 'fp32'));
      const folder = await folderOf(request.source, variant);
      report = progress;
      explainer = await Explainer.open({ backend, folder, onProgress: (e) => report?.(e) });
      const opened: Opened = {
        family: explainer.model.family,
        numLayers: explainer.model.numLayers,
        location: folder.location,
        variant,
        variants,
      };
      return opened;
    }
    case 'decode':
      return decodeImage(request.image);
    case 'explain': {
      if (!explainer) throw new Error('no model is open');
      report = progress;
      const { image: bytes, ...input } = request.input;
      const image = await decodeImage(bytes);
      const t0 = performance.now();
      for await (const event of explainMethod(explainer, image, { ...input, headWeights: true })) {
        if (event.kind === 'token') streamed(event, event.index === 0 ? image : undefined);
        else {
          const explained: Explained = { result: event.explanation, image, ms: performance.now() - t0 };
          return explained;
        }
      }
      throw new Error('the explanation ended without a result');
    }
    case 'clear-cache':
      await (await derivedStore()).clear();
      return true;
  }
}

self.onmessage = async (message: MessageEvent<Request>) => {
  const request = message.data;
  try {
    const value = await handle(
      request,
      (event) => post({ id: request.id, type: 'progress', event }),
      (token, image) => post({ id: request.id, type: 'token', token, ...(image ? { image } : {}) }),
    );
    post({ id: request.id, type: 'ok', value });
  } catch (error) {
    const e = error as Error & { code?: string };
    console.error(e);
    post({
      id: request.id,
      type: 'error',
      message: e?.message ?? String(error),
      ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    });
  } finally {
    report = undefined;
  }
};
