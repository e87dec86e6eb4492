import { DexarError, type Explanation } from '@dexar/core';
import { methodFor, withMethod } from '@dexar/eval';
import type { StreamEvent } from '@dexar/explain';
import { readRegularFile } from '@dexar/runtime-node';
import { loadAdapters } from './adapters.js';
import {
  integer,
  MAX_TEXT_CHARS,
  type OptionSpec,
  oneOf,
  optionHelp,
  runCommand,
  SHARED_OPTIONS,
  sharedValues,
  text,
  usageError,
} from './args.js';
import { builtin } from './builtin.js';
import { evalMain } from './eval.js';
import { loadImage, openExplainer } from './library.js';
import { checkOutputFolder, writeOutputs } from './outputs.js';
import { stderrProgress } from './progress.js';
import { serveMain } from './serve/command.js';

/** The options of explain, generate and prepare; the shared ones follow them in the help. */
const OWN_OPTIONS = {
  image: { type: 'string', usage: '--image FILE', help: 'PNG, JPEG or WebP; default: the built-in example' },
  prompt: {
    type: 'string',
    usage: '--prompt TEXT',
    help: 'prompt holding the image placeholder; default: "USER: <image>\\nDescribe the image. ASSISTANT:"',
  },
  'prompt-file': { type: 'string', usage: '--prompt-file FILE', help: 'read the prompt from a UTF-8 file instead' },
  target: {
    type: 'string',
    usage: '--target TEXT',
    help: 'explain this text (teacher forcing) instead of the generated answer',
  },
  'target-file': { type: 'string', usage: '--target-file FILE', help: 'read the target from a UTF-8 file instead' },
  'max-new-tokens': { type: 'string', usage: '--max-new-tokens N', help: 'generation limit (default 32)' },
  strategy: {
    type: 'string',
    usage: '--strategy S',
    help: 'single (one pass, default) or stepwise (one run per token, for checking)',
  },
  method: {
    type: 'string',
    usage: '--method M',
    help: 'dexar (default), dexar-unfiltered, attention, grad-x-attention, logit-lens-image\n(decoder-only families) or random: the maps of another method in the same\nresult (dexar eval compares them)',
  },
  stream: {
    type: 'boolean',
    usage: '--stream',
    help: 'explain while generating: print each token and its weight as it is\ngenerated, then write the same files (not with --target or --strategy)',
  },
  raw: {
    type: 'boolean',
    usage: '--raw',
    help: 'add raw gradient and attention rows, text sets and head weights to result.json',
  },
  out: { type: 'string', usage: '--out DIR', help: 'output folder (default dexar-out)' },
  json: { type: 'boolean', usage: '--json', help: 'print the result JSON on stdout and nothing else there' },
} as const satisfies Record<string, OptionSpec>;

const OPTIONS = { ...OWN_OPTIONS, ...SHARED_OPTIONS };

const USAGE = `usage: dexar <command> [options]

commands:
  explain    explain the answer (or --target) for an image and prompt; with no options,
             the built-in shapes model on its example image, offline
  generate   print the model's greedy answer
  prepare    build and cache the explain graph of a model ahead of time
  eval       evaluate explanation methods (DEX-AR and baselines) on a dataset; dexar eval --help
  serve      load a model once and serve the demo's interface and an HTTP API over it; dexar serve --help

options:
${optionHelp(OPTIONS)}`;

const HELP = 'dexar --help';

/** `--NAME TEXT` or `--NAME-file FILE` (not both), within the text limit. */
async function textOption(values: Record<string, unknown>, name: 'prompt' | 'target'): Promise<string | undefined> {
  const inline = values[name] as string | undefined;
  const file = values[`${name}-file`] as string | undefined;
  if (file === undefined) return text(name, inline, HELP);
  if (inline !== undefined) throw usageError(`give --${name} or --${name}-file, not both`, HELP);
  const bytes = await readRegularFile(file, {
    maxBytes: 4 * MAX_TEXT_CHARS,
    what: `--${name}-file`,
    code: 'invalid-options',
  }).catch((error: NodeJS.ErrnoException) => {
    if (error instanceof DexarError) throw error;
    throw usageError(`cannot read --${name}-file ${file}: ${error.code ?? error.message}`, HELP);
  });
  return text(name, new TextDecoder().decode(bytes), HELP);
}

