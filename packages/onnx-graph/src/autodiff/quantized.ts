import { AutodiffError } from '../errors.js';
import {
  bnb4Layout,
  bnb4Values,
  dequantizeColumns,
  dequantizeNBits,
  nBitsLayout,
  type ReadRows,
  readWhen,
  unpackCodes,
} from '../graph/quantized-weights.js';
import { DataType } from '../proto/types.js';
import { timesTransposed } from './products.js';
import { only, type VjpContext, type VjpRule } from './rules.js';

/**
 * Vector-Jacobian rules of the quantized matmuls, with respect to the activation input only (the
 * weights are constants, docs/supported-exports.md "Variants: quantized").
 *
 * Each backward product dequantises its packed weight at run time, from the packed constants read tied
 * to the output gradient (graph/quantized-weights.ts `readWhen`): nothing of it is a constant-only
 * subgraph, so ONNX Runtime folds none of it into a float32 copy at session creation, and a layer's
 * float32 weight exists only while its product runs (where it is not folded, a DequantizeLinear of
 * constants alone would be ordered first in the run, seen in ONNX Runtime's optimised graph, and kept
 * alive until the backward pass reaches it). A transposed packed copy would be exact only for per-tensor scales:
 * MatMulNBits' blocks run along K, the transposed product would need them along N.
 */

/** `g · w` in float32 for g `[..., N]` and a float32 w `[N, K]`, returned in the activation's type. */
function productBack(ctx: VjpContext, g: string, w: string): string {
  const { b } = ctx;
  const a = ctx.inputs[0] as string;
  return b.cast(b.op('MatMul', [b.cast(g, DataType.FLOAT), w]), b.dtype(a));
}

/** com.microsoft MatMulNBits: Y = A · Wᵀ (+ bias), W `[N, K]` (graph/quantized-weights.ts). dA = dY · W. */
const matMulNBits: VjpRule = (ctx, grads) => {
  const { b, node } = ctx;
  const layout = nBitsLayout(node);
  if (typeof layout === 'string') throw new AutodiffError(layout);
  const g = only(ctx, grads);
  const allRows: ReadRows = (c, rowShape) => readWhen(b, c, g, [layout.N, ...rowShape]);
  return [productBack(ctx, g, dequantizeNBits(b, ctx.inputs, layout, allRows))];
};

/**
 * com.microsoft MatMulBnb4: Y = A · Wᵀ, W `[N, K]` flattened into blocks of `block_size`, each
 * element a 4-bit code (two per byte, the first in the high bits) into the FP4 or NF4 code book
 * (`quant_type` 0 / 1), times its block's absmax. dA = dY · W.
 */
const matMulBnb4: VjpRule = (ctx, grads) => {
  const { b } = ctx;
  const [, packed, absmax] = ctx.inputs as [string, string, string];
  const layout = bnb4Layout(ctx.node);
  if (typeof layout === 'string') throw new AutodiffError(layout);
  const { K, N, blockSize } = layout;
  const count = N * K;
  const blocks = Math.ceil(count / blockSize);
  const g = only(ctx, grads);
  const codes = unpackCodes(b, readWhen(b, packed, g), 4, false); // [2 · ceil(N·K / 2)]
  const values = bnb4Values(b, b.op('Slice', [codes, b.int64s([0]), b.int64s([count]), b.int64s([0])]), layout); // [N·K]
  const blockScale = b.cast(readWhen(b, absmax, g, [blocks, 1]), DataType.FLOAT);
  const perBlock = b.op('Expand', [blockScale, b.int64s([blocks, blockSize])]);
  const scale = b.op('Slice', [b.op('Reshape', [perBlock, b.int64s([-1])]), b.int64s([0]), b.int64s([count])]);
  const w = b.op('Reshape', [b.op('Mul', [values, scale]), b.int64s([N, K])]);
  return [productBack(ctx, g, w)];
};

/**
 * com.microsoft DynamicQuantizeMatMul (what DynamicQuantizeLinear → MatMulInteger → Cast → Mul
 * becomes, graph/quantized-matmul.ts): Y = quantize(A) · W (+ bias), W `[K, N]` = (B − zero point) ·
 * scale per tensor or per column. A's run-time uint8 rounding is differentiated straight through
 * (the gradient of the float function the graph approximates): dA = dY · Wᵀ.
 */
const dynamicQuantizeMatMul: VjpRule = (ctx, grads) => {
  const { b } = ctx;
  const g = only(ctx, grads);
  const weight = ctx.inputs[1] as string;
  const w = dequantizeColumns(
    b,
    ctx.inputs,
    (stored) => readWhen(b, stored, g),
    (perColumn) => perColumn,
  ); // [K, N]
  return [timesTransposed(b, g, w, weight)];
};

/**
 * QuantizeLinear → DequantizeLinear pairs (QDQ): the integer tensor between them carries the
 * gradient with respect to its dequantised value (autodiff/gradient.ts lets it through), and both
 * rules pass it on unchanged: the straight-through gradient of the float function, as the
 * dequantised-weight reference computes it.
 */
const straightThrough: VjpRule = (ctx, grads) => [ctx.b.cast(only(ctx, grads), ctx.b.dtype(ctx.inputs[0] as string))];
const dequantizeStraightThrough: VjpRule = (ctx, grads) => [only(ctx, grads)];

export const QUANTIZED_VJP_RULES: Readonly<Record<string, VjpRule>> = {
  'com.microsoft:MatMulNBits': matMulNBits,
  'com.microsoft:MatMulBnb4': matMulBnb4,
  'com.microsoft:DynamicQuantizeMatMul': dynamicQuantizeMatMul,
  QuantizeLinear: straightThrough,
  DequantizeLinear: dequantizeStraightThrough,
};
