import { adapterFor, type FamilyModel } from '@dexar/core/adapter';
import { readJson } from '@dexar/core/runtime';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectPreparedLikeReference, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { paligemmaAdapter } from '../src/index.js';

const backend = nodeBackend({ threads: 1 });
const name = 'paligemma-tiny';

describe(name, () => {
  let model: FamilyModel;
  beforeAll(async () => {
    const folder = await openModelFolder(modelDir(name));
    const config = await readJson(folder, 'config.json');
    expect(adapterFor(config, folder.location)).toBe(paligemmaAdapter);
    model = await paligemmaAdapter.load(folder, backend, config);
  });
  afterAll(() => model.release());

  describe.each(referenceCases(name))('$name', (c) => {
    it('lays out image, BOS, prefix and newline, merges the features and tokenises the target as the reference does', async () => {
      await expectPreparedLikeReference(model, c);
    });
  });

  it('rejects a prompt that carries an image placeholder, naming the fix', async () => {
    const image = { width: 8, height: 8, data: new Uint8Array(256) };
    await expect(model.prepare(image, '<image>caption en')).rejects.toThrowError(
      /carry no <image> placeholder .*"caption en"/,
    );
  });

  it('refuses a text model that is not gemma', async () => {
    const folder = await openModelFolder(modelDir(name));
    const config = (await readJson(folder, 'config.json')) as Record<string, unknown>;
    await expect(
      paligemmaAdapter.load(folder, backend, { ...config, text_config: { model_type: 'llama' } }),
    ).rejects.toThrowError(/text_config.model_type .*gemma or gemma2 text model/);
  });
});
