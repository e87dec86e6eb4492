/**
 * Checks a decoder graph before anything reads sizes or attributes from it: what a hostile or
 * damaged file can make the explain-graph build allocate or index out of range is bounded here,
 * with a typed, one-line error naming the node and its op. Run once, at the start of hook finding.
 *
 * - every op is one dexar knows (standard ONNX, or com.microsoft's few element-wise ones), with
 *   the number of inputs its definition allows;
 * - no tensor is defined twice;
 * - `axis`, `axes` and `perm` attributes lie within the rank (of the input, where shape inference
 *   knows it; within `MAX_RANK` always), and `perm` is a permutation;
 * - every stored tensor (initializers, Constant values) has at most `MAX_RANK` dims of at most
 *   `MAX_ELEMENTS` elements in all, and holds as many values as its dims say.
 */
import { GraphError, ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { OnnxModel } from '../model.js';
import { toNumber } from '../proto/int64.js';
import { dataTypeSize, isExternal } from '../proto/tensor.js';
import type { NodeProto, TensorProto } from '../proto/types.js';
import { attrInts, getAttribute } from './attributes.js';
import { ShapeInference } from './shapes.js';

/** Dimensions a tensor may have: ONNX Runtime's own limit is far lower in practice. */
export const MAX_RANK = 64;
/** Elements a stored tensor may hold: 2^31 - 1, the most a typed array index reaches in every engine. */
export const MAX_ELEMENTS = 2 ** 31 - 1;

const ANY = Number.POSITIVE_INFINITY;
const arity = (ops: string, min: number, max: number) => ops.split(' ').map((op) => [op, [min, max]] as const);

/** Inputs each known op takes, `[min, max]`; an op missing here is one dexar does not know. */
const ARITY: ReadonlyMap<string, readonly [number, number]> = new Map([
  ...arity('Constant', 0, 0),
  ...arity(
    'Abs Ceil Cos Elu Erf Exp Floor Identity Log Neg Not Reciprocal Relu Round Sigmoid Sign Sin Softplus Softsign Sqrt Tanh ' +
      'IsInf IsNaN Gelu Celu HardSigmoid HardSwish LeakyRelu Mish Selu ThresholdedRelu QuickGelu Shape Size Softmax LogSoftmax ' +
      'Hardmax Transpose Flatten NonZero Cast ArgMax ArgMin LpNormalization ConstantOfShape If',
    1,
    1,
  ),
  ...arity(
    'Add Sub Mul Div Pow Mod Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor MatMul BitShift PRelu CastLike ' +
      'Expand Reshape Tile Gather GatherElements CumSum BiasGelu',
    2,
    2,
  ),
  ...arity('Where Range OneHot Scatter ScatterElements ScatterND', 3, 3),
  ...arity('Dropout Clip', 1, 3),
  ...arity('FastGelu Squeeze Unsqueeze Split Trilu', 1, 2),
  ...arity('ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare', 1, 2),
  ...arity('Slice', 1, 5),
  ...arity('Pad', 1, 4),
  ...arity('Gemm LayerNormalization', 2, 3),
  ...arity('SimplifiedLayerNormalization', 1, 2),
  ...arity('SkipLayerNormalization', 3, 5),
  ...arity('SkipSimplifiedLayerNormalization', 3, 4),
  ...arity('MatMulInteger', 2, 4),
  // quantized matmuls (autodiff/quantized.ts)
  ...arity('DynamicQuantizeLinear', 1, 1),
  ...arity('QuantizeLinear DequantizeLinear', 2, 3),
  ...arity('MatMulBnb4', 3, 3),
  ...arity('DynamicQuantizeMatMul', 3, 5),
  ...arity('MatMulNBits', 3, 6),
  // fused attention (graph/fused-attention.ts expands the first three; RotaryEmbedding runs as it is)
  ...arity('MultiHeadAttention', 1, 10),
  ...arity('GroupQueryAttention', 7, 16),
  ...arity('Attention', 2, 7),
  ...arity('RotaryEmbedding', 3, 4),
  ...arity('Concat Sum Mean Max Min Einsum Scan', 1, ANY),
  ...arity('Loop', 2, ANY),
]);

/** Ops whose `axis` indexes the input's dims: `[-r, r)`, or `[-r, r]` where the axis may be one past the last. */
const AXIS_WITHIN = new Set(
  'Concat Softmax LogSoftmax Hardmax Gather GatherElements Split ArgMax ArgMin LayerNormalization Scatter ScatterElements CumSum'.split(
    ' ',
  ),
);
const AXIS_UP_TO = new Set(['Flatten', 'OneHot']);

const describe = (n: NodeProto) => `node ${n.name || '(unnamed)'} (${n.opType || 'no op'})`;
const invalid = (n: NodeProto, problem: string) =>
  new GraphError(`${describe(n)} ${problem}: the graph is invalid; export it again`);

function checkTensor(t: TensorProto, owner: string): void {
  const dims = (t.dims ?? []).map(toNumber);
  const where = `${owner} tensor ${t.name || '(unnamed)'}`;
  if (dims.length > MAX_RANK)
    throw new ModelFormatError(`${where} has ${dims.length} dims, over ${MAX_RANK}: export the model again`);
  let elements = 1;
  for (const d of dims) {
    if (!(Number.isSafeInteger(d) && d >= 0))
      throw new ModelFormatError(`${where} has a dim of ${d}: export the model again`);
    elements *= d;
  }
  if (elements > MAX_ELEMENTS) {
    throw new ModelFormatError(`${where} declares ${elements} elements, over ${MAX_ELEMENTS}: export the model again`);
  }
  if (isExternal(t)) return;
  const size = dataTypeSize(t.dataType ?? 0);
  const stored = t.rawData?.length
    ? t.rawData.length / (size || 1)
    : (t.floatData?.length ?? 0) +
      (t.int32Data?.length ?? 0) +
      (t.int64Data?.length ?? 0) +
      (t.doubleData?.length ?? 0) +
      (t.uint64Data?.length ?? 0) +
      (t.stringData?.length ?? 0);
  // int32_data packs 16-bit and smaller types one per entry, so element counts compare directly
  if (size > 0 && stored !== elements) {
    throw new ModelFormatError(
      `${where} declares ${elements} elements but holds ${stored}: the model is truncated or corrupt; export it again`,
    );
  }
}

/** Attribute checks that need no shapes, run before shape inference reads the attributes. */
function checkAttributeBounds(n: NodeProto): void {
  const axisAttribute = getAttribute(n, 'axis');
  const axis = axisAttribute ? toNumber(axisAttribute.i) : 0;
  if (!(Number.isSafeInteger(axis) && Math.abs(axis) <= MAX_RANK)) {
    throw invalid(n, `has axis ${axis}, outside ${-MAX_RANK}..${MAX_RANK}`);
  }
  for (const a of attrInts(n, 'axes') ?? []) {
    if (!(Number.isSafeInteger(a) && Math.abs(a) <= MAX_RANK)) {
      throw invalid(n, `has an axis of ${a}, outside ${-MAX_RANK}..${MAX_RANK}`);
    }
  }
  const perm = attrInts(n, 'perm');
  if (perm && (perm.length > MAX_RANK || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))) {
    const shown = `${perm.slice(0, 8).join(', ')}${perm.length > 8 ? ', ...' : ''}`;
    throw invalid(n, `has perm [${shown}], not a permutation of 0..${perm.length - 1}`);
  }
}

