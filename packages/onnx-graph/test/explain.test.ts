import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildLlamaDecoder, type LlamaConfig } from '../bench/llama-graph.js';
import { explainCacheKey } from '../src/explain/cache-key.js';
import { buildExplainGraph, EXPLAIN_OUTPUTS, POSITION_LENS_OUTPUT } from '../src/explain/explain.js';
import { makeAttribute } from '../src/graph/attributes.js';
import { nodeInputs } from '../src/graph/graph.js';
import { redirectConsumers } from '../src/graph/passes.js';
import { ShapeInference } from '../src/graph/shapes.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import {
  externalDataInfo,
  floatToHalf,
  halfToFloat,
  isExternal,
  makeTensor,
  readTensorNumbers,
  tensorDims,
} from '../src/proto/tensor.js';
import { DataType, type NodeProto, type TensorProto } from '../src/proto/types.js';
import { fixtureFile } from './helpers/fixtures.js';
import { makeOrtTensor, rng, runModel, tensorValues, valueInfo } from './helpers/onnx.js';

const SMALL: LlamaConfig = {
  layers: 3,
  hidden: 32,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  intermediate: 48,
  vocab: 40,
  seed: 11,
};

const S = 7;
const TARGETS = [5, 17, 33];
const QUERIES = [2, 4, 6];

function feedsFor(model: OnnxModel, embeds: number[], dtype: number, extra: Record<string, ort.Tensor> = {}) {
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(dtype, [1, S, SMALL.hidden], embeds),
    attention_mask: makeOrtTensor(DataType.INT64, [1, S], new Array(S).fill(1)),
    position_ids: makeOrtTensor(
      DataType.INT64,
      [1, S],
      Array.from({ length: S }, (_, i) => i),
    ),
    dexar_target_ids: makeOrtTensor(DataType.INT64, [TARGETS.length], TARGETS),
    dexar_query_positions: makeOrtTensor(DataType.INT64, [QUERIES.length], QUERIES),
    ...extra,
  };
  for (const v of model.graph.inputs) {
    if (v.name?.startsWith('past_key_values')) {
      feeds[v.name] = makeOrtTensor(dtype, [1, SMALL.kvHeads, 0, SMALL.headDim], []);
    }
  }
  return feeds;
}

function randomEmbeds(seed: number): number[] {
  const next = rng(seed);
  return Array.from({ length: S * SMALL.hidden }, () => next() * 2 - 1);
}

