import { DexarError } from '@dexar/core';
import { z } from 'zod';

/**
 * A plain JSON object without its `null` fields. transformers' `save_pretrained` writes every unset
 * field as `null` (`"eos_token_id": null`, `"rope_scaling": null`, a `null` sub-config...): for the
 * schemas that is the same as leaving the field out, so its default or fallback applies.
 */
function withoutNulls(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null));
}

/**
 * An object of a transformers config file (`config.json`, its `text_config` / `vision_config`,
 * `preprocessor_config.json`): a `null` field counts as absent and unknown fields are ignored.
 * Nest one per level, so each sub-config treats its own `null`s the same way.
 */
export function configObject<T extends z.ZodRawShape>(shape: T) {
  return z.preprocess(withoutNulls, z.object(shape));
}

/** Token ids as transformers writes them: one id or a list (`eos_token_id`). */
export const tokenIds = z.union([z.number().int(), z.array(z.number().int())]);

/** What a schema accepts, in words: "an integer", "a list of integers", `"llama" or "mistral"`. */
function describeSchema(schema: z.core.$ZodType | undefined): string {
  const def = schema?._zod.def as (z.core.$ZodTypeDef & Record<string, unknown>) | undefined;
  switch (def?.type) {
    case 'number':
      return (schema as z.ZodNumber).format?.includes('int') ? 'an integer' : 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'object':
    case 'record':
      return 'an object';
    case 'array': {
      const item = describeSchema(def.element as z.core.$ZodType);
      return /^an? /.test(item) ? `a list of ${item.replace(/^an? /, '')}s` : `a list of ${item}`;
    }
    case 'enum':
      return Object.values(def.entries as Record<string, unknown>)
        .map((v) => JSON.stringify(v))
        .join(' or ');
    case 'literal':
      return (def.values as unknown[]).map((v) => JSON.stringify(v)).join(' or ');
    case 'union':
      return (def.options as z.core.$ZodType[]).map(describeSchema).join(' or ');
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return describeSchema(def.innerType as z.core.$ZodType);
    case 'pipe':
      return describeSchema(
        (def.in as z.core.$ZodType)._zod.def.type === 'transform'
          ? (def.out as z.core.$ZodType)
          : (def.in as z.core.$ZodType),
      );
    default:
      return 'valid';
  }
}

/** A value as one short line of JSON for an error message. */
function shown(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

/** zod's names for the types an issue expected, in words. */
const typeWords: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean',
  object: 'an object',
  array: 'a list',
};

/** One-line messages for the issues a config file runs into: what the field must be, and what it is. */
function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  let want: string;
  switch (issue.code) {
    case 'invalid_type':
      // The issue's `inst` is the schema, or for `.int()` on a fraction the check, which describes nothing.
      want = describeSchema(issue.inst as z.core.$ZodType | undefined);
      if (want === 'valid') want = typeWords[issue.expected] ?? `of type ${issue.expected}`;
      break;
    case 'invalid_value':
    case 'invalid_union':
      want = describeSchema(issue.inst as z.core.$ZodType | undefined);
      break;
    case 'too_small':
    case 'too_big': {
      if (issue.origin !== 'number') return undefined; // zod's own "expected array to have exactly 3 items"
      const small = issue.code === 'too_small';
      const relation = small
        ? issue.inclusive
          ? 'at least'
          : 'greater than'
        : issue.inclusive
          ? 'at most'
          : 'less than';
      want = `${relation} ${String(small ? issue.minimum : issue.maximum)}`;
      break;
    }
    default:
      return undefined;
  }
  return issue.input === undefined ? `is missing (it must be ${want})` : `must be ${want}, got ${shown(issue.input)}`;
}

/** Validates a model file against its schema; the error names the file, the field and what the adapter expects. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  file: string,
  expected: string,
): z.output<S> {
  const parsed = schema.safeParse(value, { reportInput: true, error: issueMessage });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DexarError(
      'unsupported-model',
      `${file}: ${issue?.path.join('.') || 'value'} ${issue?.message ?? 'is invalid'} (${expected})`,
    );
  }
  return parsed.data;
}

/** EOS ids from `generation_config.json`, else the text or top-level config, else `fallback`; `null` counts as absent. */
export function eosTokenIds(sources: readonly unknown[], fallback: number): number[] {
  for (const source of sources) {
    const ids = (source as { eos_token_id?: number | number[] | null } | null | undefined)?.eos_token_id;
    if (ids !== undefined && ids !== null) return Array.isArray(ids) ? ids : [ids];
  }
  return [fallback];
}
