import { basename, resolve } from 'node:path';
import { loadAdapters } from '../adapters.js';
import { integer, type OptionSpec, optionHelp, runCommand, SHARED_OPTIONS, sharedValues, usageError } from '../args.js';
import { builtin } from '../builtin.js';
import { openExplainer } from '../library.js';
import { stderrProgress } from '../progress.js';
import type { ServeOptions } from './server.js';
import { isLoopback, startServer } from './server.js';

const { model, adapter, variant, device, threads, quiet, debug, help } = SHARED_OPTIONS;

const OPTIONS = {
  model,
  adapter,
  variant,
  port: { type: 'string', usage: '--port N', help: 'port to listen on (default 8080; 0 picks a free one)' },
  host: {
    type: 'string',
    usage: '--host H',
    help: 'address to listen on (default 127.0.0.1, this machine only); another\nexposes the model to the network, with a warning',
  },
  queue: {
    type: 'string',
    usage: '--queue N',
    help: 'requests that may wait for the model (default 16); more get 503',
  },
  device,
  threads,
  quiet,
  debug,
  help,
} as const satisfies Record<string, OptionSpec>;

const HELP = 'dexar serve --help';

const USAGE = `usage: dexar serve [options]

Loads the model once and serves the demo's interface and an HTTP API over it (JSON Schema at
/api/schema). The page and every client use this one model; requests wait in a bounded queue.

options:
${optionHelp(OPTIONS)}`;

/** `dexar serve`: runs until SIGINT or SIGTERM; returns the exit code. */
export async function serveMain(argv: string[]): Promise<number> {
  return runCommand(argv, OPTIONS, HELP, async ({ values, positionals }) => {
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (positionals.length > 0) {
      throw usageError(`dexar serve takes no arguments, got ${JSON.stringify(positionals.join(' '))}`, HELP);
    }
    const shared = sharedValues(values, HELP);
    const port = integer('port', values.port, HELP, { min: 0, max: 65_535 }) ?? 8080;
    const queue = integer('queue', values.queue, HELP, { min: 1, max: 1024 }) ?? 16;
    const host = values.host ?? '127.0.0.1';
    if (!isLoopback(host)) {
      process.stderr.write(
        `dexar: warning: serving on ${host}, not only this machine: whoever reaches it can use the model (there is no authentication)\n`,
      );
    }
    await loadAdapters(shared.adapters, HELP);
    const folder = resolve(shared.model ?? builtin.model);
    // loading progress goes to stderr; afterwards each request's goes to its stream (the server routes it)
    const loading = stderrProgress(!values.quiet);
    const progress: ServeOptions['progress'] = { current: loading };
    const explainer = await openExplainer({
      model: folder,
      ...(shared.variant ? { variant: shared.variant } : {}),
      ...shared.backend,
      onProgress: (event) => progress.current?.(event),
    });
    const server = await startServer({
      model: explainer,
      name: basename(folder),
      variant: shared.variant ?? 'fp32',
      runtime: {
        name: 'onnxruntime-node',
        executionProvider: shared.backend.executionProvider ?? 'cpu',
        threads: shared.backend.threads ?? null,
      },
      queue,
      host,
      port,
      progress,
    }).catch(async (error) => {
      await explainer.release();
      throw error;
    });
    loading({ stage: 'load', detail: 'ready' });
    progress.current = undefined;
    process.stdout.write(
      `dexar serve: ${server.url} (${basename(folder)}: ${explainer.model.family}, ${explainer.model.numLayers} layers, onnxruntime-node)\n`,
    );
    await new Promise<void>((stop) => {
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
    await explainer.release();
    return 0;
  });
}
