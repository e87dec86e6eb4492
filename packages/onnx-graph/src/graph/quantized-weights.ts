import { GraphError, UnsupportedModelError } from '../errors.js';
import { DataType, type NodeProto } from '../proto/types.js';
import { attrInt } from './attributes.js';
import type { GraphBuilder } from './builder.js';

/**
 * Run-time dequantisation of the quantized matmuls' packed weights (ONNX Runtime ContribOperators.md),
 * shared by their vector-Jacobian rules (autodiff/quantized.ts: every row, read once the gradient exists)
 * and the logit lens of a quantized LM head (explain/explain.ts: the target rows only, never the
 * vocabulary). `ReadRows` says which rows: it returns a packed constant as `[rows, ...rowShape]`.
 */
export type ReadRows = (constant: string, rowShape: readonly number[]) => string;

/**
 * Splits packed uint8 bytes `[..., n]` into their `bits`-wide codes `[..., n * 8 / bits]` (uint8), the lowest
 * bits first (`lowFirst`, MatMulNBits and ONNX int4) or the highest first (bitsandbytes): code j of byte v is
 * (v << (8 − bits·(j+1))) >> (8 − bits) in uint8, the left shift dropping the bits above it.
 */
export function unpackCodes(b: GraphBuilder, bytes: string, bits: number, lowFirst: boolean): string {
  const per = 8 / bits;
  if (per === 1) return bytes;
  const shift = (x: string, by: number, direction: 'LEFT' | 'RIGHT') =>
    by === 0 ? x : b.op('BitShift', [x, b.constant(DataType.UINT8, [], [by])], { direction });
  const codes = Array.from({ length: per }, (_, j) =>
    b.unsqueeze(shift(shift(bytes, 8 - bits * (j + 1), 'LEFT'), 8 - bits, 'RIGHT'), [-1]),
  );
  const stacked = b.op('Concat', lowFirst ? codes : codes.reverse(), { axis: -1 }); // [..., n, per]
  const outer = b.op('Slice', [b.shapeOf(bytes), b.int64s([0]), b.int64s([-1])]);
  return b.op('Reshape', [stacked, b.op('Concat', [outer, b.int64s([-1])], { axis: 0 })]);
}

/**
 * A packed constant reshaped to `shape`, read once `after` exists: the Reshape's shape is `shape` plus
 * 0 · Size(after); one Reshape, as ONNX Runtime 1.30's fusion of two consecutive Reshapes fails on a computed
 * shape. Computed from constants alone, ONNX Runtime would fold it (and what follows it) into an initializer
 * for the whole session at session creation: a second copy of the packed weight, or its float32 dequantisation.
 */
export function readWhen(b: GraphBuilder, constant: string, after: string, shape?: readonly number[]): string {
  const zero = b.op('Mul', [b.op('Size', [after]), b.int64(0)]);
  const target = shape ? b.int64s(shape) : b.shapeOf(constant);
  return b.op('Reshape', [constant, b.op('Add', [target, zero])]);
}

/** MatMulNBits' attributes: W `[N, K]` in blocks of `blockSize` along K, `bits`-wide codes. */
export interface NBitsLayout {
  K: number;
  N: number;
  bits: number;
  blockSize: number;
}

/** The layout of a MatMulNBits node, or the reason it is not one this package dequantises. */
export function nBitsLayout(node: NodeProto): NBitsLayout | string {
  const [K, N, bits, blockSize] = ['K', 'N', 'bits', 'block_size'].map((a) => attrInt(node, a));
  const name = node.name ?? '';
  if (K === undefined || N === undefined || bits === undefined || blockSize === undefined) {
    return `MatMulNBits node ${name} lacks one of its K, N, bits, block_size attributes`;
  }
  if (node.input?.[4]) {
    return `MatMulNBits node ${name} has g_idx (act-order); only weights quantized in K order are supported`;
  }
  if (![2, 4, 8].includes(bits)) return `MatMulNBits node ${name} has bits=${bits}; 2, 4 and 8 are supported`;
  return { K, N, bits, blockSize };
}

