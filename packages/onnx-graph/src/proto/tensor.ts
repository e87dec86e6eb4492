import { GraphError } from '../errors.js';
import { toBigInt, toNumber, toNumbers } from './int64.js';
import { DataType, type TensorProto } from './types.js';

/** Bytes per element of a fixed-size data type (0 for strings and unknown types). */
export function dataTypeSize(dt: number): number {
  switch (dt) {
    case DataType.FLOAT:
    case DataType.INT32:
    case DataType.UINT32:
      return 4;
    case DataType.DOUBLE:
    case DataType.INT64:
    case DataType.UINT64:
    case DataType.COMPLEX64:
      return 8;
    case DataType.COMPLEX128:
      return 16;
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
    case DataType.INT16:
    case DataType.UINT16:
      return 2;
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.BOOL:
      return 1;
    default:
      return 0;
  }
}

/** Human-readable name of a data type code (`float`, `float16`, ...). */
export function dataTypeName(dt: number | undefined): string {
  const names: Record<number, string> = {
    0: 'undefined',
    1: 'float',
    2: 'uint8',
    3: 'int8',
    4: 'uint16',
    5: 'int16',
    6: 'int32',
    7: 'int64',
    8: 'string',
    9: 'bool',
    10: 'float16',
    11: 'double',
    12: 'uint32',
    13: 'uint64',
    14: 'complex64',
    15: 'complex128',
    16: 'bfloat16',
  };
  return names[dt ?? 0] ?? `type ${dt}`;
}

/** True for the floating-point types gradients can flow through. */
export function isFloatType(dt: number | undefined): boolean {
  return dt === DataType.FLOAT || dt === DataType.FLOAT16 || dt === DataType.DOUBLE || dt === DataType.BFLOAT16;
}

/** True when the tensor's bytes live in an external file. */
export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === 1;
}

/** Number of elements for the given dims (1 for a scalar). */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** IEEE half-precision bits to a number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** A number to IEEE half-precision bits (round to nearest even). */
export function floatToHalf(v: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = v;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  if ((half & 0x7c00) === 0x7c00) e = 0x1f;
  return sign | half;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads the values of a tensor stored in the model (raw or typed fields) as numbers. Integer values
 * beyond 2^53 lose precision (use `readTensorBigInts` when that matters). Throws for external data:
 * this package never reads weight bytes.
 */
export function readTensorNumbers(t: TensorProto): number[] {
  if (isExternal(t)) {
    throw new GraphError(
      `tensor ${t.name ?? '(unnamed)'} is stored as external data; its values cannot be read without the weight file`,
    );
  }
  const dt = t.dataType ?? 0;
  const count = elementCount(toNumbers(t.dims));
  const raw = t.rawData;
  if (raw && raw.byteLength > 0) {
    const dv = view(raw);
    const out: number[] = new Array(count);
    for (let i = 0; i < count; i++) {
      switch (dt) {
        case DataType.FLOAT:
          out[i] = dv.getFloat32(i * 4, true);
          break;
        case DataType.DOUBLE:
          out[i] = dv.getFloat64(i * 8, true);
          break;
        case DataType.FLOAT16:
          out[i] = halfToFloat(dv.getUint16(i * 2, true));
          break;
        case DataType.BFLOAT16:
          out[i] = new Float32Array(new Uint32Array([dv.getUint16(i * 2, true) << 16]).buffer)[0] as number;
          break;
        case DataType.INT64:
          out[i] = Number(dv.getBigInt64(i * 8, true));
          break;
        case DataType.UINT64:
          out[i] = Number(dv.getBigUint64(i * 8, true));
          break;
        case DataType.INT32:
          out[i] = dv.getInt32(i * 4, true);
          break;
        case DataType.UINT32:
          out[i] = dv.getUint32(i * 4, true);
          break;
        case DataType.INT16:
          out[i] = dv.getInt16(i * 2, true);
          break;
        case DataType.UINT16:
          out[i] = dv.getUint16(i * 2, true);
          break;
        case DataType.INT8:
          out[i] = dv.getInt8(i);
          break;
        case DataType.UINT8:
        case DataType.BOOL:
          out[i] = dv.getUint8(i);
          break;
        default:
          throw new GraphError(`cannot read values of tensor ${t.name ?? ''} with data type ${dataTypeName(dt)}`);
      }
    }
    return out;
  }
  switch (dt) {
    case DataType.FLOAT:
    case DataType.COMPLEX64:
      return [...(t.floatData ?? [])];
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      return [...(t.doubleData ?? [])];
    case DataType.INT64:
      return toNumbers(t.int64Data);
    case DataType.UINT64:
    case DataType.UINT32:
      return toNumbers(t.uint64Data);
    case DataType.FLOAT16:
      return (t.int32Data ?? []).map(halfToFloat);
    case DataType.BFLOAT16:
      return (t.int32Data ?? []).map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0] as number);
    default:
      return [...(t.int32Data ?? [])];
  }
}

