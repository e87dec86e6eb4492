// The code blocks of the published packages' READMEs, so that they cannot rot: the test
// scripts/test/readme-examples.test.ts type-checks every TypeScript block against the workspace, and
// scripts/pack-check.mjs runs every block (TypeScript, JavaScript, shell) against the installed
// tarballs. A block fenced `ts browser` runs in a browser only: it is type-checked, not run.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The folders of the published packages: every package under packages/ and the CLI, unless private. */
export function publishedPackages(root) {
  const dirs = [...readdirSync(join(root, 'packages')).map((d) => join('packages', d)), join('apps', 'cli')];
  return dirs
    .filter((dir) => existsSync(join(root, dir, 'package.json')))
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) }))
    .filter(({ manifest }) => !manifest.private);
}

const LANGUAGES = ['ts', 'js', 'sh'];

/**
 * Every fenced block of the packages' READMEs: `{ dir, name, index, lang, browser, code }`. A
 * block in another language is an error: a README example is code a test runs.
 */
export function readmeExamples(root) {
  return publishedPackages(root).flatMap(({ dir, manifest }) => {
    const readme = readFileSync(join(root, dir, 'README.md'), 'utf8');
    return [...readme.matchAll(/^```(\S*)(.*)\n([\s\S]*?)^```$/gm)].map((m, index) => {
      const [, lang, info, code] = m;
      if (!LANGUAGES.includes(lang)) {
        throw new Error(
          `${dir}/README.md: code block ${index} is fenced "${lang}": use ts, js or sh (each one is run)`,
        );
      }
      return { dir, name: manifest.name, index, lang, browser: info.trim() === 'browser', code };
    });
  });
}
