/**
 * The fuzz driver: every mutated model goes through the ONNX path a model folder's decoder takes
 * (read, explain-graph build, write). A case ends in a built graph or in one of this package's
 * typed errors; anything else is an untyped error, counted with its case for replay. Case times
 * and the process's peak resident memory are measured for the summary.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OnnxGraphError } from '../src/errors.js';
import { buildExplainGraph } from '../src/explain/explain.js';
import { readModel, writeModel } from '../src/model.js';
import { mutatedModel } from './mutate.js';

/** The base of every case: the tiny LLaVA fixture's decoder (small, and a real export). */
export const BASE_MODEL = fileURLToPath(
  new URL('../../../fixtures/models/llava-tiny/onnx/decoder_model_merged.onnx', import.meta.url),
);

export interface FuzzSummary {
  seed: string;
  cases: number;
  built: number;
  /** Typed errors by class name. */
  typed: Record<string, number>;
  /** Errors that are not this package's typed errors: `case: message`. */
  untyped: string[];
  slowestMs: number;
  /** The slowest case, for replay (`mutatedModel(base, seed, index)`). */
  slowestCase: number;
  /** Cases slower than `hangMs`. */
  hangs: number;
  peakRssMiB: number;
}

export async function runFuzz(options: { seed: string; cases: number; hangMs?: number }): Promise<FuzzSummary> {
  const base = new Uint8Array(readFileSync(BASE_MODEL));
  const hangMs = options.hangMs ?? 5000;
  const summary: FuzzSummary = {
    seed: options.seed,
    cases: options.cases,
    built: 0,
    typed: {},
    untyped: [],
    slowestMs: 0,
    slowestCase: 0,
    hangs: 0,
    peakRssMiB: 0,
  };
  for (let index = 0; index < options.cases; index++) {
    // between cases, let the event loop run (a test runner's worker answers its heartbeats)
    await new Promise((resolve) => setImmediate(resolve));
    const start = performance.now();
    try {
      const { bytes } = mutatedModel(base, options.seed, index);
      const graph = buildExplainGraph(readModel(bytes), { layers: [2, 3], compat: 'official', attention: 'self' });
      writeModel(graph.model);
      summary.built++;
    } catch (error) {
      if (error instanceof OnnxGraphError) {
        summary.typed[error.name] = (summary.typed[error.name] ?? 0) + 1;
      } else {
        summary.untyped.push(`${index}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      }
    }
    const ms = performance.now() - start;
    if (ms > summary.slowestMs) {
      summary.slowestMs = Math.round(ms);
      summary.slowestCase = index;
    }
    if (ms > hangMs) summary.hangs++;
    summary.peakRssMiB = Math.max(summary.peakRssMiB, Math.round(process.memoryUsage.rss() / 2 ** 20));
  }
  return summary;
}

/** The summary as one line, as `pnpm fuzz` prints it. */
export function summaryLine(s: FuzzSummary): string {
  const typed = Object.entries(s.typed)
    .sort()
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
  return `fuzz seed ${s.seed}: ${s.cases} mutated models, ${s.built} built, typed errors ${s.cases - s.built - s.untyped.length} (${typed}), untyped errors ${s.untyped.length}, crashes 0, hangs over 5 s ${s.hangs} (slowest ${s.slowestMs} ms, case ${s.slowestCase}), peak RSS ${s.peakRssMiB} MiB`;
}
