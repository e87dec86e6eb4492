import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGradient } from '../src/autodiff/gradient.js';
import { QUANTIZED_VJP_RULES } from '../src/autodiff/quantized.js';
import { makeAttribute } from '../src/graph/attributes.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { fuseDynamicQuantizeMatMul } from '../src/graph/quantized-matmul.js';
import { quantizedHeadRows } from '../src/graph/quantized-weights.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import { floatToHalf, halfToFloat, makeTensor } from '../src/proto/tensor.js';
import { DataType, type NodeProto, type TensorProto } from '../src/proto/types.js';
import { buildModel, makeOrtTensor, rng, runModel, tensorValues, valueInfo } from './helpers/onnx.js';

/**
 * The quantized matmuls' vector-Jacobian rules (autodiff/quantized.ts) against central finite
 * differences. Where the op is linear in its float input A (MatMulNBits, MatMulBnb4), the finite
 * differences are taken on ONNX Runtime's own kernel with random packed bytes, scales and zero
 * points: the rule's run-time dequantisation has to agree with the kernel's reading of the packing.
 * Where A is rounded to integers at run time (DynamicQuantizeMatMul, QDQ pairs), the rule is the
 * straight-through gradient, and the finite differences are taken on the float function the graph
 * approximates (the same weights dequantised, A unrounded).
 */

const FD_TOLERANCE = 1e-3;
const FP16_TOLERANCE = 5e-3;

interface QuantCase {
  rule: string;
  name: string;
  /** Shape of the float input `a`. */
  a: number[];
  /** The forward graph: reads `a` (and the initializers), writes `y`. */
  nodes: NodeProto[];
  initializers: TensorProto[];
  /** The float function to take finite differences of, when it is not the forward graph itself. */
  reference?: { nodes: NodeProto[]; initializers: TensorProto[] };
  /** Element type of `a` and `y` (float16: compared with the float32 graph of `float32Twin`). */
  dtype?: number;
  float32Twin?: () => QuantCase;
}

const node = (
  opType: string,
  input: string[],
  output: string[],
  attrs: Record<string, number> = {},
  domain?: string,
) => {
  const n: NodeProto = {
    name: `${opType}_${output[0]}`,
    opType,
    input,
    output,
    attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
  };
  if (domain) n.domain = domain;
  return n;
};
const contrib = (opType: string, input: string[], attrs: Record<string, number>) =>
  node(opType, input, ['y'], attrs, 'com.microsoft');

function randomBytes(next: () => number, count: number): number[] {
  return Array.from({ length: count }, () => Math.floor(next() * 256));
}
function randomFloats(next: () => number, count: number, lo: number, hi: number): number[] {
  return Array.from({ length: count }, () => lo + (hi - lo) * next());
}

function matMulNBitsCase(opts: {
  name: string;
  K: number;
  N: number;
  bits: number;
  blockSize: number;
  zeroPoints: boolean;
  bias?: boolean;
  half?: boolean;
  seed: number;
}): QuantCase {
  const { K, N, bits, blockSize } = opts;
  const next = rng(opts.seed);
  const blocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const scaleType = opts.half ? DataType.FLOAT16 : DataType.FLOAT;
  const scales = randomFloats(next, N * blocks, 0.01, 0.1).map((v) => (opts.half ? halfToFloat(floatToHalf(v)) : v));
  const init = [
    makeTensor('B', DataType.UINT8, [N, blocks, blob], randomBytes(next, N * blocks * blob)),
    makeTensor('scales', scaleType, [N * blocks], scales),
  ];
  const inputs = ['a', 'B', 'scales'];
  if (opts.zeroPoints) {
    const perRow = Math.ceil((blocks * bits) / 8);
    init.push(makeTensor('zero_points', DataType.UINT8, [N * perRow], randomBytes(next, N * perRow)));
    inputs.push('zero_points');
  }
  if (opts.bias) {
    init.push(makeTensor('bias', scaleType, [N], randomFloats(next, N, -1, 1)));
    inputs.push(...(opts.zeroPoints ? [] : ['']), '', 'bias');
  }
  return {
    rule: 'com.microsoft:MatMulNBits',
    name: opts.name,
    a: [1, 3, K],
    nodes: [contrib('MatMulNBits', inputs, { K, N, bits, block_size: blockSize, accuracy_level: 0 })],
    initializers: init,
    dtype: opts.half ? DataType.FLOAT16 : DataType.FLOAT,
    float32Twin: opts.half ? () => matMulNBitsCase({ ...opts, half: false }) : undefined,
  };
}

