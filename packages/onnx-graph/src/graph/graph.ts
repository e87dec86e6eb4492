import { GraphError } from '../errors.js';
import type { GraphProto, NodeProto, TensorProto, ValueInfoProto } from '../proto/types.js';
import { attrTensor } from './attributes.js';

const implicitInputsCache = new WeakMap<NodeProto, string[]>();

/** Names a subgraph reads from its enclosing scope. */
function outerReferences(g: GraphProto): string[] {
  const defined = new Set<string>();
  for (const t of g.initializer ?? []) if (t.name) defined.add(t.name);
  for (const v of g.input ?? []) if (v.name) defined.add(v.name);
  for (const n of g.node ?? []) for (const o of n.output ?? []) if (o) defined.add(o);
  const refs = new Set<string>();
  for (const n of g.node ?? []) {
    for (const i of nodeInputs(n)) if (i && !defined.has(i)) refs.add(i);
  }
  for (const o of g.output ?? []) if (o.name && !defined.has(o.name)) refs.add(o.name);
  return [...refs];
}

/**
 * Every tensor a node reads: its explicit inputs (empty names of omitted optional inputs dropped)
 * plus, for control-flow nodes, the outer-scope tensors their subgraphs read.
 */
export function nodeInputs(node: NodeProto): string[] {
  const explicit = (node.input ?? []).filter((i) => i !== '');
  const hasGraph = node.attribute?.some((a) => a.g || (a.graphs && a.graphs.length > 0));
  if (!hasGraph) return explicit;
  let implicit = implicitInputsCache.get(node);
  if (!implicit) {
    const set = new Set<string>();
    for (const a of node.attribute ?? []) {
      for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
        for (const r of outerReferences(g)) set.add(r);
      }
    }
    implicit = [...set];
    implicitInputsCache.set(node, implicit);
  }
  return [...new Set([...explicit, ...implicit])];
}

/**
 * Splits a node name into scope segments: `/model/layers.3/self_attn/Softmax` gives
 * `['model', 'layers.3', 'self_attn', 'Softmax']`.
 */
export function scopeSegments(name: string): string[] {
  return name.split('/').filter((s) => s.length > 0);
}

/**
 * A mutable view of an ONNX GraphProto with producer/consumer indexes. Edits go through the
 * methods (or call `invalidate()` after editing `proto` directly) so the indexes stay right.
 */
export class Graph {
  readonly proto: GraphProto;
  private producers?: Map<string, NodeProto>;
  private consumerMap?: Map<string, NodeProto[]>;
  private initializers?: Map<string, TensorProto>;
  private infos?: Map<string, ValueInfoProto>;
  private names?: Set<string>;
  private nodeNames?: Set<string>;
  private nameCounter = 0;

  constructor(proto: GraphProto) {
    this.proto = proto;
    proto.node ??= [];
    proto.initializer ??= [];
    proto.input ??= [];
    proto.output ??= [];
    proto.valueInfo ??= [];
  }

  /** The nodes, in file order (topological for valid models). */
  get nodes(): NodeProto[] {
    return this.proto.node as NodeProto[];
  }

  /** Graph inputs that are not initializers (what a caller feeds). */
  get inputs(): ValueInfoProto[] {
    return (this.proto.input as ValueInfoProto[]).filter((v) => !this.initializer(v.name ?? ''));
  }

  get outputs(): ValueInfoProto[] {
    return this.proto.output as ValueInfoProto[];
  }

  /** Drops the cached indexes; call after editing `proto` directly. */
  invalidate(): void {
    this.producers = undefined;
    this.consumerMap = undefined;
    this.initializers = undefined;
    this.infos = undefined;
    this.names = undefined;
    this.nodeNames = undefined;
  }

  private index(): void {
    if (this.producers && this.consumerMap) return;
    const producers = new Map<string, NodeProto>();
    const consumers = new Map<string, NodeProto[]>();
    for (const n of this.nodes) {
      for (const o of n.output ?? []) if (o) producers.set(o, n);
      for (const i of nodeInputs(n)) {
        let list = consumers.get(i);
        if (!list) {
          list = [];
          consumers.set(i, list);
        }
        if (list[list.length - 1] !== n) list.push(n);
      }
    }
    this.producers = producers;
    this.consumerMap = consumers;
  }

