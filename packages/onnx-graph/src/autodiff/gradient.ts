import { AutodiffError } from '../errors.js';
import type { GraphBuilder } from '../graph/builder.js';
import { type Graph, nodeInputs } from '../graph/graph.js';
import { isFloatType } from '../proto/tensor.js';
import type { NodeProto } from '../proto/types.js';
import { ruleFor, supportedOps, type VjpContext } from './rules.js';

export interface GradientRequest {
  /** The tensor to differentiate (a scalar unless `seed` is given). */
  output: string;
  /** Tensors to differentiate with respect to. */
  wrt: readonly string[];
  /** Gradient of `output` (same shape); ones when omitted. */
  seed?: string;
}

/**
 * The integer output of a QuantizeLinear that only DequantizeLinear nodes read (an activation's QDQ
 * pair): its gradient is taken with respect to its dequantised value, straight through
 * (autodiff/quantized.ts).
 */
function isQuantizedActivation(g: Graph, t: string): boolean {
  const producer = g.producer(t);
  if (producer?.opType !== 'QuantizeLinear' || producer.output?.[0] !== t) return false;
  const readers = g.consumers(t);
  return readers.length > 0 && readers.every((n) => n.opType === 'DequantizeLinear' && n.input?.[0] === t);
}

/**
 * Emits the backward nodes of `output` with respect to `wrt` through the builder and returns, for
 * each `wrt` tensor, the name of its gradient tensor (same shape and type).
 *
 * Only nodes on a differentiable path (floating-point tensors) from a `wrt` tensor to `output` are
 * visited, in reverse topological order; where a tensor feeds several nodes, the contributions are
 * added. Integer and boolean tensors (shapes, indices, masks) carry no gradient, so paths through
 * Shape, Range, Equal and the like end there. A node on the path whose op has no rule raises
 * `AutodiffError` naming the op.
 */
export function buildGradient(b: GraphBuilder, req: GradientRequest): Map<string, string> {
  const g = b.model.graph;
  const differentiable = (t: string): boolean => {
    const type = b.shapes.type(t);
    return type === undefined || isFloatType(type) || isQuantizedActivation(g, t);
  };
  for (const w of req.wrt) {
    if (!g.hasTensor(w)) throw new AutodiffError(`cannot differentiate with respect to ${w}: no such tensor`);
  }
  if (!g.hasTensor(req.output)) throw new AutodiffError(`cannot differentiate ${req.output}: no such tensor`);

  const forward = g.descendants(req.wrt, differentiable);
  const backward = g.ancestors([req.output], differentiable);
  const onPath = new Set<string>();
  for (const t of forward) if (backward.has(t) && differentiable(t)) onPath.add(t);

  const nodes = g.nodes.filter(
    (n) => nodeInputs(n).some((i) => onPath.has(i)) && (n.output ?? []).some((o) => o && onPath.has(o)),
  );

  const contributions = new Map<string, string[]>();
  const add = (t: string, grad: string) => {
    const list = contributions.get(t);
    if (list) list.push(grad);
    else contributions.set(t, [grad]);
  };
  const total = (t: string): string | undefined => {
    const list = contributions.get(t);
    if (!list || list.length === 0) return undefined;
    let sum = list[0] as string;
    for (let i = 1; i < list.length; i++) sum = b.op('Add', [sum, list[i] as string]);
    contributions.set(t, [sum]);
    return sum;
  };

  add(req.output, req.seed ?? b.onesLike(req.output));

  for (let k = nodes.length - 1; k >= 0; k--) {
    const node = nodes[k] as NodeProto;
    const outputs = node.output ?? [];
    const grads = outputs.map((o) => (o && onPath.has(o) ? total(o) : undefined));
    if (grads.every((x) => x === undefined)) continue;
    const rule = ruleFor(node);
    if (!rule) {
      const op = node.domain ? `${node.domain}:${node.opType}` : node.opType;
      throw new AutodiffError(
        `no vector-Jacobian rule for ${op} (node ${node.name || '(unnamed)'}) on the path to ${req.output}; supported: ${supportedOps().join(', ')}`,
      );
    }
    const inputs = node.input ?? [];
    const ctx: VjpContext = {
      b,
      node,
      inputs,
      outputs,
      needs: (i) => {
        const t = inputs[i];
        return t !== undefined && t !== '' && onPath.has(t);
      },
    };
    const inGrads = rule(ctx, grads);
    inputs.forEach((t, i) => {
      const gi = inGrads[i];
      if (gi && t && onPath.has(t)) add(t, gi);
    });
  }

  const result = new Map<string, string>();
  for (const w of req.wrt) result.set(w, total(w) ?? b.zerosLike(w));
  return result;
}