/**
 * com.microsoft MatMulNBits' W rows `[R, K]` in float32: B `[N, blocks, blob]` uint8, codes lowest bits
 * first, W = (code − zero point) · scale with scales `[N · blocks]`, zero points packed like B
 * (`[N · ceil(blocks · bits / 8)]` uint8) or unpacked in the scales' type, default 2^(bits−1).
 */
export function dequantizeNBits(
  b: GraphBuilder,
  inputs: readonly string[],
  layout: NBitsLayout,
  read: ReadRows,
): string {
  const { K, bits, blockSize } = layout;
  const [, packed, scales, zeroPoints] = inputs;
  const blocks = Math.ceil(K / blockSize);
  const toFloat = (t: string) => b.cast(t, DataType.FLOAT);
  const codes = toFloat(unpackCodes(b, read(packed ?? '', [blocks, (blockSize * bits) / 8]), bits, true)); // [R, blocks, block_size]
  let zero: string;
  if (!zeroPoints) zero = b.scalar(2 ** (bits - 1), DataType.FLOAT);
  else if (b.dtype(zeroPoints) === DataType.UINT8) {
    const all = unpackCodes(b, read(zeroPoints, [-1]), bits, true); // [R, ceil(blocks·bits/8)·8/bits]
    zero = toFloat(b.unsqueeze(b.op('Slice', [all, b.int64s([0]), b.int64s([blocks]), b.int64s([1])]), [-1]));
  } else zero = toFloat(read(zeroPoints, [blocks, 1]));
  const scale = toFloat(read(scales ?? '', [blocks, 1]));
  const padded = b.op('Reshape', [
    b.op('Mul', [b.op('Sub', [codes, zero]), scale]),
    b.int64s([-1, blocks * blockSize]),
  ]);
  return blocks * blockSize === K ? padded : b.op('Slice', [padded, b.int64s([0]), b.int64s([K]), b.int64s([1])]);
}

/** bitsandbytes' FP4 and NF4 code books (ONNX Runtime blockwise_quant_block_bnb4.h), by quant_type. */
const BNB4_CODES: Readonly<Record<number, readonly number[]>> = {
  0: [
    0, 0.005208333333, 0.6666666667, 1, 0.3333333333, 0.5, 0.1666666667, 0.25, -0, -0.005208333333, -0.6666666667, -1,
    -0.3333333333, -0.5, -0.1666666667, -0.25,
  ],
  1: [
    -1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
    -0.09105003625154495, 0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1,
  ],
};

/** MatMulBnb4's attributes: W `[N, K]` flattened into blocks of `blockSize`, 4-bit codes into `book`. */
export interface Bnb4Layout {
  K: number;
  N: number;
  blockSize: number;
  book: readonly number[];
}

/** The layout of a MatMulBnb4 node, or the reason it is not one this package dequantises. */
export function bnb4Layout(node: NodeProto): Bnb4Layout | string {
  const [K, N, blockSize, quantType] = ['K', 'N', 'block_size', 'quant_type'].map((a) => attrInt(node, a));
  const book = BNB4_CODES[quantType ?? -1];
  if (K === undefined || N === undefined || blockSize === undefined) {
    return `MatMulBnb4 node ${node.name ?? ''} lacks one of its K, N, block_size attributes`;
  }
  if (!book) return `MatMulBnb4 node ${node.name ?? ''} has an unknown quant_type`;
  return { K, N, blockSize, book };
}

/** MatMulBnb4's code values: uint8 codes `[...]` (0 to 15) looked up in the code book, float32 `[...]`. */
export function bnb4Values(b: GraphBuilder, codes: string, layout: Bnb4Layout): string {
  const book = b.constant(DataType.FLOAT, [16], layout.book);
  return b.op('Gather', [book, b.cast(codes, DataType.INT32)], { axis: 0 });
}

/**
 * com.microsoft DynamicQuantizeMatMul's W `[K, C]` in float32: B `[K, N]` int8 / uint8, W = (B − zero point)
 * · scale, per tensor or per column. `readWeight` picks B's columns, `readColumns` the same columns of a
 * per-column scale or zero point.
 */