function matMulBnb4Case(name: string, K: number, N: number, quantType: number, seed: number): QuantCase {
  const next = rng(seed);
  const blockSize = 16;
  const count = N * K;
  return {
    rule: 'com.microsoft:MatMulBnb4',
    name,
    a: [2, K],
    nodes: [contrib('MatMulBnb4', ['a', 'B', 'absmax'], { K, N, block_size: blockSize, quant_type: quantType })],
    initializers: [
      makeTensor('B', DataType.UINT8, [Math.ceil(count / 2)], randomBytes(next, Math.ceil(count / 2))),
      makeTensor(
        'absmax',
        DataType.FLOAT,
        [Math.ceil(count / blockSize)],
        randomFloats(next, Math.ceil(count / blockSize), 0.1, 1),
      ),
    ],
  };
}

/** W `[K, N]` stored as B with per-column (or one) scale and zero point; the reference reads W dequantised. */
function dynamicQuantizeMatMulCase(name: string, signed: boolean, perColumn: boolean, seed: number): QuantCase {
  const next = rng(seed);
  const K = 6;
  const N = 4;
  const type = signed ? DataType.INT8 : DataType.UINT8;
  const q = Array.from({ length: K * N }, () => Math.floor(next() * 256) - (signed ? 128 : 0));
  const cols = perColumn ? N : 1;
  const scale = randomFloats(next, cols, 0.005, 0.02);
  const zero = Array.from({ length: cols }, () =>
    signed ? Math.floor(next() * 20) - 10 : 120 + Math.floor(next() * 16),
  );
  const w = q.map((v, i) => (v - (zero[(i % N) % cols] as number)) * (scale[(i % N) % cols] as number));
  return {
    rule: 'com.microsoft:DynamicQuantizeMatMul',
    name,
    a: [2, 3, K],
    nodes: [contrib('DynamicQuantizeMatMul', ['a', 'B', 'scale', 'zero'], {})],
    initializers: [
      makeTensor('B', type, [K, N], q),
      makeTensor('scale', DataType.FLOAT, [cols], scale),
      makeTensor('zero', type, [cols], zero),
    ],
    reference: {
      nodes: [node('MatMul', ['a', 'W'], ['y'])],
      initializers: [makeTensor('W', DataType.FLOAT, [K, N], w)],
    },
  };
}

function qdqCase(): QuantCase {
  const next = rng(7);
  const w = randomFloats(next, 5 * 3, -1, 1);
  return {
    rule: 'QuantizeLinear',
    name: 'QuantizeLinear → DequantizeLinear → MatMul (activation QDQ)',
    a: [2, 5],
    nodes: [
      node('QuantizeLinear', ['a', 's', 'z'], ['q']),
      node('DequantizeLinear', ['q', 's', 'z'], ['aq']),
      node('MatMul', ['aq', 'W'], ['y']),
    ],
    initializers: [
      makeTensor('s', DataType.FLOAT, [], [0.01]),
      makeTensor('z', DataType.UINT8, [], [128]),
      makeTensor('W', DataType.FLOAT, [5, 3], w),
    ],
    reference: {
      nodes: [node('MatMul', ['a', 'W'], ['y'])],
      initializers: [makeTensor('W', DataType.FLOAT, [5, 3], w)],
    },
  };
}

