/** Argument handling shared by `dexar`, `dexar eval` and `dexar serve`: the shared options, one-line usage errors and exit codes. */
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, DexarError } from '@dexar/core';
import { MAX_THREADS, VARIANTS } from '@dexar/runtime-node';

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

/** A command's arguments against its option table: unknown options refused, positionals allowed, `-2` taken as a value. */
function parseCommandLine<const O extends Record<string, OptionSpec>>(
  argv: readonly string[],
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>> {
  return parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: true, strict: true });
}

/**
 * Runs a command on its parsed arguments and turns a failure into one line on stderr (its stack
 * too under `--debug`, which counts even when the arguments do not parse) and the exit code.
 */
export async function runCommand<const O extends Record<string, OptionSpec>>(
  argv: readonly string[],
  options: O,
  help: string,
  body: (parsed: ReturnType<typeof parseCommandLine<O>>) => Promise<number>,
): Promise<number> {
  let debug = argv.includes('--debug');
  try {
    const parsed = parseCommandLine(argv, options);
    debug = (parsed.values as { debug?: boolean }).debug ?? false;
    return await body(parsed);
  } catch (error) {
    return reportFailure(error, debug, help);
  }
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
function reportFailure(error: unknown, debug: boolean, help: string): number {
  const parseError = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false;
  const message = (error as Error).message.split('\n')[0];
  process.stderr.write(`dexar: error: ${message}${parseError ? ` (see ${help})` : ''}\n`);
  if (debug) process.stderr.write(`${(error as Error).stack}\n`);
  return parseError || (error instanceof DexarError && error.isUsageError) ? 2 : 1;
}

/** One command-line option: what `parseArgs` needs, and its line in the help. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  /** The option as the help shows it (`--model DIR`). */
  readonly usage: string;
  /** Its help text; further lines indent under it. */
  readonly help: string;
}

/** The options `dexar` and `dexar eval` share: one table, so both parse and document them alike. */
export const SHARED_OPTIONS = {
  model: {
    type: 'string',
    usage: '--model DIR',
    help: 'model folder (transformers.js layout); default: the built-in shapes model',
  },
  adapter: {
    type: 'string',
    multiple: true,
    usage: '--adapter PKG',
    help: 'load a model-family adapter: a package name (resolved from the working folder)\nor a path to its folder or module; repeatable',
  },
  variant: {
    type: 'string',
    usage: '--variant NAME',
    help: `graph variant by file-name suffix: ${VARIANTS.join(', ')} (default fp32)`,
  },
  'layer-index': {
    type: 'string',
    usage: '--layer-index I',
    help: `first layer used, negative from the end (default ${DEFAULT_OPTIONS.layerIndex})`,
  },
  'top-k': {
    type: 'string',
    usage: '--top-k K',
    help: `head score: mean of the top-k gradients (default ${DEFAULT_OPTIONS.topK})`,
  },
  compat: {
    type: 'string',
    usage: '--compat MODE',
    help: "official (the authors' code, default) or paper (the published equations)",
  },
  device: { type: 'string', usage: '--device D', help: 'cpu (default) or cuda' },
  threads: { type: 'string', usage: '--threads N', help: `ONNX Runtime intra-op threads (1 to ${MAX_THREADS})` },
  quiet: { type: 'boolean', usage: '--quiet', help: 'no progress on stderr' },
  debug: { type: 'boolean', usage: '--debug', help: 'show stack traces' },
  help: { type: 'boolean', short: 'h', usage: '-h, --help', help: 'this help' },
} as const satisfies Record<string, OptionSpec>;

/** The help lines of an option table, aligned. */
export function optionHelp(table: Readonly<Record<string, OptionSpec>>): string {
  const width = Math.max(...Object.values(table).map((o) => o.usage.length)) + 2;
  return Object.values(table)
    .map((o) => {
      const [first, ...rest] = o.help.split('\n');
      return [`  ${o.usage.padEnd(width)}${first}`, ...rest.map((line) => `  ${' '.repeat(width)}${line}`)].join('\n');
    })
    .join('\n');
}

/** A value from a fixed set, or a usage error listing the set. */
export function oneOf<T extends string>(
  name: string,
  value: string | undefined,
  allowed: readonly T[],
  help: string,
): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) {
    throw usageError(`--${name} must be one of ${allowed.join(', ')}, got ${quoted(value)}`, help);
  }
  return value as T;
}

/** The shared options' values, checked: the model folder, its adapters, the backend and the DEX-AR options. */
export function sharedValues(values: SharedValues, help: string) {
  const executionProvider = oneOf('device', values.device, ['cpu', 'cuda'] as const, help);
  const threads = integer('threads', values.threads, help, { min: 1, max: MAX_THREADS });
  const layerIndex = integer('layer-index', values['layer-index'], help);
  const topK = integer('top-k', values['top-k'], help, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const compat = oneOf('compat', values.compat, ['official', 'paper'] as const, help);
  const variant = oneOf('variant', values.variant, VARIANTS, help);
  return {
    model: values.model,
    adapters: values.adapter ?? [],
    ...(variant ? { variant } : {}),
    backend: {
      ...(executionProvider ? { executionProvider } : {}),
      ...(threads !== undefined ? { threads } : {}),
    },
    dexar: {
      ...(layerIndex !== undefined ? { layerIndex } : {}),
      ...(topK !== undefined ? { topK } : {}),
      ...(compat ? { compat } : {}),
    },
  };
}

/** What `parseArgs` returns for the shared options. */
export interface SharedValues {
  model?: string | undefined;
  adapter?: string[] | undefined;
  variant?: string | undefined;
  'layer-index'?: string | undefined;
  'top-k'?: string | undefined;
  compat?: string | undefined;
  device?: string | undefined;
  threads?: string | undefined;
}
