/** Argument handling shared by `dexar` and `dexar eval`: one-line usage errors and exit codes. */
import { DexarError } from '@dexar/core';

/** A usage error (exit 2) whose one line ends by pointing at the command's help. */
export function usageError(message: string, help: string): DexarError {
  return new DexarError('invalid-options', `${message} (see ${help})`);
}

/** `--layer-index -2` as `--layer-index=-2`: parseArgs takes a value starting with "-" for an option. */
export function joinNegativeValues(argv: readonly string[], options: Record<string, { type: string }>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : '';
    const option = options[name];
    if (option?.type === 'string' && /^-\d/.test(argv[i + 1] ?? '')) out.push(`${argv[i]}=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

/** An integer option within `[min, max]`, both safe integers: digits beyond that would lose precision or allocate without bound. */
export function integer(
  name: string,
  value: string | undefined,
  help: string,
  range: { min: number; max: number } = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw usageError(`--${name} takes an integer, got ${quoted(value)}`, help);
  const number = Number(value);
  if (!(number >= range.min && number <= range.max)) {
    throw usageError(`--${name} must be from ${range.min} to ${range.max}, got ${quoted(value)}`, help);
  }
  return number;
}

/** Characters a text argument (prompt, target) may have; the model's context bounds its tokens further. */
export const MAX_TEXT_CHARS = 65_536;

/** An argument quoted for a one-line message, shortened: a 30,000-character value must not flood the terminal. */
export const quoted = (value: string) => JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);

/** A text argument within `MAX_TEXT_CHARS`, refused before any model sees it. */
export function text(name: string, value: string | undefined, help: string): string | undefined {
  if (value !== undefined && value.length > MAX_TEXT_CHARS) {
    throw usageError(
      `--${name} is ${value.length} characters, over the ${MAX_TEXT_CHARS} limit: shorten it (--${name}-file takes the same limit)`,
      help,
    );
  }
  return value;
}

/**
 * Writes the error as one line on stderr (the stack only with `--debug`) and returns the exit code:
 * 2 for usage errors (bad options, bad input the user can fix), 1 for runtime errors.
 */
export function reportFailure(error: unknown, debug: boolean, help: string): number {
  const parseError = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false;
  const message = (error as Error).message.split('\n')[0];
  process.stderr.write(`dexar: error: ${message}${parseError ? ` (see ${help})` : ''}\n`);
  if (debug) process.stderr.write(`${(error as Error).stack}\n`);
  return parseError || (error instanceof DexarError && error.isUsageError) ? 2 : 1;
}
