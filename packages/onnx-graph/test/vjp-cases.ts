import type { AttrInput } from '../src/graph/attributes.js';
import { f } from '../src/graph/attributes.js';
import { DataType } from '../src/proto/types.js';

/**
 * One input of a finite-difference case.
 * - `float`: random in [-1, 1], differentiated.
 * - `positive`: random in [0.5, 1.5], differentiated (Log, Sqrt, divisors, ...).
 * - `away`: random in ±[0.3, 1], differentiated (kinks at 0, e.g. Relu).
 * - `fixed`: the given values, a float input that is not differentiated.
 * - `int64` / `bool`: the given values, fed as graph inputs.
 * - `const`: an int64 initializer with the given values (shapes, axes, indices).
 */
export interface CaseInput {
  kind: 'float' | 'positive' | 'away' | 'fixed' | 'int64' | 'bool' | 'const';
  shape: number[];
  values?: number[];
}

export interface VjpCase {
  /** Key of the rule in VJP_RULES this case covers. */
  rule: string;
  name: string;
  opType: string;
  domain?: string;
  /** Node inputs; null for an omitted optional input. */
  inputs: (CaseInput | null)[];
  attrs?: Record<string, AttrInput>;
  /** Number of node outputs (default 1). */
  outputs?: number;
  /** Outputs that get a random cotangent (default [0]). */
  graded?: number[];
  opset?: number;
  /** Finite differences in float64 (the op and its backward run in double on ORT's CPU). */
  double: boolean;
  /** Use the five-point stencil with a float32-sized step even for float64 inputs (float32 output). */
  fivePoint?: boolean;
  /** Node input i reads case input nodeInputs[i] (default: one case input per node input). */
  nodeInputs?: number[];
  /** Element type of the node's output when it differs from the inputs' (Cast). */
  outputType?: number;
}

const F = (shape: number[]): CaseInput => ({ kind: 'float', shape });
const P = (shape: number[]): CaseInput => ({ kind: 'positive', shape });
const C = (values: number[], shape = [values.length]): CaseInput => ({ kind: 'const', shape, values });

