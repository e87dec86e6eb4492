// The package carries the built-in model and its example image, so `npx dexar explain` works from
// any folder: `prepack` copies them from the repository into the package, `postpack` removes them.
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const pkg = join(import.meta.dirname, '..');
const repo = join(pkg, '..', '..');
const assets = ['models/shapes-llava', 'examples/shapes/example.png'];

for (const path of assets) rmSync(join(pkg, path.split('/')[0]), { recursive: true, force: true });
if (process.argv[2] === 'copy') {
  for (const path of assets) {
    cpSync(join(repo, path), join(pkg, path), {
      recursive: true,
      // derived files (cached explain graphs and their records) stay behind
      filter: (source) => !/\.dexar-[0-9a-f]+\.(onnx|json)$/.test(source),
    });
  }
}
