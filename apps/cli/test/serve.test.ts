/**
 * `dexar serve`'s HTTP API in process, on a copy of the built-in model: what it answers, and every
 * way a request is refused (4xx with one line, 503 with Retry-After when the queue is full), and a
 * queued request whose client goes away never running.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RgbaImage } from '@dexar/core';
import type { Explainer, GenerateRequest, StreamRequest } from '@dexar/explain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pngHeader, webpHeader } from '../../../packages/core/test/helpers/image-headers.js';
import { loadImage, openExplainer } from '../src/library.js';
import { MAX_BODY_BYTES } from '../src/serve/body.js';
import { ErrorSchema, HealthSchema, InfoSchema } from '../src/serve/schemas.js';
import { type RunningServer, type ServeOptions, startServer } from '../src/serve/server.js';
import { dexar, expectUsageError, root } from './helpers.js';

const example = readFileSync(join(root, 'examples/shapes/example.png'));
const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';

let work: string;
let explainer: Explainer;
/** The explainer's progress goes to the running request (the server sets it), as `dexar serve` opens it. */
const progress: ServeOptions['progress'] = {};

const serve = (model: ServeOptions['model'], queue = 16) =>
  startServer({
    model,
    name: 'shapes-llava',
    variant: 'fp32',
    runtime: { name: 'onnxruntime-node', executionProvider: 'cpu', threads: null },
    queue,
    host: '127.0.0.1',
    port: 0,
    progress,
  });

/** A multipart upload: the image (when given) and the request field (JSON text as given). */
function upload(request: string | undefined, image: Uint8Array | undefined = example): FormData {
  const form = new FormData();
  if (image) form.append('image', new Blob([image as Uint8Array<ArrayBuffer>]), 'image.png');
  if (request !== undefined) form.append('request', request);
  return form;
}

const post = (url: string, path: string, body: FormData | string, headers: Record<string, string> = {}) =>
  fetch(new URL(path, url), { method: 'POST', body, headers });

/** A refusal: the status, the typed error as JSON, one line naming the problem. */
async function expectRefusal(response: Response, status: number, code: string, message: RegExp) {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(ErrorSchema.parse(body).error).toMatchObject({ name: 'DexarError', code, status });
  expect(body.error.message).toMatch(message);
  expect(body.error.message).not.toContain('\n');
  return body;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'dexar-serve-'));
  cpSync(join(root, 'models/shapes-llava'), join(work, 'shapes-llava'), {
    recursive: true,
    filter: (src) => !/\.dexar-/.test(src),
  });
  explainer = await openExplainer({ model: join(work, 'shapes-llava'), onProgress: (e) => progress.current?.(e) });
});

afterAll(async () => {
  await explainer?.release();
  rmSync(work, { recursive: true, force: true });
});

