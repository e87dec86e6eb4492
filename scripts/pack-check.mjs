// Proves every public package installs and imports from its npm tarball in an
// empty folder: `pnpm pack` each one (workspace versions resolved), `npm
// install` the tarballs together, then import each and check its exports.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const packages = readdirSync(join(root, 'packages'))
  .map((dir) => join(root, 'packages', dir))
  .filter((dir) => existsSync(join(dir, 'package.json')))
  .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
  .filter(({ manifest }) => !manifest.private);

const work = mkdtempSync(join(tmpdir(), 'dexar-pack-'));
try {
  const tarballs = packages.map(({ dir }) => {
    const out = execFileSync('pnpm', ['pack', '--pack-destination', work], {
      cwd: dir,
      encoding: 'utf8',
    });
    return out.trim().split('\n').at(-1);
  });
  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], {
    cwd: app,
    stdio: 'inherit',
  });
  for (const { manifest } of packages) {
    const script = `const m = await import(${JSON.stringify(manifest.name)}); const n = Object.keys(m).length; if (!n) throw new Error('no exports'); console.log('${manifest.name}: ' + n + ' exports');`;
    execFileSync('node', ['--input-type=module', '-e', script], { cwd: app, stdio: 'inherit' });
  }
  console.log(`pack-check: ${packages.length} packages install and import from their tarballs`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
