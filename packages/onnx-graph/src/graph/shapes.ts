import { toNumber } from '../proto/int64.js';
import { dataTypeName, readTensorNumbers, tensorDims } from '../proto/tensor.js';
import { DataType, type NodeProto, type TensorProto, type TypeProto } from '../proto/types.js';
import { attrInt, attrInts, attrTensor, getAttribute } from './attributes.js';
import {
  atomsOf,
  broadcastShapes,
  type Dim,
  dimAdd,
  dimDiv,
  dimMul,
  dimProduct,
  dimSub,
  mapAtoms,
  symbol,
} from './dims.js';
import type { Graph } from './graph.js';

/** What is known about a tensor: element type, shape (symbolic), and for small integer tensors their values. */
export interface TensorInfo {
  type?: number;
  shape?: Dim[];
  /** Values of a rank-0/1 integer (or small float) tensor, symbolic where they come from shapes. */
  value?: Dim[];
}

const MAX_VALUE_ELEMENTS = 64;
const INT64_MAX_APPROX = 2 ** 62;

const UNARY_SAME = new Set([
  'Identity',
  'Abs',
  'Neg',
  'Sqrt',
  'Exp',
  'Log',
  'Tanh',
  'Sigmoid',
  'Erf',
  'Reciprocal',
  'Relu',
  'Sin',
  'Cos',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'Softplus',
  'Softsign',
  'Gelu',
  'QuickGelu',
  'Softmax',
  'LogSoftmax',
  'Trilu',
  'CumSum',
  'LeakyRelu',
  'Elu',
  'Selu',
  'HardSigmoid',
  'HardSwish',
  'Mish',
  'Clip',
  'Celu',
  'ThresholdedRelu',
  'Hardmax',
  'Dropout',
  'LpNormalization',
  'ScatterND',
  'ScatterElements',
  'Scatter',
]);

const BOOL_UNARY = new Set(['Not', 'IsNaN', 'IsInf']);

const BROADCAST = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
  'Mod',
  'And',
  'Or',
  'Xor',
  'Equal',
  'Less',
  'LessOrEqual',
  'Greater',
  'GreaterOrEqual',
  'Where',
  'PRelu',
  'Sum',
  'Mean',
  'BitShift',
  'BiasGelu',
  'FastGelu',
]);

const COMPARISONS = new Set(['And', 'Or', 'Xor', 'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual']);

const REDUCE = new Set([
  'ReduceSum',
  'ReduceMean',
  'ReduceMax',
  'ReduceMin',
  'ReduceProd',
  'ReduceL1',
  'ReduceL2',
  'ReduceLogSum',
  'ReduceLogSumExp',
  'ReduceSumSquare',
]);

function hasOwn(o: object, key: string): boolean {
  return Object.hasOwn(o, key);
}

/** Reads declared type information (elem type and symbolic shape) from a TypeProto. */
export function infoFromType(type: TypeProto | undefined): TensorInfo {
  const tt = type?.tensorType;
  if (!tt) return {};
  const info: TensorInfo = {};
  if (tt.elemType) info.type = tt.elemType;
  if (tt.shape) {
    info.shape = (tt.shape.dim ?? []).map((d) => {
      if (hasOwn(d, 'dimParam') && d.dimParam) return symbol(d.dimParam);
      if (hasOwn(d, 'dimValue')) return toNumber(d.dimValue);
      return null;
    });
  }
  return info;
}

