import { AutodiffError } from '../errors.js';
import { attrFloat, attrInt, attrInts, attrString, f } from '../graph/attributes.js';
import type { GraphBuilder } from '../graph/builder.js';
import { DataType, type NodeProto } from '../proto/types.js';
import { timesTransposed } from './products.js';
import { QUANTIZED_VJP_RULES } from './quantized.js';
import { unbroadcast } from './unbroadcast.js';

/**
 * What a vector-Jacobian rule sees: the builder to emit backward nodes with, the forward node, and
 * which inputs need a gradient (rules skip the others; a weight's gradient is never built).
 */
export interface VjpContext {
  readonly b: GraphBuilder;
  readonly node: NodeProto;
  /** Input names (an omitted optional input is ''). */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** True when input `i` lies on a path to the differentiated output. */
  needs(i: number): boolean;
}

/**
 * A vector-Jacobian rule: given the gradients of the node's outputs (undefined where none flows),
 * return one gradient per input (undefined where none is needed or the input is not
 * differentiable).
 */
export type VjpRule = (ctx: VjpContext, grads: readonly (string | undefined)[]) => (string | undefined)[];

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

function rankOf(ctx: VjpContext, t: string): number {
  const r = ctx.b.rank(t);
  if (r === undefined) {
    throw new AutodiffError(
      `the rank of tensor ${t} (input of ${ctx.node.opType} node ${ctx.node.name ?? ''}) is unknown; add value_info with its shape`,
    );
  }
  return r;
}

export function only(ctx: VjpContext, grads: readonly (string | undefined)[]): string {
  const g = grads[0];
  if (g === undefined) {
    throw new AutodiffError(`internal: no output gradient for ${ctx.node.opType} node ${ctx.node.name ?? ''}`);
  }
  return g;
}

/** Swaps the last two axes of a tensor of rank r >= 2. */
function swapLast(b: GraphBuilder, x: string, r: number): string {
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return b.op('Transpose', [x], { perm });
}

/** Reads the reduction axes of a Reduce* node: constant list, tensor name, or undefined (= all). */
function reduceAxes(ctx: VjpContext): number[] | string | undefined {
  const { node, b } = ctx;
  const op = node.opType ?? '';
  const fromInput = op === 'ReduceSum' ? b.opset >= 13 : b.opset >= 18;
  if (!fromInput) return attrInts(node, 'axes');
  const t = ctx.inputs[1];
  if (!t) return undefined;
  const v = b.info(t).value;
  if (v?.every((x) => typeof x === 'number')) return v as number[];
  return t;
}

/** Gradient of a reduction's output made broadcastable to the input again (keepdims restored). */
function restoreReduced(ctx: VjpContext, g: string, axes: number[] | string | undefined): string {
  const keep = attrInt(ctx.node, 'keepdims', 1);
  if (keep || axes === undefined || (Array.isArray(axes) && axes.length === 0)) return g;
  return ctx.b.unsqueeze(g, axes);
}

function isEmptyAxes(axes: number[] | string | undefined): boolean {
  return axes === undefined || (Array.isArray(axes) && axes.length === 0);
}

/** Normalisation axes [axis, ..., -1] written with negative indices (no rank needed). */
function trailingAxes(axis: number, rank: number | undefined): number[] {
  if (axis < 0) return Array.from({ length: -axis }, (_, i) => axis + i);
  if (rank === undefined) throw new AutodiffError('LayerNormalization with a positive axis needs a known input rank');
  return Array.from({ length: rank - axis }, (_, i) => axis + i - rank);
}

/** Compute type for normalisation backward: float32 when the input is half precision. */
function statType(b: GraphBuilder, x: string): number {
  const t = b.dtype(x);
  return t === DataType.FLOAT16 || t === DataType.BFLOAT16 ? DataType.FLOAT : t;
}

/**
 * Backward of y = (x - mean) * rstd * scale [+ bias] over `axes` (`rms`: no centring). Returns the
 * input gradient and xhat (for the scale gradient), in the compute type.
 */
