import * as ort from 'onnxruntime-node';
import { OnnxModel, readModel, writeModel } from '../../src/model.js';
import { floatToHalf, halfToFloat } from '../../src/proto/tensor.js';
import { DataType, type NodeProto, type TensorProto, type ValueInfoProto } from '../../src/proto/types.js';

export type Dims = readonly (number | string)[];

/** A ValueInfoProto for a tensor of the given element type and (symbolic) dims. */
export function valueInfo(name: string, elemType: number, dims?: Dims): ValueInfoProto {
  const tensorType: { elemType: number; shape?: { dim: object[] } } = { elemType };
  if (dims) {
    tensorType.shape = {
      dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
    };
  }
  return { name, type: { tensorType } };
}

export interface ModelSpec {
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  nodes: NodeProto[];
  initializers?: TensorProto[];
  opset?: number;
  /** Also import com.microsoft (version 1). */
  contrib?: boolean;
}

/** Builds a model from plain protos, and round-trips it through bytes so it looks decoded. */
export function buildModel(spec: ModelSpec): OnnxModel {
  const opsetImport = [{ domain: '', version: spec.opset ?? 17 }];
  if (spec.contrib) opsetImport.push({ domain: 'com.microsoft', version: 1 });
  const model = new OnnxModel({
    irVersion: 8,
    producerName: 'dexar-test',
    opsetImport,
    graph: {
      name: 'test',
      node: spec.nodes,
      input: spec.inputs,
      output: spec.outputs,
      initializer: spec.initializers ?? [],
    },
  });
  return readModel(writeModel(model));
}

const sessions = new WeakMap<object, Promise<ort.InferenceSession>>();

/** Runs a model on onnxruntime-node (CPU, one thread for determinism). */
export async function runModel(
  model: OnnxModel | Uint8Array,
  feeds: Record<string, ort.Tensor>,
  outputs?: string[],
): Promise<Record<string, ort.Tensor>> {
  const key = model;
  let session = sessions.get(key);
  if (!session) {
    const bytes = model instanceof Uint8Array ? model : writeModel(model);
    session = ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'disabled',
    });
    sessions.set(key, session);
  }
  const s = await session;
  return (outputs ? await s.run(feeds, outputs) : await s.run(feeds)) as Record<string, ort.Tensor>;
}

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An ort tensor of the given ONNX element type from numbers. */
export function makeOrtTensor(elemType: number, dims: readonly number[], values: ArrayLike<number>): ort.Tensor {
  const d = [...dims];
  switch (elemType) {
    case DataType.FLOAT:
      return new ort.Tensor('float32', Float32Array.from(values), d);
    case DataType.DOUBLE:
      return new ort.Tensor('float64', Float64Array.from(values), d);
    case DataType.FLOAT16:
      return new ort.Tensor('float16', Uint16Array.from(Array.from(values, floatToHalf)), d);
    case DataType.INT64:
      return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v)))), d);
    case DataType.INT32:
      return new ort.Tensor('int32', Int32Array.from(values), d);
    case DataType.BOOL:
      return new ort.Tensor('bool', Uint8Array.from(values), d);
    default:
      throw new Error(`unsupported element type ${elemType}`);
  }
}

/** The values of an ort tensor as numbers (float16 decoded). */
export function tensorValues(t: ort.Tensor): number[] {
  if (t.type === 'float16') {
    const data = t.data as unknown;
    if (data instanceof Uint16Array) return Array.from(data, halfToFloat);
    return Array.from(data as ArrayLike<number>, Number);
  }
  if (t.type === 'int64') return Array.from(t.data as BigInt64Array, Number);
  return Array.from(t.data as ArrayLike<number>, Number);
}