function tensorInfo(t: TensorProto, withValue: boolean): TensorInfo {
  const dims = tensorDims(t);
  const info: TensorInfo = { type: t.dataType ?? DataType.UNDEFINED, shape: dims };
  if (withValue && dims.length <= 1 && (dims[0] ?? 1) <= MAX_VALUE_ELEMENTS && t.dataLocation !== 1) {
    try {
      info.value = readTensorNumbers(t);
    } catch {
      // leave value unknown
    }
  }
  return info;
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Elementwise op on symbolic values with numpy broadcasting for rank <= 1. */
function mapValues(a: Dim[], b: Dim[], fn: (x: Dim, y: Dim) => Dim): Dim[] | undefined {
  if (a.length === b.length) return a.map((x, i) => fn(x, b[i] as Dim));
  if (a.length === 1) return b.map((y) => fn(a[0] as Dim, y));
  if (b.length === 1) return a.map((x) => fn(x, b[0] as Dim));
  return undefined;
}

/** Passes of inference at most: each pass may merge input-dim symbols found equal by the last. */
const MAX_UNIFY_PASSES = 5;

/**
 * Symbolic shape, type and small-value inference over a graph. It never throws on an operator it
 * does not know: those outputs stay unknown, and declared `value_info` fills in where present.
 *
 * It does not rely on the exporter's shape annotations: every graph-input dim without a name gets
 * a symbol of its own (`inputs_embeds__1`), and dims that broadcasting proves equal are merged, so
 * a graph whose value_info was stripped and whose input dims are unnamed still tells the sequence
 * axis apart from the others. Merging is done by re-running inference with the input dims
 * substituted, until no new equality turns up.
 */
export class ShapeInference {
  private readonly graph: Graph;
  private readonly info = new Map<string, TensorInfo>();
  private readonly opset: number;
  /** Symbols of graph-input dims, and those among them the exporter left unnamed. */
  private readonly inputAtoms = new Set<string>();
  private readonly anonymousAtoms = new Set<string>();
  /** Input-dim symbol -> the dim it was found equal to. */
  private readonly bindings = new Map<string, Dim>();
  private newBinding = false;
  private readonly unify = (x: Dim, y: Dim): void => this.recordEqual(x, y);

  constructor(graph: Graph, opset: number) {
    this.graph = graph;
    this.opset = opset;
    const order = graph.topologicalOrder();
    for (let pass = 0; pass < MAX_UNIFY_PASSES; pass++) {
      this.info.clear();
      this.newBinding = false;
      this.seedInputs();
      this.run(order);
      if (!this.newBinding) break;
    }
  }

  private seedInputs(): void {
    const graph = this.graph;
    for (const v of graph.proto.input ?? []) {
      if (!v.name || graph.initializer(v.name)) continue;
      const info = infoFromType(v.type);
      info.shape = info.shape?.map((d, axis) => {
        if (d !== null) {
          if (typeof d === 'string') this.inputAtoms.add(d);
          return this.resolve(d);
        }
        const fresh = symbol(`${(v.name as string).replace(/[^A-Za-z0-9_.]/g, '_')}__${axis}`);
        this.inputAtoms.add(fresh);
        this.anonymousAtoms.add(fresh);
        return this.resolve(fresh);
      });
      this.info.set(v.name, info);
    }
    for (const t of graph.proto.initializer ?? []) {
      if (t.name) this.info.set(t.name, tensorInfo(t, (t.dataType ?? 0) !== DataType.FLOAT16));
    }
  }

  /** A dim with every bound input symbol replaced by what it equals. */
  private resolve(d: Dim, depth = 0): Dim {
    if (depth > 8) return d;
    return mapAtoms(d, (a) => {
      const bound = this.bindings.get(a);
      return bound === undefined ? a : this.resolve(bound, depth + 1);
    });
  }

  /** Two dims broadcasting says are equal: bind an unbound input symbol among them to the other. */
  private recordEqual(x: Dim, y: Dim): void {
    const a = this.resolve(x);
    const b = this.resolve(y);
    if (a === null || b === null || a === b) return;
    const bindable = (d: Dim, other: Dim): d is string =>
      typeof d === 'string' && this.inputAtoms.has(d) && !this.bindings.has(d) && !atomsOf(other).includes(d);
    // bind an unnamed symbol to a named one; otherwise the second operand's to the first's
    const unnamedToNamed = this.anonymousAtoms.has(a as string) && !this.anonymousAtoms.has(b as string);
    const order: Array<[Dim, Dim]> = unnamedToNamed
      ? [
          [a, b],
          [b, a],
        ]
      : [
          [b, a],
          [a, b],
        ];
    for (const [d, other] of order) {
      if (bindable(d, other)) {
        this.bindings.set(d, other);
        this.newBinding = true;
        return;
      }
    }
  }

  /** What is known about a tensor (an empty object when nothing is). */
  get(name: string): TensorInfo {
    return this.info.get(name) ?? {};
  }

  set(name: string, info: TensorInfo): void {
    this.info.set(name, info);
  }

  type(name: string): number | undefined {
    return this.get(name).type;
  }

  shape(name: string): Dim[] | undefined {
    return this.get(name).shape;
  }

  rank(name: string): number | undefined {
    return this.get(name).shape?.length;
  }

  /** Infers the outputs of `nodes`, in the given (topological) order. */
  run(nodes: Iterable<NodeProto>): void {
    for (const n of nodes) {
      let outs: TensorInfo[];
      try {
        outs = this.inferNode(n);
      } catch {
        outs = [];
      }
      (n.output ?? []).forEach((o, i) => {
        if (!o) return;
        const inferred = outs[i] ?? {};
        const declared = infoFromType(this.graph.valueInfo(o)?.type);
        const merged: TensorInfo = {
          type: inferred.type ?? declared.type,
          shape: mergeShapes(inferred.shape, declared.shape),
        };
        if (inferred.value) merged.value = inferred.value;
        this.info.set(o, merged);
      });
    }
  }

  private values(name: string | undefined): Dim[] | undefined {
    if (!name) return undefined;
    return this.get(name).value;
  }

  private numbers(name: string | undefined): number[] | undefined {
    const v = this.values(name);
    if (!v || v.some((x) => typeof x !== 'number')) return undefined;
    return v as number[];
  }

  private inferNode(n: NodeProto): TensorInfo[] {
    const op = n.opType ?? '';
    const ins = n.input ?? [];
    const inp = (k: number): TensorInfo => (ins[k] ? this.get(ins[k] as string) : {});
    const x = inp(0);
    const domain = n.domain ?? '';
    if (domain !== '' && domain !== 'ai.onnx' && domain !== 'com.microsoft') return [];

    if (op === 'Constant') {
      const t = attrTensor(n, 'value');
      if (t) return [tensorInfo(t, true)];
      const vi = getAttribute(n, 'value_int');
      if (vi) return [{ type: DataType.INT64, shape: [], value: [toNumber(vi.i)] }];
      const vis = attrInts(n, 'value_ints');
      if (vis) return [{ type: DataType.INT64, shape: [vis.length], value: vis }];
      const vf = getAttribute(n, 'value_float');
      if (vf) return [{ type: DataType.FLOAT, shape: [], value: [vf.f ?? 0] }];
      const vfs = getAttribute(n, 'value_floats');
      if (vfs) return [{ type: DataType.FLOAT, shape: [vfs.floats?.length ?? 0], value: vfs.floats ?? [] }];
      return [];
    }
    if (UNARY_SAME.has(op)) {
      const out: TensorInfo = { type: x.type, shape: x.shape };
      if (op === 'Identity' && x.value) out.value = x.value;
      if (op === 'Neg' && x.value) out.value = x.value.map((v) => (typeof v === 'number' ? -v : null));
      if (op === 'Dropout') return [out, { type: DataType.BOOL, shape: x.shape }];
      return [out];
    }
    if (BOOL_UNARY.has(op)) return [{ type: DataType.BOOL, shape: x.shape }];
    if (op === 'Cast' || op === 'CastLike') {
      const to = op === 'Cast' ? attrInt(n, 'to') : inp(1).type;
      const out: TensorInfo = { type: to, shape: x.shape };
      if (x.value) {
        const intTarget = to !== DataType.FLOAT && to !== DataType.DOUBLE && to !== DataType.FLOAT16;
        out.value = intTarget ? x.value.map((v) => (typeof v === 'number' ? Math.trunc(v) : v)) : x.value;
      }
      return [out];
    }
    if (BROADCAST.has(op)) return [this.broadcastOp(n, op)];
    if (op === 'MatMul' || op === 'MatMulInteger') {
      return [
        { type: op === 'MatMul' ? x.type : DataType.INT32, shape: matmulShape(x.shape, inp(1).shape, this.unify) },
      ];
    }
    if (op === 'Gemm') {
      const a = x.shape;
      const b = inp(1).shape;
      if (!a || !b || a.length !== 2 || b.length !== 2) return [{ type: x.type }];
      const m = attrInt(n, 'transA', 0) ? a[1] : a[0];
      const nn = attrInt(n, 'transB', 0) ? b[0] : b[1];
      return [{ type: x.type, shape: [m as Dim, nn as Dim] }];
    }
    if (op === 'Transpose') {
      if (!x.shape) return [{ type: x.type }];
      const perm = attrInts(n, 'perm') ?? x.shape.map((_, i, a) => a.length - 1 - i);
      return [{ type: x.type, shape: perm.map((p) => x.shape?.[p] ?? null) }];
    }
    if (op === 'Reshape') return [{ type: x.type, shape: this.reshape(n), value: x.value }];
    if (op === 'Shape') {
      if (!x.shape) return [{ type: DataType.INT64 }];
      const r = x.shape.length;
      let start = attrInt(n, 'start', 0);
      let end = attrInt(n, 'end', r);
      start = Math.min(Math.max(normAxis(start, r), 0), r);
      end = Math.min(Math.max(normAxis(end, r), 0), r);
      const value = x.shape.slice(start, Math.max(start, end));
      return [{ type: DataType.INT64, shape: [value.length], value }];
    }
    if (op === 'Size') {
      return [{ type: DataType.INT64, shape: [], value: x.shape ? [dimProduct(x.shape)] : undefined }];
    }
    if (op === 'Gather') return [this.gather(n)];
    if (op === 'GatherElements') return [{ type: x.type, shape: inp(1).shape }];
    if (op === 'Unsqueeze') return [this.unsqueeze(n)];
    if (op === 'Squeeze') return [this.squeeze(n)];
    if (op === 'Concat') return [this.concat(n)];
    if (op === 'Split') return this.split(n);
    if (op === 'Slice') return [this.slice(n)];
    if (op === 'Expand') {
      const target = this.values(ins[1]);
      if (!x.shape || !target) return [{ type: x.type }];
      return [{ type: x.type, shape: broadcastShapes(x.shape, target, this.unify) }];
    }
    if (op === 'Tile') {
      const reps = this.values(ins[1]);
      if (!x.shape || !reps) return [{ type: x.type }];
      return [{ type: x.type, shape: x.shape.map((d, i) => dimMul(d, reps[i] ?? null)) }];
    }
    if (op === 'ConstantOfShape') {
      const t = attrTensor(n, 'value');
      const type = t?.dataType ?? DataType.FLOAT;
      const shape = this.values(ins[0]);
      const out: TensorInfo = { type, shape };
      if (shape && shape.length <= 1 && typeof shape[0] === 'number' && shape[0] <= MAX_VALUE_ELEMENTS) {
        const v = t ? (readTensorNumbers(t)[0] ?? 0) : 0;
        out.value = shape.length === 0 ? [v] : new Array(shape[0]).fill(v);
      }
      return [out];
    }
    if (op === 'Range') {
      const s = this.numbers(ins[0]);
      const l = this.numbers(ins[1]);
      const d = this.numbers(ins[2]);
      if (s && l && d?.[0]) {
        const count = Math.max(Math.ceil(((l[0] as number) - (s[0] as number)) / (d[0] as number)), 0);
        const out: TensorInfo = { type: x.type, shape: [count] };
        if (count <= MAX_VALUE_ELEMENTS) {
          out.value = Array.from({ length: count }, (_, i) => (s[0] as number) + i * (d[0] as number));
        }
        return [out];
      }
      const ls = this.values(ins[1]);
      if (s && s[0] === 0 && d && d[0] === 1 && ls && ls[0] !== undefined) {
        return [{ type: x.type, shape: [ls[0]] }];
      }
      return [{ type: x.type, shape: [null] }];
    }
    if (REDUCE.has(op)) return [this.reduce(n, op)];
    if (op === 'ArgMax' || op === 'ArgMin') {
      if (!x.shape) return [{ type: DataType.INT64 }];
      const axis = normAxis(attrInt(n, 'axis', 0), x.shape.length);
      const keep = attrInt(n, 'keepdims', 1);
      const shape = keep ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_, i) => i !== axis);
      return [{ type: DataType.INT64, shape }];
    }
    if (op === 'Flatten') {
      if (!x.shape) return [{ type: x.type }];
      const axis = normAxis(attrInt(n, 'axis', 1), x.shape.length);
      return [{ type: x.type, shape: [dimProduct(x.shape.slice(0, axis)), dimProduct(x.shape.slice(axis))] }];
    }
    if (op === 'NonZero') return [{ type: DataType.INT64, shape: [x.shape?.length ?? null, null] }];
    if (op === 'OneHot') {
      const depth = this.values(ins[1]);
      if (!x.shape || !depth) return [{ type: inp(2).type }];
      const r = x.shape.length + 1;
      const axis = normAxis(attrInt(n, 'axis', -1), r);
      const shape = [...x.shape];
      shape.splice(axis, 0, depth[0] ?? null);
      return [{ type: inp(2).type, shape }];
    }
    if (op === 'Pad') {
      const pads = this.values(ins[1]);
      if (!x.shape || !pads) return [{ type: x.type }];
      const r = x.shape.length;
      const axes = this.numbers(ins[3]) ?? x.shape.map((_, i) => i);
      const shape = [...x.shape];
      axes.forEach((a, k) => {
        const ax = normAxis(a, r);
        shape[ax] = dimAdd(dimAdd(shape[ax] ?? null, pads[k] ?? null), pads[k + axes.length] ?? null);
      });
      return [{ type: x.type, shape }];
    }
    if (op === 'LayerNormalization' || op === 'SimplifiedLayerNormalization') {
      const axis = attrInt(n, 'axis', -1);
      const stat = x.shape ? x.shape.map((d, i) => (i >= normAxis(axis, x.shape?.length ?? 0) ? 1 : d)) : undefined;
      const statType = attrInt(n, 'stash_type', 1) === 1 ? DataType.FLOAT : x.type;
      return [
        { type: x.type, shape: x.shape },
        { type: statType, shape: stat },
        { type: statType, shape: stat },
      ];
    }
    if (op === 'SkipSimplifiedLayerNormalization' || op === 'SkipLayerNormalization') {
      const stat = x.shape ? x.shape.map((d, i, a) => (i === a.length - 1 ? 1 : d)) : undefined;
      return [
        { type: x.type, shape: x.shape },
        { type: DataType.FLOAT, shape: stat },
        { type: DataType.FLOAT, shape: stat },
        { type: x.type, shape: x.shape },
      ];
    }
    if (op === 'RotaryEmbedding') return [{ type: x.type, shape: x.shape }];
    if (op === 'MatMulNBits' || op === 'MatMulBnb4') {
      return [{ type: x.type, shape: x.shape ? [...x.shape.slice(0, -1), attrInt(n, 'N') ?? null] : undefined }];
    }
    if (op === 'DynamicQuantizeMatMul')
      return [{ type: x.type, shape: matmulShape(x.shape, inp(1).shape, this.unify) }];
    if (op === 'DynamicQuantizeLinear') {
      return [
        { type: DataType.UINT8, shape: x.shape },
        { type: DataType.FLOAT, shape: [] },
        { type: DataType.UINT8, shape: [] },
      ];
    }
    if (op === 'QuantizeLinear') {
      return [{ type: inp(2).type ?? (attrInt(n, 'output_dtype', 0) || DataType.UINT8), shape: x.shape }];
    }
    if (op === 'DequantizeLinear') return [{ type: inp(1).type, shape: x.shape }];
    if (op === 'MultiHeadAttention' || op === 'GroupQueryAttention' || op === 'Attention') {
      return fusedAttentionShapes(n, (k) => inp(k), domain === 'com.microsoft');
    }
    return [];
  }

  private broadcastOp(n: NodeProto, op: string): TensorInfo {
    const ins = (n.input ?? []).filter((i) => i !== '');
    const infos = ins.map((i) => this.get(i));
    let type = infos[0]?.type;
    if (COMPARISONS.has(op)) type = DataType.BOOL;
    if (op === 'Where') type = infos[1]?.type;
    // an operand of unknown shape is taken to broadcast into the known ones (an exporter's mask)
    let shape: Dim[] | undefined;
    for (const info of infos) {
      if (info.shape) shape = shape ? broadcastShapes(shape, info.shape, this.unify) : info.shape;
    }
    const out: TensorInfo = { type, shape };
    const a = infos[0]?.value;
    const b = infos[1]?.value;
    if (a && b && shape && shape.length <= 1) {
      const num = (fn: (x: number, y: number) => number) => (x: Dim, y: Dim) =>
        typeof x === 'number' && typeof y === 'number' ? fn(x, y) : null;
      const intType = type === DataType.INT64 || type === DataType.INT32;
      switch (op) {
        case 'Add':
          out.value = mapValues(a, b, dimAdd);
          break;
        case 'Sub':
          out.value = mapValues(a, b, dimSub);
          break;
        case 'Mul':
          out.value = mapValues(a, b, dimMul);
          break;
        case 'Div':
          out.value = intType
            ? mapValues(a, b, (x, y) =>
                typeof x === 'number' && typeof y === 'number' && y !== 0 ? Math.trunc(x / y) : dimDiv(x, y),
              )
            : mapValues(
                a,
                b,
                num((x, y) => x / y),
              );
          break;
        case 'Equal':
          out.value = mapValues(a, b, (x, y) =>
            typeof x === 'number' && typeof y === 'number' ? Number(x === y) : x !== null && x === y ? 1 : null,
          );
          break;
        case 'Less':
          out.value = mapValues(
            a,
            b,
            num((x, y) => Number(x < y)),
          );
          break;
        case 'Greater':
          out.value = mapValues(
            a,
            b,
            num((x, y) => Number(x > y)),
          );
          break;
        case 'Max':
          out.value = mapValues(a, b, num(Math.max));
          break;
        case 'Min':
          out.value = mapValues(a, b, num(Math.min));
          break;
        case 'Where': {
          const c = infos[2]?.value;
          if (c) {
            const cond = a;
            out.value = cond.map((cv, i) =>
              cv === null
                ? null
                : cv
                  ? ((b.length === 1 ? b[0] : b[i]) ?? null)
                  : ((c.length === 1 ? c[0] : c[i]) ?? null),
            );
          }
          break;
        }
        default:
          break;
      }
    }
    return out;
  }

  private reshape(n: NodeProto): Dim[] | undefined {
    const ins = n.input ?? [];
    const x = this.get(ins[0] ?? '');
    const target = this.values(ins[1]);
    const targetShape = this.get(ins[1] ?? '').shape;
    if (!target) {
      const len = targetShape?.[0];
      return typeof len === 'number' ? new Array(len).fill(null) : undefined;
    }
    const allowZero = attrInt(n, 'allowzero', 0);
    const out: Dim[] = target.map((d, i) => {
      if (d === 0 && !allowZero) return x.shape?.[i] ?? null;
      if (d === -1) return -1;
      return d;
    });
    const minus = out.indexOf(-1);
    if (minus >= 0) {
      const known = out.filter((_, i) => i !== minus);
      const total = x.shape ? dimProduct(x.shape) : null;
      out[minus] = dimDiv(total, dimProduct(known));
    }
    return out;
  }

  private gather(n: NodeProto): TensorInfo {
    const ins = n.input ?? [];
    const data = this.get(ins[0] ?? '');
    const idx = this.get(ins[1] ?? '');
    if (!data.shape || !idx.shape) return { type: data.type };
    const axis = normAxis(attrInt(n, 'axis', 0), data.shape.length);
    const shape = [...data.shape.slice(0, axis), ...idx.shape, ...data.shape.slice(axis + 1)];
    const out: TensorInfo = { type: data.type, shape };
    if (data.value && idx.value && data.shape.length === 1 && idx.shape.length <= 1) {
      const len = data.value.length;
      out.value = idx.value.map((i) => {
        if (typeof i !== 'number') return null;
        return data.value?.[i < 0 ? i + len : i] ?? null;
      });
    }
    return out;
  }

  private axesOf(n: NodeProto, inputIndex: number, attrFrom: number): number[] | undefined {
    if (this.opset < attrFrom) return attrInts(n, 'axes');
    const name = n.input?.[inputIndex];
    if (!name) return attrInts(n, 'axes');
    return this.numbers(name);
  }

  private unsqueeze(n: NodeProto): TensorInfo {
    const x = this.get(n.input?.[0] ?? '');
    const axes = this.axesOf(n, 1, 13);
    if (!x.shape || !axes) return { type: x.type };
    const r = x.shape.length + axes.length;
    const norm = axes.map((a) => normAxis(a, r)).sort((a, b) => a - b);
    const shape: Dim[] = [];
    let k = 0;
    for (let i = 0; i < r; i++) shape.push(norm.includes(i) ? 1 : (x.shape[k++] ?? null));
    return { type: x.type, shape, value: x.value };
  }

  private squeeze(n: NodeProto): TensorInfo {
    const x = this.get(n.input?.[0] ?? '');
    if (!x.shape) return { type: x.type };
    const axes = this.axesOf(n, 1, 13);
    if (!axes) {
      if (x.shape.some((d) => typeof d !== 'number')) return { type: x.type };
      return { type: x.type, shape: x.shape.filter((d) => d !== 1), value: x.value };
    }
    const r = x.shape.length;
    const drop = new Set(axes.map((a) => normAxis(a, r)));
    return { type: x.type, shape: x.shape.filter((_, i) => !drop.has(i)), value: x.value };
  }

  private concat(n: NodeProto): TensorInfo {
    const ins = (n.input ?? []).filter((i) => i !== '');
    const infos = ins.map((i) => this.get(i));
    const type = infos[0]?.type;
    const first = infos.find((i) => i.shape)?.shape;
    if (!first || infos.some((i) => !i.shape)) return { type };
    const r = first.length;
    const axis = normAxis(attrInt(n, 'axis', 0), r);
    const shape = [...first];
    let total: Dim = 0;
    for (const i of infos) total = dimAdd(total, i.shape?.[axis] ?? null);
    shape[axis] = total;
    for (let d = 0; d < r; d++) {
      if (d === axis) continue;
      if (shape[d] === null) shape[d] = infos.find((i) => i.shape?.[d] !== null)?.shape?.[d] ?? null;
    }
    const out: TensorInfo = { type, shape };
    if (r === 1 && infos.every((i) => i.value)) {
      const value = infos.flatMap((i) => i.value as Dim[]);
      if (value.length <= MAX_VALUE_ELEMENTS) out.value = value;
    }
    return out;
  }

  private split(n: NodeProto): TensorInfo[] {
    const ins = n.input ?? [];
    const x = this.get(ins[0] ?? '');
    const count = (n.output ?? []).length;
    if (!x.shape) return new Array(count).fill({ type: x.type });
    const axis = normAxis(attrInt(n, 'axis', 0), x.shape.length);
    let sizes: Dim[] | undefined =
      this.opset >= 13 && ins[1] ? this.values(ins[1]) : (attrInts(n, 'split') ?? undefined);
    if (!sizes) {
      const each = dimDiv(x.shape[axis] ?? null, count);
      sizes = new Array(count).fill(each);
      if (each === null && typeof x.shape[axis] === 'number') {
        const total = x.shape[axis] as number;
        const chunk = Math.ceil(total / count);
        sizes = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(chunk, total - i * chunk)));
      }
    }
    return sizes.map((s) => {
      const shape = [...(x.shape as Dim[])];
      shape[axis] = s ?? null;
      return { type: x.type, shape };
    });
  }

  private slice(n: NodeProto): TensorInfo {
    const ins = n.input ?? [];
    const x = this.get(ins[0] ?? '');
    if (!x.shape) return { type: x.type };
    const r = x.shape.length;
    let starts: Dim[] | undefined;
    let ends: Dim[] | undefined;
    let axes: number[] | undefined;
    let steps: number[] | undefined;
    if (this.opset < 10) {
      starts = attrInts(n, 'starts');
      ends = attrInts(n, 'ends');
      axes = attrInts(n, 'axes');
    } else {
      starts = this.values(ins[1]);
      ends = this.values(ins[2]);
      axes = ins[3] ? this.numbers(ins[3]) : undefined;
      steps = ins[4] ? this.numbers(ins[4]) : undefined;
      if (ins[3] && !axes) return { type: x.type, shape: new Array(r).fill(null) };
    }
    if (!starts || !ends) return { type: x.type, shape: new Array(r).fill(null) };
    const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, r));
    const shape = [...x.shape];
    ax.forEach((a, k) => {
      const dim = x.shape?.[a] ?? null;
      const s = starts?.[k] ?? null;
      const e = ends?.[k] ?? null;
      const step = steps?.[k] ?? 1;
      shape[a] = sliceLength(dim, s, e, step);
    });
    const out: TensorInfo = { type: x.type, shape };
    if (x.value && r === 1 && ax[0] === 0) {
      const len = x.value.length;
      const s = starts[0];
      const e = ends[0];
      const step = steps?.[0] ?? 1;
      if (typeof s === 'number' && typeof e === 'number' && step === 1) {
        const lo = Math.min(Math.max(s < 0 ? s + len : s, 0), len);
        const hi = Math.min(Math.max(e < 0 ? e + len : e, 0), len);
        out.value = x.value.slice(lo, Math.max(lo, hi));
      }
    }
    return out;
  }

  private reduce(n: NodeProto, op: string): TensorInfo {
    const ins = n.input ?? [];
    const x = this.get(ins[0] ?? '');
    if (!x.shape) return { type: x.type };
    const fromInput = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    let axes: number[] | undefined;
    if (fromInput) {
      if (ins[1]) {
        axes = this.numbers(ins[1]);
        if (!axes) return { type: x.type };
      }
    } else {
      axes = attrInts(n, 'axes');
    }
    const keep = attrInt(n, 'keepdims', 1);
    const noop = attrInt(n, 'noop_with_empty_axes', 0);
    const r = x.shape.length;
    if (!axes || axes.length === 0) {
      if (noop) return { type: x.type, shape: x.shape };
      axes = x.shape.map((_, i) => i);
    }
    const set = new Set(axes.map((a) => normAxis(a, r)));
    const shape = keep ? x.shape.map((d, i) => (set.has(i) ? 1 : d)) : x.shape.filter((_, i) => !set.has(i));
    return { type: x.type, shape };
  }
}