/** Attribute checks against the rank of the node's first input, where shape inference knows it. */
function checkAttributesAgainstRank(n: NodeProto, rank: number): void {
  const op = n.opType ?? '';
  const axisAttribute = getAttribute(n, 'axis');
  if (axisAttribute && (AXIS_WITHIN.has(op) || AXIS_UP_TO.has(op))) {
    const axis = toNumber(axisAttribute.i);
    const upper = AXIS_UP_TO.has(op) ? rank : rank - 1;
    const lower = op === 'OneHot' ? -(rank + 1) : -rank;
    if (axis < lower || axis > upper)
      throw invalid(n, `has axis ${axis}, outside ${lower}..${upper} for its rank-${rank} input`);
  }
  const perm = attrInts(n, 'perm');
  if (perm && perm.length !== rank) throw invalid(n, `has a perm of ${perm.length} axes for its rank-${rank} input`);
}

/**
 * Refuses a tensor defined twice (two node outputs, or a node output that is also an input or
 * initializer): later passes would follow one definition and lose the other. `readModel` runs it
 * before looking for undefined references, so the problem is named as it is.
 */
export function checkUniqueDefinitions(model: OnnxModel): void {
  const defined = new Map<string, string>();
  for (const t of model.graph.proto.initializer ?? []) if (t.name) defined.set(t.name, 'an initializer');
  for (const v of model.graph.proto.input ?? [])
    if (v.name && !defined.has(v.name)) defined.set(v.name, 'a graph input');
  for (const n of model.graph.nodes) {
    for (const o of n.output ?? []) {
      if (!o) continue;
      const earlier = defined.get(o);
      if (earlier) throw invalid(n, `defines tensor ${o}, which ${earlier} defines already`);
      defined.set(o, describe(n));
    }
  }
}

/**
 * Throws the first problem of `model`'s main graph (see the module comment). Returns the shape
 * inference the checks ran, for a caller that goes on with the graph as it is.
 */
export function validateGraph(model: OnnxModel): ShapeInference {
  const g = model.graph;
  for (const t of g.proto.initializer ?? []) checkTensor(t, 'initializer');
  checkUniqueDefinitions(model);
  for (const n of g.nodes) {
    const op = n.opType ?? '';
    const domain = n.domain ?? '';
    const known = ARITY.get(op);
    if (!known || !(domain === '' || domain === 'ai.onnx' || domain === 'com.microsoft')) {
      throw new UnsupportedModelError(
        `${describe(n)}${domain ? ` in domain ${domain}` : ''} is an op dexar does not know: export the decoder with standard ONNX ops`,
      );
    }
    const inputs = (n.input ?? []).length;
    if (inputs < known[0] || inputs > known[1]) {
      const takes = known[0] === known[1] ? `${known[0]}` : `${known[0]} to ${known[1]}`;
      throw invalid(n, `has ${inputs} inputs where ${op} takes ${takes}`);
    }
    for (const a of n.attribute ?? []) if (a.t) checkTensor(a.t, `${describe(n)} attribute`);
    checkAttributeBounds(n);
  }
  const shapes = new ShapeInference(g, model.opsetVersion() ?? 17);
  for (const n of g.nodes) {
    const rank = n.input?.[0] ? shapes.rank(n.input[0]) : undefined;
    if (rank !== undefined) checkAttributesAgainstRank(n, rank);
  }
  return shapes;
}
