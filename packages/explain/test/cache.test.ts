import '@dexar/adapter-llava';
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { ProgressEvent } from '@dexar/core/adapter';
import { explainGraphRecord } from '@dexar/onnx-graph';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { describe, expect, it } from 'vitest';
import { caseImage, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

/** A private copy of the tiny LLaVA (its graph cache is what these tests tamper with) and a user cache folder. */
async function modelCopy(): Promise<{ model: string; cache: string }> {
  const work = await mkdtemp(join(tmpdir(), 'dexar-cache-'));
  const model = join(work, 'model');
  await cp(modelDir('llava-tiny'), model, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\.onnx$/.test(src) });
  return { model, cache: join(work, 'user-cache') };
}

async function open(model: string, cache: string, events: ProgressEvent[] = []): Promise<Explainer> {
  return Explainer.open({
    backend: nodeBackend({ threads: 1 }),
    folder: await openModelFolder(model, 'fp32', cache),
    onProgress: (event) => events.push(event),
  });
}

/**
 * `Explainer.prepare` in a child process that file permissions bind. Root (CI's containers) runs
 * it with every capability dropped (`setpriv`), so a folder's mode bits hold for it as for the
 * folder's owner; anyone else runs it as is. The child uses the built packages, as the CLI does.
 */
async function prepareWithoutPrivileges(model: string, cache: string): Promise<string> {
  const script = `
    import '@dexar/adapter-llava';
    import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
    import { Explainer } from ${JSON.stringify(pathToFileURL(join(packageDir, 'dist/index.js')).href)};
    const [model, cache] = process.argv.slice(1);
    const explainer = await Explainer.open({ backend: nodeBackend({ threads: 1 }), folder: await openModelFolder(model, 'fp32', cache) });
    process.stdout.write(await explainer.prepare());
    await explainer.release();`;
  const node = [process.execPath, '--input-type=module', '-e', script, model, cache];
  const dropAll = ['setpriv', '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--'];
  const [command, ...args] = process.getuid?.() === 0 ? [...dropAll, ...node] : node;
  const { stdout } = await promisify(execFile)(command as string, args, { cwd: packageDir });
  return stdout;
}

const fromCache = (events: ProgressEvent[]) => events.some((e) => /explain graph from cache/.test(e.detail ?? ''));

describe('the explain-graph cache', () => {
  const c = referenceCases('llava-tiny')[0];
  const request = { prompt: c.prompt, targetIds: c.target_ids, compat: 'official' as const };

  it('rebuilds over a foreign graph and over a graph of other options planted under the key', async () => {
    const { model, cache } = await modelCopy();
    const image = await caseImage(c);
    const clean = await open(model, cache);
    const path = join(model, await clean.prepare({ compat: 'official' }));
    const expected = await clean.explain(image, request);
    const paperPath = join(model, await clean.prepare({ compat: 'paper' }));
    await clean.release();

    for (const planted of [join(model, 'onnx/embed_tokens.onnx'), paperPath]) {
      await cp(planted, path);
      const events: ProgressEvent[] = [];
      const explainer = await open(model, cache, events);
      const result = await explainer.explain(image, request);
      await explainer.release();
      expect(fromCache(events)).toBe(false);
      expect(result.sentenceHeatmap).toEqual(expected.sentenceHeatmap);
      expect(result.perTokenHeatmaps).toEqual(expected.perTokenHeatmaps);
      const key = /dexar-([0-9a-f]+)\.onnx$/.exec(path)?.[1] ?? '';
      expect(await explainGraphRecord(new Uint8Array(await readFile(path)), key)).toEqual({});
    }
  });

  it('falls back to the user cache when a directory sits at the cache name, and loads it from there next time', async () => {
    const { model, cache } = await modelCopy();
    const first = await open(model, cache);
    const name = await first.prepare();
    await first.release();
    await rm(join(model, name));
    await mkdir(join(model, name));

    const rebuilt = await open(model, cache);
    await rebuilt.prepare();
    await rebuilt.release();
    expect((await stat(join(model, name))).isDirectory()).toBe(true);
    const mirror = await readdir(join(cache, 'explain-graphs'));
    expect(mirror).toHaveLength(1);
    expect((await stat(join(cache, 'explain-graphs', mirror[0], name))).isFile()).toBe(true);

    const events: ProgressEvent[] = [];
    const again = await open(model, cache, events);
    await again.explain(await caseImage(c), request);
    await again.release();
    expect(fromCache(events)).toBe(true);
  });

  it('builds into the user cache for a read-only model folder', async () => {
    const { model, cache } = await modelCopy();
    await chmod(join(model, 'onnx'), 0o555);
    try {
      const name = await prepareWithoutPrivileges(model, cache);
      expect(await readdir(join(model, 'onnx'))).not.toContain(name.split('/').at(-1));
      expect((await readdir(join(cache, 'explain-graphs'))).length).toBe(1);
    } finally {
      await chmod(join(model, 'onnx'), 0o755);
    }
  });
});