function sliceLength(dim: Dim, s: Dim, e: Dim, step: number): Dim {
  if (typeof s !== 'number' || typeof e !== 'number') {
    if (dim !== null && s === 0 && e === dim && step === 1) return dim;
    return null;
  }
  if (typeof dim === 'number') {
    let lo = s < 0 ? s + dim : s;
    let hi = e < 0 ? e + dim : e;
    if (step > 0) {
      lo = Math.min(Math.max(lo, 0), dim);
      hi = Math.min(Math.max(hi, 0), dim);
      return Math.max(0, Math.ceil((hi - lo) / step));
    }
    lo = Math.min(Math.max(lo, -1), dim - 1);
    hi = Math.min(Math.max(hi, -1), dim - 1);
    return Math.max(0, Math.ceil((hi - lo) / step));
  }
  if (step !== 1) return null;
  if (s === 0 && e >= INT64_MAX_APPROX) return dim;
  if (s >= 0 && e >= INT64_MAX_APPROX) return dimSub(dim, s);
  if (s < 0 && e >= INT64_MAX_APPROX) return -s;
  return null;
}

function mergeShapes(inferred: Dim[] | undefined, declared: Dim[] | undefined): Dim[] | undefined {
  if (!inferred) return declared;
  if (!declared || declared.length !== inferred.length) return inferred;
  return inferred.map((d, i) => (d === null ? (declared[i] ?? null) : d));
}

