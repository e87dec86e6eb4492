import type { Int64 } from './types.js';

/** Reads a 64-bit integer field as a JavaScript number (exact up to 2^53). */
export function toNumber(v: Int64 | null | undefined): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v;
  return v.toNumber();
}

/** Reads a repeated 64-bit integer field as numbers. */
export function toNumbers(v: readonly Int64[] | null | undefined): number[] {
  if (!v) return [];
  return v.map(toNumber);
}

/** Reads a 64-bit integer field exactly. */
export function toBigInt(v: Int64): bigint {
  if (typeof v === 'number') return BigInt(v);
  const lo = BigInt(v.low >>> 0);
  const hi = BigInt(v.high >>> 0);
  const u = (hi << 32n) | lo;
  return v.unsigned ? u : BigInt.asIntN(64, u);
}
