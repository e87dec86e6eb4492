// Proves every published package (packages/* and the `dexar` CLI) works from its npm tarball in an
// empty project: `pnpm pack` each one (workspace versions resolved), `npm install` the tarballs
// together, import each, run every README example there (TypeScript through tsx, JavaScript with
// node, shell blocks with the installed `dexar`), and run `dexar explain` from a folder that holds
// nothing else, on the built-in model the CLI package carries, and `dexar serve` there: its page
// (the demo's, carried by the package) and an explanation through its API.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { publishedPackages, readmeExamples } from './readme-examples.mjs';

const root = resolve(import.meta.dirname, '..');
/** What the CLI tarball may weigh with its built-in model (1.9 MB of graphs and tokenizer). */
const CLI_TARBALL_LIMIT = 4 << 20;
const packages = publishedPackages(root);
const started = Date.now();
const seconds = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;

const work = mkdtempSync(join(tmpdir(), 'dexar-pack-'));
try {
  const tarballs = packages.map(({ dir, manifest }) => {
    const out = execFileSync('pnpm', ['pack', '--pack-destination', work], { cwd: join(root, dir), encoding: 'utf8' });
    const tarball = out.trim().split('\n').at(-1);
    const size = statSync(tarball).size;
    console.log(`${manifest.name}: ${(size / 1024).toFixed(0)} KB packed`);
    if (manifest.name === 'dexar' && size > CLI_TARBALL_LIMIT) {
      throw new Error(`the dexar tarball is ${size} bytes, over ${CLI_TARBALL_LIMIT}: what did it take along?`);
    }
    return tarball;
  });
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], {
    cwd: app,
    stdio: 'inherit',
  });
  console.log(`pack-check: installed ${packages.length} tarballs (${seconds()})`);
  for (const { manifest } of packages.filter(({ manifest }) => manifest.exports)) {
    const script = `const m = await import(${JSON.stringify(manifest.name)}); if (!Object.keys(m).length) throw new Error('${manifest.name}: no exports');`;
    execFileSync('node', ['--input-type=module', '-e', script], { cwd: app, stdio: 'inherit' });
  }

  // `npx dexar explain` from a folder with nothing in it: the built-in model comes with the package
  const elsewhere = join(work, 'elsewhere');
  mkdirSync(elsewhere);
  execFileSync(join(app, 'node_modules/.bin/dexar'), ['explain', '--quiet', '--out', join(elsewhere, 'out')], {
    cwd: elsewhere,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  statSync(join(elsewhere, 'out', 'result.json'));
  console.log(`pack-check: dexar explain ran from an empty folder on its built-in model (${seconds()})`);
  await checkServe(join(app, 'node_modules/.bin/dexar'), elsewhere);
  console.log(`pack-check: dexar serve served its page and explained through its API (${seconds()})`);

  // the README examples, in the project, on copies of the files they name
  for (const path of ['examples/shapes', 'datasets/shapes-heldout', 'models/shapes-llava']) {
    cpSync(join(root, path), join(app, path), { recursive: true, filter: (src) => !/\.dexar-/.test(src) });
  }
  for (const model of ['llava-tiny', 'paligemma-tiny', 'florence2-tiny']) {
    cpSync(join(root, 'fixtures/models', model), join(app, 'fixtures/models', model), {
      recursive: true,
      filter: (src) => !/\.dexar-/.test(src),
    });
    cpSync(
      join(root, 'fixtures/references', model, 'case0/image.png'),
      join(app, 'fixtures/references', model, 'case0/image.png'),
    );
  }
  const env = { ...process.env, PATH: `${join(app, 'node_modules/.bin')}:${process.env.PATH}` };
  const run = {
    ts: (file) => ['node', [join(root, 'node_modules/tsx/dist/cli.mjs'), file]],
    js: (file) => ['node', [file]],
    sh: (file) => ['bash', ['-e', file]],
  };
  const examples = readmeExamples(root).filter((e) => !e.browser);
  for (const e of examples) {
    const file = join(
      app,
      `${e.name.replace(/\W+/g, '-')}-${e.index}.${e.lang === 'ts' ? 'ts' : e.lang === 'js' ? 'mjs' : 'sh'}`,
    );
    writeFileSync(file, e.code);
    const [command, args] = run[e.lang](file);
    try {
      execFileSync(command, args, { cwd: app, env, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      throw new Error(`${e.dir}/README.md example ${e.index} fails from the installed packages:\n${error.stderr}`);
    }
  }
  console.log(
    `pack-check: ${packages.length} packages install from their tarballs and run their ${examples.length} README examples (${seconds()})`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** `dexar serve` from the installed package: the page it carries, and one explanation of the example through the API. */
async function checkServe(bin, cwd) {
  const server = spawn(bin, ['serve', '--port', '0', '--quiet'], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      server.stdout.on('data', (chunk) => {
        out += chunk;
        const found = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)?.[0];
        if (found) resolve(found);
      });
      server.once('exit', (code) => reject(new Error(`dexar serve exited with ${code} before listening`)));
    });
    const page = await (await fetch(url)).text();
    if (!page.includes('<meta name="dexar-runtime" content="server" />')) throw new Error('dexar serve: no page');
    for (const asset of page.matchAll(/(?:src|href)="\.\/(assets\/[^"]+)"/g)) {
      const response = await fetch(new URL(asset[1], url));
      if (!response.ok) throw new Error(`dexar serve: ${asset[1]}: HTTP ${response.status}`);
    }
    const form = new FormData();
    form.append('image', new Blob([readFileSync(join(root, 'examples/shapes/example.png'))]), 'example.png');
    form.append('request', JSON.stringify({ prompt: 'USER: <image>\nDescribe the image. ASSISTANT:' }));
    const response = await fetch(new URL('api/explain', url), { method: 'POST', body: form });
    const result = await response.json();
    if (!response.ok || !(result.tokens?.length > 0)) {
      throw new Error(`dexar serve: explain answered ${response.status} ${JSON.stringify(result).slice(0, 300)}`);
    }
  } finally {
    server.kill('SIGTERM');
  }
}
