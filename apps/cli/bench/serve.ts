// A bounded load on `dexar serve` over loopback: N requests from C concurrent clients on the
// built-in model (a copy, so the explain-graph cache stays out of the repository), in the server
// process as a user starts it. Prints p50/p95 latency, failures, and the server's peak and current
// resident set (VmHWM, VmRSS from /proc, tools/bench/peak-resident.ts) after the first 10 requests
// and after all of them: a server that kept something per request would grow between the two.
// `pnpm bench` runs it; test/serve-load.test.ts asserts on the same run's figures.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { residentOf } from '../../../tools/bench/peak-resident.js';
import { startServeProcess } from '../test/serve-process.js';

const root = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';

export interface LoadFigures {
  requests: number;
  clients: number;
  failures: string[];
  /** Milliseconds, each request from send to its last byte. */
  p50: number;
  p95: number;
  wallSeconds: number;
  /** The server's resident set (bytes) after the first `early` requests and after all. */
  early: { after: number; peak: number; current: number };
  end: { peak: number; current: number };
}

/** The i-th request of the mix: explanations as JSON, streamed explanations, and generations. */
async function request(url: string, i: number, image: Blob): Promise<string | undefined> {
  const form = new FormData();
  form.append('image', image, 'example.png');
  const kind = ['explain', 'stream', 'explain', 'generate'][i % 4] as string;
  form.append('request', JSON.stringify(kind === 'generate' ? { prompt, maxNewTokens: 8 } : { prompt }));
  const response = await fetch(new URL(kind === 'generate' ? 'api/generate' : 'api/explain', url), {
    method: 'POST',
    body: form,
    headers: kind === 'stream' ? { Accept: 'text/event-stream' } : {},
  });
  const body = await response.text();
  if (response.status !== 200) return `${kind} #${i}: HTTP ${response.status} ${body.slice(0, 200)}`;
  if (kind === 'stream' && !/\nevent: result\n/.test(`\n${body}`)) return `stream #${i}: no result event`;
  if (kind === 'explain' && !(JSON.parse(body).tokens?.length > 0)) return `explain #${i}: no tokens`;
  return undefined;
}

export async function serveLoad(requests = 50, clients = 8, early = 10): Promise<LoadFigures> {
  const work = mkdtempSync(join(tmpdir(), 'dexar-serve-load-'));
  const model = join(work, 'shapes-llava');
  cpSync(join(root, 'models/shapes-llava'), model, { recursive: true, filter: (src) => !/\.dexar-/.test(src) });
  const { child, url } = await startServeProcess(model);
  try {
    const pid = child.pid as number;
    const image = new Blob([readFileSync(join(root, 'examples/shapes/example.png'))]);
    const latencies: number[] = [];
    const failures: string[] = [];
    let next = 0;
    let done = 0;
    let earlyResident: LoadFigures['early'] | undefined;
    const t0 = performance.now();
    const client = async () => {
      for (let i = next++; i < requests; i = next++) {
        const start = performance.now();
        const failure = await request(url, i, image).catch((error: Error) => `#${i}: ${error.message}`);
        latencies.push(performance.now() - start);
        if (failure) failures.push(failure);
        if (++done === early) earlyResident = { after: early, ...residentOf(pid) };
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const wallSeconds = (performance.now() - t0) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    const quantile = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
    return {
      requests,
      clients,
      failures,
      p50: quantile(0.5),
      p95: quantile(0.95),
      wallSeconds,
      early: earlyResident as LoadFigures['early'],
      end: residentOf(pid),
    };
  } finally {
    child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
}

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function describeLoad(f: LoadFigures): string {
  return [
    `dexar serve, built-in model: ${f.requests} requests from ${f.clients} clients in ${f.wallSeconds.toFixed(1)} s, ${f.failures.length} failed`,
    `latency p50 ${f.p50.toFixed(0)} ms, p95 ${f.p95.toFixed(0)} ms (queued behind one model)`,
    `server peak RSS after ${f.early.after} requests ${MiB(f.early.peak)}, after ${f.requests} ${MiB(f.end.peak)} (ratio ${(f.end.peak / f.early.peak).toFixed(3)}); RSS now ${MiB(f.early.current)} -> ${MiB(f.end.current)}`,
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(describeLoad(await serveLoad()));
}
