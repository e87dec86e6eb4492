import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_OPTIONS, DexarError, type Explanation, layersUsed } from '@dexar/core';
import type { ProgressCallback } from '@dexar/core/adapter';
import { IMAGE_LIMITS, type Variant } from '@dexar/core/runtime';
import { explainMethod } from '@dexar/eval';
import type { Explainer, StreamEvent } from '@dexar/explain';
import { FILE_LIMITS } from '@dexar/runtime-node';
import { MAX_TEXT_CHARS } from '../args.js';
import { builtin } from '../builtin.js';
import { loadImage } from '../library.js';
import { MAX_BODY_BYTES, readUpload } from './body.js';
import { errorBody, HttpError, httpStatus } from './errors.js';
import { loadPage, typeOf } from './page.js';
import { WorkQueue } from './queue.js';
import { apiSchema, ExplainBodySchema, GenerateBodySchema, type Info } from './schemas.js';

/** What the server runs requests on: an `Explainer` (a test may wrap one). */
export type Model = Pick<Explainer, 'explain' | 'stream' | 'generate' | 'model'>;

export interface ServeOptions {
  model: Model;
  /** The model folder's name, shown by the page (never its path). */
  name: string;
  /** The weight variant it runs. */
  variant: Variant;
  runtime: Info['runtime'];
  /** Requests that may wait for the model. */
  queue: number;
  host: string;
  port: number;
  /** Receives the `Explainer`'s progress: the running request's, routed to its stream. */
  progress: { current?: ProgressCallback | undefined };
}

export interface RunningServer {
  url: string;
  server: Server;
  queue: WorkQueue;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  const bytes = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(bytes),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(bytes);
};

