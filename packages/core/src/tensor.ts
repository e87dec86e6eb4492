/**
 * The structural tensor every dexar package exchanges: dims plus a flat,
 * row-major typed array. An `onnxruntime` Tensor satisfies it as it is, so
 * results of a session flow into `core` without a copy.
 */
export interface Tensor<D extends TensorData = TensorData> {
  readonly dims: readonly number[];
  readonly data: D;
}

export type FloatData = Float32Array | Float64Array;
export type TensorData = FloatData | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Int8Array;

export function tensor<D extends TensorData>(data: D, dims: readonly number[]): Tensor<D> {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new RangeError(`tensor: dims [${dims.join(', ')}] hold ${size} values but data has ${data.length}`);
  }
  return { data, dims };
}