const CASES: QuantCase[] = [
  matMulNBitsCase({
    name: '4 bits, zero points, K not a multiple of the block',
    K: 40,
    N: 6,
    bits: 4,
    blockSize: 16,
    zeroPoints: true,
    seed: 1,
  }),
  matMulNBitsCase({
    name: '4 bits, default zero point 8, bias',
    K: 32,
    N: 5,
    bits: 4,
    blockSize: 32,
    zeroPoints: false,
    bias: true,
    seed: 2,
  }),
  matMulNBitsCase({
    name: '4 bits, odd block count (zero points share a byte)',
    K: 48,
    N: 3,
    bits: 4,
    blockSize: 16,
    zeroPoints: true,
    seed: 3,
  }),
  matMulNBitsCase({ name: '8 bits, zero points', K: 32, N: 4, bits: 8, blockSize: 16, zeroPoints: true, seed: 4 }),
  matMulNBitsCase({
    name: '4 bits, float16 activations and scales (q4f16)',
    K: 32,
    N: 4,
    bits: 4,
    blockSize: 16,
    zeroPoints: true,
    half: true,
    seed: 5,
  }),
  matMulBnb4Case('NF4', 16, 5, 1, 11),
  matMulBnb4Case('FP4, N·K not a multiple of the block', 10, 3, 0, 12),
  dynamicQuantizeMatMulCase('uint8 weights, one scale and zero point', false, false, 21),
  dynamicQuantizeMatMulCase('int8 weights, per-column scales and zero points', true, true, 22),
  qdqCase(),
];

/** The rules the cases check (the QDQ case runs DequantizeLinear's too). */
const QUANTIZED_RULES_COVERED = [...new Set([...CASES.map((c) => c.rule), 'DequantizeLinear'])];

function forwardModel(
  c: { nodes: NodeProto[]; initializers: TensorProto[] },
  aShape: number[],
  dtype: number,
): OnnxModel {
  return buildModel({
    inputs: [valueInfo('a', dtype, aShape)],
    outputs: [valueInfo('y', dtype)],
    nodes: c.nodes,
    initializers: c.initializers,
    opset: 21,
    contrib: true,
  });
}

function gradientModel(c: QuantCase, dtype: number, yShape: number[]): OnnxModel {
  const model = readModel(writeModel(forwardModel(c, c.a, dtype)));
  const b = new GraphBuilder(model, { prefix: 'grad' });
  model.graph.proto.input?.push(valueInfo('dy', dtype, yShape));
  model.graph.invalidate();
  b.shapes.set('dy', { type: dtype, shape: yShape });
  const grad = buildGradient(b, { output: 'y', wrt: ['a'], seed: 'dy' }).get('a') as string;
  model.graph.addNode({ name: 'out', opType: 'Identity', input: [grad], output: ['da'] });
  model.graph.proto.output?.push(valueInfo('da', dtype));
  model.graph.invalidate();
  return readModel(writeModel(model));
}

const count = (shape: number[]) => shape.reduce((p, d) => p * d, 1);
const maxAbs = (v: number[]) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
function relError(got: number[], want: number[]): number {
  let worst = 0;
  want.forEach((w, i) => {
    worst = Math.max(worst, Math.abs((got[i] as number) - w));
  });
  return worst / Math.max(maxAbs(want), 1e-8);
}

async function analyticGradient(c: QuantCase, dtype: number, a: number[], dy: number[], yShape: number[]) {
  const out = await runModel(gradientModel(c, dtype, yShape), {
    a: makeOrtTensor(dtype, c.a, a),
    dy: makeOrtTensor(dtype, yShape, dy),
  });
  return tensorValues(out.da as ort.Tensor);
}

const results: string[] = [];

