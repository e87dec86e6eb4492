import { GraphError } from '../errors.js';
import type { OnnxModel } from '../model.js';
import { makeTensor } from '../proto/tensor.js';
import { DataType, type NodeProto } from '../proto/types.js';
import { type AttrInput, makeAttribute } from './attributes.js';
import type { Dim } from './dims.js';
import { ShapeInference, type TensorInfo } from './shapes.js';

export interface OpOptions {
  domain?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Base for the node name (default: the op type). */
  name?: string;
}

/**
 * Appends nodes to a model's graph with unique, prefixed names, and keeps a shape inference up to
 * date so that code emitting nodes can ask for the type and shape of what it just built.
 * Constants become initializers (small ones are shared).
 */
export class GraphBuilder {
  readonly model: OnnxModel;
  readonly shapes: ShapeInference;
  readonly prefix: string;
  private readonly constCache = new Map<string, string>();

  constructor(model: OnnxModel, options: { prefix: string; shapes?: ShapeInference }) {
    this.model = model;
    this.prefix = options.prefix;
    this.shapes = options.shapes ?? new ShapeInference(model.graph, model.opsetVersion() ?? 17);
  }

  /** The default-domain opset version of the model. */
  get opset(): number {
    return this.model.opsetVersion() ?? 17;
  }

  info(tensor: string): TensorInfo {
    return this.shapes.get(tensor);
  }

  /** Element type of a tensor; throws when it is not known. */
  dtype(tensor: string): number {
    const t = this.shapes.type(tensor);
    if (t === undefined) {
      throw new GraphError(`the element type of tensor ${tensor} is unknown; add value_info for it`);
    }
    return t;
  }

  rank(tensor: string): number | undefined {
    return this.shapes.rank(tensor);
  }

  shape(tensor: string): Dim[] | undefined {
    return this.shapes.shape(tensor);
  }

  /** Emits one node and returns its first output. */
  op(opType: string, inputs: readonly string[], attrs?: Record<string, AttrInput>, options?: OpOptions): string {
    return this.opN(opType, inputs, attrs, options)[0] as string;
  }

  /** Emits one node and returns all its outputs. */
  opN(opType: string, inputs: readonly string[], attrs?: Record<string, AttrInput>, options?: OpOptions): string[] {
    const g = this.model.graph;
    const base = `${this.prefix}/${options?.name ?? opType}`;
    const count = options?.outputs ?? 1;
    const outputs: string[] = [];
    for (let i = 0; i < count; i++) outputs.push(g.uniqueTensorName(`${base}_output_${i}`));
    const node: NodeProto = {
      name: g.uniqueNodeName(base),
      opType,
      input: [...inputs],
      output: outputs,
      attribute: Object.entries(attrs ?? {}).map(([k, v]) => makeAttribute(k, v)),
    };
    if (options?.domain) {
      node.domain = options.domain;
      this.model.requireOpset(options.domain, 1);
    }
    g.addNode(node);
    this.shapes.run([node]);
    return outputs;
  }

  /** A constant tensor (initializer); small constants are shared. */
  constant(dataType: number, dims: readonly number[], values: ArrayLike<number> | readonly bigint[]): string {
    const small = values.length <= 16;
    const key = small ? `${dataType}|${dims.join(',')}|${Array.from(values as ArrayLike<number>).join(',')}` : '';
    if (small) {
      const hit = this.constCache.get(key);
      if (hit) return hit;
    }
    const name = this.model.graph.uniqueTensorName(`${this.prefix}/const`);
    const t = makeTensor(name, dataType, dims, values);
    this.model.graph.addInitializer(t);
    this.shapes.set(name, {
      type: dataType,
      shape: [...dims],
      value: dims.length <= 1 && values.length <= 64 ? Array.from(values as ArrayLike<number>, Number) : undefined,
    });
    if (small) this.constCache.set(key, name);
    return name;
  }

  /** A 1-D int64 constant. */
  int64s(values: readonly number[]): string {
    return this.constant(DataType.INT64, [values.length], values);
  }

  /** A scalar int64 constant. */
  int64(value: number): string {
    return this.constant(DataType.INT64, [], [value]);
  }

  /** A scalar constant of the given element type. */
  scalar(value: number, dataType: number): string {
    return this.constant(dataType, [], [value]);
  }

  /** A scalar constant with the element type of `like`. */
  scalarLike(value: number, like: string): string {
    return this.scalar(value, this.dtype(like));
  }

  shapeOf(x: string): string {
    return this.op('Shape', [x]);
  }

  cast(x: string, to: number): string {
    if (this.shapes.type(x) === to) return x;
    return this.op('Cast', [x], { to });
  }

  /** Unsqueeze with constant axes (opset-aware). */
  unsqueeze(x: string, axes: readonly number[] | string): string {
    if (typeof axes === 'string') return this.op('Unsqueeze', [x, axes]);
    if (this.opset < 13) return this.op('Unsqueeze', [x], { axes: [...axes] });
    return this.op('Unsqueeze', [x, this.int64s(axes)]);
  }

  /** Squeeze with constant axes (opset-aware). */
  squeeze(x: string, axes: readonly number[]): string {
    if (this.opset < 13) return this.op('Squeeze', [x], { axes: [...axes] });
    return this.op('Squeeze', [x, this.int64s(axes)]);
  }

  /**
   * A reduction with constant (number[]) or run-time (tensor name) axes, in the form the model's
   * opset wants (axes as an input for ReduceSum from 13 and the others from 18).
   */
  reduce(
    op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax' | 'ReduceMin',
    x: string,
    axes: readonly number[] | string | undefined,
    keepdims: boolean,
    extra?: Record<string, AttrInput>,
  ): string {
    const axesAsInput = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    const attrs: Record<string, AttrInput> = { keepdims: keepdims ? 1 : 0, ...extra };
    if (axes === undefined) return this.op(op, [x], attrs);
    if (typeof axes === 'string') {
      if (!axesAsInput) {
        throw new GraphError(`${op} with run-time axes needs opset ${op === 'ReduceSum' ? 13 : 18} or later`);
      }
      return this.op(op, [x, axes], attrs);
    }
    if (axesAsInput) return this.op(op, [x, this.int64s(axes)], attrs);
    return this.op(op, [x], { ...attrs, axes: [...axes] });
  }

  /** Zeros with the shape and type of `like`. */
  zerosLike(like: string): string {
    const t = makeTensor('value', this.dtype(like), [1], [0]);
    return this.op('ConstantOfShape', [this.shapeOf(like)], { value: { t } });
  }

  /** Ones with the shape and type of `like`. */
  onesLike(like: string): string {
    const t = makeTensor('value', this.dtype(like), [1], [1]);
    return this.op('ConstantOfShape', [this.shapeOf(like)], { value: { t } });
  }
}