function normBackward(
  b: GraphBuilder,
  x: string,
  g: string,
  scale: string | undefined,
  axes: number[],
  eps: number,
  rms: boolean,
): { dx: string; xhat: string } {
  const ct = statType(b, x);
  const xc0 = b.cast(x, ct);
  const gc = b.cast(g, ct);
  const xc = rms ? xc0 : b.op('Sub', [xc0, b.reduce('ReduceMean', xc0, axes, true)]);
  const variance = b.reduce('ReduceMean', b.op('Mul', [xc, xc]), axes, true);
  const rstd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.scalar(eps, ct)])])]);
  const xhat = b.op('Mul', [xc, rstd]);
  const gs = scale ? b.op('Mul', [gc, b.cast(scale, ct)]) : gc;
  const proj = b.reduce('ReduceMean', b.op('Mul', [gs, xhat]), axes, true);
  let inner = b.op('Sub', [gs, b.op('Mul', [xhat, proj])]);
  if (!rms) inner = b.op('Sub', [inner, b.reduce('ReduceMean', gs, axes, true)]);
  const dx = b.op('Mul', [rstd, inner]);
  return { dx, xhat };
}

/** d gelu(x) / dx for the erf form. */
function geluErfDerivative(b: GraphBuilder, x: string): string {
  const half = b.scalarLike(0.5, x);
  const cdf = b.op('Mul', [
    half,
    b.op('Add', [b.scalarLike(1, x), b.op('Erf', [b.op('Mul', [x, b.scalarLike(INV_SQRT_2, x)])])]),
  ]);
  const pdf = b.op('Mul', [
    b.scalarLike(INV_SQRT_2PI, x),
    b.op('Exp', [b.op('Mul', [b.op('Mul', [x, x]), b.scalarLike(-0.5, x)])]),
  ]);
  return b.op('Add', [cdf, b.op('Mul', [x, pdf])]);
}

/** d gelu(x) / dx for the tanh approximation. */
function geluTanhDerivative(b: GraphBuilder, x: string): string {
  const c = b.scalarLike(0.044715, x);
  const x2 = b.op('Mul', [x, x]);
  const u = b.op('Mul', [b.scalarLike(SQRT_2_OVER_PI, x), b.op('Add', [x, b.op('Mul', [c, b.op('Mul', [x2, x])])])]);
  const t = b.op('Tanh', [u]);
  const one = b.scalarLike(1, x);
  const du = b.op('Mul', [
    b.scalarLike(SQRT_2_OVER_PI, x),
    b.op('Add', [one, b.op('Mul', [b.scalarLike(3 * 0.044715, x), x2])]),
  ]);
  const left = b.op('Mul', [b.scalarLike(0.5, x), b.op('Add', [one, t])]);
  const right = b.op('Mul', [
    b.op('Mul', [b.scalarLike(0.5, x), x]),
    b.op('Mul', [b.op('Sub', [one, b.op('Mul', [t, t])]), du]),
  ]);
  return b.op('Add', [left, right]);
}

const identityRule: VjpRule = (ctx, grads) => [only(ctx, grads)];

const reshapeLike: VjpRule = (ctx, grads) => {
  const g = only(ctx, grads);
  const x = ctx.inputs[0] as string;
  return [ctx.b.op('Reshape', [g, ctx.b.shapeOf(x)])];
};

function reduceLinear(mean: boolean): VjpRule {
  return (ctx, grads) => {
    const { b, node } = ctx;
    const g = only(ctx, grads);
    const x = ctx.inputs[0] as string;
    const axes = reduceAxes(ctx);
    if (isEmptyAxes(axes) && attrInt(node, 'noop_with_empty_axes', 0)) return [g];
    let dx = b.op('Expand', [restoreReduced(ctx, g, axes), b.shapeOf(x)]);
    if (mean) {
      const count = b.op('Div', [b.op('Size', [x]), b.op('Size', [ctx.outputs[0] as string])]);
      dx = b.op('Div', [dx, b.cast(count, b.dtype(x))]);
    }
    return [dx];
  };
}

const reduceExtreme: VjpRule = (ctx, grads) => {
  const { b, node } = ctx;
  const g = only(ctx, grads);
  const x = ctx.inputs[0] as string;
  const y = ctx.outputs[0] as string;
  const axes = reduceAxes(ctx);
  if (isEmptyAxes(axes) && attrInt(node, 'noop_with_empty_axes', 0)) return [g];
  const yk = restoreReduced(ctx, y, axes);
  const mask = b.cast(b.op('Equal', [x, yk]), b.dtype(x));
  const count = b.reduce('ReduceSum', mask, isEmptyAxes(axes) ? undefined : axes, true);
  const dx = b.op('Div', [b.op('Mul', [b.op('Expand', [restoreReduced(ctx, g, axes), b.shapeOf(x)]), mask]), count]);
  return [dx];
};

