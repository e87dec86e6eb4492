/**
 * Benchmark: augment a 32-layer decoder graph with LLaVA-7B dimensions whose weights are external
 * data (the weight file does not exist: the graph is edited without reading a weight byte).
 *
 *   pnpm --filter @dexar/onnx-graph bench
 *
 * The graph is generated here (bench/llama-graph.ts) and written to a temporary file; each
 * measurement runs in a fresh Node process (read bytes -> buildExplainGraph -> write bytes) whose
 * peak RSS, read from VmHWM (tools/bench/peak-resident.ts), is its own. When tools/fixtures has
 * generated fixtures/scale/llava-7b-graph, that graph is measured too. Targets: under 10 s and under
 * 1 GiB.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { peakResidentBytes } from '../../../tools/bench/peak-resident.js';
import { buildExplainGraph } from '../src/explain/explain.js';
import { readModel, writeModel } from '../src/model.js';
import { buildLlamaDecoder, LLAVA_7B } from './llama-graph.js';

const here = dirname(fileURLToPath(import.meta.url));
const TIME_TARGET_S = 10;
const MEMORY_TARGET_MIB = 1024;

interface Result {
  label: string;
  layers: number;
  inputBytes: number;
  outputBytes: number;
  nodesBefore: number;
  nodesAfter: number;
  readMs: number;
  buildMs: number;
  writeMs: number;
  totalMs: number;
  peakRssMiB: number;
}

function worker(file: string, label: string, layerSpec: string): void {
  const bytes = readFileSync(file);
  const t0 = performance.now();
  const model = readModel(bytes);
  const t1 = performance.now();
  const hooksProbe = model.graph.nodes.filter((n) => n.opType === 'Softmax').length;
  const layers =
    layerSpec === 'all'
      ? Array.from({ length: hooksProbe }, (_, i) => i)
      : Array.from({ length: Number(layerSpec) }, (_, i) => hooksProbe - Number(layerSpec) + i);
  const ex = buildExplainGraph(model, { layers, compat: 'official', attention: 'self' });
  const t2 = performance.now();
  const out = writeModel(ex.model);
  const t3 = performance.now();
  const result: Result = {
    label,
    layers: layers.length,
    inputBytes: bytes.byteLength,
    outputBytes: out.byteLength,
    nodesBefore: model.graph.nodes.length,
    nodesAfter: ex.model.graph.nodes.length,
    readMs: t1 - t0,
    buildMs: t2 - t1,
    writeMs: t3 - t2,
    totalMs: t3 - t0,
    peakRssMiB: peakResidentBytes() / 2 ** 20,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function measure(file: string, label: string, layers: string): Result {
  const run = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--worker', file, label, layers],
    {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  if (run.status !== 0) throw new Error(`benchmark worker failed:\n${run.stderr}`);
  const line = run.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Result;
}

function report(r: Result): boolean {
  const ok = r.totalMs / 1000 < TIME_TARGET_S && r.peakRssMiB < MEMORY_TARGET_MIB;
  console.log(
    [
      `${r.label}, ${r.layers} explained layers:`,
      `  graph ${(r.inputBytes / 1e6).toFixed(2)} MB, ${r.nodesBefore} nodes -> explain graph ${(r.outputBytes / 1e6).toFixed(2)} MB, ${r.nodesAfter} nodes`,
      `  time ${(r.totalMs / 1000).toFixed(2)} s (read ${r.readMs.toFixed(0)} ms, augment ${r.buildMs.toFixed(0)} ms, write ${r.writeMs.toFixed(0)} ms)`,
      `  peak RSS ${r.peakRssMiB.toFixed(0)} MiB   [targets: < ${TIME_TARGET_S} s, < ${MEMORY_TARGET_MIB} MiB: ${ok ? 'met' : 'MISSED'}]`,
    ].join('\n'),
  );
  return ok;
}

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'dexar-bench-'));
  try {
    const t0 = performance.now();
    const model = buildLlamaDecoder(LLAVA_7B);
    const bytes = writeModel(model);
    const file = join(dir, 'decoder_model_merged.onnx');
    writeFileSync(file, bytes);
    console.log(
      `generated a LLaVA-7B-shaped decoder (32 layers, hidden 4096, 32 heads, vocab 32064; weights as external data in ${LLAVA_7B.externalData}, not present) in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
    );
    let ok = true;
    ok = report(measure(file, 'generated LLaVA-7B graph', 'all')) && ok;
    ok = report(measure(file, 'generated LLaVA-7B graph', '10')) && ok;
    const scale = join(
      here,
      '..',
      '..',
      '..',
      'fixtures',
      'scale',
      'llava-7b-graph',
      'onnx',
      'decoder_model_merged.onnx',
    );
    if (existsSync(scale))
      ok = report(measure(scale, 'fixtures/scale/llava-7b-graph (tools/fixtures --scale)', 'all')) && ok;
    else console.log('fixtures/scale/llava-7b-graph not generated; measured the generated graph only');
    if (!ok) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === '--worker') worker(args[1] as string, args[2] as string, args[3] as string);
else main();
