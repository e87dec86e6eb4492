/**
 * Every error dexar raises on bad input is a `DexarError`: one line that names
 * the problem and the fix, and a `code` a program can switch on. Apps map
 * `usage` errors to exit code 2 and the rest to 1.
 */
export type DexarErrorCode =
  | 'invalid-options'
  | 'invalid-input'
  | 'non-finite'
  | 'layer-out-of-range'
  | 'missing-file'
  | 'unsupported-model'
  | 'unreadable-image'
  | 'no-image-placeholder'
  | 'empty-target'
  | 'unsupported-graph'
  | 'invalid-dataset'
  /** A server's queue is full: retry later (HTTP 503 with Retry-After in `dexar serve`). */
  | 'busy'
  | 'runtime';

const usageCodes: ReadonlySet<DexarErrorCode> = new Set([
  'invalid-options',
  'layer-out-of-range',
  'missing-file',
  'unsupported-model',
  'unreadable-image',
  'no-image-placeholder',
  'empty-target',
  'invalid-dataset',
]);

/** Marks a DexarError from any copy of this package (an adapter linked from elsewhere brings its own). */
const BRAND = Symbol.for('dexar.DexarError');

export class DexarError extends Error {
  override readonly name = 'DexarError';
  readonly code: DexarErrorCode;
  constructor(code: DexarErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }
  /** `instanceof DexarError` holds for errors of every loaded copy of `@dexar/core`. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
  /** True when the caller asked for something impossible (exit 2), false for failures while running (exit 1). */
  get isUsageError(): boolean {
    return usageCodes.has(this.code);
  }
}
