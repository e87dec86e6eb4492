import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
/** What a bundle that only aggregates may weigh, gzipped (issue #17). */
const LIMIT = 20 * 1024;

/** A minified ESM bundle of an app importing `names` from `@dexar/core` (its source, as a bundler resolves it). */
async function bundle(names: readonly string[], use: string): Promise<{ code: string; gzipped: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'dexar-bundle-'));
  const entry = join(dir, 'app.ts');
  await writeFile(entry, `import { ${names.join(', ')} } from '@dexar/core';\n${use}\n`);
  const out = join(dir, 'app.js');
  await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral',
    outfile: out,
    alias: { '@dexar/core': join(packageDir, 'src/index.ts') },
    nodePaths: [join(packageDir, 'node_modules')],
    logLevel: 'silent',
  });
  const code = await readFile(out, 'utf8');
  return { code, gzipped: gzipSync(code, { level: 9 }).length };
}

describe('@dexar/core in a bundle', () => {
  it(`keeps an app that only aggregates under ${LIMIT / 1024} KB gzipped, and it runs`, async () => {
    const { code, gzipped } = await bundle(
      ['aggregate', 'tensor'],
      `const rows = tensor(Float32Array.from({ length: 2 * 3 * 2 * 7 }, (_, i) => Math.sin(i)), [2, 3, 2, 7]);
export const maps = aggregate(
  { rows, layers: [0, 1, 2], numLayers: 3 },
  { imageKeys: { start: 1, end: 5 }, grid: { height: 2, width: 2 }, keyCounts: [6, 7], textKeys: [[0, 5], [0, 5, 6]] },
  { layerIndex: 0 },
);`,
    );
    console.log(
      `aggregate-only bundle: ${(code.length / 1024).toFixed(1)} KB, ${(gzipped / 1024).toFixed(1)} KB gzipped`,
    );
    expect(gzipped).toBeLessThan(LIMIT);
    const file = join(await mkdtemp(join(tmpdir(), 'dexar-bundle-run-')), 'app.mjs');
    await writeFile(file, code);
    const { maps } = await import(pathToFileURL(file).href);
    expect(maps.tokenWeights).toHaveLength(2);
    expect(maps.options).toEqual({ layerIndex: 0, topK: 1, compat: 'official' });
  });

  it('measures what the result schema adds, for comparison', async () => {
    const { gzipped } = await bundle(['ExplanationSchema'], 'export const schema = ExplanationSchema;');
    // zod's full build: the reason the schema lives in a module of its own
    expect(gzipped).toBeGreaterThan(LIMIT);
  });
});
