import type { GraphBuilder } from '../graph/builder.js';

/**
 * `x · wᵀ` for x `[..., N]` and a matrix w `[K, N]`, as one Gemm with `transB` over the rows of x
 * flattened to `[M, N]`. `MatMul(x, Transpose(w))` computes the same, but a runtime folds the
 * Transpose of a constant weight into a transposed copy of it: the backward pass through a
 * layer's weights would hold every weight twice. Gemm reads w transposed where it lies.
 */
export function timesTransposed(b: GraphBuilder, x: string, w: string): string {
  const dim = (t: string, axis: number) => b.op('Slice', [b.shapeOf(t), b.int64s([axis]), b.int64s([axis + 1])]);
  const rows = b.op('Reshape', [x, b.op('Concat', [b.int64s([-1]), dim(w, 1)], { axis: 0 })]); // [M, N]
  const product = b.op('Gemm', [rows, w], { transB: 1 }); // [M, K]
  const outer = b.op('Slice', [b.shapeOf(x), b.int64s([0]), b.int64s([-1])]);
  return b.op('Reshape', [product, b.op('Concat', [outer, dim(w, 0)], { axis: 0 })]);
}