describe('quantized matmul VJP rules against central finite differences (onnxruntime-node)', () => {
  afterAll(() => console.log(['quantized VJP relative errors:', ...results].join('\n')));

  it('every quantized rule has a case', () => {
    expect(Object.keys(QUANTIZED_VJP_RULES).filter((r) => !QUANTIZED_RULES_COVERED.includes(r))).toEqual([]);
  });

  CASES.forEach((c, index) => {
    it(`${c.rule}: ${c.name}`, async () => {
      const next = rng(500 + index);
      const dtype = c.dtype ?? DataType.FLOAT;
      const round = (v: number[]) => (dtype === DataType.FLOAT16 ? v.map((x) => halfToFloat(floatToHalf(x))) : v);
      const a = round(randomFloats(next, count(c.a), -1, 1));
      const forward = forwardModel(c, c.a, dtype);
      const y0 = (await runModel(forward, { a: makeOrtTensor(dtype, c.a, a) })).y as ort.Tensor;
      const yShape = [...(y0.dims as number[])];
      const dy = round(randomFloats(next, count(yShape), -1, 1));

      if (c.float32Twin) {
        // float16: the same weights in the float32 graph is the reference
        const twin = c.float32Twin();
        const want = await analyticGradient(twin, DataType.FLOAT, a, dy, yShape);
        const got = await analyticGradient(c, dtype, a, dy, yShape);
        const err = relError(got, want);
        results.push(`  ${`${c.rule}: ${c.name}`.padEnd(80)} vs float32 ${err.toExponential(2)}`);
        expect(err).toBeLessThan(FP16_TOLERANCE);
        return;
      }

      const reference = c.reference ? forwardModel(c.reference, c.a, dtype) : forward;
      const loss = async (values: number[]) => {
        const y = tensorValues((await runModel(reference, { a: makeOrtTensor(dtype, c.a, values) })).y as ort.Tensor);
        return y.reduce((s, v, k) => s + v * (dy[k] as number), 0);
      };
      const h = 4e-3;
      const numeric: number[] = [];
      for (let k = 0; k < a.length; k++) {
        const at = (delta: number) => loss(a.map((v, i) => (i === k ? v + delta : v)));
        const [m2, m1, p1, p2] = [await at(-2 * h), await at(-h), await at(h), await at(2 * h)];
        numeric.push((m2 - 8 * m1 + 8 * p1 - p2) / (12 * h));
      }
      const err = relError(await analyticGradient(c, dtype, a, dy, yShape), numeric);
      results.push(`  ${`${c.rule}: ${c.name}`.padEnd(80)} ${err.toExponential(2)}`);
      expect(err).toBeLessThan(FD_TOLERANCE);
    });
  });
});

describe('the backward products under ONNX Runtime’s full optimisation (the explain session’s level)', () => {
  // its constant folding and fusions must neither fail on the dequantisation nor fold it into a float32 weight
  it.each(CASES.filter((c) => !c.float32Twin))('$rule: $name', async (c) => {
    const dtype = DataType.FLOAT;
    const symbolic = ['T', ...c.a.slice(1)];
    const model = readModel(writeModel(forwardModel(c, c.a, dtype)));
    model.graph.proto.input = [valueInfo('a', dtype, symbolic)];
    model.graph.invalidate();
    const b = new GraphBuilder(model, { prefix: 'grad' });
    const grad = buildGradient(b, { output: 'y', wrt: ['a'] }).get('a') as string;
    model.graph.addNode({ name: 'out', opType: 'Identity', input: [grad], output: ['da'] });
    model.graph.proto.output?.push(valueInfo('da', dtype));
    model.graph.invalidate();
    const optimized = join(mkdtempSync(join(tmpdir(), 'dexar-quantized-')), 'optimized.onnx');
    const session = await ort.InferenceSession.create(writeModel(model), {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: optimized,
      extra: { session: { disable_prepacking: '1' } },
    });
    const next = rng(77);
    const a = randomFloats(next, count(c.a), -1, 1);
    const got = tensorValues((await session.run({ a: makeOrtTensor(dtype, c.a, a) })).da as ort.Tensor);
    const y = tensorValues(
      (await runModel(forwardModel(c, c.a, dtype), { a: makeOrtTensor(dtype, c.a, a) })).y as ort.Tensor,
    );
    const want = await analyticGradient(c, dtype, a, new Array(y.length).fill(1), [
      ...c.a.slice(0, -1),
      y.length / count(c.a.slice(0, -1)),
    ]);
    expect(relError(got, want)).toBeLessThan(1e-6);
    const folded = (readModel(readFileSync(optimized)).graph.proto.initializer ?? []).filter(
      (t) => t.dataType === DataType.FLOAT && (t.dims ?? []).map(Number).reduce((p, d) => p * d, 1) >= 64,
    );
    expect(folded.map((t) => t.name)).toEqual([]);
    await session.release();
  });
});

