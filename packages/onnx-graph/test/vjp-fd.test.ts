import type * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGradient } from '../src/autodiff/gradient.js';
import { QUANTIZED_VJP_RULES } from '../src/autodiff/quantized.js';
import { VJP_RULES } from '../src/autodiff/rules.js';
import { makeAttribute } from '../src/graph/attributes.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import { floatToHalf, halfToFloat, makeTensor } from '../src/proto/tensor.js';
import { DataType, type NodeProto, type TensorProto, type ValueInfoProto } from '../src/proto/types.js';
import { buildModel, makeOrtTensor, rng, runModel, tensorValues, valueInfo } from './helpers/onnx.js';
import { type CaseInput, VJP_CASES, type VjpCase } from './vjp-cases.js';

const DIFFERENTIABLE = new Set(['float', 'positive', 'away']);
const FD_TOLERANCE = 1e-3;
const FP16_TOLERANCE = 5e-3;

interface Built {
  forward: OnnxModel;
  gradient: OnnxModel;
  /** case-input index -> gradient output name */
  gradOutputs: Map<number, string>;
  outputNames: string[];
}

function inputName(i: number): string {
  return `x${i}`;
}

function sampleInput(inp: CaseInput, next: () => number): number[] {
  const n = inp.shape.reduce((a, b) => a * b, 1);
  switch (inp.kind) {
    case 'float':
      return Array.from({ length: n }, () => next() * 2 - 1);
    case 'positive':
      return Array.from({ length: n }, () => 0.5 + next());
    case 'away':
      return Array.from({ length: n }, () => (next() < 0.5 ? -1 : 1) * (0.3 + 0.7 * next()));
    default:
      return inp.values ?? [];
  }
}

function forwardSpec(c: VjpCase, dtype: number, fixedValues: Map<number, number[]>) {
  const inputs: ValueInfoProto[] = [];
  const initializers: TensorProto[] = [];
  c.inputs.forEach((inp, i) => {
    if (!inp) return;
    const name = inputName(i);
    if (inp.kind === 'const') initializers.push(makeTensor(name, DataType.INT64, inp.shape, inp.values ?? []));
    else if (inp.kind === 'fixed') initializers.push(makeTensor(name, dtype, inp.shape, fixedValues.get(i) ?? []));
    else if (inp.kind === 'int64') inputs.push(valueInfo(name, DataType.INT64, inp.shape));
    else if (inp.kind === 'bool') inputs.push(valueInfo(name, DataType.BOOL, inp.shape));
    else inputs.push(valueInfo(name, dtype, inp.shape));
  });
  const mapping = c.nodeInputs ?? c.inputs.map((_, i) => i);
  const outputNames = Array.from({ length: c.outputs ?? 1 }, (_, k) => `y${k}`);
  const graded = c.graded ?? [0];
  const node: NodeProto = {
    name: 'node',
    opType: c.opType,
    input: mapping.map((i) => (c.inputs[i] ? inputName(i) : '')),
    output: outputNames,
    attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => makeAttribute(k, v)),
  };
  if (c.domain) node.domain = c.domain;
  let outType = c.outputType ?? dtype;
  if (c.outputType !== undefined && dtype === DataType.FLOAT16 && c.outputType === DataType.FLOAT)
    outType = DataType.FLOAT;
  const outputs = graded.map((k) => valueInfo(outputNames[k] as string, outType));
  return {
    spec: {
      inputs,
      outputs,
      nodes: [node],
      initializers,
      opset: c.opset ?? 17,
      contrib: c.domain === 'com.microsoft',
    },
    outputNames,
    graded,
    outType,
  };
}

