import { readFile } from 'node:fs/promises';
import { processImage } from '@dexar/adapter-kit';
import { adapterFor, type FamilyModel } from '@dexar/core/adapter';
import { readJson } from '@dexar/core/runtime';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  caseImage,
  expectPreparedLikeReference,
  modelDir,
  referenceCases,
} from '../../adapter-kit/test/reference-cases.js';
import { ClipPreprocessorSchema } from '../src/config.js';
import { llavaAdapter } from '../src/index.js';

const backend = nodeBackend({ threads: 1 });

describe.each(['llava-tiny', 'bakllava-tiny'])('%s', (name) => {
  let model: FamilyModel;
  beforeAll(async () => {
    const folder = await openModelFolder(modelDir(name));
    const config = await readJson(folder, 'config.json');
    expect(adapterFor(config, folder.location)).toBe(llavaAdapter);
    model = await llavaAdapter.load(folder, backend, config);
  });
  afterAll(() => model.release());

  it('reads the layer count off the decoder graph', () => {
    expect(model.numLayers).toBe(4);
  });

  describe.each(referenceCases(name))('$name', (c) => {
    it('preprocesses the image to the reference pixel values', async () => {
      const image = await caseImage(c);
      const preprocessor = ClipPreprocessorSchema.parse(
        JSON.parse(await readFile(`${modelDir(name)}/preprocessor_config.json`, 'utf8')),
      );
      const pixels = processImage(image, preprocessor);
      expect(pixels.dims).toEqual(c.pixel_values.dims);
      let worst = 0;
      for (let i = 0; i < pixels.data.length; i++)
        worst = Math.max(worst, Math.abs(pixels.data[i] - c.pixel_values.data[i]));
      expect(worst).toBeLessThan(1e-5);
    });

    it('expands the prompt, merges the image features and tokenises the target as the reference does', async () => {
      await expectPreparedLikeReference(model, c);
    });
  });

  it('generates greedily with the KV cache and stops at the token limit', async () => {
    const c = referenceCases(name)[0];
    const image = await caseImage(c);
    const input = await model.prepare(image, c.prompt);
    const events: number[] = [];
    const ids = await model.generate(input, 5, (e) => events.push(e.done ?? -1));
    expect(ids.length).toBeLessThanOrEqual(5);
    expect(events).toEqual(ids.map((_, i) => i + 1));
  });

  it('rejects a prompt without the image placeholder, naming the fix', async () => {
    const image = { width: 8, height: 8, data: new Uint8Array(256) };
    await expect(model.prepare(image, 'USER: Describe the image. ASSISTANT:')).rejects.toThrowError(
      /the prompt holds 0 <image> placeholders, it needs exactly one where the image goes/,
    );
  });
});

describe('config validation', () => {
  it('refuses a model type that is not llava and a text model that is not llama or mistral', async () => {
    const folder = await openModelFolder(modelDir('llava-tiny'));
    const config = (await readJson(folder, 'config.json')) as Record<string, unknown>;
    await expect(
      llavaAdapter.load(folder, backend, { ...config, text_config: { model_type: 'gpt2' } }),
    ).rejects.toThrowError(/config.json: text_config.model_type .*llama or mistral text model/);
    expect(() => adapterFor({ model_type: 'bert' }, folder.location)).toThrowError(
      /model_type "bert", which no registered adapter supports \(registered model types: llava\): register its family's adapter \(CLI: --adapter <package>; library: Explainer.open\(\{ adapter \}\)/,
    );
  });

  it('refuses a folder that does not exist or has no config.json', async () => {
    await expect(openModelFolder('/nonexistent/model')).rejects.toThrowError(
      /model folder \/nonexistent\/model does not exist/,
    );
    await expect(openModelFolder(`${modelDir('llava-tiny')}/onnx`)).rejects.toThrowError(/has no config.json/);
  });
});