/**
 * The rule table: ONNX op type (default domain) or `domain:opType` to its vector-Jacobian rule.
 * Every entry has finite-difference tests generated from `test/vjp-cases.ts`.
 */
export const VJP_RULES: Readonly<Record<string, VjpRule>> = {
  Identity: identityRule,
  Dropout: identityRule,
  Add: (ctx, grads) => {
    const g = only(ctx, grads);
    const [a, c] = ctx.inputs as [string, string];
    return [ctx.needs(0) ? unbroadcast(ctx.b, g, a) : undefined, ctx.needs(1) ? unbroadcast(ctx.b, g, c) : undefined];
  },
  Sub: (ctx, grads) => {
    const g = only(ctx, grads);
    const [a, c] = ctx.inputs as [string, string];
    return [
      ctx.needs(0) ? unbroadcast(ctx.b, g, a) : undefined,
      ctx.needs(1) ? unbroadcast(ctx.b, ctx.b.op('Neg', [g]), c) : undefined,
    ];
  },
  Mul: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const [a, c] = ctx.inputs as [string, string];
    return [
      ctx.needs(0) ? unbroadcast(b, b.op('Mul', [g, c]), a) : undefined,
      ctx.needs(1) ? unbroadcast(b, b.op('Mul', [g, a]), c) : undefined,
    ];
  },
  Div: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const [a, c] = ctx.inputs as [string, string];
    const y = ctx.outputs[0] as string;
    return [
      ctx.needs(0) ? unbroadcast(b, b.op('Div', [g, c]), a) : undefined,
      ctx.needs(1) ? unbroadcast(b, b.op('Neg', [b.op('Div', [b.op('Mul', [g, y]), c])]), c) : undefined,
    ];
  },
  Pow: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const [a, e] = ctx.inputs as [string, string];
    const y = ctx.outputs[0] as string;
    const out: (string | undefined)[] = [undefined, undefined];
    if (ctx.needs(0)) {
      const ev = b.info(e).value;
      let local: string;
      if (ev && ev.length === 1 && ev[0] === 2) {
        local = b.op('Mul', [a, b.scalarLike(2, a)]);
      } else {
        const ea = b.cast(e, b.dtype(a));
        local = b.op('Mul', [ea, b.op('Pow', [a, b.op('Sub', [ea, b.scalarLike(1, a)])])]);
      }
      out[0] = unbroadcast(b, b.op('Mul', [g, local]), a);
    }
    if (ctx.needs(1)) {
      out[1] = unbroadcast(b, b.op('Mul', [b.op('Mul', [g, y]), b.op('Log', [a])]), e);
    }
    return out;
  },
  Sqrt: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const y = ctx.outputs[0] as string;
    return [b.op('Div', [b.op('Mul', [g, b.scalarLike(0.5, y)]), y])];
  },
  Reciprocal: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const y = ctx.outputs[0] as string;
    return [b.op('Neg', [b.op('Mul', [g, b.op('Mul', [y, y])])])];
  },
  Neg: (ctx, grads) => [ctx.b.op('Neg', [only(ctx, grads)])],
  Exp: (ctx, grads) => [ctx.b.op('Mul', [only(ctx, grads), ctx.outputs[0] as string])],
  Log: (ctx, grads) => [ctx.b.op('Div', [only(ctx, grads), ctx.inputs[0] as string])],
  Tanh: (ctx, grads) => {
    const { b } = ctx;
    const y = ctx.outputs[0] as string;
    return [b.op('Mul', [only(ctx, grads), b.op('Sub', [b.scalarLike(1, y), b.op('Mul', [y, y])])])];
  },
  Sigmoid: (ctx, grads) => {
    const { b } = ctx;
    const y = ctx.outputs[0] as string;
    const local = b.op('Mul', [y, b.op('Sub', [b.scalarLike(1, y), y])]);
    return [b.op('Mul', [only(ctx, grads), local])];
  },
  Erf: (ctx, grads) => {
    const { b } = ctx;
    const x = ctx.inputs[0] as string;
    const local = b.op('Mul', [b.scalarLike(TWO_OVER_SQRT_PI, x), b.op('Exp', [b.op('Neg', [b.op('Mul', [x, x])])])]);
    return [b.op('Mul', [only(ctx, grads), local])];
  },
  Relu: (ctx, grads) => {
    const { b } = ctx;
    const x = ctx.inputs[0] as string;
    const pos = b.op('Greater', [x, b.scalarLike(0, x)]);
    return [b.op('Where', [pos, only(ctx, grads), b.scalarLike(0, x)])];
  },
  Softmax: (ctx, grads) => {
    const { b, node } = ctx;
    if (b.opset < 13) {
      throw new AutodiffError(
        `Softmax before opset 13 (flattening semantics) is not differentiated; the model has opset ${b.opset}`,
      );
    }
    const g = only(ctx, grads);
    const y = ctx.outputs[0] as string;
    const axis = attrInt(node, 'axis', -1);
    const dot = b.reduce('ReduceSum', b.op('Mul', [g, y]), [axis], true);
    return [b.op('Mul', [y, b.op('Sub', [g, dot])])];
  },
  LogSoftmax: (ctx, grads) => {
    const { b, node } = ctx;
    if (b.opset < 13) {
      throw new AutodiffError(`LogSoftmax before opset 13 is not differentiated; the model has opset ${b.opset}`);
    }
    const g = only(ctx, grads);
    const y = ctx.outputs[0] as string;
    const axis = attrInt(node, 'axis', -1);
    const sum = b.reduce('ReduceSum', g, [axis], true);
    return [b.op('Sub', [g, b.op('Mul', [b.op('Exp', [y]), sum])])];
  },
  ReduceSum: reduceLinear(false),
  ReduceMean: reduceLinear(true),
  ReduceMax: reduceExtreme,
  ReduceMin: reduceExtreme,
  Cast: (ctx, grads) => [ctx.b.cast(only(ctx, grads), ctx.b.dtype(ctx.inputs[0] as string))],
  Reshape: reshapeLike,
  Squeeze: reshapeLike,
  Unsqueeze: reshapeLike,
  Flatten: reshapeLike,
  Transpose: (ctx, grads) => {
    const g = only(ctx, grads);
    const perm = attrInts(ctx.node, 'perm');
    if (!perm) return [ctx.b.op('Transpose', [g])];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => {
      inv[p] = i;
    });
    return [ctx.b.op('Transpose', [g], { perm: inv })];
  },
  Expand: (ctx, grads) => [unbroadcast(ctx.b, only(ctx, grads), ctx.inputs[0] as string)],
  Concat: (ctx, grads) => {
    const { b, node } = ctx;
    const g = only(ctx, grads);
    const axis = attrInt(node, 'axis', 0);
    const parts = ctx.inputs.filter((i) => i !== '');
    if (parts.length === 1) return [g];
    const sizes = b.op(
      'Concat',
      parts.map((p) => b.op('Gather', [b.shapeOf(p), b.int64s([axis])], { axis: 0 })),
      { axis: 0 },
    );
    const pieces = b.opN('Split', [g, sizes], { axis }, { outputs: parts.length });
    let k = 0;
    return ctx.inputs.map((i, idx) => {
      if (i === '') return undefined;
      const piece = pieces[k++];
      return ctx.needs(idx) ? piece : undefined;
    });
  },
  Split: (ctx, grads) => {
    const { b, node } = ctx;
    const axis = attrInt(node, 'axis', 0);
    const parts = ctx.outputs.map((o, i) => grads[i] ?? b.zerosLike(o));
    return [b.op('Concat', parts, { axis })];
  },
  Slice: (ctx, grads) => {
    const { b } = ctx;
    if (b.opset < 10) throw new AutodiffError('Slice before opset 10 is not differentiated');
    const g = only(ctx, grads);
    const x = ctx.inputs[0] as string;
    const count = b.op('Size', [x]);
    const positions = b.op('Reshape', [b.op('Range', [b.int64(0), count, b.int64(1)]), b.shapeOf(x)]);
    const picked = b.op('Slice', [positions, ...ctx.inputs.slice(1)]);
    const flatZeros = b.op('ConstantOfShape', [b.unsqueeze(count, [0])], {
      value: { t: { name: 'value', dataType: b.dtype(x), dims: [1], rawData: zeroBytes(b.dtype(x)) } },
    });
    const scattered = b.op(
      'ScatterElements',
      [flatZeros, b.op('Reshape', [picked, b.int64s([-1])]), b.op('Reshape', [g, b.int64s([-1])])],
      { axis: 0 },
    );
    return [b.op('Reshape', [scattered, b.shapeOf(x)])];
  },
  Gather: (ctx, grads) => {
    const { b, node } = ctx;
    const g = only(ctx, grads);
    const [x, idx] = ctx.inputs as [string, string];
    const r = rankOf(ctx, x);
    const q = rankOf(ctx, idx);
    const axis = ((attrInt(node, 'axis', 0) % r) + r) % r;
    // move the gathered axis of x (and the index axes of g) to the front
    const permX = [axis, ...Array.from({ length: r }, (_, i) => i).filter((i) => i !== axis)];
    const permG = [
      ...Array.from({ length: q }, (_, i) => axis + i),
      ...Array.from({ length: axis }, (_, i) => i),
      ...Array.from({ length: r - 1 - axis }, (_, i) => axis + q + i),
    ];
    const gT = permG.every((p, i) => p === i) ? g : b.op('Transpose', [g], { perm: permG });
    const xT = axis === 0 ? x : b.op('Transpose', [x], { perm: permX });
    const restShape = b.op('Slice', [b.shapeOf(xT), b.int64s([1]), b.int64s([r])]);
    const g2 = b.op('Reshape', [gT, b.op('Concat', [b.int64s([-1]), restShape], { axis: 0 })]);
    const idxFlat = b.op('Reshape', [idx, b.int64s([-1])]);
    let dxT: string;
    if (b.opset >= 16) {
      // accumulate repeated indices in float32 for half-precision tensors (and CPU kernels exist)
      const accType = statType(b, x);
      const idx2 = b.unsqueeze(b.cast(idxFlat, DataType.INT64), [1]);
      const zeros = b.cast(b.zerosLike(xT), accType);
      dxT = b.cast(b.op('ScatterND', [zeros, idx2, b.cast(g2, accType)], { reduction: 'add' }), b.dtype(x));
    } else {
      const depth = b.op('Gather', [b.shapeOf(xT), b.int64s([0])], { axis: 0 });
      const onehot = b.op('OneHot', [idxFlat, depth, b.constant(b.dtype(x), [2], [0, 1])], { axis: -1 });
      const flat = b.op('Reshape', [g2, b.op('Concat', [b.int64s([0]), b.int64s([-1])], { axis: 0 })]);
      const summed = b.op('MatMul', [b.op('Transpose', [onehot], { perm: [1, 0] }), flat]);
      dxT = b.op('Reshape', [summed, b.shapeOf(xT)]);
    }
    if (axis === 0) return [dxT, undefined];
    const inv = new Array<number>(r);
    permX.forEach((p, i) => {
      inv[p] = i;
    });
    return [b.op('Transpose', [dxT], { perm: inv }), undefined];
  },
  Where: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const [c, a, d] = ctx.inputs as [string, string, string];
    const zero = b.scalarLike(0, g);
    return [
      undefined,
      ctx.needs(1) ? unbroadcast(b, b.op('Where', [c, g, zero]), a) : undefined,
      ctx.needs(2) ? unbroadcast(b, b.op('Where', [c, zero, g]), d) : undefined,
    ];
  },
  MatMul: (ctx, grads) => {
    const { b } = ctx;
    const g = only(ctx, grads);
    const [a, c] = ctx.inputs as [string, string];
    const ra = rankOf(ctx, a);
    const rc = rankOf(ctx, c);
    if (ra === 1 && rc === 1) {
      return [ctx.needs(0) ? b.op('Mul', [g, c]) : undefined, ctx.needs(1) ? b.op('Mul', [g, a]) : undefined];
    }
    // promote 1-D operands to matrices, as MatMul does
    const a2 = ra === 1 ? b.unsqueeze(a, [0]) : a;
    const c2 = rc === 1 ? b.unsqueeze(c, [1]) : c;
    const ra2 = Math.max(ra, 2);
    const rc2 = Math.max(rc, 2);
    let g2 = g;
    if (ra === 1) g2 = b.unsqueeze(g2, [-2]);
    if (rc === 1) g2 = b.unsqueeze(g2, [-1]);
    const out: (string | undefined)[] = [undefined, undefined];
    if (ctx.needs(0)) {
      const product = rc === 2 ? timesTransposed(b, g2, c) : b.op('MatMul', [g2, swapLast(b, c2, rc2)]);
      const da = unbroadcast(b, product, a2);
      out[0] = ra === 1 ? b.op('Reshape', [da, b.shapeOf(a)]) : da;
    }
    if (ctx.needs(1)) {
      const dc = unbroadcast(b, b.op('MatMul', [swapLast(b, a2, ra2), g2]), c2);
      out[1] = rc === 1 ? b.op('Reshape', [dc, b.shapeOf(c)]) : dc;
    }
    return out;
  },
  Gemm: (ctx, grads) => {
    const { b, node } = ctx;
    const g = only(ctx, grads);
    const [a, c, bias] = ctx.inputs as [string, string, string | undefined];
    const alpha = attrFloat(node, 'alpha', 1);
    const beta = attrFloat(node, 'beta', 1);
    const transA = attrInt(node, 'transA', 0);
    const transB = attrInt(node, 'transB', 0);
    const out: (string | undefined)[] = [undefined, undefined, undefined];
    if (ctx.needs(0)) {
      // dA' = g B'^T; dA = transA ? dA'^T : dA'
      out[0] = transA
        ? b.op('Gemm', [c, g], { alpha: f(alpha), transA: transB, transB: 1 })
        : b.op('Gemm', [g, c], { alpha: f(alpha), transA: 0, transB: transB ? 0 : 1 });
    }
    if (ctx.needs(1)) {
      // dB' = A'^T g; dB = transB ? dB'^T : dB'
      out[1] = transB
        ? b.op('Gemm', [g, a], { alpha: f(alpha), transA: 1, transB: transA })
        : b.op('Gemm', [a, g], { alpha: f(alpha), transA: transA ? 0 : 1, transB: 0 });
    }
    if (bias && ctx.needs(2)) {
      const scaled = beta === 1 ? g : b.op('Mul', [g, b.scalarLike(beta, g)]);
      out[2] = unbroadcast(b, scaled, bias);
    }
    return out;
  },
  LayerNormalization: (ctx, grads) => {
    const { b, node } = ctx;
    const g = only(ctx, grads);
    const [x, scale, bias] = ctx.inputs as [string, string, string | undefined];
    const axes = trailingAxes(attrInt(node, 'axis', -1), b.rank(x));
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const { dx, xhat } = normBackward(b, x, g, scale, axes, eps, false);
    const out: (string | undefined)[] = [b.cast(dx, b.dtype(x)), undefined, undefined];
    if (ctx.needs(1))
      out[1] = unbroadcast(b, b.cast(b.op('Mul', [b.cast(g, b.dtype(xhat)), xhat]), b.dtype(scale)), scale);
    if (bias && ctx.needs(2)) out[2] = unbroadcast(b, g, bias);
    return out;
  },
  SimplifiedLayerNormalization: (ctx, grads) => simplifiedNorm(ctx, grads),
  'com.microsoft:SkipSimplifiedLayerNormalization': (ctx, grads) => skipNorm(ctx, grads, true),
  'com.microsoft:SkipLayerNormalization': (ctx, grads) => skipNorm(ctx, grads, false),
  Gelu: (ctx, grads) => {
    const { b, node } = ctx;
    const x = ctx.inputs[0] as string;
    const approx = attrString(node, 'approximate', 'none');
    const local = approx === 'tanh' ? geluTanhDerivative(b, x) : geluErfDerivative(b, x);
    return [b.op('Mul', [only(ctx, grads), local])];
  },
  'com.microsoft:Gelu': (ctx, grads) => {
    const x = ctx.inputs[0] as string;
    return [ctx.b.op('Mul', [only(ctx, grads), geluErfDerivative(ctx.b, x)])];
  },
  'com.microsoft:BiasGelu': (ctx, grads) => {
    const { b } = ctx;
    const [x, bias] = ctx.inputs as [string, string];
    const s = b.op('Add', [x, bias]);
    const gs = b.op('Mul', [only(ctx, grads), geluErfDerivative(b, s)]);
    return [ctx.needs(0) ? unbroadcast(b, gs, x) : undefined, ctx.needs(1) ? unbroadcast(b, gs, bias) : undefined];
  },
  'com.microsoft:FastGelu': (ctx, grads) => {
    const { b } = ctx;
    const [x, bias] = ctx.inputs as [string, string | undefined];
    const s = bias ? b.op('Add', [x, bias]) : x;
    const gs = b.op('Mul', [only(ctx, grads), geluTanhDerivative(b, s)]);
    return [
      ctx.needs(0) ? unbroadcast(b, gs, x) : undefined,
      bias && ctx.needs(1) ? unbroadcast(b, gs, bias) : undefined,
    ];
  },
  'com.microsoft:QuickGelu': (ctx, grads) => {
    const { b, node } = ctx;
    const x = ctx.inputs[0] as string;
    const alpha = attrFloat(node, 'alpha', 1.702);
    const ax = b.op('Mul', [x, b.scalarLike(alpha, x)]);
    const s = b.op('Sigmoid', [ax]);
    const local = b.op('Add', [s, b.op('Mul', [ax, b.op('Mul', [s, b.op('Sub', [b.scalarLike(1, x), s])])])]);
    return [b.op('Mul', [only(ctx, grads), local])];
  },
  ...QUANTIZED_VJP_RULES,
};