export function dequantizeColumns(
  b: GraphBuilder,
  inputs: readonly string[],
  readWeight: (weight: string) => string,
  readColumns: (perColumn: string) => string,
): string {
  const [, weight, scale, zeroPoint] = inputs;
  const quantization = (t: string) => {
    const dims = b.shape(t);
    if (!dims) throw new GraphError(`the shape of the weight quantization ${t} is unknown`);
    return dims.every((d) => d === 1) ? b.op('Reshape', [t, b.int64s([])]) : readColumns(t);
  };
  const read = [readWeight(weight ?? ''), quantization(scale ?? ''), ...(zeroPoint ? [quantization(zeroPoint)] : [])];
  return b.op('DequantizeLinear', read, { axis: 1 });
}

/** The quantized LM heads the logit lens reads (hooks/hooks.ts): q4, bnb4 and q8 as transformers.js exports them. */
export const QUANTIZED_HEADS: ReadonlySet<string> = new Set(['MatMulNBits', 'MatMulBnb4', 'DynamicQuantizeMatMul']);

/**
 * The rows `ids` `[T]` of a quantized LM head's weight W `[V, D]`, dequantised: `[T, D]` float32. Gathering
 * the packed rows before dequantising is exact and reads T rows, not V: MatMulNBits' blocks, scales and zero
 * points belong to one row of W (its N axis is the vocabulary), MatMulBnb4's whole blocks too where the block
 * divides D (`bnb4Rows`), DynamicQuantizeMatMul's scale and zero point to one column of B `[D, V]` (or to the
 * whole tensor).
 */
export function quantizedHeadRows(b: GraphBuilder, node: NodeProto, ids: string): string {
  if (node.opType === 'MatMulNBits') {
    const layout = nBitsLayout(node);
    if (typeof layout === 'string') throw new UnsupportedModelError(layout);
    const targetRows: ReadRows = (c, rowShape) =>
      b.op('Gather', [readWhen(b, c, ids, [layout.N, ...rowShape]), ids], { axis: 0 });
    return dequantizeNBits(b, node.input ?? [], layout, targetRows);
  }
  if (node.opType === 'MatMulBnb4') return bnb4Rows(b, node, ids);
  const columns = dequantizeColumns(
    b,
    node.input ?? [],
    (w) => b.op('Gather', [w, ids], { axis: 1 }),
    (perColumn) => b.op('Gather', [perColumn, ids], { axis: 0 }),
  ); // [D, T]
  return b.op('Transpose', [columns], { perm: [1, 0] });
}

/**
 * MatMulBnb4's rows `ids` of W `[N, K]`: the blocks run over W flattened, so row n is the K/block whole blocks
 * from n · K/block when the block divides K (its codes the K/2 bytes from n · K/2): gathered, then looked up and
 * scaled. A block straddling two rows is refused.
 */
function bnb4Rows(b: GraphBuilder, node: NodeProto, ids: string): string {
  const layout = bnb4Layout(node);
  if (typeof layout === 'string') throw new UnsupportedModelError(layout);
  const { K, N, blockSize } = layout;
  if (K % blockSize !== 0) {
    throw new UnsupportedModelError(
      `MatMulBnb4 LM head node ${node.name ?? ''} has K=${K}, not a multiple of block_size ${blockSize}: its blocks straddle rows of the weight; quantize the head with a block size dividing K, or keep it in float`,
    );
  }
  const [, packed, absmax] = node.input ?? [];
  const rows = (c: string, width: number) => b.op('Gather', [readWhen(b, c, ids, [N, width]), ids], { axis: 0 });
  const codes = unpackCodes(b, rows(packed ?? '', K / 2), 4, false); // [T, K]
  const values = b.op('Reshape', [bnb4Values(b, codes, layout), b.int64s([0, K / blockSize, blockSize])]);
  const scale = b.unsqueeze(b.cast(rows(absmax ?? '', K / blockSize), DataType.FLOAT), [-1]); // [T, K/block, 1]
  return b.op('Reshape', [b.op('Mul', [values, scale]), b.int64s([0, K])]);
}
