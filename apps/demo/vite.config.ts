import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';
import { assetMap, ISOLATION_HEADERS, MIME } from './scripts/assets.js';
import { noNodeBuiltins } from './scripts/no-node-builtins.js';

/**
 * Serves the built-in model, its example and onnxruntime-web's WebAssembly
 * from the repository and node_modules (dev server), and copies them into
 * the build output (build); see scripts/assets.ts.
 */
function demoAssets(): Plugin {
  let outDir = 'dist';
  return {
    name: 'dexar:assets',
    configResolved(config) {
      outDir = join(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use(async (req, res, next) => {
        const path = decodeURIComponent((req.url ?? '').split('?')[0]).replace(/^\/+/, '');
        const { files, manifest } = assetMap((m) => server.config.logger.warn(m));
        for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
        if (path === 'builtin/manifest.json') {
          res.setHeader('Content-Type', MIME['.json']);
          res.end(JSON.stringify(manifest));
          return;
        }
        const file = files.get(path);
        if (!file) {
          if (!/^(builtin|ort)\//.test(path)) return next();
          // Not the SPA fallback: a missing model file must be a 404 (the folder probes for cached graphs).
          res.statusCode = 404;
          res.end('not found');
          return;
        }
        const bytes = await readFile(file);
        res.setHeader('Cache-Control', 'no-cache');
        res.setHeader('Content-Type', MIME[extname(file)] ?? 'application/octet-stream');
        res.setHeader('Content-Length', bytes.length);
        res.end(req.method === 'HEAD' ? undefined : bytes);
      });
    },
    async writeBundle() {
      const { files, manifest } = assetMap((m) => this.warn(m));
      await Promise.all(
        [...files].map(async ([url, file]) => {
          await mkdir(dirname(join(outDir, url)), { recursive: true });
          await copyFile(file, join(outDir, url));
        }),
      );
      await writeFile(join(outDir, 'builtin/manifest.json'), JSON.stringify(manifest, null, 2));
    },
  };
}

export default defineConfig({
  base: './',
  // ONNX Runtime's glue and .wasm come from ort/ (wasmPaths), not inlined into the bundle.
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
  worker: { format: 'es', plugins: () => [noNodeBuiltins()] },
  // Dev server: pre-bundle the worker's CommonJS dependencies up front (found late, they would reload the page),
  // and leave onnxruntime-web as published (it loads its WebAssembly from ort/).
  optimizeDeps: {
    include: [
      '@dexar/adapter-llava > @dexar/adapter-kit > @huggingface/tokenizers',
      '@dexar/explain > @dexar/onnx-graph > protobufjs/light.js',
    ],
    exclude: ['onnxruntime-web'],
  },
  plugins: [noNodeBuiltins(), demoAssets()],
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
  build: {
    target: 'es2022',
    chunkSizeWarningLimit: 2048,
    reportCompressedSize: false,
    rollupOptions: {
      // zod's sources carry comments Rollup reads as misplaced annotations; harmless, and not ours to fix.
      onwarn(warning, warn) {
        if (warning.code === 'INVALID_ANNOTATION' && warning.id?.includes('/zod/')) return;
        warn(warning);
      },
    },
  },
});