/** Runs the CLI; returns the exit code (0 ok, 1 runtime error, 2 usage error). */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'eval') return evalMain(argv.slice(1));
  if (argv[0] === 'serve') return serveMain(argv.slice(1));
  return runCommand(argv, OPTIONS, HELP, async ({ values, positionals }) => {
    const command = positionals[0];
    if (values.help || command === undefined) {
      process.stdout.write(`${USAGE}\n`);
      return command === undefined && !values.help ? 2 : 0;
    }
    if (!['explain', 'generate', 'prepare'].includes(command) || positionals.length > 1) {
      throw usageError(
        `unknown command ${JSON.stringify(positionals.join(' '))}: use explain, generate, prepare, eval or serve`,
        HELP,
      );
    }
    const shared = sharedValues(values, HELP);
    const maxNewTokens = integer('max-new-tokens', values['max-new-tokens'], HELP, { min: 1, max: MAX_TEXT_CHARS });
    const promptText = await textOption(values, 'prompt');
    const target = await textOption(values, 'target');
    const strategy = oneOf('strategy', values.strategy, ['single', 'stepwise'] as const, HELP);
    const positionLens = values.method !== undefined && methodFor(values.method).needsPositionLens === true;
    if (values.stream) {
      const clash = [
        target !== undefined && '--target (a stream explains the model its own answer)',
        strategy !== undefined && '--strategy',
        positionLens && `--method ${values.method} (it needs the position lens of a teacher-forced pass)`,
        command !== 'explain' && `the ${command} command`,
      ].find(Boolean);
      if (clash) throw usageError(`--stream does not go with ${clash}`, HELP);
    }
    const out = values.out ?? 'dexar-out';
    if (command === 'explain') await checkOutputFolder(out);
    const onProgress = stderrProgress(!values.quiet);
    await loadAdapters(shared.adapters, HELP);
    const explainer = await openExplainer({
      ...(shared.model ? { model: shared.model } : {}),
      ...(shared.variant ? { variant: shared.variant } : {}),
      ...shared.backend,
      onProgress,
    });
    try {
      if (command === 'prepare') {
        const { layerIndex, compat } = shared.dexar;
        const path = await explainer.prepare({
          ...(layerIndex !== undefined ? { layerIndex } : {}),
          ...(compat ? { compat } : {}),
        });
        process.stdout.write(`${path}\n`);
        return 0;
      }
      const image = await loadImage(values.image ?? builtin.exampleImage);
      const prompt = promptText ?? builtin.prompt;
      if (command === 'generate') {
        const answer = await explainer.generate(image, {
          prompt,
          ...(maxNewTokens !== undefined ? { maxNewTokens } : {}),
        });
        process.stdout.write(values.json ? `${JSON.stringify(answer)}\n` : `${answer.text}\n`);
        return 0;
      }
      const request = {
        prompt,
        ...(maxNewTokens !== undefined ? { maxNewTokens } : {}),
        ...shared.dexar,
        returnRaw: (values.raw ?? false) || (values.method ?? 'dexar') !== 'dexar',
      };
      const result = values.stream
        ? await streamed(
            explainer.stream(image, request),
            values.json ? (values.quiet ? undefined : process.stderr) : process.stdout,
          )
        : await explainer.explain(image, {
            ...request,
            ...(target !== undefined ? { target } : {}),
            ...(strategy ? { strategy } : {}),
            positionLens,
          });
      const explained =
        values.method && values.method !== 'dexar' ? withMethod(result, values.method, values.raw ?? false) : result;
      const written = await writeOutputs(out, explained, image);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(explained)}\n`);
      } else {
        const weights = explained.tokens.map((t, n) => `${t} (${explained.tokenWeights[n].toFixed(3)})`).join(' ');
        process.stdout.write(
          `answer: ${weights}\nwrote ${written.files.length} files to ${out}: sentence.png, grid.png, tokens/, result.json, report.html\n`,
        );
      }
      return 0;
    } finally {
      await explainer.release();
    }
  });
}

/** Drains a stream, writing each token and its weight to `out` as it arrives. */
async function streamed(
  events: AsyncIterable<StreamEvent>,
  out: NodeJS.WritableStream | undefined,
): Promise<Explanation> {
  let result: Explanation | undefined;
  for await (const event of events) {
    if (event.kind === 'result') result = event.explanation;
    else {
      const note = event.provisional ? '\t(map provisional until the end)' : '';
      out?.write(`${event.index}\t${JSON.stringify(event.token)}\t${event.tokenWeight.toFixed(3)}${note}\n`);
    }
  }
  return result as Explanation; // a stream ends with its result or throws
}