export const VJP_CASES: VjpCase[] = [
  { rule: 'Identity', name: 'Identity', opType: 'Identity', inputs: [F([2, 3])], double: true },
  { rule: 'Dropout', name: 'Dropout (inference)', opType: 'Dropout', inputs: [F([2, 3])], double: true },
  {
    rule: 'Add',
    name: 'Add same shape',
    opType: 'Add',
    inputs: [F([2, 3, 4]), F([2, 3, 4])],
    double: true,
  },
  { rule: 'Add', name: 'Add broadcast [4]', opType: 'Add', inputs: [F([2, 3, 4]), F([4])], double: true },
  {
    rule: 'Add',
    name: 'Add broadcast both ways',
    opType: 'Add',
    inputs: [F([2, 1, 4]), F([1, 3, 1])],
    double: true,
  },
  { rule: 'Add', name: 'Add scalar', opType: 'Add', inputs: [F([2, 3]), F([])], double: true },
  { rule: 'Sub', name: 'Sub broadcast', opType: 'Sub', inputs: [F([3, 4]), F([1, 4])], double: true },
  { rule: 'Sub', name: 'Sub lower rank first', opType: 'Sub', inputs: [F([4]), F([2, 3, 4])], double: true },
  { rule: 'Mul', name: 'Mul broadcast', opType: 'Mul', inputs: [F([2, 3, 4]), F([3, 1])], double: true },
  { rule: 'Mul', name: 'Mul scalar', opType: 'Mul', inputs: [F([2, 3]), F([])], double: true },
  {
    rule: 'Mul',
    name: 'Mul of a tensor with itself',
    opType: 'Mul',
    inputs: [F([2, 3])],
    nodeInputs: [0, 0],
    double: true,
  },
  { rule: 'Div', name: 'Div broadcast', opType: 'Div', inputs: [F([2, 3]), P([2, 1])], double: true },
  { rule: 'Div', name: 'Div lower rank numerator', opType: 'Div', inputs: [F([3]), P([2, 3])], double: true },
  {
    rule: 'Pow',
    name: 'Pow constant exponent 2',
    opType: 'Pow',
    inputs: [F([2, 3]), { kind: 'fixed', shape: [], values: [2] }],
    double: true,
  },
  {
    rule: 'Pow',
    name: 'Pow constant exponent 3.5',
    opType: 'Pow',
    inputs: [P([2, 3]), { kind: 'fixed', shape: [], values: [3.5] }],
    double: true,
  },
  { rule: 'Pow', name: 'Pow differentiable exponent', opType: 'Pow', inputs: [P([2, 3]), P([3])], double: true },
  { rule: 'Sqrt', name: 'Sqrt', opType: 'Sqrt', inputs: [P([2, 3])], double: true },
  { rule: 'Reciprocal', name: 'Reciprocal', opType: 'Reciprocal', inputs: [P([2, 3])], double: true },
  { rule: 'Neg', name: 'Neg', opType: 'Neg', inputs: [F([2, 3])], double: true },
  { rule: 'Exp', name: 'Exp', opType: 'Exp', inputs: [F([2, 3])], double: true },
  { rule: 'Log', name: 'Log', opType: 'Log', inputs: [P([2, 3])], double: true },
  { rule: 'Tanh', name: 'Tanh', opType: 'Tanh', inputs: [F([2, 3])], double: true },
  { rule: 'Sigmoid', name: 'Sigmoid', opType: 'Sigmoid', inputs: [F([2, 3])], double: true },
  { rule: 'Erf', name: 'Erf', opType: 'Erf', inputs: [F([2, 3])], double: false },
  { rule: 'Relu', name: 'Relu', opType: 'Relu', inputs: [{ kind: 'away', shape: [2, 4] }], double: true },
  {
    rule: 'Softmax',
    name: 'Softmax last axis',
    opType: 'Softmax',
    inputs: [F([2, 3, 5])],
    attrs: { axis: -1 },
    double: true,
  },
  {
    rule: 'Softmax',
    name: 'Softmax axis 1',
    opType: 'Softmax',
    inputs: [F([2, 3, 5])],
    attrs: { axis: 1 },
    double: true,
  },
  { rule: 'LogSoftmax', name: 'LogSoftmax', opType: 'LogSoftmax', inputs: [F([2, 5])], double: true },
  {
    rule: 'ReduceMean',
    name: 'ReduceMean last axis keepdims (attr axes, opset 17)',
    opType: 'ReduceMean',
    inputs: [F([2, 3, 4])],
    attrs: { axes: [-1], keepdims: 1 },
    double: true,
  },
  {
    rule: 'ReduceMean',
    name: 'ReduceMean two axes no keepdims',
    opType: 'ReduceMean',
    inputs: [F([2, 3, 4])],
    attrs: { axes: [0, 2], keepdims: 0 },
    double: true,
  },
  {
    rule: 'ReduceMean',
    name: 'ReduceMean all axes',
    opType: 'ReduceMean',
    inputs: [F([2, 3])],
    attrs: { keepdims: 0 },
    double: true,
  },
  {
    rule: 'ReduceMean',
    name: 'ReduceMean axes input (opset 18)',
    opType: 'ReduceMean',
    inputs: [F([2, 3, 4]), C([1])],
    attrs: { keepdims: 0 },
    opset: 18,
    double: true,
  },
  {
    rule: 'ReduceSum',
    name: 'ReduceSum axes input keepdims',
    opType: 'ReduceSum',
    inputs: [F([2, 3, 4]), C([1])],
    attrs: { keepdims: 1 },
    double: true,
  },
  {
    rule: 'ReduceSum',
    name: 'ReduceSum negative axes no keepdims',
    opType: 'ReduceSum',
    inputs: [F([2, 3, 4]), C([-1, 0])],
    attrs: { keepdims: 0 },
    double: true,
  },
  {
    rule: 'ReduceSum',
    name: 'ReduceSum all',
    opType: 'ReduceSum',
    inputs: [F([2, 3])],
    attrs: { keepdims: 0 },
    double: true,
  },
  {
    rule: 'ReduceMax',
    name: 'ReduceMax axis 1',
    opType: 'ReduceMax',
    inputs: [F([3, 4])],
    attrs: { axes: [1], keepdims: 0 },
    double: true,
  },
  {
    rule: 'ReduceMax',
    name: 'ReduceMax axes input (opset 18) keepdims',
    opType: 'ReduceMax',
    inputs: [F([3, 4]), C([0])],
    attrs: { keepdims: 1 },
    opset: 18,
    double: true,
  },
  {
    rule: 'ReduceMin',
    name: 'ReduceMin axis 0',
    opType: 'ReduceMin',
    inputs: [F([3, 4])],
    attrs: { axes: [0], keepdims: 1 },
    double: true,
  },
  {
    rule: 'Cast',
    name: 'Cast float to double',
    opType: 'Cast',
    inputs: [F([2, 3])],
    attrs: { to: DataType.DOUBLE },
    outputType: DataType.DOUBLE,
    double: false,
  },
  {
    rule: 'Cast',
    name: 'Cast double to float',
    opType: 'Cast',
    inputs: [F([2, 3])],
    attrs: { to: DataType.FLOAT },
    outputType: DataType.FLOAT,
    double: true,
    fivePoint: true,
  },
  { rule: 'Reshape', name: 'Reshape', opType: 'Reshape', inputs: [F([2, 3, 4]), C([4, 6])], double: true },
  {
    rule: 'Reshape',
    name: 'Reshape with 0 and -1',
    opType: 'Reshape',
    inputs: [F([2, 3, 4]), C([0, -1])],
    double: true,
  },
  {
    rule: 'Transpose',
    name: 'Transpose perm',
    opType: 'Transpose',
    inputs: [F([2, 3, 4])],
    attrs: { perm: [2, 0, 1] },
    double: true,
  },
  { rule: 'Transpose', name: 'Transpose default perm', opType: 'Transpose', inputs: [F([2, 3, 4])], double: true },
  { rule: 'Squeeze', name: 'Squeeze', opType: 'Squeeze', inputs: [F([2, 1, 3]), C([1])], double: true },
  {
    rule: 'Unsqueeze',
    name: 'Unsqueeze',
    opType: 'Unsqueeze',
    inputs: [F([2, 3]), C([0, 2])],
    double: true,
  },
  { rule: 'Flatten', name: 'Flatten', opType: 'Flatten', inputs: [F([2, 3, 4])], attrs: { axis: 2 }, double: true },
  {
    rule: 'Concat',
    name: 'Concat axis 1',
    opType: 'Concat',
    inputs: [F([2, 3]), F([2, 2])],
    attrs: { axis: 1 },
    double: true,
  },
  {
    rule: 'Concat',
    name: 'Concat negative axis with a fixed input',
    opType: 'Concat',
    inputs: [F([2, 3]), { kind: 'fixed', shape: [1, 3], values: [1, 2, 3] }, F([2, 3])],
    attrs: { axis: -2 },
    double: true,
  },
  {
    rule: 'Split',
    name: 'Split sizes input',
    opType: 'Split',
    inputs: [F([2, 6]), C([2, 4])],
    attrs: { axis: 1 },
    outputs: 2,
    graded: [0, 1],
    double: true,
  },
  {
    rule: 'Split',
    name: 'Split equal, one output unused',
    opType: 'Split',
    inputs: [F([6, 2])],
    attrs: { axis: 0, num_outputs: 3 },
    outputs: 3,
    graded: [0, 2],
    opset: 18,
    double: true,
  },
  {
    rule: 'Slice',
    name: 'Slice with steps',
    opType: 'Slice',
    inputs: [F([4, 6]), C([1, 0]), C([3, 5]), C([0, 1]), C([1, 2])],
    double: true,
  },
  {
    rule: 'Slice',
    name: 'Slice negative step',
    opType: 'Slice',
    inputs: [F([3, 5]), C([-1]), C([-100]), C([1]), C([-2])],
    double: true,
  },
  {
    rule: 'Gather',
    name: 'Gather axis 0 with repeats',
    opType: 'Gather',
    inputs: [F([5, 3]), { kind: 'int64', shape: [4], values: [0, 2, 2, 4] }],
    attrs: { axis: 0 },
    double: true,
  },
  {
    rule: 'Gather',
    name: 'Gather axis 1, 2-D indices, negative index',
    opType: 'Gather',
    inputs: [F([2, 5, 3]), { kind: 'int64', shape: [2, 2], values: [1, -2, 3, 0] }],
    attrs: { axis: 1 },
    double: true,
  },
  {
    rule: 'Gather',
    name: 'Gather axis 2 (opset 14: one-hot path)',
    opType: 'Gather',
    inputs: [F([2, 3, 4]), { kind: 'int64', shape: [3], values: [3, 1, 3] }],
    attrs: { axis: 2 },
    opset: 14,
    double: false,
  },
  { rule: 'Expand', name: 'Expand', opType: 'Expand', inputs: [F([3, 1]), C([2, 3, 4])], double: true },
  { rule: 'Expand', name: 'Expand from [1]', opType: 'Expand', inputs: [F([1]), C([3])], double: true },
  {
    rule: 'Where',
    name: 'Where with broadcast',
    opType: 'Where',
    inputs: [{ kind: 'bool', shape: [2, 3], values: [1, 0, 1, 0, 0, 1] }, F([2, 3]), F([3])],
    double: true,
  },
  { rule: 'MatMul', name: 'MatMul 2-D', opType: 'MatMul', inputs: [F([3, 4]), F([4, 5])], double: true },
  { rule: 'MatMul', name: 'MatMul batched x 2-D', opType: 'MatMul', inputs: [F([2, 3, 4]), F([4, 5])], double: true },
  {
    rule: 'MatMul',
    name: 'MatMul broadcast batch both',
    opType: 'MatMul',
    inputs: [F([2, 1, 3, 4]), F([5, 4, 2])],
    double: true,
  },
  { rule: 'MatMul', name: 'MatMul vector x matrix', opType: 'MatMul', inputs: [F([4]), F([2, 4, 5])], double: true },
  { rule: 'MatMul', name: 'MatMul matrix x vector', opType: 'MatMul', inputs: [F([3, 4]), F([4])], double: true },
  { rule: 'MatMul', name: 'MatMul vector x vector', opType: 'MatMul', inputs: [F([4]), F([4])], double: true },
  {
    rule: 'Gemm',
    name: 'Gemm with bias',
    opType: 'Gemm',
    inputs: [F([3, 4]), F([4, 5]), F([5])],
    double: true,
  },
  {
    rule: 'Gemm',
    name: 'Gemm transposed, alpha, beta, full C',
    opType: 'Gemm',
    inputs: [F([4, 3]), F([5, 4]), F([3, 5])],
    attrs: { transA: 1, transB: 1, alpha: f(0.7), beta: f(1.3) },
    double: true,
  },
  {
    rule: 'Gemm',
    name: 'Gemm transA only, no C',
    opType: 'Gemm',
    inputs: [F([4, 3]), F([4, 5])],
    attrs: { transA: 1 },
    double: true,
  },
  {
    rule: 'LayerNormalization',
    name: 'LayerNormalization last axis',
    opType: 'LayerNormalization',
    inputs: [F([2, 3, 8]), P([8]), F([8])],
    attrs: { axis: -1, epsilon: f(1e-5) },
    double: true,
  },
  {
    rule: 'LayerNormalization',
    name: 'LayerNormalization axis 1, no bias',
    opType: 'LayerNormalization',
    inputs: [F([2, 3, 4]), P([3, 4])],
    attrs: { axis: 1 },
    double: true,
  },
  {
    rule: 'SimplifiedLayerNormalization',
    name: 'SimplifiedLayerNormalization (RMSNorm)',
    opType: 'SimplifiedLayerNormalization',
    inputs: [F([2, 3, 8]), P([8])],
    attrs: { axis: -1, epsilon: f(1e-6) },
    double: true,
  },
  {
    rule: 'com.microsoft:SkipSimplifiedLayerNormalization',
    name: 'SkipSimplifiedLayerNormalization with bias, both outputs',
    opType: 'SkipSimplifiedLayerNormalization',
    domain: 'com.microsoft',
    inputs: [F([2, 3, 8]), F([2, 3, 8]), P([8]), F([8])],
    attrs: { epsilon: f(1e-6) },
    outputs: 4,
    graded: [0, 3],
    double: false,
  },
  {
    rule: 'com.microsoft:SkipLayerNormalization',
    name: 'SkipLayerNormalization with beta and bias',
    opType: 'SkipLayerNormalization',
    domain: 'com.microsoft',
    inputs: [F([2, 3, 8]), F([2, 3, 8]), P([8]), F([8]), F([8])],
    attrs: { epsilon: f(1e-5) },
    double: false,
  },
  {
    rule: 'Gelu',
    name: 'Gelu (opset 20, exact)',
    opType: 'Gelu',
    inputs: [F([2, 5])],
    opset: 20,
    double: false,
  },
  {
    rule: 'Gelu',
    name: 'Gelu (opset 20, tanh)',
    opType: 'Gelu',
    inputs: [F([2, 5])],
    attrs: { approximate: 'tanh' },
    opset: 20,
    double: true,
  },
  {
    rule: 'com.microsoft:Gelu',
    name: 'com.microsoft Gelu',
    opType: 'Gelu',
    domain: 'com.microsoft',
    inputs: [F([2, 5])],
    double: false,
  },
  {
    rule: 'com.microsoft:BiasGelu',
    name: 'com.microsoft BiasGelu',
    opType: 'BiasGelu',
    domain: 'com.microsoft',
    inputs: [F([2, 5]), F([5])],
    double: false,
  },
  {
    rule: 'com.microsoft:FastGelu',
    name: 'com.microsoft FastGelu with bias',
    opType: 'FastGelu',
    domain: 'com.microsoft',
    inputs: [F([2, 5]), F([5])],
    double: false,
  },
  {
    rule: 'com.microsoft:QuickGelu',
    name: 'com.microsoft QuickGelu',
    opType: 'QuickGelu',
    domain: 'com.microsoft',
    inputs: [F([2, 5])],
    attrs: { alpha: f(1.702) },
    double: false,
  },
];