/**
 * A quantized LM head's target rows (graph/quantized-weights.ts `quantizedHeadRows`: the packed rows gathered,
 * then dequantised) against the same rows of the whole weight: ONNX Runtime's own kernel applied to the identity
 * (A = I_K gives Y = Wᵀ, exactly: every product is by 1 or 0; MatMulNBits, MatMulBnb4), or for DynamicQuantizeMatMul, whose kernel
 * rounds A, the dequantised W of the float function the graph approximates (MatMulNBits: equal, measured).
 */
describe('a quantized LM head: its gathered and dequantised rows are the dequantised weight’s rows', () => {
  // the layer cases of the head's ops (a bias would add to A · Wᵀ), and MatMulNBits without zero points
  // (MatMulBnb4: where its blocks of 16 divide K, as a head's must)
  const headCases = CASES.filter(
    (c) =>
      c.rule !== 'QuantizeLinear' &&
      !c.float32Twin &&
      !c.initializers.some((t) => t.name === 'bias') &&
      (c.rule !== 'com.microsoft:MatMulBnb4' || (c.a.at(-1) as number) % 16 === 0),
  );
  it.each([
    ...headCases,
    matMulBnb4Case('FP4, 3 blocks per row', 48, 4, 0, 40),
    matMulNBitsCase({
      name: '4 bits, default zero point 8',
      K: 32,
      N: 5,
      bits: 4,
      blockSize: 32,
      zeroPoints: false,
      seed: 33,
    }),
  ])('$rule: $name', async (c) => {
    const K = c.a.at(-1) as number;
    const identity = Array.from({ length: K * K }, (_, i) => (i % (K + 1) === 0 ? 1 : 0));
    const source = c.reference ?? c;
    const wT = tensorValues(
      (
        await runModel(forwardModel(source, [K, K], DataType.FLOAT), {
          a: makeOrtTensor(DataType.FLOAT, [K, K], identity),
        })
      ).y as ort.Tensor,
    ); // Wᵀ [K, N]
    const N = wT.length / K;
    const ids = [N - 1, 0, 2, 0];
    const got = await headRows(c, ids);
    const want = ids.flatMap((n) => Array.from({ length: K }, (_, k) => wT[k * N + n] as number));
    expect(got.length).toBe(ids.length * K);
    // equal but for float32 rounding: the q8 reference W is (B − z) · s in double with the unrounded scale, rounded
    // once to float32 (2^-24 relative), DequantizeLinear rounds (B − z) · float32(s) once (2^-24)
    const excess = got.map((v, i) => Math.abs(v - (want[i] as number)) - 2 ** -23 * Math.abs(want[i] as number));
    expect(Math.max(...excess)).toBeLessThanOrEqual(0);
    // under ONNX Runtime's full optimisation (the explain session's level) no copy of the packed weight, nor
    // any dequantisation, is folded into an initializer: the optimised graph's are the graph's own
    const optimized = join(mkdtempSync(join(tmpdir(), 'dexar-head-rows-')), 'optimized.onnx');
    const model = headRowsModel(c, ids.length);
    const session = await ort.InferenceSession.create(writeModel(model), {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: optimized,
    });
    await session.release();
    const large = (m: OnnxModel) =>
      (m.graph.proto.initializer ?? []).filter((t) => (t.dims ?? []).map(Number).reduce((p, d) => p * d, 1) >= 16);
    const stored = new Set(large(model).map((t) => t.name));
    expect(large(readModel(readFileSync(optimized))).filter((t) => !stored.has(t.name))).toEqual([]);
  });

  /**
   * The lens reads the dequantised rows on the float activation; a q8 head's own logits are computed on the
   * activation rounded to the uint8 grid of step s = (max(0, max a) − min(0, min a)) / 255 (one scale per tensor):
   * |logit − lens| = |Σ_k (â_k − a_k) W[y, k]| ≤ (s / 2) · ‖W[y]‖₁, plus float32 rounding of the sums.
   */
  it.each([
    dynamicQuantizeMatMulCase('q8, uint8 weights, per-tensor', false, false, 37),
    dynamicQuantizeMatMulCase('q8, int8 weights, per-column', true, true, 38),
  ])('$name: the lens is within (s / 2) · ‖W[y]‖₁ of the head’s own logits', async (c) => {
    const K = c.a.at(-1) as number;
    const a = randomFloats(rng(39), count(c.a), -1, 1);
    const y = tensorValues(
      (await runModel(forwardModel(c, c.a, DataType.FLOAT), { a: makeOrtTensor(DataType.FLOAT, c.a, a) }))
        .y as ort.Tensor,
    ); // [..., N]
    const N = y.length / (a.length / K);
    const ids = [N - 1, 0, 2];
    const rows = await headRows(c, ids);
    const s = (Math.max(0, ...a) - Math.min(0, ...a)) / 255;
    let worst = 0;
    for (let p = 0; p < a.length / K; p++) {
      ids.forEach((id, t) => {
        const row = rows.slice(t * K, (t + 1) * K);
        const x = a.slice(p * K, (p + 1) * K);
        const lens = x.reduce((sum, v, k) => sum + v * (row[k] as number), 0);
        const magnitude = x.reduce((sum, v, k) => sum + Math.abs(v * (row[k] as number)), 0);
        const bound = (s / 2) * row.reduce((sum, w) => sum + Math.abs(w), 0) + 2 ** -20 * magnitude;
        worst = Math.max(worst, Math.abs((y[p * N + id] as number) - lens) / bound);
      });
    }
    console.log(`q8 head ${c.name}: |logit − lens| / bound ≤ ${worst.toFixed(3)}`);
    expect(worst).toBeLessThanOrEqual(1);
  });
});