describe('dexar serve: the API', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve(explainer);
  });
  afterAll(() => server?.close());

  it('serves the page marked for the server runtime, its script and style, and nothing else of the build', async () => {
    const html = await (await fetch(server.url)).text();
    expect(html).toContain('<meta name="dexar-runtime" content="server" />');
    const assets = [...html.matchAll(/(?:src|href)="\.\/(assets\/[^"]+)"/g)].map((m) => m[1] as string);
    expect(assets).toHaveLength(2);
    for (const asset of assets) expect((await fetch(new URL(asset, server.url))).status).toBe(200);
    for (const path of ['builtin/manifest.json', 'builtin/model/config.json', 'ort/ort-wasm-simd-threaded.wasm']) {
      await expectRefusal(await fetch(new URL(path, server.url)), 404, 'invalid-input', /^no such route/);
    }
  });

  it('answers info, health and the JSON Schema of every body', async () => {
    const info = InfoSchema.parse(await (await fetch(new URL('api/info', server.url))).json());
    expect(info.model).toEqual({ name: 'shapes-llava', family: 'llava', numLayers: 4, variant: 'fp32' });
    expect(info.limits.imageBytes).toBe(64 * 1024 * 1024);
    expect(HealthSchema.parse(await (await fetch(new URL('api/health', server.url))).json())).toEqual({
      status: 'ok',
      running: false,
      queued: 0,
    });
    const schema = await (await fetch(new URL('api/schema', server.url))).json();
    expect(Object.keys(schema.$defs).sort()).toEqual(
      [
        'Error',
        'ExplainRequest',
        'Explanation',
        'GenerateRequest',
        'Generation',
        'Health',
        'Info',
        'ProgressEvent',
        'StreamedToken',
      ].sort(),
    );
    const explain = schema.$defs.ExplainRequest;
    expect(explain.required).toEqual(['prompt']);
    expect(explain.additionalProperties).toBe(false);
    expect(explain.properties.method.enum).toContain('logit-lens-image');
    expect(explain.properties.prompt.maxLength).toBe(65_536);
    expect(schema.$defs.Explanation.properties.perTokenHeatmaps.type).toBe('array');
    const example = await fetch(new URL('api/example.png', server.url));
    expect(
      Buffer.from(await example.arrayBuffer()).equals(readFileSync(join(root, 'examples/shapes/example.png'))),
    ).toBe(true);
  });

  it('explains as JSON, and as server-sent events with each token before the same result', async () => {
    const request = JSON.stringify({ prompt, headWeights: true });
    const whole = await post(server.url, 'api/explain', upload(request));
    expect(whole.status).toBe(200);
    const text = await whole.text();
    const result = JSON.parse(text);
    const direct = await explainer.explain(await loadImage(example), {
      prompt,
      headWeights: true,
    });
    // the library's result, less where the model lies on the server's disk
    expect(direct.model?.path).toBe(join(work, 'shapes-llava'));
    expect(text).not.toContain(work);
    expect(result).toEqual(JSON.parse(JSON.stringify({ ...direct, model: { family: 'llava' } })));

    const streamed = await post(server.url, 'api/explain', upload(request), { Accept: 'text/event-stream' });
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await streamed.text())
      .split('\n\n')
      .filter(Boolean)
      .map((block) => ({
        event: /^event: (.*)$/m.exec(block)?.[1],
        data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null'),
      }));
    const tokens = events.filter((e) => e.event === 'token').map((e) => e.data.token);
    expect(tokens).toEqual(result.tokens);
    expect(events.at(-1)).toEqual({ event: 'result', data: result });
    expect(events.some((e) => e.event === 'progress')).toBe(true);
  });

  it('explains a target with a baseline method, and generates', async () => {
    const baseline = await post(
      server.url,
      'api/explain',
      upload(JSON.stringify({ prompt, target: 'a red triangle', method: 'attention' })),
    );
    expect(baseline.status).toBe(200);
    const result = await baseline.json();
    expect(result.method).toBe('attention');
    expect(result.raw).toBeUndefined();
    const generated = await post(server.url, 'api/generate', upload(JSON.stringify({ prompt, maxNewTokens: 4 })));
    expect(generated.status).toBe(200);
    const answer = await generated.json();
    expect(answer.tokens).toHaveLength(4);
    expect(answer.text).toBe((await explainer.generate(await loadImage(example), { prompt, maxNewTokens: 4 })).text);
  });

  it('refuses bad request bodies before any work, with 4xx and one line', async () => {
    const url = server.url;
    await expectRefusal(await post(url, 'api/explain', upload('{"prompt": ')), 400, 'invalid-input', /not valid JSON/);
    await expectRefusal(
      await post(url, 'api/explain', upload(JSON.stringify({ prompt, maxNewTokens: 0 }))),
      400,
      'invalid-options',
      /^invalid request: maxNewTokens: .* \(see \/api\/schema\)$/,
    );
    await expectRefusal(
      await post(url, 'api/explain', upload(JSON.stringify({ prompt, path: '/etc/passwd' }))),
      400,
      'invalid-options',
      /^invalid request: .*path/,
    );
    await expectRefusal(
      await post(url, 'api/explain', upload(JSON.stringify({ prompt: 'x'.repeat(65_537) }))),
      400,
      'invalid-options',
      /^invalid request: prompt: /,
    );
    await expectRefusal(
      await post(url, 'api/explain', upload(JSON.stringify({ prompt, method: 'oracle' }))),
      400,
      'invalid-options',
      /^invalid request: method: /,
    );
    await expectRefusal(await post(url, 'api/explain', upload(undefined)), 400, 'invalid-input', /no "request" field/);
    await expectRefusal(
      await post(url, 'api/explain', upload(JSON.stringify({ prompt }), null as never)),
      400,
      'invalid-input',
      /no image: send the file as the multipart field "image"/,
    );
    await expectRefusal(
      await post(url, 'api/explain', JSON.stringify({ prompt }), { 'Content-Type': 'application/json' }),
      415,
      'invalid-input',
      /send multipart\/form-data/,
    );
  });

  it('refuses images over the limits from their header and unreadable ones, as the CLI does', async () => {
    const body = (image: Uint8Array) => upload(JSON.stringify({ prompt }), image);
    await expectRefusal(
      await post(server.url, 'api/explain', body(webpHeader(16383, 16383))),
      400,
      'unreadable-image',
      /^the image is 16383 x 16383 pixels, over the 64 megapixel limit: downscale it first$/,
    );
    await expectRefusal(
      await post(server.url, 'api/generate', body(pngHeader(100000, 1))),
      400,
      'unreadable-image',
      /longer than 32 times its width or height: crop it first$/,
    );
    await expectRefusal(
      await post(server.url, 'api/explain', body(new TextEncoder().encode('not an image at all'))),
      400,
      'unreadable-image',
      /PNG, JPEG or WebP/,
    );
    // a valid header over broken data: refused by the decoder, in the queue, still 400
    await expectRefusal(
      await post(server.url, 'api/explain', body(pngHeader(64, 64))),
      400,
      'unreadable-image',
      /^cannot decode the image/,
    );
  });

  it('refuses an upload over the body limit, from its Content-Length and while reading one without', async () => {
    const declared = await rawPost(server.url, { 'Content-Length': String(MAX_BODY_BYTES + 1) }, 16);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).error.message).toMatch(
      /^the request body is over 65 MiB: an image may have 64 MiB/,
    );
    const chunked = await rawPost(server.url, { 'Transfer-Encoding': 'chunked' }, MAX_BODY_BYTES + (1 << 20));
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body).error.code).toBe('invalid-input');
  });

  it('refuses what the model cannot take: no image placeholder, an empty target, a layer out of range', async () => {
    const refused = (request: object) => post(server.url, 'api/explain', upload(JSON.stringify(request)));
    await expectRefusal(await refused({ prompt: 'Describe the image.' }), 400, 'no-image-placeholder', /<image>/);
    await expectRefusal(await refused({ prompt, target: '' }), 400, 'empty-target', /^the target is empty/);
    await expectRefusal(
      await refused({ prompt, layerIndex: 7 }),
      400,
      'layer-out-of-range',
      /^layer index 7 is out of range for a model with 4 layers/,
    );
    // a stream refused before it starts is a 4xx too, not an error event
    const streamed = await post(server.url, 'api/explain', upload(JSON.stringify({ prompt: 'no placeholder' })), {
      Accept: 'text/event-stream',
    });
    await expectRefusal(streamed, 400, 'no-image-placeholder', /<image>/);
  });

  it('answers an unknown route with 404, a wrong method with 405 and Allow, another site with 403', async () => {
    await expectRefusal(
      await fetch(new URL('api/nothing', server.url)),
      404,
      'invalid-input',
      /^no such route: "\/api\/nothing"/,
    );
    const wrong = await fetch(new URL('api/explain', server.url));
    await expectRefusal(wrong, 405, 'invalid-input', /^GET \/api\/explain is not allowed: use POST$/);
    expect(wrong.headers.get('allow')).toBe('POST');
    await expectRefusal(
      await post(server.url, 'api/health', upload('{}')),
      405,
      'invalid-input',
      /is not allowed: use GET$/,
    );
    await expectRefusal(
      await post(server.url, 'api/explain', upload(JSON.stringify({ prompt })), { Origin: 'http://example.test' }),
      403,
      'invalid-input',
      /^requests from "http:\/\/example.test" are refused/,
    );
  });
});

