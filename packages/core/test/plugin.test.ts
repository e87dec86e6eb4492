import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  adapterFor,
  type FamilyModel,
  isModelAdapter,
  type ModelAdapter,
  registerAdapter,
  registeredFamilies,
} from '../src/adapter.js';
import { DexarError } from '../src/index.js';

const source = fileURLToPath(new URL('../src', import.meta.url));

/** A second copy of core's modules, as an adapter linked from another folder brings along. */
async function secondCopy(): Promise<{
  adapter: typeof import('../src/adapter.js');
  errors: typeof import('../src/errors.js');
}> {
  const dir = await mkdtemp(join(tmpdir(), 'dexar-core-copy-'));
  await cp(source, dir, { recursive: true });
  const [adapter, errors] = await Promise.all([
    import(pathToFileURL(join(dir, 'adapter.ts')).href),
    import(pathToFileURL(join(dir, 'errors.ts')).href),
  ]);
  return { adapter, errors };
}

const toy = (family: string, modelTypes: string[]): ModelAdapter => ({
  family,
  modelTypes,
  load: async () => ({}) as FamilyModel,
});

describe('the adapter registry', () => {
  it('survives a second copy of core: what one registers, the other finds', async () => {
    const copy = await secondCopy();
    expect(copy.adapter.registerAdapter).not.toBe(registerAdapter);
    const linked = toy('linked', ['linked_vlm']);
    copy.adapter.registerAdapter(linked);
    expect(adapterFor({ model_type: 'linked_vlm' }, '/m')).toBe(linked);
    expect(registeredFamilies()).toContain('linked');
    const local = toy('local', ['local_vlm']);
    registerAdapter(local);
    expect(copy.adapter.adapterFor({ model_type: 'local_vlm' }, '/m')).toBe(local);
  });

  it("takes an explicit adapter only for the folder's model type", () => {
    const explicit = toy('toyvlm', ['toyvlm']);
    expect(adapterFor({ model_type: 'toyvlm' }, '/m', explicit)).toBe(explicit);
    expect(() => adapterFor({ model_type: 'llava' }, '/m', explicit)).toThrowError(
      '/m/config.json has model_type "llava", but the toyvlm adapter given loads "toyvlm": give the adapter of this model\'s family',
    );
  });

  it('says how to register an adapter when none supports the model type', () => {
    expect(() => adapterFor({ model_type: 'nobody_vlm' }, '/m')).toThrowError(
      /^\/m\/config.json has model_type "nobody_vlm", which no registered adapter supports \(registered model types: .*\): register its family's adapter \(CLI: --adapter <package>; library: Explainer.open\(\{ adapter \}\) or import the adapter package\) or point --model at a supported model folder$/,
    );
  });

  it('refuses what is not an adapter', () => {
    expect(isModelAdapter(toy('a', ['a']))).toBe(true);
    expect(isModelAdapter({ family: 'a', modelTypes: [], load: () => {} })).toBe(false);
    expect(isModelAdapter({ family: 'a', modelTypes: ['a'] })).toBe(false);
    expect(() => registerAdapter({ family: 'a' } as ModelAdapter)).toThrowError(
      /registerAdapter takes a ModelAdapter: an object with a family name, a non-empty modelTypes list and a load function/,
    );
  });
});

describe('DexarError', () => {
  it('is recognised across copies of core, with its code', async () => {
    const copy = await secondCopy();
    const foreign = new copy.errors.DexarError('unsupported-model', 'from a linked adapter');
    expect(foreign).toBeInstanceOf(DexarError);
    expect(foreign.isUsageError).toBe(true);
    expect(new DexarError('runtime', 'here')).toBeInstanceOf(copy.errors.DexarError);
    expect(new Error('plain')).not.toBeInstanceOf(DexarError);
  });
});