/** An AbortSignal that fires when the client goes away before its response is complete. */
function disconnection(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** An explanation as the server sends it: the model's family, never where it lies on the server's disk. */
function withoutServerPath(explanation: Explanation): Explanation {
  return explanation.model ? { ...explanation, model: { family: explanation.model.family } } : explanation;
}

/**
 * The server of `dexar serve` (node:http: a handful of routes need no framework): the demo's
 * interface and the HTTP API over one model, requests queued behind it.
 */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { model, progress } = options;
  const page = loadPage();
  const example = await readFile(builtin.exampleImage);
  const queue = new WorkQueue(options.queue);
  const info: Info = {
    model: {
      name: options.name,
      family: model.model.family,
      numLayers: model.model.numLayers,
      variant: options.variant,
    },
    runtime: options.runtime,
    example: { image: 'api/example.png', prompt: builtin.prompt },
    limits: {
      bodyBytes: MAX_BODY_BYTES,
      imageBytes: FILE_LIMITS.image,
      imagePixels: IMAGE_LIMITS.maxInputPixels,
      imageAspectRatio: IMAGE_LIMITS.maxAspectRatio,
      textChars: MAX_TEXT_CHARS,
      queue: options.queue,
    },
  };
  const schema = apiSchema();
  const loopback = isLoopback(options.host);

  async function explain(req: IncomingMessage, res: ServerResponse) {
    queue.checkRoom();
    const { image, request } = await readUpload(req, ExplainBodySchema);
    layersUsed(request.layerIndex ?? DEFAULT_OPTIONS.layerIndex, model.model.numLayers); // out of range: refused now
    const events = /\btext\/event-stream\b/.test(req.headers.accept ?? '');
    const signal = disconnection(res);
    await queue.run(async () => {
      const stream = new EventStream(res);
      progress.current = events ? (event) => stream.progress(event) : undefined;
      try {
        const decoded = await loadImage(image);
        for await (const event of explainMethod(model, decoded, request)) {
          if (signal.aborted) return; // leaving the loop ends the model's stream: a gone client stops its work
          if (event.kind === 'result' && !events) json(res, 200, withoutServerPath(event.explanation));
          else if (events) stream.send(event);
        }
      } catch (error) {
        if (!stream.started) throw error;
        logFault(error);
        stream.fail(error);
      } finally {
        progress.current = undefined;
        stream.end();
      }
    }, signal);
  }

  async function generate(req: IncomingMessage, res: ServerResponse) {
    queue.checkRoom();
    const { image, request } = await readUpload(req, GenerateBodySchema);
    const answer = await queue.run(async () => model.generate(await loadImage(image), request), disconnection(res));
    json(res, 200, answer);
  }

  const routes: Record<string, Partial<Record<string, (req: IncomingMessage, res: ServerResponse) => unknown>>> = {
    '/api/explain': { POST: explain },
    '/api/generate': { POST: generate },
    '/api/info': { GET: (_, res) => json(res, 200, info) },
    '/api/health': {
      GET: (_, res) => json(res, 200, { status: 'ok', running: queue.busy, queued: queue.queued }),
    },
    '/api/schema': { GET: (_, res) => json(res, 200, schema) },
    '/api/example.png': { GET: (_, res) => send(res, example, 'image/png') },
  };
  for (const [path, bytes] of page.files) routes[`/${path}`] = { GET: (_, res) => send(res, bytes, typeOf(path)) };

  const server = createServer(async (req, res) => {
    try {
      const path = new URL(req.url ?? '/', 'http://server').pathname;
      checkSameSite(req, loopback);
      const route = routes[path];
      if (!route) {
        throw new HttpError(
          404,
          'invalid-input',
          `no such route: ${JSON.stringify(path)} (the API: /api/explain, /api/generate, /api/info, /api/health, /api/schema)`,
        );
      }
      const method = req.method === 'HEAD' ? 'GET' : (req.method ?? '');
      const handler = route[method];
      if (!handler) {
        const allowed = Object.keys(route).join(', ');
        throw new HttpError(405, 'invalid-input', `${req.method} ${path} is not allowed: use ${allowed}`, {
          Allow: allowed,
        });
      }
      await handler(req, res);
    } catch (error) {
      if (res.headersSent || res.destroyed) return;
      logFault(error);
      json(res, httpStatus(error), errorBody(error), error instanceof HttpError ? { ...error.headers } : {});
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new DexarError(
          'invalid-options',
          `cannot listen on ${options.host} port ${options.port} (${error.code ?? error.message}): choose another --port or --host`,
        ),
      ),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}/`,
    server,
    queue,
    // the running request finishes before the caller releases the model under it; the waiting ones are dropped
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await Promise.all([closed, queue.close()]);
    },
  };
}

/** A fault (a 500, not a refused request) goes to the server's log with its stack; the client gets one line. */
function logFault(error: unknown) {
  if (httpStatus(error) === 500) process.stderr.write(`dexar: error: ${(error as Error)?.stack ?? String(error)}\n`);
}

/** A host name or address that only this machine reaches. */
export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);

function send(res: ServerResponse, bytes: Uint8Array, type: string) {
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Length': bytes.length,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(bytes); // Node leaves the body out of an answer to HEAD
}

/**
 * Refuses what another site's page sends through the user's browser: a form posts to a server on
 * loopback without asking (it cannot read the answer, but the model would work for it), and a
 * rebound DNS name reaches it under a foreign Host.
 */
function checkSameSite(req: IncomingMessage, loopback: boolean) {
  const host = req.headers.host ?? '';
  if (loopback && !isLoopback(host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1'))) {
    throw new HttpError(
      403,
      'invalid-input',
      `the host name ${JSON.stringify(host)} is refused: use the URL dexar serve printed`,
    );
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`) {
    throw new HttpError(
      403,
      'invalid-input',
      `requests from ${JSON.stringify(origin)} are refused: use the page this server serves`,
    );
  }
}

/**
 * Server-sent events of one explanation. The status line waits until the request is under way:
 * until then a refusal of the request (no image placeholder, an empty target) is still a 4xx.
 */
class EventStream {
  started = false;
  constructor(private readonly res: ServerResponse) {}

  /** Progress once the request is under way (past preparing the input, where a bad request is refused). */
  progress(event: Parameters<ProgressCallback>[0]) {
    if (!this.started && (event.stage === 'prepare' || event.stage === 'load')) return;
    this.start();
    this.write('progress', event);
  }

  send(event: StreamEvent) {
    this.start();
    this.write(event.kind, event.kind === 'token' ? event : withoutServerPath(event.explanation));
  }

  fail(error: unknown) {
    this.write('error', errorBody(error));
  }

  end() {
    if (this.started) this.res.end();
  }

  private start() {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
    });
  }

  private write(event: string, data: unknown) {
    if (!this.res.destroyed) this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
}
