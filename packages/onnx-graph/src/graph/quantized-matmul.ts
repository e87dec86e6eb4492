import type { OnnxModel } from '../model.js';
import { DataType, type NodeProto } from '../proto/types.js';
import { attrInt } from './attributes.js';

/**
 * Fuses the dynamically quantized matmul of ONNX Runtime's dynamic quantizer (the `_quantized` /
 * `_q8` decoders of the transformers.js layout) into one com.microsoft DynamicQuantizeMatMul:
 *
 *   (q, s_a, z_a) = DynamicQuantizeLinear(x); y = Cast(MatMulInteger(q, B, z_a[, z_B]), float) · (s_a · s_B)
 *
 * is DynamicQuantizeMatMul(x, B, s_B[, z_B]), the fusion ONNX Runtime applies itself at session
 * creation (MatMulIntegerToFloatFusion), so the forward values do not change. The integer tensors in
 * between carry no gradient; the fused node has one float input to differentiate
 * (autodiff/quantized.ts). A DynamicQuantizeLinear left unfused has no vector-Jacobian rule, so a
 * pattern this does not recognise is refused by name rather than differentiated wrongly.
 * Returns the number of fused matmuls.
 */
export function fuseDynamicQuantizeMatMul(model: OnnxModel): number {
  const g = model.graph;
  const dropped = new Set<NodeProto>();
  const maybeUnread = new Set<NodeProto>();
  let fused = 0;
  for (const matmul of g.nodes.filter((n) => n.opType === 'MatMulInteger' && !n.domain)) {
    const [q, weight, zeroA, zeroB] = matmul.input ?? [];
    const quantize = q ? g.producer(q) : undefined;
    if (quantize?.opType !== 'DynamicQuantizeLinear' || quantize.output?.[0] !== q) continue;
    const [, scaleA, zeroOut] = quantize.output ?? [];
    if (!weight || !g.constantTensor(weight) || zeroA !== zeroOut || (zeroB && !g.constantTensor(zeroB))) continue;
    const cast = sole(g.consumers(matmul.output?.[0] ?? ''));
    if (cast?.opType !== 'Cast' || attrInt(cast, 'to') !== DataType.FLOAT) continue;
    const rescale = sole(g.consumers(cast.output?.[0] ?? ''));
    if (rescale?.opType !== 'Mul') continue;
    const scaleProduct = g.producer((rescale.input ?? []).find((i) => i !== cast.output?.[0]) ?? '');
    const scaleB = (scaleProduct?.input ?? []).find((i) => i !== scaleA);
    if (
      scaleProduct?.opType !== 'Mul' ||
      !scaleProduct.input?.includes(scaleA ?? '') ||
      !scaleB ||
      !g.constantTensor(scaleB)
    ) {
      continue;
    }
    rescale.opType = 'DynamicQuantizeMatMul';
    rescale.domain = 'com.microsoft';
    rescale.input = [quantize.input?.[0] ?? '', weight, scaleB, ...(zeroB ? [zeroB] : [])];
    rescale.attribute = [];
    dropped.add(matmul).add(cast);
    maybeUnread.add(scaleProduct).add(quantize);
    fused++;
  }
  if (fused === 0) return 0;
  model.requireOpset('com.microsoft', 1);
  g.removeNodes(dropped);
  // the scale products, then the quantizations, that nothing reads any more
  for (const op of ['Mul', 'DynamicQuantizeLinear']) {
    g.removeNodes(
      [...maybeUnread].filter(
        (n) =>
          n.opType === op && (n.output ?? []).every((o) => !o || (g.consumers(o).length === 0 && !g.isGraphOutput(o))),
      ),
    );
  }
  return fused;
}

function sole(nodes: NodeProto[]): NodeProto | undefined {
  return nodes.length === 1 ? nodes[0] : undefined;
}