function matmulShape(a: Dim[] | undefined, b: Dim[] | undefined, unify: (x: Dim, y: Dim) => void): Dim[] | undefined {
  if (!a || !b) return undefined;
  if (a.length === 0 || b.length === 0) return undefined;
  const aa = a.length === 1 ? [1, a[0] as Dim] : a;
  const bb = b.length === 1 ? [b[0] as Dim, 1] : b;
  unify(aa[aa.length - 1] as Dim, bb[bb.length - 2] as Dim); // the contracted dims are equal
  const batch = broadcastShapes(aa.slice(0, -2), bb.slice(0, -2), unify);
  const out = [...batch];
  if (a.length > 1) out.push(aa[aa.length - 2] as Dim);
  if (b.length > 1) out.push(bb[bb.length - 1] as Dim);
  return out;
}

/** Renders a tensor's known type and shape for messages. */
export function describeInfo(info: TensorInfo): string {
  const shape = info.shape ? `[${info.shape.map((d) => (d === null ? '?' : d)).join(', ')}]` : '(unknown shape)';
  return `${dataTypeName(info.type)} ${shape}`;
}

/**
 * Outputs of the fused attention ops (graph/fused-attention.ts lists their inputs): the attention
 * output `[B, S, heads·value size]` (4-D `[B, heads, S, value size]` for a 4-D ONNX Attention) and
 * the present keys and values `[B, kv heads, P + L, size]` (com.microsoft:Attention: both stacked,
 * `[2, B, heads, P + L, size]`).
 */