function simplifiedNorm(ctx: VjpContext, grads: readonly (string | undefined)[]): (string | undefined)[] {
  const { b, node } = ctx;
  const g = only(ctx, grads);
  const [x, scale] = ctx.inputs as [string, string];
  const axes = trailingAxes(attrInt(node, 'axis', -1), b.rank(x));
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const { dx, xhat } = normBackward(b, x, g, scale, axes, eps, true);
  const out: (string | undefined)[] = [b.cast(dx, b.dtype(x)), undefined];
  if (ctx.needs(1))
    out[1] = unbroadcast(b, b.cast(b.op('Mul', [b.cast(g, b.dtype(xhat)), xhat]), b.dtype(scale)), scale);
  return out;
}

/**
 * Skip(Simplified)LayerNormalization: s = input + skip (+ bias); y = norm(s) * gamma (+ beta).
 * Outputs: y, mean, inv_std_var, s (input_skip_bias_sum).
 */
function skipNorm(ctx: VjpContext, grads: readonly (string | undefined)[], rms: boolean): (string | undefined)[] {
  const { b, node } = ctx;
  const [input, skip, gamma] = ctx.inputs as [string, string, string];
  const beta = rms ? undefined : ctx.inputs[3] || undefined;
  const bias = (rms ? ctx.inputs[3] : ctx.inputs[4]) || undefined;
  const eps = attrFloat(node, 'epsilon', 1e-5);
  let s = ctx.outputs[3];
  if (!s) {
    s = b.op('Add', [input, skip]);
    if (bias) s = b.op('Add', [s, bias]);
  }
  let ds: string | undefined;
  let xhat: string | undefined;
  const g0 = grads[0];
  if (g0) {
    const r = normBackward(b, s, g0, gamma, [-1], eps, rms);
    ds = b.cast(r.dx, b.dtype(input));
    xhat = r.xhat;
  }
  const g3 = grads[3];
  if (g3) ds = ds ? b.op('Add', [ds, g3]) : g3;
  const out: (string | undefined)[] = new Array(ctx.inputs.length).fill(undefined);
  if (ds) {
    if (ctx.needs(0)) out[0] = unbroadcast(b, ds, input);
    if (ctx.needs(1)) out[1] = unbroadcast(b, ds, skip);
    const biasIndex = rms ? 3 : 4;
    if (bias && ctx.needs(biasIndex)) out[biasIndex] = unbroadcast(b, ds, bias);
  }
  if (g0 && xhat && ctx.needs(2)) {
    out[2] = unbroadcast(b, b.cast(b.op('Mul', [b.cast(g0, b.dtype(xhat)), xhat]), b.dtype(gamma)), gamma);
  }
  if (g0 && beta && ctx.needs(3)) out[3] = unbroadcast(b, g0, beta);
  return out;
}

function zeroBytes(dt: number): Uint8Array {
  const size =
    dt === DataType.DOUBLE || dt === DataType.INT64 ? 8 : dt === DataType.FLOAT16 || dt === DataType.BFLOAT16 ? 2 : 4;
  return new Uint8Array(size);
}

/** Looks up the rule of a node (by `domain:opType`, then plain `opType` for the default domain). */
export function ruleFor(node: NodeProto): VjpRule | undefined {
  const domain = node.domain ?? '';
  const op = node.opType ?? '';
  if (domain === '' || domain === 'ai.onnx') return VJP_RULES[op];
  return VJP_RULES[`${domain}:${op}`];
}

/** The op types that have a rule (for messages and docs). */
export function supportedOps(): string[] {
  return Object.keys(VJP_RULES).sort();
}
