import { readFile } from 'node:fs/promises';
import { adapterFor, type FamilyModel, readJson } from '@dexar/core';
import { decodeImage, nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
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
      const image = await decodeImage(new Uint8Array(await readFile(`${c.dir}/image.png`)));
      const input = (await model.prepare(image, c.prompt)) as never as {
        promptIds: number[];
        imageKeys: { start: number; end: number };
        embeddings: { data: Float32Array; hidden: number };
      };
      expect(input.promptIds).toEqual(c.prompt_ids_expanded);
      expect(input.imageKeys).toEqual({ start: c.idx_img_tok_start, end: c.idx_img_tok_end });
      const { hidden } = input.embeddings;
      const merged = input.embeddings.data.subarray(c.idx_img_tok_start * hidden, c.idx_img_tok_end * hidden);
      let worst = 0;
      merged.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - c.image_features.data[i]));
      });
      expect(worst).toBeLessThan(1e-4);
      expect(model.tokenizeTarget(c.target)).toEqual(c.target_ids);
      expect(model.tokenStrings(c.target_ids)).toEqual(c.tokens);
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
