import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { describe, expect, it } from 'vitest';
import { noNodeBuiltins } from '../scripts/no-node-builtins.js';
import { distDir } from '../scripts/serve.js';
import { crc32, zip } from '../src/zip.js';

const demoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Module specifiers loaded by import, dynamic import or require in a JavaScript file. */
function loadedSpecifiers(code: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\bimport\s*\(\s*["'`]([^"'`]+)["'`]\s*\)/g,
    /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const p of patterns) for (const m of code.matchAll(p)) out.push(m[1]);
  return out;
}

const NODE_NAMES =
  /^(node:.*|fs|fs\/promises|path|os|crypto|url|util|module|worker_threads|child_process|stream|buffer|http|https|net|zlib)$/;

describe('the browser bundle has no Node built-ins', () => {
  it('no chunk of the built demo loads a Node module, and none needs a browser-external stub', () => {
    expect(existsSync(join(distDir, 'index.html')), 'build the demo first (pnpm build)').toBe(true);
    const chunks = readdirSync(join(distDir, 'assets')).filter((f) => f.endsWith('.js'));
    expect(chunks.length).toBeGreaterThanOrEqual(2); // the page and the pipeline worker
    for (const chunk of chunks) {
      const code = readFileSync(join(distDir, 'assets', chunk), 'utf8');
      expect(
        loadedSpecifiers(code).filter((s) => NODE_NAMES.test(s)),
        chunk,
      ).toEqual([]);
      expect(code.includes('__vite-browser-external'), chunk).toBe(false);
      // The only "node:" strings left are onnxruntime-web's own Node branch, as in its published browser build:
      // calls of esbuild's require shim guarded by `typeof navigator > "u"` or a constant false.
      const literals = [...code.matchAll(/["'](node:[a-z_/]+)["']/g)].map((m) => m[1]);
      expect(new Set(literals), chunk).toSatisfy((s: Set<string>) =>
        [...s].every((l) => ['node:os', 'node:fs', 'node:fs/promises'].includes(l)),
      );
    }
    const ort = readFileSync(
      createRequire(join(demoRoot, 'package.json'))
        .resolve('onnxruntime-web')
        .replace(/[^/]+$/, 'ort.min.mjs'),
      'utf8',
    );
    expect(ort).toContain('("node:os")');
  });

  it('fails the build when a module imports a Node built-in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dexar-builtin-'));
    try {
      writeFileSync(join(dir, 'entry.js'), "import { join } from 'node:path';\nconsole.log(join('a', 'b'));\n");
      await expect(
        build({
          configFile: false,
          root: dir,
          logLevel: 'silent',
          plugins: [noNodeBuiltins()],
          build: { lib: { entry: join(dir, 'entry.js'), formats: ['es'] }, outDir: join(dir, 'out'), write: false },
        }),
      ).rejects.toThrow(/imports the Node built-in "node:path": the browser bundle must not/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('zip', () => {
  it('writes stored entries with their CRC-32', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const bytes = zip([
      { name: 'a.txt', bytes: new TextEncoder().encode('hello') },
      { name: 'tokens/b.png', bytes: new Uint8Array([1, 2, 3]) },
    ]);
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(0, true)).toBe(0x04034b50);
    const end = bytes.length - 22;
    expect(view.getUint32(end, true)).toBe(0x06054b50);
    expect(view.getUint16(end + 10, true)).toBe(2);
    expect(new TextDecoder().decode(bytes.subarray(30, 35))).toBe('a.txt');
  });
});
