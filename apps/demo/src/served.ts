import type { Explanation, RgbaImage } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import type { Variant } from '@dexar/core/runtime';
import type { StreamedToken } from '@dexar/explain';
import { decodeImage } from '@dexar/runtime-web';
import type { PageStart, Pipeline, RuntimeInfo } from './pipeline.js';
import type { Explained, ExplainInput, Opened } from './protocol.js';

/** What `GET api/info` answers (the server's `InfoSchema`). */
interface ServerInfo {
  model: { name: string; family: string; numLayers: number; variant: Variant };
  runtime: { name: string; executionProvider: string; threads: number | null };
  example: { image: string; prompt: string };
}

/** An error body of the server: the library's DexarError as JSON. */
interface ErrorBody {
  error: { code: string; message: string };
}

const failure = (body: ErrorBody, status: number) =>
  Object.assign(new Error(body.error?.message ?? `HTTP ${status}`), { code: body.error?.code, status });

/**
 * The model runs in the `dexar serve` process that served this page (onnxruntime-node): the page
 * sends the image and the request to its HTTP API and draws what comes back; the browser never
 * receives the model. Images are decoded here only for display (the server decodes its own copy).
 */
export class ServerPipeline implements Pipeline {
  private info: ServerInfo | undefined;

  async start(): Promise<PageStart> {
    const info = await this.serverInfo();
    return {
      prompt: info.example.prompt,
      image: info.example.image,
      model: { kind: 'server' },
      label: `${info.model.name} (on the server)`,
    };
  }

  async init(): Promise<RuntimeInfo> {
    const { runtime } = await this.serverInfo();
    const threads =
      runtime.threads === null ? 'a thread per core' : `${runtime.threads} thread${runtime.threads === 1 ? '' : 's'}`;
    return {
      where: 'server',
      label: `${runtime.name} on ${runtime.executionProvider.toUpperCase()}, ${threads}, in the dexar server at ${location.host}`,
      short: `the server (${runtime.name}, ${runtime.executionProvider})`,
      executionProvider: runtime.executionProvider,
      threads: runtime.threads ?? 0,
      notices: [],
    };
  }

  async open(): Promise<Opened> {
    const { model } = await this.serverInfo();
    const { family, numLayers, name, variant } = model;
    return { family, numLayers, location: name, variant, variants: [variant] };
  }

  decode(bytes: Uint8Array): Promise<RgbaImage> {
    return decodeImage(bytes);
  }

  async explain(
    input: ExplainInput,
    onProgress: (e: ProgressEvent) => void,
    onToken: (token: StreamedToken, image?: RgbaImage) => void,
  ): Promise<Explained> {
    const { image: bytes, ...request } = input;
    const image = await decodeImage(bytes);
    const form = new FormData();
    form.append('image', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'image');
    form.append('request', JSON.stringify({ ...request, headWeights: true }));
    const t0 = performance.now();
    const response = await fetch('api/explain', {
      method: 'POST',
      body: form,
      headers: { Accept: 'text/event-stream' },
    });
    if (!response.ok || !response.body) throw failure(await response.json(), response.status);
    for await (const { event, data } of serverEvents(response.body)) {
      if (event === 'progress') onProgress(data as ProgressEvent);
      else if (event === 'token') {
        const token = data as StreamedToken;
        onToken(token, token.index === 0 ? image : undefined);
      } else if (event === 'result') {
        return { result: data as Explanation, image, ms: performance.now() - t0 };
      } else if (event === 'error') throw failure(data as ErrorBody, response.status);
    }
    throw new Error('the server closed the stream before the result');
  }

  private async serverInfo(): Promise<ServerInfo> {
    if (this.info) return this.info;
    const response = await fetch('api/info');
    if (!response.ok) throw failure(await response.json(), response.status);
    this.info = (await response.json()) as ServerInfo;
    return this.info;
  }
}

/** Server-sent events (`event:` and `data:` lines, a blank line between events) as they arrive. */
async function* serverEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: unknown }> {
  let buffer = '';
  const reader = body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join('\n')) };
    }
  }
}
