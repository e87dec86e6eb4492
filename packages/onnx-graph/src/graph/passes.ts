import { GraphError } from '../errors.js';
import { OnnxModel } from '../model.js';
import { toNumber } from '../proto/int64.js';
import {
  AttributeType,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type TypeProto,
  type ValueInfoProto,
} from '../proto/types.js';
import { getAttribute } from './attributes.js';
import { GraphBuilder } from './builder.js';
import type { Dim } from './dims.js';
import { type Graph, nodeInputs } from './graph.js';
import { ShapeInference } from './shapes.js';

/** A TypeProto for a tensor with the given element type and symbolic dims (dims omitted: unknown shape). */
export function tensorType(elemType: number, dims?: readonly Dim[]): TypeProto {
  const tt: NonNullable<TypeProto['tensorType']> = { elemType };
  if (dims) {
    tt.shape = {
      dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : d === null ? {} : { dimParam: d })),
    };
  }
  return { tensorType: tt };
}

/** Declares a new graph input. */
export function addGraphInput(model: OnnxModel, name: string, elemType: number, dims?: readonly Dim[]): void {
  const g = model.graph;
  if (g.hasTensor(name)) throw new GraphError(`cannot add graph input ${name}: the name is taken`);
  (g.proto.input as ValueInfoProto[]).push({ name, type: tensorType(elemType, dims) });
  g.invalidate();
}

/** Declares an existing tensor as a graph output. */
export function addGraphOutput(model: OnnxModel, name: string, elemType: number, dims?: readonly Dim[]): void {
  const g = model.graph;
  if (!g.hasTensor(name)) throw new GraphError(`cannot output ${name}: no such tensor`);
  if (g.isGraphOutput(name)) return;
  (g.proto.output as ValueInfoProto[]).push({ name, type: tensorType(elemType, dims) });
  g.invalidate();
}

export interface CloneOptions {
  /** The tensor a cloned node reads in place of an original input ('' stays ''). */
  mapInput: (tensor: string) => string;
  /** Name for the clone of an original output tensor. */
  renameOutput: (tensor: string) => string;
  /** Name for the clone of a node (default: a unique variant of the original). */
  renameNode?: (node: NodeProto) => string;
}

/**
 * Appends copies of `nodes` (given in topological order) whose outputs get new names. Inputs
 * produced by an earlier node of the set are rewired to the copies; other inputs go through
 * `mapInput`. Returns original output name -> clone name.
 */
export function cloneNodes(graph: Graph, nodes: readonly NodeProto[], options: CloneOptions): Map<string, string> {
  const renamed = new Map<string, string>();
  for (const n of nodes) {
    const input = (n.input ?? []).map((i) => (i === '' ? '' : (renamed.get(i) ?? options.mapInput(i))));
    const output = (n.output ?? []).map((o) => {
      if (!o) return '';
      const name = options.renameOutput(o);
      renamed.set(o, name);
      return name;
    });
    const copy: NodeProto = {
      name: options.renameNode
        ? options.renameNode(n)
        : graph.uniqueNodeName(n.name ? `${n.name}_clone` : `${n.opType}_clone`),
      opType: n.opType ?? '',
      input,
      output,
      attribute: [...(n.attribute ?? [])],
    };
    if (n.domain) copy.domain = n.domain;
    graph.addNode(copy);
  }
  return renamed;
}

/**
 * Extracts the subgraph that computes `outputs` from `inputs` as a new model (the slice between
 * tensors). Graph inputs of the source that the slice still needs stay inputs; initializers are
 * shared (external data stays external).
 */
