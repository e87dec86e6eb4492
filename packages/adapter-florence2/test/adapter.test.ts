import { adapterFor, type FamilyModel } from '@dexar/core/adapter';
import { readJson } from '@dexar/core/runtime';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseImage, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { florence2Adapter } from '../src/index.js';

const backend = nodeBackend({ threads: 1 });
const name = 'florence2-tiny';

describe(name, () => {
  let model: FamilyModel;
  beforeAll(async () => {
    const folder = await openModelFolder(modelDir(name));
    const config = await readJson(folder, 'config.json');
    expect(adapterFor(config, folder.location)).toBe(florence2Adapter);
    model = await florence2Adapter.load(folder, backend, config);
  });
  afterAll(() => model.release());

  it('differentiates the cross-attention of its decoder layers', () => {
    expect(model.decoder.attention).toBe('cross');
    expect(model.numLayers).toBe(4);
  });

  it('refuses one-token-per-call explanation (a decoder whose calls are not causal) in one typed line', async () => {
    const c = referenceCases(name)[0];
    const input = await model.prepare(await caseImage(c), c.prompt);
    const explain = model.explain(input, c.target_ids, undefined as never, { compat: 'official', perToken: true });
    await expect(explain).rejects.toMatchObject({
      code: 'unsupported-graph',
      message: expect.stringMatching(/calls over several tokens are not causal.*export the decoder with a causal/),
    });
  });

  describe.each(referenceCases(name))('$name', (c) => {
    it('expands the task, places grid and prompt on the encoder axis and tokenises the target as the reference does', async () => {
      const image = await caseImage(c);
      const input = (await model.prepare(image, c.prompt)) as never as {
        promptIds: number[];
        imageKeys: { start: number; end: number };
        promptKeys: number[];
        encoderHidden: { dims: number[] };
      };
      const ref = c as never as {
        text_positions_per_step: { paper: number[][] };
        encoder_sequence_length: number;
      };
      expect(input.promptIds).toEqual(c.prompt_ids_expanded);
      expect(input.imageKeys).toEqual({ start: c.idx_img_tok_start, end: c.idx_img_tok_end });
      expect(input.promptKeys).toEqual(ref.text_positions_per_step.paper[0]);
      expect(input.encoderHidden.dims).toEqual([1, ref.encoder_sequence_length, 64]);
      expect(model.tokenizeTarget(c.target)).toEqual(c.target_ids);
      expect(model.tokenStrings(c.target_ids)).toEqual(c.tokens);
    });
  });

  it('generates from the start and forced-BOS context and stops at the limit', async () => {
    const c = referenceCases(name)[0];
    const image = await caseImage(c);
    const ids = await model.generate(await model.prepare(image, '<CAPTION>'), 4);
    expect(ids.length).toBeLessThanOrEqual(4);
  });

  it('rejects a task token the model does not know, listing the known ones', async () => {
    const image = { width: 8, height: 8, data: new Uint8Array(256) };
    await expect(model.prepare(image, '<SUMMARY>')).rejects.toThrowError(
      /<SUMMARY> is not a Florence-2 task this model knows \(<CAPTION>, .*\): use one of them, or free text/,
    );
  });
});
