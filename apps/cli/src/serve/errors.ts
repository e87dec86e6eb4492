import { DexarError, type DexarErrorCode } from '@dexar/core';

/** A refusal of the HTTP layer itself (no such route, wrong method, body too large, queue full): a DexarError with its status. */
export class HttpError extends DexarError {
  constructor(
    readonly status: number,
    code: DexarErrorCode,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(code, message);
  }
  /** A prototype check: DexarError's brand would take every DexarError for one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(HttpError, value);
  }
}

/** The HTTP status of an error: 4xx for what the client can fix, 503 when busy, 500 for faults only. */
export function httpStatus(error: unknown): number {
  if (error instanceof HttpError) return error.status;
  if (error instanceof DexarError) {
    if (error.isUsageError || error.code === 'invalid-input') return 400;
    if (error.code === 'busy') return 503;
  }
  return 500;
}

/** The JSON body of every error: the library's typed error, one line. */
export interface ErrorBody {
  error: { name: 'DexarError'; code: DexarErrorCode; message: string; status: number };
}

export function errorBody(error: unknown): ErrorBody {
  const dexar = error instanceof DexarError;
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
  return {
    error: {
      name: 'DexarError',
      code: dexar ? (error as DexarError).code : 'runtime',
      message: dexar ? message : `internal error: ${message} (a fault of the server; its log has the details)`,
      status: httpStatus(error),
    },
  };
}
