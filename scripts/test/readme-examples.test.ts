import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, realpath, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { publishedPackages, readmeExamples } from '../readme-examples.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Example {
  dir: string;
  name: string;
  index: number;
  lang: 'ts' | 'js' | 'sh';
  browser: boolean;
  code: string;
}

describe('the package READMEs', () => {
  const examples: Example[] = readmeExamples(root);

  it('have an example each, and only ts, js or sh blocks', () => {
    const published: { dir: string }[] = publishedPackages(root);
    for (const { dir } of published) expect(examples.some((e) => e.dir === dir)).toBe(true);
  });

  it('show shell commands of the dexar CLI only, which pack-check runs from the installed package', () => {
    for (const e of examples.filter((x) => x.lang === 'sh')) {
      for (const line of e.code.replace(/\\\n/g, ' ').split('\n').filter(Boolean)) {
        expect(line, `${e.dir}/README.md block ${e.index}`).toMatch(/^dexar( |$)/);
      }
    }
  });

  it('type-check as written against the packages (strict, no skipLibCheck)', async () => {
    const work = await mkdtemp(join(tmpdir(), 'dexar-readme-'));
    const modules = join(work, 'node_modules');
    const link = async (name: string, target: string) => {
      await mkdir(dirname(join(modules, name)), { recursive: true });
      await symlink(await realpath(target), join(modules, name));
    };
    for (const { dir, manifest } of publishedPackages(root) as { dir: string; manifest: { name: string } }[]) {
      await link(manifest.name, join(root, dir));
    }
    await link('@types/node', join(root, 'node_modules/@types/node'));
    await link('onnxruntime-node', join(root, 'packages/onnx-graph/node_modules/onnxruntime-node'));
    const files: string[] = [];
    for (const e of examples.filter((x) => x.lang === 'ts')) {
      const file = `${e.name.replace(/\W+/g, '-')}-${e.index}.ts`;
      await writeFile(join(work, file), e.code);
      files.push(file);
    }
    await writeFile(join(work, 'package.json'), JSON.stringify({ type: 'module' }));
    await writeFile(
      join(work, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023', 'DOM'],
          types: ['node'],
          strict: true,
          noEmit: true,
        },
        files,
      }),
    );
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    const result = await promisify(execFile)('node', [tsc, '-p', work]).catch((error) => error);
    expect(result.stdout ?? '').toBe('');
    expect(files.length).toBeGreaterThanOrEqual(10);
  }, 120_000);
});