describe('explain graph on a generated Llama decoder (grouped-query attention)', () => {
  const source = buildLlamaDecoder(SMALL);

  it('keeps the original outputs bit-identical', async () => {
    const ex = buildExplainGraph(source, { layers: [0, 1, 2], compat: 'official', attention: 'self' });
    const embeds = randomEmbeds(1);
    const plain = await runModel(writeModel(source), feedsFor(source, embeds, DataType.FLOAT, {}), [
      'logits',
      'present.2.value',
    ]);
    const feeds = feedsFor(ex.model, embeds, DataType.FLOAT);
    const out = await runModel(writeModel(ex.model), feeds, [
      'logits',
      'present.2.value',
      EXPLAIN_OUTPUTS.gradientRows,
    ]);
    expect(tensorValues(out.logits as ort.Tensor)).toEqual(tensorValues(plain.logits as ort.Tensor));
    expect(tensorValues(out['present.2.value'] as ort.Tensor)).toEqual(
      tensorValues(plain['present.2.value'] as ort.Tensor),
    );
    expect((out[EXPLAIN_OUTPUTS.gradientRows] as ort.Tensor).dims).toEqual([3, 3, SMALL.heads, S]);
  });

  it('gradient rows equal finite differences of the logit lens w.r.t. the attention probabilities', async () => {
    for (const [layer, compat] of [
      [1, 'official'],
      [2, 'official'],
      [2, 'paper'],
    ] as const) {
      const ex = buildExplainGraph(source, { layers: [layer], compat, attention: 'self' });
      const m = ex.model;
      // A' = A + delta, read by everything that read A
      const A = ex.hooks.layers[layer]?.attentionProbs as string;
      m.graph.proto.input?.push(valueInfo('delta', DataType.FLOAT, [1, SMALL.heads, 'sequence_length', 'total']));
      m.graph.invalidate();
      const add = m.graph.addNode({ name: 'perturb', opType: 'Add', input: [A, 'delta'], output: ['A_perturbed'] });
      redirectConsumers(m.graph, A, 'A_perturbed', [add]);
      const bytes = writeModel(m);
      const embeds = randomEmbeds(2);
      const size = SMALL.heads * S * S;
      const run = async (delta: number[]) =>
        runModel(
          bytes,
          feedsFor(m, embeds, DataType.FLOAT, { delta: makeOrtTensor(DataType.FLOAT, [1, SMALL.heads, S, S], delta) }),
        );
      const base = await run(new Array(size).fill(0));
      const grad = tensorValues(base[EXPLAIN_OUTPUTS.gradientRows] as ort.Tensor);
      const next = rng(3 + layer);
      let worst = 0;
      let scale = 0;
      for (let trial = 0; trial < 12; trial++) {
        const n = Math.floor(next() * QUERIES.length);
        const h = Math.floor(next() * SMALL.heads);
        const k = Math.floor(next() * S);
        const q = QUERIES[n] as number;
        const lens = async (eps: number) => {
          const d = new Array(size).fill(0);
          d[(h * S + q) * S + k] = eps;
          const out = await run(d);
          return tensorValues(out[EXPLAIN_OUTPUTS.logitLens] as ort.Tensor)[n] as number;
        };
        const e = 1e-2;
        const fd = ((await lens(-2 * e)) - 8 * (await lens(-e)) + 8 * (await lens(e)) - (await lens(2 * e))) / (12 * e);
        const analytic = grad[(n * SMALL.heads + h) * S + k] as number;
        worst = Math.max(worst, Math.abs(fd - analytic));
        scale = Math.max(scale, Math.abs(analytic));
      }
      console.log(
        `explain-graph FD check, layer ${layer} (${compat}): max |FD - analytic| ${worst.toExponential(2)}, max |analytic| ${scale.toExponential(2)}`,
      );
      expect(scale).toBeGreaterThan(1e-2);
      expect(worst / scale).toBeLessThan(1e-3);
    }
  });

  it('official and paper differ only at the last layer', async () => {
    const layers = [0, 1, 2];
    const embeds = randomEmbeds(4);
    const off = buildExplainGraph(source, { layers, compat: 'official', attention: 'self' });
    const pap = buildExplainGraph(source, { layers, compat: 'paper', attention: 'self' });
    const a = await runModel(writeModel(off.model), feedsFor(off.model, embeds, DataType.FLOAT));
    const b = await runModel(writeModel(pap.model), feedsFor(pap.model, embeds, DataType.FLOAT));
    const ga = tensorValues(a[EXPLAIN_OUTPUTS.gradientRows] as ort.Tensor);
    const gb = tensorValues(b[EXPLAIN_OUTPUTS.gradientRows] as ort.Tensor);
    const per = SMALL.heads * S;
    let lastDiff = 0;
    for (let n = 0; n < TARGETS.length; n++) {
      for (let l = 0; l < 3; l++) {
        for (let i = 0; i < per; i++) {
          const k = (n * 3 + l) * per + i;
          if (l < 2) expect(ga[k]).toBe(gb[k]);
          else lastDiff = Math.max(lastDiff, Math.abs((ga[k] as number) - (gb[k] as number)));
        }
      }
    }
    expect(lastDiff).toBeGreaterThan(1e-6);
  });

  it('optionally outputs the logit lens of the targets at every position (positionLens)', async () => {
    const layers = [0, 1, 2];
    const embeds = randomEmbeds(5);
    const plain = buildExplainGraph(source, { layers, compat: 'paper', attention: 'self' });
    const lens = buildExplainGraph(source, { layers, compat: 'paper', attention: 'self', positionLens: true });
    expect(plain.outputs.positionLens).toBeUndefined();
    expect(plain.model.graph.outputs.map((o) => o.name)).not.toContain(POSITION_LENS_OUTPUT);
    expect(lens.outputs.positionLens).toBe(POSITION_LENS_OUTPUT);
    const a = await runModel(writeModel(plain.model), feedsFor(plain.model, embeds, DataType.FLOAT));
    const b = await runModel(writeModel(lens.model), feedsFor(lens.model, embeds, DataType.FLOAT));
    // the default outputs do not change
    for (const name of ['logits', EXPLAIN_OUTPUTS.gradientRows, EXPLAIN_OUTPUTS.logitLens]) {
      expect(tensorValues(b[name] as ort.Tensor)).toEqual(tensorValues(a[name] as ort.Tensor));
    }
    const position = b[POSITION_LENS_OUTPUT] as ort.Tensor;
    expect(position.dims).toEqual([TARGETS.length, layers.length, S]);
    const pl = tensorValues(position);
    const ll = tensorValues(a[EXPLAIN_OUTPUTS.logitLens] as ort.Tensor);
    const logits = tensorValues(a.logits as ort.Tensor);
    let atQuery = 0;
    let lastVsLogits = 0;
    for (let n = 0; n < TARGETS.length; n++) {
      for (let l = 0; l < layers.length; l++) {
        // at the query row it is the logit lens the gradients differentiate (paper: final norm once)
        const q = QUERIES[n] as number;
        atQuery = Math.max(atQuery, Math.abs((pl[(n * 3 + l) * S + q] as number) - (ll[n * 3 + l] as number)));
      }
      // at the last layer, every position is the model's own logit of the target
      for (let p = 0; p < S; p++) {
        const got = pl[(n * 3 + 2) * S + p] as number;
        const want = logits[p * SMALL.vocab + (TARGETS[n] as number)] as number;
        lastVsLogits = Math.max(lastVsLogits, Math.abs(got - want));
      }
    }
    expect(atQuery).toBeLessThan(1e-5);
    expect(lastVsLogits).toBeLessThan(1e-5);
    const bytes = readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx'));
    const opts = { layers: [0, 1], compat: 'official', attention: 'self' } as const;
    const key = await explainCacheKey(bytes, opts);
    expect(await explainCacheKey(bytes, { ...opts, positionLens: false })).toBe(key);
    expect(await explainCacheKey(bytes, { ...opts, positionLens: true })).not.toBe(key);
  });

  it('optionally takes the targets as the argmax of its own logits at the query rows (greedyTargets)', async () => {
    const layers = [0, 1, 2];
    const embeds = randomEmbeds(7);
    const greedy = buildExplainGraph(source, { layers, compat: 'official', attention: 'self', greedyTargets: true });
    expect(greedy.model.graph.inputs.map((v) => v.name)).not.toContain('dexar_target_ids');
    const { dexar_target_ids: _, ...feeds } = feedsFor(greedy.model, embeds, DataType.FLOAT);
    const out = await runModel(writeModel(greedy.model), feeds);
    const logits = tensorValues(out.logits as ort.Tensor);
    const argmax = QUERIES.map((q) => {
      const row = logits.slice(q * SMALL.vocab, (q + 1) * SMALL.vocab);
      return row.indexOf(Math.max(...row));
    });
    expect(tensorValues(out.dexar_target_ids as ort.Tensor)).toEqual(argmax);
    // the rows are those of the teacher-forced graph fed the same targets, bit for bit
    const plain = buildExplainGraph(source, { layers, compat: 'official', attention: 'self' });
    const forced = await runModel(writeModel(plain.model), {
      ...feeds,
      dexar_target_ids: makeOrtTensor(DataType.INT64, [argmax.length], argmax),
    });
    for (const name of Object.values(EXPLAIN_OUTPUTS)) {
      expect(tensorValues(out[name] as ort.Tensor)).toEqual(tensorValues(forced[name] as ort.Tensor));
    }
    const bytes = readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx'));
    const opts = { layers: [0, 1], compat: 'official', attention: 'self' } as const;
    const key = await explainCacheKey(bytes, opts);
    expect(await explainCacheKey(bytes, { ...opts, greedyTargets: false })).toBe(key);
    expect(await explainCacheKey(bytes, { ...opts, greedyTargets: true })).not.toBe(key);
  });

  it('gives the same rows for the same decoder exported at opsets 14, 18 and 21', async () => {
    const embeds = randomEmbeds(6);
    const rows = async (opset: number) => {
      const m = buildLlamaDecoder({ ...SMALL, opset });
      expect(m.opsetVersion()).toBe(opset);
      const ex = buildExplainGraph(m, { layers: [1, 2], compat: 'official', attention: 'self' });
      const out = await runModel(writeModel(ex.model), feedsFor(ex.model, embeds, DataType.FLOAT));
      return tensorValues(out[EXPLAIN_OUTPUTS.gradientRows] as ort.Tensor);
    };
    const ref = await rows(17);
    for (const opset of [14, 18, 21]) {
      const got = await rows(opset);
      expect(
        got.reduce((m, v, i) => Math.max(m, Math.abs(v - (ref[i] as number))), 0),
        `opset ${opset}`,
      ).toBeLessThan(1e-5);
    }
  });

  it('rejects a batch of 2 at run time with a message naming the requirement', async () => {
    const ex = buildExplainGraph(source, { layers: [2], compat: 'official', attention: 'self' });
    const embeds = randomEmbeds(7);
    const feeds = feedsFor(ex.model, embeds, DataType.FLOAT);
    const two: Record<string, ort.Tensor> = {
      ...feeds,
      inputs_embeds: makeOrtTensor(DataType.FLOAT, [2, S, SMALL.hidden], [...embeds, ...embeds]),
      attention_mask: makeOrtTensor(DataType.INT64, [2, S], new Array(2 * S).fill(1)),
      position_ids: makeOrtTensor(DataType.INT64, [2, S], [...Array(S).keys(), ...Array(S).keys()]),
    };
    for (const v of ex.model.graph.inputs) {
      if (v.name?.startsWith('past_key_values'))
        two[v.name] = makeOrtTensor(DataType.FLOAT, [2, SMALL.kvHeads, 0, SMALL.headDim], []);
    }
    await expect(runModel(writeModel(ex.model), two)).rejects.toThrow(/requires_batch_size_1/);
  });

  it('handles LM head variants: tied (transposed) weight, cast weight, an output not named logits', async () => {
    const embeds = randomEmbeds(8);
    const rowsOf = async (m: OnnxModel) => {
      const ex = buildExplainGraph(m, { layers: [0, 2], compat: 'official', attention: 'self' });
      const out = await runModel(writeModel(ex.model), feedsFor(ex.model, embeds, DataType.FLOAT));
      return [EXPLAIN_OUTPUTS.gradientRows, EXPLAIN_OUTPUTS.logitLens].map((o) => tensorValues(out[o] as ort.Tensor));
    };
    const ref = await rowsOf(source);
    const headOf = (m: OnnxModel) => {
      const head = m.graph.nodes.find((n) => n.name === '/lm_head/MatMul') as NodeProto;
      const w = m.graph.initializer(head.input?.[1] as string) as TensorProto;
      return { head, w, values: readTensorNumbers(w), dims: tensorDims(w) as [number, number] };
    };
    const variants: [string, (m: OnnxModel) => void][] = [
      [
        'tied embedding [V, D] read through Transpose',
        (m) => {
          const { head, values, dims } = headOf(m);
          const [D, V] = dims;
          const t = Array.from({ length: D * V }, (_, k) => values[(k % D) * V + Math.floor(k / D)] as number);
          m.graph.addInitializer(makeTensor('embed_tokens.weight', DataType.FLOAT, [V, D], t));
          m.graph.addNode({
            name: 'tied',
            opType: 'Transpose',
            input: ['embed_tokens.weight'],
            output: ['tied_w'],
            attribute: [makeAttribute('perm', [1, 0])],
          });
          head.input = [head.input?.[0] as string, 'tied_w'];
          m.graph.invalidate();
          m.graph.sortTopologically();
        },
      ],
      [
        'double weight cast to float',
        (m) => {
          const { head, values, dims } = headOf(m);
          m.graph.addInitializer(makeTensor('w64', DataType.DOUBLE, dims, values));
          m.graph.addNode({
            name: 'cast_w',
            opType: 'Cast',
            input: ['w64'],
            output: ['w32'],
            attribute: [makeAttribute('to', DataType.FLOAT)],
          });
          head.input = [head.input?.[0] as string, 'w32'];
          m.graph.invalidate();
          m.graph.sortTopologically();
        },
      ],
      [
        'logits output renamed',
        (m) => {
          const cast = m.graph.producer('logits') as NodeProto;
          cast.output = ['scores'];
          const out = m.graph.outputs[0] as { name: string };
          out.name = 'scores';
          m.graph.invalidate();
        },
      ],
    ];
    for (const [label, edit] of variants) {
      const m = readModel(writeModel(source));
      edit(m);
      const got = await rowsOf(readModel(writeModel(m)));
      got.forEach((values, k) => {
        const want = ref[k] as number[];
        const diff = values.reduce((mx, v, i) => Math.max(mx, Math.abs(v - (want[i] as number))), 0);
        expect(diff, label).toBeLessThan(1e-5);
      });
    }
  });

  it('works on a float16 decoder (float32 softmax and norms, as exported) close to float32', async () => {
    const half = buildLlamaDecoder({ ...SMALL, dtype: 'float16' });
    const embeds = randomEmbeds(5).map((v) => halfToFloat(floatToHalf(v)));
    const ex32 = buildExplainGraph(source, { layers: [0, 1, 2], compat: 'official', attention: 'self' });
    const ex16 = buildExplainGraph(half, { layers: [0, 1, 2], compat: 'official', attention: 'self' });
    const r32 = await runModel(writeModel(ex32.model), feedsFor(ex32.model, embeds, DataType.FLOAT));
    const r16 = await runModel(writeModel(ex16.model), feedsFor(ex16.model, embeds, DataType.FLOAT16));
    for (const [name, tol] of [
      [EXPLAIN_OUTPUTS.gradientRows, 3e-2],
      [EXPLAIN_OUTPUTS.attentionRows, 1e-2],
      [EXPLAIN_OUTPUTS.logitLens, 2e-2],
    ] as const) {
      const t16 = r16[name] as ort.Tensor;
      expect(t16.type).toBe('float32');
      const a = tensorValues(t16);
      const b = tensorValues(r32[name] as ort.Tensor);
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
      console.log(
        `float16 vs float32 explain graph, ${name}: max abs diff / max abs ${(diff / scale).toExponential(2)}`,
      );
      expect(diff / scale, name).toBeLessThan(tol);
    }
  });
});