function build(c: VjpCase, dtype: number, outShapes: number[][], fixedValues: Map<number, number[]>): Built {
  const { spec, outputNames, graded, outType } = forwardSpec(c, dtype, fixedValues);
  const forward = buildModel(spec);
  const gradient = readModel(writeModel(forward));
  const b = new GraphBuilder(gradient, { prefix: 'grad' });
  const wrt: string[] = [];
  c.inputs.forEach((inp, i) => {
    if (inp && DIFFERENTIABLE.has(inp.kind)) wrt.push(inputName(i));
  });
  const seeds = graded.map((k, j) => {
    const name = `dy${k}`;
    gradient.graph.proto.input?.push(valueInfo(name, outType, outShapes[j]));
    gradient.graph.invalidate();
    b.shapes.set(name, { type: outType, shape: outShapes[j] });
    return name;
  });
  let grads: Map<string, string>;
  if (graded.length === 1) {
    grads = buildGradient(b, { output: outputNames[graded[0] as number] as string, wrt, seed: seeds[0] });
  } else {
    const terms = graded.map((k, j) =>
      b.reduce('ReduceSum', b.op('Mul', [outputNames[k] as string, seeds[j] as string]), undefined, false),
    );
    let loss = terms[0] as string;
    for (let j = 1; j < terms.length; j++) loss = b.op('Add', [loss, terms[j] as string]);
    grads = buildGradient(b, { output: loss, wrt });
  }
  const gradOutputs = new Map<number, string>();
  c.inputs.forEach((inp, i) => {
    if (!inp || !DIFFERENTIABLE.has(inp.kind)) return;
    const gname = grads.get(inputName(i)) as string;
    const out = gradient.graph.uniqueTensorName(`grad_x${i}`);
    b.model.graph.addNode({ name: `out_${i}`, opType: 'Identity', input: [gname], output: [out] });
    gradient.graph.proto.output?.push(valueInfo(out, dtype));
    gradOutputs.set(i, out);
  });
  gradient.graph.invalidate();
  return {
    forward: readModel(writeModel(forward)),
    gradient: readModel(writeModel(gradient)),
    gradOutputs,
    outputNames: graded.map((k) => outputNames[k] as string),
  };
}

function feedsFor(c: VjpCase, dtype: number, values: Map<number, number[]>): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  c.inputs.forEach((inp, i) => {
    if (!inp || inp.kind === 'const' || inp.kind === 'fixed') return;
    const type = inp.kind === 'int64' ? DataType.INT64 : inp.kind === 'bool' ? DataType.BOOL : dtype;
    feeds[inputName(i)] = makeOrtTensor(type, inp.shape, values.get(i) ?? []);
  });
  return feeds;
}

function maxAbs(a: number[]): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

function relError(got: number[], want: number[]): number {
  const scale = Math.max(maxAbs(want), 1e-8);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
  return worst / scale;
}

const results: { name: string; fd: number; fp16?: number; precision: string }[] = [];

describe('VJP rule table', () => {
  it('has a finite-difference case for every rule', () => {
    const covered = new Set(VJP_CASES.map((c) => c.rule));
    // the quantized matmuls' rules have cases of their own (vjp-quantized.test.ts)
    const missing = Object.keys(VJP_RULES).filter((k) => !covered.has(k) && !(k in QUANTIZED_VJP_RULES));
    expect(missing).toEqual([]);
  });
});

