// Evaluation throughput (issue: evaluation and baselines). For each method alone, and for all six
// together: samples per second of `dexar eval` with every metric (perturbation at 9 fractions in
// both directions, segmentation, token weights), and the cost of the perturbation metric relative
// to one explanation (the explain run every method shares). Runs on the built-in shapes model and
// held-out set when present, else on fixtures/models/llava-tiny and a generated dataset.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-llava';
import { methodNames } from '../src/index.js';
import { runEvaluation } from '../src/node/index.js';
import type { SampleRecord } from '../src/records.js';
import { writeShapesDataset } from '../test/helpers/dataset.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SAMPLES = Number(process.env.DEXAR_BENCH_SAMPLES ?? 24);
/** ONNX Runtime intra-op threads (default: ONNX Runtime's, one per core). */
const THREADS = process.env.DEXAR_BENCH_THREADS ? Number(process.env.DEXAR_BENCH_THREADS) : undefined;
const backend = THREADS ? { threads: THREADS } : {};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const work = await mkdtemp(join(tmpdir(), 'dexar-eval-bench-'));
  try {
    const shapes =
      existsSync(join(root, 'models/shapes-llava/config.json')) &&
      existsSync(join(root, 'datasets/shapes-heldout/samples.jsonl'));
    const model = shapes ? join(root, 'models/shapes-llava') : join(root, 'fixtures/models/llava-tiny');
    const dataset = shapes ? 'shapes' : await writeShapesDataset(join(work, 'data'), SAMPLES);
    console.log(
      `eval bench: ${shapes ? 'models/shapes-llava on datasets/shapes-heldout' : 'fixtures/models/llava-tiny on a generated 64 px set (the shapes model is missing)'}, first ${SAMPLES} samples, ${cpus().length} CPUs, ${THREADS ?? 'default'} ORT threads, all metrics, 9 fractions x 2 directions, batch 32`,
    );
    // warm-up: build and cache the explain graphs, load the files once
    await runEvaluation({
      model,
      dataset,
      methods: methodNames(),
      metrics: ['perturbation', 'segmentation', 'faithfulness'],
      out: join(work, 'warm'),
      limit: 2,
    });

    const rows: string[][] = [];
    for (const methods of [...methodNames().map((m) => [m]), methodNames()]) {
      const out = join(work, methods.join('+'));
      let seconds = Number.NaN;
      const outcome = await runEvaluation({
        model,
        dataset,
        methods,
        metrics: ['perturbation', 'segmentation', 'faithfulness'],
        out,
        limit: SAMPLES,
        backend,
        // the samples' time, after the model and dataset are open
        onProgress: (p) => {
          seconds = p.elapsedSeconds;
        },
      });
      const records = (await readFile(outcome.file, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .filter((r): r is SampleRecord => r.kind === 'sample');
      const explain = median(records.map((r) => r.seconds.explain));
      // per sample, the perturbation of all methods of the run (each record holds its share)
      const bySample = new Map<string, number>();
      for (const r of records) bySample.set(r.sample, (bySample.get(r.sample) ?? 0) + (r.seconds.perturbation ?? 0));
      const perturbation = median([...bySample.values()]) / methods.length;
      rows.push([
        methods.length === 1 ? methods[0] : `all ${methods.length} together`,
        (outcome.computed / seconds).toFixed(2),
        (explain * 1000).toFixed(1),
        (perturbation * 1000).toFixed(1),
        (perturbation / explain).toFixed(1),
      ]);
    }
    const head = [
      'method',
      'samples/s',
      'explain run (ms)',
      'perturbation per method (ms)',
      'perturbation / explanation',
    ];
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ');
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    console.log(
      'samples/s: whole samples (image decoding, explain run, maps, every metric, records written) per second once the model is open; medians per sample otherwise. A perturbation of one method scores 18 perturbed inputs (+1 clean per sample, shared by the methods) in batches.',
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
