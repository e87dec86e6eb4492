import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DexarError } from '@dexar/core';

/** The demo's built interface: `demo/` in the installed package (copied at pack time), `apps/demo/dist` in the repository. */
function pageFolder(): string {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const folders = [join(pkg, 'demo'), join(pkg, '..', 'demo', 'dist')];
  const found = folders.find((folder) => existsSync(join(folder, 'index.html')));
  if (!found) {
    throw new DexarError(
      'missing-file',
      `the interface is not built (no ${join(folders[1] as string, 'index.html')}): run pnpm build in the repository`,
    );
  }
  return found;
}

/** The page's own files, as `index.html` names them: its script and style sheet (`assets/...`). */
export function pageFiles(html: string): string[] {
  return [...html.matchAll(/(?:src|href)="\.\/(assets\/[\w.-]+\.(?:js|css))"/g)].map((m) => m[1] as string);
}

export const PAGE_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export interface Page {
  /** URL path (no leading slash; `''` is the page) to the file's bytes. */
  files: Map<string, Uint8Array>;
}

/**
 * The served interface, read once at start: `index.html`, told by a meta tag that the model runs
 * in this server (the page then talks to the API instead of starting its own runtime), and the
 * script and style sheet it names. Nothing else of the build (the browser's model copy, ONNX
 * Runtime's WebAssembly) is served.
 */
export function loadPage(): Page {
  const folder = pageFolder();
  const html = readFileSync(join(folder, 'index.html'), 'utf8');
  const marked = html.replace('<head>', '<head>\n    <meta name="dexar-runtime" content="server" />');
  const files = new Map<string, Uint8Array>([['', new TextEncoder().encode(marked)]]);
  for (const file of pageFiles(html)) files.set(file, readFileSync(join(folder, file)));
  return { files };
}

export const typeOf = (path: string) => PAGE_TYPES[extname(path) || '.html'] ?? 'application/octet-stream';
