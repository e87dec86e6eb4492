// The package carries the built-in model and its example image, so `npx dexar explain` works from
// any folder, and the demo's built page for `dexar serve` (its HTML, script and style sheet only):
// `prepack` copies them from the repository into the package, `postpack` removes them.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pageFiles } from '../dist/serve/page.js';

const pkg = join(import.meta.dirname, '..');
const repo = join(pkg, '..', '..');
const assets = ['models/shapes-llava', 'examples/shapes/example.png'];
const demo = join(repo, 'apps/demo/dist');

for (const path of [...assets, 'demo']) rmSync(join(pkg, path.split('/')[0]), { recursive: true, force: true });
if (process.argv[2] === 'copy') {
  for (const path of assets) {
    cpSync(join(repo, path), join(pkg, path), {
      recursive: true,
      // derived files (cached explain graphs and their records) stay behind
      filter: (source) => !/\.dexar-[0-9a-f]+\.(onnx|json)$/.test(source),
    });
  }
  if (!existsSync(join(demo, 'index.html'))) throw new Error(`${demo}/index.html is missing: run pnpm build first`);
  mkdirSync(join(pkg, 'demo', 'assets'), { recursive: true });
  for (const file of ['index.html', ...pageFiles(readFileSync(join(demo, 'index.html'), 'utf8'))]) {
    cpSync(join(demo, file), join(pkg, 'demo', file));
  }
}