/** Reads an integer tensor exactly, as bigints. */
export function readTensorBigInts(t: TensorProto): bigint[] {
  const dt = t.dataType ?? 0;
  if (dt === DataType.INT64 && !(t.rawData && t.rawData.byteLength > 0) && !isExternal(t)) {
    return (t.int64Data ?? []).map(toBigInt);
  }
  if (dt === DataType.INT64 && t.rawData && t.rawData.byteLength > 0) {
    const dv = view(t.rawData);
    const count = t.rawData.byteLength / 8;
    const out: bigint[] = [];
    for (let i = 0; i < count; i++) out.push(dv.getBigInt64(i * 8, true));
    return out;
  }
  return readTensorNumbers(t).map((v) => BigInt(Math.trunc(v)));
}

/** The dims of a tensor as numbers. */
export function tensorDims(t: TensorProto): number[] {
  return toNumbers(t.dims);
}

/**
 * Builds a TensorProto with its values in `rawData` (little-endian). Integer types accept numbers
 * or bigints; float16 values are rounded to half precision.
 */
export function makeTensor(
  name: string,
  dataType: number,
  dims: readonly number[],
  values: ArrayLike<number> | readonly bigint[],
): TensorProto {
  const count = elementCount(dims);
  if (values.length !== count) {
    throw new GraphError(`tensor ${name}: ${values.length} values for dims [${dims.join(', ')}]`);
  }
  const size = dataTypeSize(dataType);
  if (!size) throw new GraphError(`tensor ${name}: cannot build data type ${dataTypeName(dataType)}`);
  const raw = new Uint8Array(count * size);
  const dv = view(raw);
  for (let i = 0; i < count; i++) {
    const v = values[i] as number | bigint;
    switch (dataType) {
      case DataType.FLOAT:
        dv.setFloat32(i * 4, Number(v), true);
        break;
      case DataType.DOUBLE:
        dv.setFloat64(i * 8, Number(v), true);
        break;
      case DataType.FLOAT16:
        dv.setUint16(i * 2, floatToHalf(Number(v)), true);
        break;
      case DataType.BFLOAT16: {
        const u = new Uint32Array(new Float32Array([Number(v)]).buffer)[0] as number;
        dv.setUint16(i * 2, u >>> 16, true);
        break;
      }
      case DataType.INT64:
        dv.setBigInt64(i * 8, typeof v === 'bigint' ? v : BigInt(Math.trunc(v)), true);
        break;
      case DataType.UINT64:
        dv.setBigUint64(i * 8, typeof v === 'bigint' ? v : BigInt(Math.trunc(v)), true);
        break;
      case DataType.INT32:
        dv.setInt32(i * 4, Number(v), true);
        break;
      case DataType.UINT32:
        dv.setUint32(i * 4, Number(v), true);
        break;
      case DataType.INT16:
        dv.setInt16(i * 2, Number(v), true);
        break;
      case DataType.UINT16:
        dv.setUint16(i * 2, Number(v), true);
        break;
      case DataType.INT8:
        dv.setInt8(i, Number(v));
        break;
      default:
        dv.setUint8(i, Number(v));
    }
  }
  return { name, dataType, dims: [...dims], rawData: raw };
}

/** The external-data entries of a tensor as a record (`location`, `offset`, `length`, ...). */
export function externalDataInfo(t: TensorProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of t.externalData ?? []) if (e.key) out[e.key] = e.value ?? '';
  return out;
}

/** Reads one scalar from an int64 field that may be a Long. */
export { toNumber };
