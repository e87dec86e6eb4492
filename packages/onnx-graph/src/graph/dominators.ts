import type { Graph } from './graph.js';
import { nodeInputs } from './graph.js';

/**
 * The tensors that every path from `source` to `sink` passes through, in path order (both ends
 * included). In a DAG whose region is topologically ordered, a node is on every path exactly when
 * no edge of the region jumps over its position; a node with two outputs in the region splits the
 * flow, so neither output counts.
 */
export function dominatorChain(graph: Graph, source: string, sink: string): string[] {
  const down = graph.descendants([source]);
  if (!down.has(sink)) return [];
  const up = graph.ancestors([sink]);
  const region = graph
    .topologicalOrder()
    .filter((n) => nodeInputs(n).some((i) => down.has(i)) && (n.output ?? []).some((o) => o && up.has(o)));
  const position = new Map<string, number>();
  position.set(source, -1);
  region.forEach((n, k) => {
    for (const o of n.output ?? []) if (o && up.has(o) && down.has(o)) position.set(o, k);
  });
  // furthest consumer position of any edge leaving a tensor at position p
  const reach = new Array<number>(region.length + 1).fill(-Infinity);
  region.forEach((n, q) => {
    for (const i of nodeInputs(n)) {
      const p = position.get(i);
      if (p === undefined) continue;
      const slot = p + 1;
      if (q > (reach[slot] as number)) reach[slot] = q;
    }
  });
  const chain = [source];
  let maxReach = reach[0] as number;
  for (let k = 0; k < region.length; k++) {
    const n = region[k];
    if (!n) continue;
    const outs = (n.output ?? []).filter((o) => o && position.get(o) === k);
    if (maxReach <= k && outs.length === 1) chain.push(outs[0] as string);
    maxReach = Math.max(maxReach, reach[k + 1] as number);
  }
  return chain;
}