export function extractSubgraph(model: OnnxModel, inputs: readonly string[], outputs: readonly string[]): OnnxModel {
  const g = model.graph;
  for (const t of [...inputs, ...outputs]) {
    if (!g.hasTensor(t)) throw new GraphError(`cannot slice at ${t}: no such tensor`);
  }
  const stop = new Set(inputs);
  const needed = g.ancestors(outputs, (t) => !stop.has(t));
  const nodes = g.topologicalOrder().filter((n) => (n.output ?? []).some((o) => o && needed.has(o) && !stop.has(o)));
  const used = new Set<string>();
  for (const n of nodes) for (const i of nodeInputs(n)) used.add(i);
  for (const o of outputs) used.add(o);
  const shapes = new ShapeInference(g, model.opsetVersion() ?? 17);
  const info = (t: string): ValueInfoProto => {
    const declared = g.valueInfo(t);
    if (declared?.type) return { name: t, type: declared.type };
    const i = shapes.get(t);
    if (i.type === undefined) throw new GraphError(`cannot slice at ${t}: its element type is unknown`);
    return { name: t, type: tensorType(i.type, i.shape) };
  };
  const newInputs: ValueInfoProto[] = inputs.map(info);
  for (const v of g.inputs) {
    if (v.name && used.has(v.name) && !stop.has(v.name)) newInputs.push(v);
  }
  const initializers: TensorProto[] = (g.proto.initializer ?? []).filter(
    (t) => t.name && used.has(t.name) && !stop.has(t.name),
  );
  return new OnnxModel({
    irVersion: model.proto.irVersion ?? 8,
    opsetImport: [...(model.proto.opsetImport ?? [])],
    producerName: model.proto.producerName ?? '',
    producerVersion: model.proto.producerVersion ?? '',
    graph: {
      name: `${g.proto.name ?? 'graph'}_slice`,
      node: nodes.map((n) => ({ ...n })),
      initializer: initializers,
      input: newInputs,
      output: outputs.map(info),
    },
  });
}

/**
 * Replaces a node by the subgraph that `expand` emits (e.g. a fused op by primitive ops). `expand`
 * receives a builder and the node's inputs and returns one tensor per node output; the original
 * output names are kept (through Identity nodes) so consumers and graph outputs stay wired.
 */
export function replaceNode(
  model: OnnxModel,
  node: NodeProto,
  expand: (b: GraphBuilder, inputs: readonly string[]) => readonly string[],
  prefix = node.name || node.opType || 'expanded',
): void {
  const g = model.graph;
  if (!g.nodes.includes(node)) throw new GraphError(`cannot replace node ${node.name}: it is not in the graph`);
  const outs = [...(node.output ?? [])];
  g.removeNodes([node]);
  const b = new GraphBuilder(model, { prefix });
  const produced = expand(b, node.input ?? []);
  if (produced.length < outs.filter((o) => o).length) {
    throw new GraphError(`expansion of ${node.name} returned ${produced.length} tensors for ${outs.length} outputs`);
  }
  outs.forEach((o, i) => {
    if (!o) return;
    g.addNode({
      name: g.uniqueNodeName(`${prefix}/output_${i}`),
      opType: 'Identity',
      input: [produced[i] as string],
      output: [o],
    });
  });
  g.sortTopologically();
}

/** Drops the nodes nothing reads (no consumer, no graph output among their outputs), until none is left. */
export function pruneUnread(graph: Graph): void {
  const outputs = new Set(graph.outputs.map((o) => o.name));
  for (;;) {
    const unread = graph.nodes.filter((n) =>
      (n.output ?? []).every((o) => !o || (!outputs.has(o) && graph.consumers(o).length === 0)),
    );
    if (unread.length === 0) return;
    graph.removeNodes(unread);
  }
}

/**
 * Makes the consumers of `from` read `to` instead (graph outputs keep their names). Nodes in
 * `except` (e.g. the node computing `to` from `from`) keep reading `from`.
 */
export function redirectConsumers(graph: Graph, from: string, to: string, except: Iterable<NodeProto> = []): void {
  if (!graph.hasTensor(to)) throw new GraphError(`cannot redirect ${from} to ${to}: no such tensor`);
  const keep = new Set(except);
  for (const n of graph.consumers(from)) {
    if (keep.has(n)) continue;
    n.input = (n.input ?? []).map((i) => (i === from ? to : i));
  }
  graph.invalidate();
  graph.sortTopologically();
}

