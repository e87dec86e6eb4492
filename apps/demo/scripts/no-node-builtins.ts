import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import type { Plugin } from 'vite';

const nodeBuiltins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** The `browser` field of the package.json that holds `file`, if any. */
function browserField(file: string): Record<string, unknown> | undefined {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const browser = (JSON.parse(readFileSync(manifest, 'utf8')) as { browser?: unknown }).browser;
      return typeof browser === 'object' && browser ? (browser as Record<string, unknown>) : undefined;
    }
  }
  return undefined;
}

/**
 * Fails the build when any module of the browser bundle imports a Node
 * built-in (`fs`, `node:path`, ...), unless that module's package maps it
 * to nothing for browsers (`"browser": { "fs": false }`, as protobufjs does
 * for its optional, guarded `require("fs")`).
 */
export function noNodeBuiltins(): Plugin {
  return {
    name: 'dexar:no-node-builtins',
    enforce: 'pre',
    resolveId(id, importer) {
      if (!nodeBuiltins.has(id) && !id.startsWith('node:')) return null;
      if (importer && browserField(importer)?.[id] === false) return null;
      this.error(`${importer ?? 'the entry'} imports the Node built-in "${id}": the browser bundle must not`);
    },
  };
}
