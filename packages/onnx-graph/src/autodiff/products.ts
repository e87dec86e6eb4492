import type { GraphBuilder } from '../graph/builder.js';

/**
 * `x · wᵀ` for x `[..., N]` and a matrix w `[K, N]`, as one Gemm with `transB` over the rows of x
 * flattened to `[M, N]`. `MatMul(x, Transpose(w))` computes the same, but a runtime folds the
 * Transpose of a constant weight into a transposed copy of it: the backward pass through a
 * layer's weights would hold every weight twice. Gemm reads w transposed where it lies.
 * `shaped`: a tensor of w's shape to read the dims from (w's quantized form, so that the Gemm is the only
 * reader of a dequantised w: ONNX Runtime gives each reader of a DequantizeLinear a copy of its own).
 */
export function timesTransposed(b: GraphBuilder, x: string, w: string, shaped = w): string {
  const dim = (axis: number) => b.op('Slice', [b.shapeOf(shaped), b.int64s([axis]), b.int64s([axis + 1])]);
  const rows = b.op('Reshape', [x, b.op('Concat', [b.int64s([-1]), dim(1)], { axis: 0 })]); // [M, N]
  const product = b.op('Gemm', [rows, w], { transB: 1 }); // [M, K]
  const outer = b.op('Slice', [b.shapeOf(x), b.int64s([0]), b.int64s([-1])]);
  return b.op('Reshape', [product, b.op('Concat', [outer, dim(0)], { axis: 0 })]);
}