describe('dexar serve: the queue', () => {
  /** The model behind a gate: each generate call waits until `open()`; `started` counts the calls that began. */
  function gated() {
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const state = { started: 0, streamed: 0, streamEnded: false };
    const model: ServeOptions['model'] = {
      model: explainer.model,
      explain: explainer.explain.bind(explainer),
      // a stream holds after its first token until the gate opens
      stream: async function* (image: RgbaImage, request: StreamRequest) {
        try {
          for await (const event of explainer.stream(image, request)) {
            state.streamed++;
            yield event;
            if (state.streamed === 1) await gate;
          }
        } finally {
          state.streamEnded = true;
        }
      },
      generate: async (image: RgbaImage, request: GenerateRequest) => {
        state.started++;
        await gate;
        return explainer.generate(image, request);
      },
    };
    return { model, open: () => open(), state };
  }

  const generateBody = () => upload(JSON.stringify({ prompt, maxNewTokens: 2 }));
  const health = async (url: string) => HealthSchema.parse(await (await fetch(new URL('api/health', url))).json());
  const until = async (url: string, what: (h: { running: boolean; queued: number }) => boolean) => {
    while (!what(await health(url))) await new Promise((resolve) => setTimeout(resolve, 10));
  };

  it('answers 503 with Retry-After when the queue is full, and serves the others in turn', async () => {
    const { model, open, state } = gated();
    const server = await serve(model, 1);
    try {
      const running = post(server.url, 'api/generate', generateBody());
      await until(server.url, (h) => h.running);
      const waiting = post(server.url, 'api/generate', generateBody());
      await until(server.url, (h) => h.queued === 1);
      const full = await post(server.url, 'api/generate', generateBody());
      await expectRefusal(full, 503, 'busy', /^the server is busy: 1 requests wait for the model \(the limit is 1\)/);
      expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      open();
      expect((await running).status).toBe(200);
      expect((await waiting).status).toBe(200);
      expect(state.started).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('drops a queued request whose client disconnects: it never runs', async () => {
    const { model, open, state } = gated();
    const server = await serve(model, 4);
    try {
      const running = post(server.url, 'api/generate', generateBody());
      await until(server.url, (h) => h.running);
      const gone = new AbortController();
      const abandoned = fetch(new URL('api/generate', server.url), {
        method: 'POST',
        body: generateBody(),
        signal: gone.signal,
      }).catch((error: Error) => error.name);
      await until(server.url, (h) => h.queued === 1);
      gone.abort();
      expect(await abandoned).toBe('AbortError');
      await until(server.url, (h) => h.queued === 0);
      open();
      expect((await running).status).toBe(200);
      await until(server.url, (h) => !h.running);
      expect(state.started).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('stops a running stream at its next token when its client disconnects', async () => {
    const { model, open, state } = gated();
    const server = await serve(model, 4);
    let closed = 0;
    server.server.on('connection', (socket) => socket.on('close', () => closed++));
    try {
      const gone = new AbortController();
      const response = await fetch(new URL('api/explain', server.url), {
        method: 'POST',
        body: upload(JSON.stringify({ prompt })),
        headers: { Accept: 'text/event-stream' },
        signal: gone.signal,
      });
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      while (!text.includes('event: token')) text += new TextDecoder().decode((await reader.read()).value);
      gone.abort();
      while (closed === 0) await new Promise((resolve) => setTimeout(resolve, 10)); // the server saw it go
      open();
      await until(server.url, (h) => !h.running);
      expect(state.streamEnded).toBe(true);
      expect(state.streamed).toBe(2); // the token it was computing when the gate opened, and no more
    } finally {
      await server.close();
    }
  });
});

/** A POST of `size` zero bytes to /api/explain with the given headers; the status and body of the answer. */
function rawPost(
  url: string,
  headers: Record<string, string>,
  size: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL('api/explain', url), {
      method: 'POST',
      headers: { 'Content-Type': 'multipart/form-data; boundary=x', ...headers },
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    // the server closes the connection after refusing: writing on may fail once it has answered
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    const chunk = Buffer.alloc(1 << 20);
    let sent = 0;
    const write = () => {
      while (sent < size && !answered) {
        const part = chunk.subarray(0, Math.min(chunk.length, size - sent));
        sent += part.length;
        if (!req.write(part)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

describe('dexar serve: the command', () => {
  it('refuses bad options in one line (exit 2)', async () => {
    expectUsageError(await dexar('serve', '--port', 'http'), /^dexar: error: --port takes an integer, got "http"/);
    expectUsageError(await dexar('serve', '--port', '70000'), /--port must be from 0 to 65535/);
    expectUsageError(await dexar('serve', '--queue', '0'), /--queue must be from 1 to 1024/);
    expectUsageError(await dexar('serve', 'models/shapes-llava'), /dexar serve takes no arguments/);
  });

  it('warns in one line before serving beyond this machine, and names an address it cannot take', async () => {
    // 192.0.2.1 is documentation-only (RFC 5737): nothing here holds it, so nothing is exposed
    const run = await dexar('serve', '--host', '192.0.2.1', '--port', '0', '--quiet');
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toEqual([
      'dexar: warning: serving on 192.0.2.1, not only this machine: whoever reaches it can use the model (there is no authentication)',
      'dexar: error: cannot listen on 192.0.2.1 port 0 (EADDRNOTAVAIL): choose another --port or --host',
    ]);
  });
});
