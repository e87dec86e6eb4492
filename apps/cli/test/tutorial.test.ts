// docs/adapters.md, run as written: its code blocks become a package `toyvlm` in a folder of its
// own (linked to the workspace's adapter-kit, with a copy of @dexar/core of its own, as a linked
// adapter has), compiled with tsc, and used through the library, the CLI (--adapter) and dexar eval
// on llava-tiny re-labelled as model_type "toyvlm": its maps must equal the built-in LLaVA
// adapter's on the same model.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { llavaAdapter } from '@dexar/adapter-llava';
import { type Explanation, ExplanationSchema } from '@dexar/core';
import type { ModelAdapter } from '@dexar/core/adapter';
import { withMethod } from '@dexar/eval';
import { Explainer } from '@dexar/explain';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeShapesDataset } from '../../../packages/eval/test/helpers/dataset.js';
import { loadImage } from '../src/library.js';
import { dexar, expectUsageError, llavaTiny, root } from './helpers.js';

const run = promisify(execFile);
const caseDir = join(root, 'fixtures/references/llava-tiny/case0');
const image = join(caseDir, 'image.png');
const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';
const target = 'a red circle';

/** The code blocks of docs/adapters.md that belong to the package, by path (` ```ts toyvlm/src/model.ts `). */
async function tutorialFiles(): Promise<Map<string, string>> {
  const doc = await readFile(join(root, 'docs/adapters.md'), 'utf8');
  const files = new Map<string, string>();
  for (const m of doc.matchAll(/^```\w+ (toyvlm\/\S+)\n([\s\S]*?)^```$/gm)) files.set(m[1], m[2]);
  return files;
}

let work: string;
let toyvlm: string;
let toyModel: string;
let adapter: ModelAdapter;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'dexar-tutorial-'));
  const files = await tutorialFiles();
  expect([...files.keys()].sort()).toEqual([
    'toyvlm/example.ts',
    'toyvlm/package.json',
    'toyvlm/src/config.ts',
    'toyvlm/src/index.ts',
    'toyvlm/src/model.ts',
    'toyvlm/tsconfig.json',
  ]);
  for (const [path, text] of files) {
    await mkdir(dirname(join(work, path)), { recursive: true });
    await writeFile(join(work, path), text);
  }
  toyvlm = join(work, 'toyvlm');
  const modules = join(toyvlm, 'node_modules');
  const link = async (name: string, target: string) => {
    await mkdir(dirname(join(modules, name)), { recursive: true });
    await symlink(await realpath(target), join(modules, name));
  };
  // its dependencies from the workspace; @dexar/core as a copy of its own (package.json and dist)
  const core = join(modules, '@dexar/core');
  await mkdir(core, { recursive: true });
  await cp(join(root, 'packages/core/package.json'), join(core, 'package.json'));
  await cp(join(root, 'packages/core/dist'), join(core, 'dist'), { recursive: true });
  await mkdir(join(core, 'node_modules'));
  await symlink(await realpath(join(root, 'packages/core/node_modules/zod')), join(core, 'node_modules/zod'));
  await link('@dexar/adapter-kit', join(root, 'packages/adapter-kit'));
  await link('zod', join(root, 'packages/adapter-kit/node_modules/zod'));
  await link('@dexar/explain', join(root, 'apps/cli/node_modules/@dexar/explain'));
  await link('@dexar/runtime-node', join(root, 'apps/cli/node_modules/@dexar/runtime-node'));
  await link('@types/node', join(root, 'node_modules/@types/node'));
  await link('toyvlm', toyvlm);
  await run('node', [join(root, 'node_modules/typescript/bin/tsc'), '-p', toyvlm]);
  ({ toyvlmAdapter: adapter } = await import(pathToFileURL(join(toyvlm, 'dist/index.js')).href));
  // the fixture model under another model_type
  toyModel = join(work, 'toyvlm-model');
  await cp(llavaTiny, toyModel, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\.(onnx|json)$/.test(src) });
  const config = JSON.parse(await readFile(join(toyModel, 'config.json'), 'utf8'));
  await writeFile(join(toyModel, 'config.json'), JSON.stringify({ ...config, model_type: 'toyvlm' }));
}, 120_000);

/** The largest difference between two explanations' maps and token weights (`filteredOnly`: M_n, delta_n, S). */
function largestDifference(a: Explanation, b: Explanation, filteredOnly = false): number {
  expect(a.tokens).toEqual(b.tokens);
  expect(a.layersUsed).toEqual(b.layersUsed);
  const values = (e: Explanation) => [
    ...e.perTokenHeatmaps.flat(2),
    ...e.tokenWeights,
    ...e.sentenceHeatmap.flat(),
    ...(filteredOnly ? [] : [...e.perTokenHeatmapsUnfiltered.flat(2), ...e.sentenceHeatmapUnfiltered.flat()]),
  ];
  const x = values(a);
  const y = values(b);
  expect(x).toHaveLength(y.length);
  return Math.max(...x.map((v, i) => Math.abs(v - y[i])));
}

/** The adapter computes what the built-in one computes, in the same float32 operations: equal maps. */
const TOLERANCE = 0;