/** A graph of `quantizedHeadRows` of a case's node: `rows` `[T, K]` for the input `ids` `[T]`. */
function headRowsModel(c: QuantCase, T: number): OnnxModel {
  const model = buildModel({
    inputs: [valueInfo('ids', DataType.INT64, [T])],
    outputs: [],
    nodes: [],
    initializers: c.initializers,
    opset: 21,
    contrib: true,
  });
  const b = new GraphBuilder(model, { prefix: 'head' });
  const rows = quantizedHeadRows(b, c.nodes[0] as NodeProto, 'ids');
  model.graph.addNode({ name: 'out', opType: 'Identity', input: [rows], output: ['rows'] });
  model.graph.proto.output?.push(valueInfo('rows', DataType.FLOAT));
  model.graph.invalidate();
  return readModel(writeModel(model));
}

/** The rows of `headRowsModel` for the targets `ids`, run on ONNX Runtime: `[T · K]`. */
async function headRows(c: QuantCase, ids: number[]): Promise<number[]> {
  const feeds = { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [ids.length]) };
  return tensorValues((await runModel(headRowsModel(c, ids.length), feeds)).rows as ort.Tensor);
}

describe('quantized matmuls refused by name', () => {
  it('a MatMulBnb4 LM head whose blocks straddle rows of the weight', () => {
    const c = matMulBnb4Case('FP4, K = 10', 10, 3, 0, 41);
    expect(() => headRowsModel(c, 2)).toThrow(
      /^MatMulBnb4 LM head node MatMulBnb4_y has K=10, not a multiple of block_size 16: its blocks straddle rows of the weight; quantize the head with a block size dividing K, or keep it in float$/,
    );
  });

  it('MatMulNBits with g_idx (act-order)', () => {
    const c = matMulNBitsCase({ name: 'g_idx', K: 32, N: 4, bits: 4, blockSize: 16, zeroPoints: true, seed: 9 });
    const n = c.nodes[0] as NodeProto;
    n.input = [...(n.input ?? []), 'g_idx'];
    const model = forwardModel(
      {
        nodes: c.nodes,
        initializers: [...c.initializers, makeTensor('g_idx', DataType.INT32, [32], new Array(32).fill(0))],
      },
      c.a,
      DataType.FLOAT,
    );
    const b = new GraphBuilder(model, { prefix: 'grad' });
    expect(() => buildGradient(b, { output: 'y', wrt: ['a'] })).toThrow(
      /^MatMulNBits node MatMulNBits_y has g_idx \(act-order\); only weights quantized in K order are supported$/,
    );
  });
});