describe('explain graph structure', () => {
  const llava = readModel(readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx')));

  it("splits a greedy graph on the past: with one, the backward pass reads the forward pass's rows instead of re-running the layer tails", () => {
    const layers = [0, 1, 2, 3];
    const greedy = buildExplainGraph(llava, { layers, compat: 'official', attention: 'self', greedyTargets: true });
    const split = greedy.model.graph.nodes.find((n) => n.opType === 'If');
    const branch = (name: string) =>
      split?.attribute?.find((a) => a.name === name)?.g?.node?.filter((n) => n.name?.includes('dexar/layer')) ?? [];
    const products = (nodes: NodeProto[]) => nodes.filter((n) => n.opType === 'MatMul' || n.opType === 'Gemm').length;
    const withPast = branch('then_branch');
    const withoutPast = branch('else_branch');
    // per layer the tail's forward products (attention x values, output projection, MLP) are gone; its backward ones stay
    expect(products(withPast)).toBeGreaterThan(0);
    expect(products(withoutPast) - products(withPast)).toBeGreaterThanOrEqual(3 * layers.length);
    // a teacher-forced graph keeps one graph: its calls hold many positions
    expect(
      buildExplainGraph(llava, { layers, compat: 'official', attention: 'self' }).model.graph.nodes,
    ).not.toContainEqual(expect.objectContaining({ opType: 'If' }));
  });

  it('never multiplies by the full LM head: the weight is only gathered at the target rows', () => {
    const ex = buildExplainGraph(llava, { layers: [0, 1, 2, 3], compat: 'official', attention: 'self' });
    const weight = ex.hooks.lmHead.weight;
    const readers = ex.model.graph.consumers(weight);
    const added = readers.filter((n) => (n.name ?? '').startsWith('dexar'));
    expect(added.length).toBe(1);
    expect(added[0]?.opType).toBe('Gather');
    const original = readers.filter((n) => !(n.name ?? '').startsWith('dexar'));
    expect(original.map((n) => n.opType)).toEqual(['MatMul']);
  });

  it('re-runs the layers on T rows only: no added tensor has the full sequence axis', () => {
    const ex = buildExplainGraph(llava, { layers: [1, 3], compat: 'paper', attention: 'self' });
    const shapes = new ShapeInference(ex.model.graph, ex.model.opsetVersion() ?? 17);
    let added = 0;
    for (const n of ex.model.graph.nodes) {
      if (!(n.name ?? '').startsWith('dexar')) continue;
      added++;
      for (const o of n.output ?? []) {
        const shape = shapes.shape(o);
        // the attention rows [B, H, T, K] keep the key axis (past + current); nothing keeps S
        expect(shape?.includes('sequence_length'), `${o} ${JSON.stringify(shape)}`).not.toBe(true);
      }
    }
    expect(added).toBeGreaterThan(50);
    // backward nodes exist only for the two requested layers
    const layersTouched = new Set(
      ex.model.graph.nodes.map((n) => /^dexar\/layer(\d+)/.exec(n.name ?? '')?.[1]).filter((x) => x !== undefined),
    );
    expect([...layersTouched].sort()).toEqual(['1', '3']);
  });

  it('declares the documented inputs and outputs', () => {
    const ex = buildExplainGraph(llava, { layers: [2, 3], compat: 'official', attention: 'self' });
    const inputs = ex.model.graph.inputs.map((v) => v.name);
    expect(inputs).toContain('dexar_target_ids');
    expect(inputs).toContain('dexar_query_positions');
    const outs = ex.model.graph.outputs.map((v) => v.name);
    expect(outs.slice(0, 9)).toEqual(llava.graph.outputs.map((v) => v.name));
    expect(outs.slice(-3)).toEqual(['dexar_attention_rows', 'dexar_gradient_rows', 'dexar_logit_lens']);
    const out = ex.model.graph.outputs.find((v) => v.name === 'dexar_gradient_rows');
    const dims = out?.type?.tensorType?.shape?.dim?.map((d) =>
      Object.hasOwn(d, 'dimParam') ? d.dimParam : Number(d.dimValue),
    );
    expect(dims?.[0]).toBe('dexar_num_targets');
    expect(dims?.[1]).toBe(2);
    expect(dims?.[2]).toBe(4);
    expect(ex.layers).toEqual([2, 3]);
  });

  it('keeps external weights as references when augmenting', () => {
    const ext = buildLlamaDecoder({ ...SMALL, externalData: 'weights.bin' });
    const bytes = writeModel(ext);
    const ex = buildExplainGraph(readModel(bytes), { layers: [1, 2], compat: 'official', attention: 'self' });
    const externals = ex.model.externalTensors();
    expect(externals.length).toBe(ext.externalTensors().length);
    for (const t of externals) {
      expect(isExternal(t)).toBe(true);
      expect(externalDataInfo(t).location).toBe('weights.bin');
      expect(t.rawData?.byteLength ?? 0).toBe(0);
    }
    expect(ex.model.externalDataFiles()).toEqual(['weights.bin']);
  });

  it('derives a stable cache key from the graph bytes and the options', async () => {
    const bytes = readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx'));
    const opts = { layers: [0, 1], compat: 'official', attention: 'self' } as const;
    const k1 = await explainCacheKey(bytes, opts);
    const k2 = await explainCacheKey(new Uint8Array(bytes), { ...opts, layers: [0, 1] });
    expect(k1).toMatch(/^[0-9a-f]{64}$/);
    expect(k2).toBe(k1);
    expect(await explainCacheKey(bytes, { ...opts, compat: 'paper' })).not.toBe(k1);
    expect(await explainCacheKey(bytes, { ...opts, layers: [1] })).not.toBe(k1);
    const other = new Uint8Array(bytes);
    other[other.length - 1] = (other[other.length - 1] as number) ^ 1;
    expect(await explainCacheKey(other, opts)).not.toBe(k1);
  });

  it('reads only the T query rows of the attention tensor', () => {
    const ex = buildExplainGraph(llava, { layers: [3], compat: 'official', attention: 'self' });
    const A = ex.hooks.layers[3]?.attentionProbs as string;
    const readers = ex.model.graph.consumers(A).filter((n) => (n.name ?? '').startsWith('dexar'));
    expect(readers.map((n) => n.opType)).toEqual(['Gather']);
    expect(nodeInputs(readers[0] as never)).toContain('dexar_query_positions');
  });
});
