import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (or installed package tree) folder that holds `models/` and `examples/`. */
function assetsRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'models', 'shapes-llava', 'config.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

/** The built-in model (trained on the synthetic shapes task) and its example, used when options are left out. */
export const builtin = {
  get model(): string {
    return join(assetsRoot(), 'models', 'shapes-llava');
  },
  get exampleImage(): string {
    return join(assetsRoot(), 'examples', 'shapes', 'example.png');
  },
  prompt: 'USER: <image>\nDescribe the image. ASSISTANT:',
};