  /** The node that produces a tensor (undefined for graph inputs and initializers). */
  producer(tensor: string): NodeProto | undefined {
    this.index();
    return this.producers?.get(tensor);
  }

  /** The nodes that read a tensor (each once, in file order). */
  consumers(tensor: string): NodeProto[] {
    this.index();
    return this.consumerMap?.get(tensor) ?? [];
  }

  /** An initializer by name. */
  initializer(name: string): TensorProto | undefined {
    if (!this.initializers) {
      this.initializers = new Map();
      for (const t of this.proto.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    }
    return this.initializers.get(name);
  }

  /**
   * The constant value of a tensor: an initializer, or the `value` of a Constant node producing it.
   */
  constantTensor(name: string): TensorProto | undefined {
    const init = this.initializer(name);
    if (init) return init;
    const p = this.producer(name);
    if (p && p.opType === 'Constant' && (p.domain ?? '') === '') return attrTensor(p, 'value');
    return undefined;
  }

  /** True for the name of a graph input that is not an initializer. */
  isGraphInput(name: string): boolean {
    return this.inputs.some((v) => v.name === name);
  }

  isGraphOutput(name: string): boolean {
    return this.outputs.some((v) => v.name === name);
  }

  /** Declared type information of a tensor (graph input, output, or value_info), if any. */
  valueInfo(name: string): ValueInfoProto | undefined {
    if (!this.infos) {
      this.infos = new Map();
      for (const list of [this.proto.valueInfo, this.proto.output, this.proto.input]) {
        for (const v of list ?? []) if (v.name) this.infos.set(v.name, v);
      }
    }
    return this.infos.get(name);
  }

  /** True when some node, initializer or graph input defines the tensor. */
  hasTensor(name: string): boolean {
    return this.tensorNames().has(name);
  }

  private tensorNames(): Set<string> {
    if (!this.names) {
      const s = new Set<string>();
      for (const t of this.proto.initializer ?? []) if (t.name) s.add(t.name);
      for (const v of this.proto.input ?? []) if (v.name) s.add(v.name);
      for (const n of this.nodes) for (const o of n.output ?? []) if (o) s.add(o);
      this.names = s;
    }
    return this.names;
  }

  /** A tensor name not used in the graph yet, built from `base`. */
  uniqueTensorName(base: string): string {
    const names = this.tensorNames();
    let name = base;
    while (names.has(name)) name = `${base}_${++this.nameCounter}`;
    names.add(name);
    return name;
  }

  /** A node name not used in the graph yet, built from `base`. */
  uniqueNodeName(base: string): string {
    if (!this.nodeNames) {
      this.nodeNames = new Set();
      for (const n of this.nodes) if (n.name) this.nodeNames.add(n.name);
    }
    let name = base;
    while (this.nodeNames.has(name)) name = `${base}_${++this.nameCounter}`;
    this.nodeNames.add(name);
    return name;
  }

  /** Appends a node (its inputs must already exist for the node list to stay topological). */
  addNode(node: NodeProto): NodeProto {
    this.index();
    this.nodes.push(node);
    for (const o of node.output ?? []) {
      if (!o) continue;
      if (this.producers?.has(o)) throw new GraphError(`tensor ${o} is produced twice; pick a new name`);
      this.producers?.set(o, node);
      this.names?.add(o);
    }
    for (const i of nodeInputs(node)) {
      let list = this.consumerMap?.get(i);
      if (!list) {
        list = [];
        this.consumerMap?.set(i, list);
      }
      list.push(node);
    }
    if (node.name) this.nodeNames?.add(node.name);
    return node;
  }

  /** Adds an initializer. */
  addInitializer(tensor: TensorProto): void {
    if (!tensor.name) throw new GraphError('an initializer needs a name');
    if (this.initializer(tensor.name)) {
      throw new GraphError(`initializer ${tensor.name} already exists; pick a new name`);
    }
    (this.proto.initializer as TensorProto[]).push(tensor);
    this.initializers?.set(tensor.name, tensor);
    this.names?.add(tensor.name);
  }

  /** Removes nodes (by identity). */
  removeNodes(nodes: Iterable<NodeProto>): void {
    const drop = new Set(nodes);
    this.proto.node = this.nodes.filter((n) => !drop.has(n));
    this.invalidate();
  }

  /** Node by exact name. */
  nodeByName(name: string): NodeProto | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  /**
   * Nodes whose name lies in a module scope: `nodesInScope('/model/layers.3/self_attn')` matches
   * `/language_model/model/layers.3/self_attn/Softmax` (the scope may start anywhere in the name's
   * path, but must match whole segments). With `opType`, only nodes of that type.
   */
  nodesInScope(scope: string, opType?: string): NodeProto[] {
    const want = scopeSegments(scope);
    if (want.length === 0) return opType ? this.nodes.filter((n) => n.opType === opType) : [...this.nodes];
    return this.nodes.filter((n) => {
      if (opType && n.opType !== opType) return false;
      const segs = scopeSegments(n.name ?? '');
      for (let s = 0; s + want.length <= segs.length; s++) {
        let ok = true;
        for (let k = 0; k < want.length; k++) {
          if (segs[s + k] !== want[k]) {
            ok = false;
            break;
          }
        }
        if (ok) return true;
      }
      return false;
    });
  }

  /**
   * The nodes in topological order (Kahn's algorithm, ties broken by file order). Throws on cycles.
   */
  topologicalOrder(): NodeProto[] {
    const nodes = this.nodes;
    const pending = new Map<NodeProto, number>();
    const produced = new Map<string, NodeProto>();
    for (const n of nodes) for (const o of n.output ?? []) if (o) produced.set(o, n);
    const users = new Map<NodeProto, NodeProto[]>();
    for (const n of nodes) {
      let count = 0;
      for (const i of new Set(nodeInputs(n))) {
        const p = produced.get(i);
        if (p && p !== n) {
          count++;
          let list = users.get(p);
          if (!list) {
            list = [];
            users.set(p, list);
          }
          list.push(n);
        }
      }
      pending.set(n, count);
    }
    // a binary heap would be faster; file order is nearly topological already, so a sorted ready
    // list with insertion stays close to linear in practice
    const ready: NodeProto[] = nodes.filter((n) => pending.get(n) === 0);
    const out: NodeProto[] = [];
    let head = 0;
    while (head < ready.length) {
      const n = ready[head++] as NodeProto;
      out.push(n);
      for (const u of users.get(n) ?? []) {
        const left = (pending.get(u) as number) - 1;
        pending.set(u, left);
        if (left === 0) ready.push(u);
      }
    }
    if (out.length !== nodes.length) {
      throw new GraphError('the graph has a cycle; it is not a valid ONNX graph');
    }
    return out;
  }

  /** Sorts `nodes` in place into topological order. */
  sortTopologically(): void {
    this.proto.node = this.topologicalOrder();
    this.invalidate();
  }

  /**
   * Tensors reachable from `sources` by following consumers (the sources included), optionally
   * not crossing `stopAt`.
   */
  descendants(sources: Iterable<string>, follow?: (t: string) => boolean): Set<string> {
    const seen = new Set<string>();
    const stack = [...sources];
    while (stack.length) {
      const t = stack.pop() as string;
      if (seen.has(t)) continue;
      seen.add(t);
      if (follow && !follow(t)) continue;
      for (const c of this.consumers(t)) for (const o of c.output ?? []) if (o) stack.push(o);
    }
    return seen;
  }

  /** Tensors that `sinks` depend on (the sinks included), following producers. */
  ancestors(sinks: Iterable<string>, follow?: (t: string) => boolean): Set<string> {
    const seen = new Set<string>();
    const stack = [...sinks];
    while (stack.length) {
      const t = stack.pop() as string;
      if (seen.has(t)) continue;
      seen.add(t);
      if (follow && !follow(t)) continue;
      const p = this.producer(t);
      if (p) for (const i of nodeInputs(p)) stack.push(i);
    }
    return seen;
  }

  /**
   * The nodes on some path from `from` to `to`: nodes that read a descendant of `from` and whose
   * outputs `to` depends on. Returned in topological (file) order.
   */
  nodesBetween(from: Iterable<string>, to: Iterable<string>): NodeProto[] {
    const down = this.descendants(from);
    const up = this.ancestors(to);
    return this.nodes.filter(
      (n) => nodeInputs(n).some((i) => down.has(i)) && (n.output ?? []).some((o) => o && up.has(o)),
    );
  }
}
