import { DexarError } from '@dexar/core';
import type { z } from 'zod';

/** Validates a model file against its schema; the error names the file, the field and what the adapter expects. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  file: string,
  expected: string,
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DexarError(
      'unsupported-model',
      `${file}: ${issue?.path.join('.') || 'value'} ${issue?.message ?? 'is invalid'} (${expected})`,
    );
  }
  return parsed.data;
}

/** EOS ids from `generation_config.json`, else the text or top-level config, else `fallback`. */
export function eosTokenIds(sources: readonly unknown[], fallback: number): number[] {
  for (const source of sources) {
    const ids = (source as { eos_token_id?: number | number[] } | undefined)?.eos_token_id;
    if (ids !== undefined) return Array.isArray(ids) ? ids : [ids];
  }
  return [fallback];
}