function fusedAttentionShapes(n: NodeProto, inp: (k: number) => TensorInfo, contrib: boolean): TensorInfo[] {
  const op = n.opType ?? '';
  const heads = attrInt(n, contrib ? 'num_heads' : 'q_num_heads', 0);
  const query = inp(0);
  const type = query.type;
  const [B, S] = [query.shape?.[0] ?? null, query.shape?.[1] ?? null];
  const size = (d: Dim | undefined, by: number): Dim => (d === undefined ? null : dimDiv(d, by));
  if (op === 'Attention' && contrib) {
    // input [B, S, Din] times weights [Din, Dq + Dk + Dv]; past [2, B, N, P, H]
    const sizes = attrInts(n, 'qkv_hidden_sizes');
    const total = inp(1).shape?.[1];
    const dv = sizes ? (sizes[2] ?? null) : size(total, 3);
    const past = inp(4).shape?.[3] ?? 0;
    return [
      { type, shape: [B, S, dv] },
      { type, shape: [2, B, heads, dimAdd(past, S), size(dv ?? undefined, heads)] },
    ];
  }
  if (!contrib && query.shape?.length === 4) {
    const [k, v, pastKey] = [inp(1).shape, inp(2).shape, inp(4).shape];
    const total = dimAdd(pastKey?.[2] ?? 0, k?.[2] ?? null);
    return [
      { type, shape: [B, query.shape[1] ?? null, query.shape[2] ?? null, v?.[3] ?? null] },
      { type, shape: [k?.[0] ?? null, k?.[1] ?? null, total, k?.[3] ?? null] },
      { type, shape: [v?.[0] ?? null, v?.[1] ?? null, total, v?.[3] ?? null] },
    ];
  }
  const kvHeads = op === 'MultiHeadAttention' ? heads : attrInt(n, 'kv_num_heads', heads);
  const packed = !n.input?.[1];
  const [pastKey] = [inp(op === 'MultiHeadAttention' ? 6 : contrib ? 3 : 4).shape];
  const key = inp(1).shape;
  const value = inp(2).shape;
  const keySize =
    query.shape?.length === 5
      ? (query.shape[4] ?? null)
      : packed
        ? size(query.shape?.[2], heads + 2 * kvHeads)
        : key?.length === 4
          ? (key[3] ?? null)
          : size(key?.[2], kvHeads);
  const valueWidth = packed
    ? dimMul(keySize, heads)
    : value?.length === 4
      ? dimMul(value[3] ?? null, heads)
      : dimMul(size(value?.[2], kvHeads), heads);
  const newKeys = packed ? S : key?.length === 4 ? (key[2] ?? null) : (key?.[1] ?? null);
  const total = dimAdd(pastKey?.[2] ?? 0, newKeys);
  return [
    { type, shape: [B, S, valueWidth] },
    { type, shape: [B, kvHeads, total, keySize] },
    { type, shape: [B, kvHeads, total, value?.length === 4 ? (value[3] ?? null) : keySize] },
  ];
}