describe('the adapter of docs/adapters.md', () => {
  it('compiles as written (strict, no skipLibCheck), also for bundlers, and exports a ModelAdapter', async () => {
    expect(adapter.family).toBe('toyvlm');
    expect(adapter.modelTypes).toEqual(['toyvlm']);
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    const bundler = ['--module', 'preserve', '--moduleResolution', 'bundler', '--noEmit'];
    await expect(run('node', [tsc, '-p', toyvlm, ...bundler])).resolves.toMatchObject({ stdout: '' });
  });

  it('explains through the library like the built-in adapter, given or discovered', async () => {
    const backend = nodeBackend({ threads: 1 });
    const picture = await loadImage(image);
    const explain = async (folder: string, family?: ModelAdapter) => {
      const explainer = await Explainer.open({
        backend,
        folder: await openModelFolder(folder),
        ...(family ? { adapter: family } : {}),
      });
      try {
        expect(explainer.model.family).toBe(family?.family ?? 'toyvlm');
        return await explainer.explain(picture, { prompt, target, returnRaw: true });
      } finally {
        await explainer.release();
      }
    };
    const builtIn = await explain(llavaTiny, llavaAdapter);
    const given = await explain(toyModel, adapter);
    // importing the package registered it through its own copy of @dexar/core
    const discovered = await explain(toyModel);
    expect(largestDifference(given, builtIn)).toBeLessThanOrEqual(TOLERANCE);
    expect(largestDifference(discovered, builtIn)).toBeLessThanOrEqual(TOLERANCE);
    // the text sets travel with the rows: evaluation's dexar method recomputes the same maps
    expect(given.raw?.textKeys).toEqual(builtIn.raw?.textKeys);
    expect(largestDifference(withMethod(given, 'dexar', false), given, true)).toBeLessThanOrEqual(TOLERANCE);
  });

  it('runs the example of step 5', async () => {
    const cwd = join(work, 'example');
    await mkdir(cwd);
    await symlink(toyModel, join(cwd, 'toyvlm-model'));
    await symlink(image, join(cwd, 'image.png'));
    const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
    const { stdout } = await run('node', [tsx, join(toyvlm, 'example.ts')], { cwd });
    expect(stdout).toMatch(/^\[ 'a', 'red', 'circle' \] \[ [\d.e-]+, [\d.e-]+, [\d.e-]+ \]\n$/);
  });

  it('explains through the CLI with --adapter, by path and by package name', async () => {
    const cli = async (model: string, ...args: string[]) => {
      const result = await dexar('explain', ...args, '--model', model, '--image', image, '--target', target, '--json');
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      return ExplanationSchema.parse(JSON.parse(result.stdout)) as Explanation;
    };
    const out = ['--out', join(work, 'cli-out'), '--quiet'];
    const builtIn = await cli(llavaTiny, ...out);
    expect(largestDifference(await cli(toyModel, '--adapter', toyvlm, ...out), builtIn)).toBeLessThanOrEqual(TOLERANCE);
    const project = join(work, 'project');
    await mkdir(join(project, 'node_modules'), { recursive: true });
    await symlink(toyvlm, join(project, 'node_modules/toyvlm'));
    const { stdout } = await run(
      'node',
      [
        join(root, 'apps/cli/bin/dexar.js'),
        'explain',
        '--adapter',
        'toyvlm',
        '--model',
        toyModel,
        '--image',
        image,
        '--target',
        target,
        '--json',
        ...out,
      ],
      { cwd: project },
    );
    expect(largestDifference(ExplanationSchema.parse(JSON.parse(stdout)) as Explanation, builtIn)).toBeLessThanOrEqual(
      TOLERANCE,
    );
  });

  it('is asked for when it is missing, and refused when it exports no adapter', async () => {
    expectUsageError(
      await dexar('explain', '--model', toyModel, '--image', image, '--target', target, '--quiet'),
      /config\.json has model_type "toyvlm", which no registered adapter supports \(registered model types: [a-z0-9, ]+\): register its family's adapter \(CLI: --adapter <package>/,
    );
    expectUsageError(
      await dexar('explain', '--adapter', join(toyvlm, 'dist/config.js'), '--model', toyModel, '--quiet'),
      /--adapter .*config\.js exports no model adapter \(an object with a family, modelTypes and a load function\)/,
    );
    expectUsageError(
      await dexar('explain', '--adapter', 'no-such-adapter', '--model', toyModel, '--quiet'),
      /--adapter no-such-adapter: no package no-such-adapter in the node_modules folders from .* up: install it in this project, or give the path to its folder/,
    );
  });

  it('evaluates with dexar eval --adapter exactly as the built-in adapter', async () => {
    const data = await writeShapesDataset(join(work, 'data'), 2);
    const evaluate = async (model: string, out: string, ...args: string[]) => {
      const result = await dexar(
        'eval',
        ...args,
        '--model',
        model,
        '--dataset',
        data,
        '--methods',
        'dexar,attention',
        '--metrics',
        'perturbation,segmentation,faithfulness',
        '--fractions',
        '0.5,1',
        '--out',
        join(work, out),
        '--quiet',
      );
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const lines = (await readFile(join(work, out, 'records-0-of-1.jsonl'), 'utf8')).trim().split('\n');
      return lines
        .map((line) => JSON.parse(line))
        .filter((r) => r.kind === 'sample')
        .map(({ seconds: _, ...r }) => r);
    };
    const builtIn = await evaluate(llavaTiny, 'eval-llava');
    const toy = await evaluate(toyModel, 'eval-toyvlm', '--adapter', toyvlm);
    expect(toy).toHaveLength(4);
    expect(toy).toEqual(builtIn);
  });
});
