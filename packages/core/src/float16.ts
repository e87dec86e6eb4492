import type { TypedTensor } from './runtime.js';

/**
 * Half-precision at the session boundary. A decoder exported in float16 (`*_fp16.onnx`) takes and
 * returns float16 tensors, which ONNX Runtime's JavaScript API holds as IEEE binary16 bits in a
 * `Uint16Array`. Adapters build their feeds in float32 and read outputs as float32; these
 * functions convert at the boundary, and leave float16 tensors that go from one call to the next
 * (the KV cache) as they are.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One float32 to binary16 bits, rounding to nearest even (overflow to infinity, underflow to subnormals). */
function halfBits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // subnormal: shift the mantissa with its implicit bit, round to nearest even
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let bits = m >>> shift;
    if (rest > half || (rest === half && bits & 1)) bits++;
    return sign | bits;
  }
  let bits = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && bits & 1)) bits++; // a carry into the exponent is still correct
  return sign | bits;
}

/** binary16 bits to a number. */
function halfValue(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

let table: Float32Array | undefined;

/** float32 values rounded to binary16 bits. */
export function toFloat16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = halfBits(values[i] as number);
  return out;
}

/** binary16 bits as float32 values (exact: every binary16 value is a float32). */
export function fromFloat16Bits(bits: Uint16Array): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) table[b] = halfValue(b);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i] as number] as number;
  return out;
}

/** A float tensor's values as float32: float16 decoded, float32 as it is. */
export function floatData(tensor: TypedTensor): Float32Array {
  if (tensor.type !== 'float16') return tensor.data as Float32Array;
  const data = tensor.data as ArrayLike<number>;
  return data instanceof Uint16Array ? fromFloat16Bits(data) : Float32Array.from(data);
}

/**
 * Feeds as a session's inputs want them: a float32 tensor fed to a float16 input (a half-precision
 * decoder's embeddings, pixels, an empty cache) is rounded to float16; everything else passes.
 */
export function castFeeds(
  feeds: Readonly<Record<string, TypedTensor>>,
  inputTypes: Readonly<Record<string, string>>,
  float16: (bits: Uint16Array, dims: readonly number[]) => TypedTensor,
): Record<string, TypedTensor> {
  const out: Record<string, TypedTensor> = {};
  for (const [name, tensor] of Object.entries(feeds)) {
    out[name] =
      inputTypes[name] === 'float16' && tensor.type === 'float32'
        ? float16(toFloat16Bits(tensor.data as Float32Array), tensor.dims)
        : tensor;
  }
  return out;
}