describe('DynamicQuantizeLinear → MatMulInteger → Cast → Mul fused into DynamicQuantizeMatMul', () => {
  // ONNX Runtime's dynamic quantizer writes this for every MatMul of a `_quantized` decoder
  const K = 6;
  const N = 4;
  const next = rng(31);
  const weight = randomBytes(next, K * N);
  const weight2 = randomBytes(next, K * N).map((v) => v - 128);
  const pattern = (): OnnxModel =>
    buildModel({
      inputs: [valueInfo('a', DataType.FLOAT, [2, 3, K])],
      outputs: [valueInfo('y', DataType.FLOAT), valueInfo('y2', DataType.FLOAT)],
      nodes: [
        node('DynamicQuantizeLinear', ['a'], ['aq', 'as', 'az']),
        node('MatMulInteger', ['aq', 'B', 'az', 'bz'], ['yi']),
        node('Cast', ['yi'], ['yf'], { to: DataType.FLOAT }),
        node('Mul', ['as', 'bs'], ['s']),
        node('Mul', ['yf', 's'], ['y']),
        // a second matmul on the same quantized input (q, k and v share one)
        node('MatMulInteger', ['aq', 'B2', 'az'], ['yi2']),
        node('Cast', ['yi2'], ['yf2'], { to: DataType.FLOAT }),
        node('Mul', ['bs2', 'as'], ['s2']),
        node('Mul', ['s2', 'yf2'], ['y2']),
      ],
      initializers: [
        makeTensor('B', DataType.UINT8, [K, N], weight),
        makeTensor('bz', DataType.UINT8, [], [131]),
        makeTensor('bs', DataType.FLOAT, [], [0.013]),
        makeTensor('B2', DataType.INT8, [K, N], weight2),
        makeTensor('bs2', DataType.FLOAT, [], [0.021]),
      ],
      opset: 17,
    });

  it('fuses both matmuls, drops the integer nodes and computes the same outputs', async () => {
    const original = pattern();
    const fused = pattern();
    expect(fuseDynamicQuantizeMatMul(fused)).toBe(2);
    expect(fused.graph.nodes.map((n) => n.opType)).toEqual(['DynamicQuantizeMatMul', 'DynamicQuantizeMatMul']);
    const a = makeOrtTensor(DataType.FLOAT, [2, 3, K], randomFloats(next, 2 * 3 * K, -1, 1));
    const want = await runModel(original, { a });
    const got = await runModel(readModel(writeModel(fused)), { a });
    for (const y of ['y', 'y2']) {
      expect(tensorValues(got[y] as ort.Tensor)).toEqual(tensorValues(want[y] as ort.Tensor));
    }
  });

  it('leaves a DynamicQuantizeLinear it cannot fuse, which autodiff then refuses by name', () => {
    const model = pattern();
    const cast = model.graph.nodes.find((n) => n.output?.[0] === 'yf') as NodeProto;
    cast.attribute = [makeAttribute('to', DataType.DOUBLE)];
    expect(fuseDynamicQuantizeMatMul(model)).toBe(1);
    const b = new GraphBuilder(model, { prefix: 'grad' });
    expect(() => buildGradient(b, { output: 'y', wrt: ['a'] })).toThrow(
      /no vector-Jacobian rule for DynamicQuantizeLinear/,
    );
  });
});
