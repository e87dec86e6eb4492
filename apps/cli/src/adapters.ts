import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
// The families the CLI carries: importing an adapter package registers it.
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { isModelAdapter, type ModelAdapter, registerAdapter } from '@dexar/core/adapter';
import { usageError } from './args.js';

/**
 * Loads third-party adapters (`--adapter`): each spec is a package name, found in the
 * `node_modules` folders from the working folder up (as the user's own project would resolve it),
 * or a path (starting with `.` or `/`) to a package folder or a module file. Every `ModelAdapter` the module exports is
 * registered (a package that registers itself when imported works too); a module that exports none
 * is a usage error.
 */
export async function loadAdapters(specs: readonly string[], help: string): Promise<ModelAdapter[]> {
  const loaded: ModelAdapter[] = [];
  for (const spec of specs) {
    const entry = await entryOf(spec, help);
    let module: Record<string, unknown>;
    try {
      module = await import(pathToFileURL(entry).href);
    } catch (error) {
      throw usageError(`--adapter ${spec}: cannot load ${entry} (${(error as Error).message.split('\n')[0]})`, help);
    }
    const adapters = [...new Set(Object.values(module).filter(isModelAdapter))];
    if (adapters.length === 0) {
      throw usageError(
        `--adapter ${spec} exports no model adapter (an object with a family, modelTypes and a load function): export the adapter from the package's entry`,
        help,
      );
    }
    for (const adapter of adapters) registerAdapter(adapter);
    loaded.push(...adapters);
  }
  return loaded;
}

/** The module file a spec names: a path (module file or package folder) or a package name. */
async function entryOf(spec: string, help: string): Promise<string> {
  if (spec.startsWith('.') || isAbsolute(spec)) {
    const path = resolve(spec);
    if (!existsSync(path)) throw usageError(`--adapter ${spec}: ${path} does not exist`, help);
    return statSync(path).isDirectory() ? packageEntry(path, spec, help) : path;
  }
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    const folder = join(dir, 'node_modules', spec);
    if (existsSync(join(folder, 'package.json'))) return packageEntry(folder, spec, help);
    if (dirname(dir) === dir) break;
  }
  throw usageError(
    `--adapter ${spec}: no package ${spec} in the node_modules folders from ${process.cwd()} up: install it in this project, or give the path to its folder`,
    help,
  );
}

/** A package folder's ESM entry: `exports["."]` (its import, node or default condition), else `main`, else `index.js`. */
async function packageEntry(folder: string, spec: string, help: string): Promise<string> {
  let manifest: { exports?: unknown; main?: unknown };
  try {
    manifest = JSON.parse(await readFile(join(folder, 'package.json'), 'utf8'));
  } catch {
    throw usageError(`--adapter ${spec}: ${folder} has no readable package.json`, help);
  }
  const exported = manifest.exports;
  const root =
    typeof exported === 'object' && exported !== null && '.' in exported
      ? (exported as Record<string, unknown>)['.']
      : exported;
  const target = condition(root) ?? (typeof manifest.main === 'string' ? manifest.main : 'index.js');
  return resolve(folder, target);
}

/** The path a conditional export resolves to under Node's ESM conditions. */
function condition(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null) return undefined;
  const conditions = value as Record<string, unknown>;
  for (const name of ['import', 'node', 'default']) {
    const found = condition(conditions[name]);
    if (found) return found;
  }
  return undefined;
}