describe('VJP rules against central finite differences (onnxruntime-node)', () => {
  afterAll(() => {
    const worst = results.reduce((m, r) => Math.max(m, r.fd), 0);
    const worst16 = results.reduce((m, r) => Math.max(m, r.fp16 ?? 0), 0);
    console.log(
      [
        'VJP finite-difference relative errors (max |analytic - numeric| / max |numeric|):',
        ...results.map(
          (r) =>
            `  ${r.name.padEnd(58)} ${r.precision.padEnd(7)} ${r.fd.toExponential(2)}${r.fp16 !== undefined ? `   fp16 vs ${r.precision}: ${r.fp16.toExponential(2)}` : ''}`,
        ),
        `  worst: ${worst.toExponential(2)} (${results.length} cases), worst fp16: ${worst16.toExponential(2)}`,
      ].join('\n'),
    );
  });

  VJP_CASES.forEach((c, caseIndex) => {
    it(`${c.rule}: ${c.name}`, async () => {
      const dtype = c.double ? DataType.DOUBLE : DataType.FLOAT;
      const next = rng(1000 + caseIndex);
      const values = new Map<number, number[]>();
      c.inputs.forEach((inp, i) => {
        if (inp) values.set(i, sampleInput(inp, next));
      });
      const fixed = new Map<number, number[]>();
      c.inputs.forEach((inp, i) => {
        if (inp?.kind === 'fixed') fixed.set(i, inp.values ?? []);
      });

      // forward once for output shapes and cotangents
      const probe = build(c, dtype, [], fixed);
      const out0 = await runModel(probe.forward, feedsFor(c, dtype, values));
      const outShapes = probe.outputNames.map((o) => [...((out0[o] as ort.Tensor).dims as number[])]);
      const built = build(c, dtype, outShapes, fixed);
      const cot = outShapes.map((s) => Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => next() * 2 - 1));
      const outType = c.outputType ?? dtype;
      const seedFeeds = (type: number, cotangents: number[][]) => {
        const feeds: Record<string, ort.Tensor> = {};
        (c.graded ?? [0]).forEach((k, j) => {
          feeds[`dy${k}`] = makeOrtTensor(type, outShapes[j] as number[], cotangents[j] as number[]);
        });
        return feeds;
      };

      const loss = async (vals: Map<number, number[]>): Promise<number> => {
        const out = await runModel(built.forward, feedsFor(c, dtype, vals));
        let s = 0;
        built.outputNames.forEach((o, j) => {
          const y = tensorValues(out[o] as ort.Tensor);
          const d = cot[j] as number[];
          for (let k = 0; k < y.length; k++) s += (y[k] as number) * (d[k] as number);
        });
        return s;
      };

      const analytic = await runModel(built.gradient, {
        ...feedsFor(c, dtype, values),
        ...seedFeeds(outType, cot),
      });

      let worst = 0;
      for (const [i, gname] of built.gradOutputs) {
        const base = values.get(i) as number[];
        const numeric: number[] = [];
        for (let k = 0; k < base.length; k++) {
          const at = async (delta: number) => {
            const v = new Map(values);
            const p = [...base];
            p[k] = (p[k] as number) + delta;
            v.set(i, p);
            return loss(v);
          };
          if (c.double && !c.fivePoint) {
            const h = 1e-6;
            numeric.push(((await at(h)) - (await at(-h))) / (2 * h));
          } else {
            const h = 4e-3;
            const [m2, m1, p1, p2] = [await at(-2 * h), await at(-h), await at(h), await at(2 * h)];
            numeric.push((m2 - 8 * m1 + 8 * p1 - p2) / (12 * h));
          }
        }
        const got = tensorValues(analytic[gname] as ort.Tensor);
        expect(got.length).toBe(numeric.length);
        worst = Math.max(worst, relError(got, numeric));
      }
      const record: { name: string; fd: number; fp16?: number; precision: string } = {
        name: `${c.rule}: ${c.name}`,
        fd: worst,
        precision: c.double ? 'float64' : 'float32',
      };
      expect(worst).toBeLessThan(FD_TOLERANCE);

      // the same backward graph built in float16, against the reference precision at the same
      // (half-rounded) inputs
      const round = (v: number[]) => v.map((x) => halfToFloat(floatToHalf(x)));
      const v16 = new Map<number, number[]>();
      for (const [i, v] of values) {
        const inp = c.inputs[i] as CaseInput;
        v16.set(i, DIFFERENTIABLE.has(inp.kind) ? round(v) : v);
      }
      const cot16 = cot.map(round);
      const half = build(c, DataType.FLOAT16, outShapes, fixed);
      const ref = await runModel(built.gradient, { ...feedsFor(c, dtype, v16), ...seedFeeds(outType, cot16) });
      const outType16 = c.outputType ?? DataType.FLOAT16;
      const got16 = await runModel(half.gradient, {
        ...feedsFor(c, DataType.FLOAT16, v16),
        ...seedFeeds(outType16, cot16),
      });
      let worst16 = 0;
      for (const [i, gname] of built.gradOutputs) {
        const want = tensorValues(ref[gname] as ort.Tensor);
        const got = tensorValues(got16[half.gradOutputs.get(i) as string] as ort.Tensor);
        worst16 = Math.max(worst16, relError(got, want));
      }
      record.fp16 = worst16;
      expect(worst16).toBeLessThan(FP16_TOLERANCE);
      results.push(record);
    });
  });
});