/**
 * Inlines every `If` whose condition is the boolean graph input `condition` with the branch taken
 * when it is `value`, then drops that input. This is how a decoder merged the way optimum merges
 * them (`use_cache_branch`: with-past and without-past decoders under one If) becomes one plain
 * decoder. ONNX names are unique across scopes, so the branch's nodes and initializers move into
 * the main graph unchanged; its outputs are wired to the If's through Identity nodes.
 */
export function specializeIf(model: OnnxModel, condition: string, value: boolean): void {
  const g = model.graph;
  const ifs = g.nodes.filter((n) => n.opType === 'If' && n.input?.[0] === condition);
  if (ifs.length === 0) return;
  for (const node of ifs) {
    const branch = getAttribute(node, value ? 'then_branch' : 'else_branch')?.g;
    if (!branch) throw new GraphError(`If node ${node.name || '(unnamed)'} has no ${value ? 'then' : 'else'} branch`);
    g.removeNodes([node]);
    for (const t of branch.initializer ?? []) g.addInitializer(t);
    for (const n of branch.node ?? []) g.addNode(n);
    (branch.output ?? []).forEach((o, i) => {
      const out = node.output?.[i];
      if (!out || !o.name) return;
      g.addNode({
        name: g.uniqueNodeName(`${node.name || 'If'}/output_${i}`),
        opType: 'Identity',
        input: [o.name],
        output: [out],
      });
    });
  }
  if (g.consumers(condition).length === 0) {
    model.graph.proto.input = g.inputs.filter((v) => v.name !== condition);
  }
  g.invalidate();
  g.sortTopologically();
}

/**
 * The inverse of `specializeIf`: one model whose If on `condition` runs the graph of `then` or of
 * `otherwise`, two models derived from one merged decoder. Initializers named in `shared` (the
 * merged decoder's top-level weights) and the graph inputs stay in the outer scope, once; every
 * other tensor and node is renamed per branch so the two stay disjoint (ONNX names are unique across
 * scopes); the outputs keep their names outside the If. `condition` is left for the caller to define.
 */
export function mergeUnderIf(
  then: OnnxModel,
  otherwise: OnnxModel,
  condition: string,
  shared: ReadonlySet<string>,
): OnnxModel {
  const outer = new Set([...then.graph.inputs.map((v) => v.name ?? ''), ...shared]);
  const branch = (model: OnnxModel, tag: string): GraphProto => {
    const rename = (t: string) => (t === '' || outer.has(t) ? t : `${t}::${tag}`);
    const node = model.graph.nodes.map((n) => ({
      ...n,
      name: `${n.name || n.opType}::${tag}`,
      input: (n.input ?? []).map(rename),
      output: (n.output ?? []).map(rename),
    }));
    const initializer = (model.graph.proto.initializer ?? [])
      .filter((t) => !shared.has(t.name ?? ''))
      .map((t) => ({ ...t, name: rename(t.name ?? '') }));
    const output = model.graph.outputs.map((v) => ({ ...v, name: rename(v.name ?? '') }));
    return { name: tag, node, initializer, output };
  };
  const opsets = new Map<string, number>();
  for (const m of [then, otherwise]) {
    for (const o of m.proto.opsetImport ?? []) {
      const domain = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
      opsets.set(domain, Math.max(opsets.get(domain) ?? 0, toNumber(o.version)));
    }
  }
  return new OnnxModel({
    ...then.proto,
    opsetImport: [...opsets].map(([domain, version]) => ({ domain, version })),
    graph: {
      name: then.graph.proto.name ?? 'merged',
      input: then.graph.inputs,
      output: then.graph.outputs,
      initializer: (then.graph.proto.initializer ?? []).filter((t) => shared.has(t.name ?? '')),
      node: [
        {
          name: 'dexar/with_past',
          opType: 'If',
          input: [condition],
          output: then.graph.outputs.map((v) => v.name ?? ''),
          attribute: [
            { name: 'then_branch', type: AttributeType.GRAPH, g: branch(then, 'then') },
            { name: 'else_branch', type: AttributeType.GRAPH, g: branch(otherwise, 'else') },
          ],
        },
      ],
    },
  });
}
