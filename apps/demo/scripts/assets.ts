import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILTIN, BUILTIN_FALLBACK, type BuiltinManifest } from '../src/builtin.js';

/**
 * The files the demo serves beside its bundle, straight from the repository
 * and the installed onnxruntime-web (nothing is duplicated into git):
 * `builtin/model/**`, `builtin/example.png`, `builtin/manifest.json` and
 * `ort/ort-wasm-simd-threaded{,.jsep}.{mjs,wasm}`.
 */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The onnxruntime-web files loaded at run time: the CPU build (WebAssembly) and the JSEP build (WebGPU). */
export const ORT_FILES = [
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.jsep.mjs',
  'ort-wasm-simd-threaded.jsep.wasm',
];

function ortDir(): string {
  const require = createRequire(join(repoRoot, 'apps/demo/package.json'));
  return dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm'));
}

/** Explain graphs the CLI cached beside the model, and half-written files, are not served: the browser builds its own. */
const served = (path: string) => !/\.dexar-[0-9a-f]+\.onnx$/.test(path) && !/\.tmp-/.test(path);

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.push(relative(dir, full).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.filter(served);
}

/** The built-in model in use: `BUILTIN`, or the fallback (with a warning) while it has not been built. */
export function builtin(warn: (message: string) => void = console.warn) {
  const chosen = existsSync(join(repoRoot, BUILTIN.model, 'config.json')) ? BUILTIN : BUILTIN_FALLBACK;
  if (chosen !== BUILTIN) {
    warn(
      `dexar demo: ${BUILTIN.model}/config.json does not exist; the built-in model falls back to ${chosen.model} (see apps/demo/src/builtin.ts)`,
    );
  }
  return chosen;
}

/** Every served file: URL path (no leading slash) to the file on disk. */
export function assetMap(warn?: (message: string) => void): { files: Map<string, string>; manifest: BuiltinManifest } {
  const b = builtin(warn);
  const files = new Map<string, string>();
  const modelDir = join(repoRoot, b.model);
  const modelFiles = listFiles(modelDir);
  for (const f of modelFiles) files.set(`builtin/model/${f}`, join(modelDir, f));
  files.set('builtin/example.png', join(repoRoot, b.image));
  for (const f of ORT_FILES) files.set(`ort/${f}`, join(ortDir(), f));
  let prompt: string = b.prompt;
  let expectedAnswer: string | undefined;
  if (b.example && existsSync(join(repoRoot, b.example))) {
    const example = JSON.parse(readFileSync(join(repoRoot, b.example), 'utf8')) as {
      prompt?: string;
      expectedAnswer?: string;
    };
    prompt = example.prompt ?? prompt;
    expectedAnswer = example.expectedAnswer;
  }
  const manifest: BuiltinManifest = {
    name: b.name,
    source: b.model,
    fallback: b !== BUILTIN,
    model: 'builtin/model',
    image: 'builtin/example.png',
    imageSource: b.image,
    prompt,
    ...(expectedAnswer ? { expectedAnswer } : {}),
    files: modelFiles,
  };
  return { files, manifest };
}

/** Headers that make the page cross-origin isolated, so WebAssembly gets threads (SharedArrayBuffer). */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
} as const;

export const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.onnx': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
};
