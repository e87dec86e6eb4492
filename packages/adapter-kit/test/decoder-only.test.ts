import type { RgbaImage } from '@dexar/core';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import type { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  configObject,
  createTokenizer,
  DecoderOnlyModel,
  imageProcessorFields,
  type MergedPrompt,
  openSessions,
  processImage,
  readModelFiles,
  type TextTokenizer,
} from '../src/index.js';
import { modelDir } from './reference-cases.js';

const IMAGE_TOKEN = 513; // llava-tiny's image_token_index
const Processor = configObject(
  imageProcessorFields({
    size: { shortest_edge: 64 },
    default_to_square: false,
    do_center_crop: true,
    crop_size: { height: 64, width: 64 },
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
  }),
);

/** A decoder-only family whose prompt ids a test sets: what `mergeImage` must check. */
class Probe extends DecoderOnlyModel {
  promptIds: number[] = [];
  async prepare(image: RgbaImage): Promise<MergedPrompt> {
    return this.mergeImage(image, this.promptIds, processImage(image, Processor.parse({})));
  }
  protected officialTextExclusions(): number[] {
    return [];
  }
}

async function probe(): Promise<Probe> {
  const folder = await openModelFolder(modelDir('llava-tiny'));
  const backend = nodeBackend({ threads: 1 });
  const { tokenizer } = await readModelFiles(
    folder,
    {},
    {
      config: z.unknown(),
      configExpected: '',
      preprocessor: z.unknown(),
      preprocessorExpected: '',
    },
  );
  return new Probe(backend, folder, tokenizer, await openSessions(folder, backend, ['vision', 'embed']), {
    family: 'probe',
    cache: { numLayers: 4, kvHeads: 4, headDim: 16 },
    eos: [2],
    grid: { height: 8, width: 8 },
    imageTokenId: IMAGE_TOKEN,
    firstPosition: 0,
    prefixCall: false,
    fields: {
      numLayers: 'layers',
      kvHeads: 'kv_heads',
      headDim: 'head_dim',
      grid: 'grid_field',
      imageTokenId: 'image_token_index',
    },
  });
}

const image = { width: 80, height: 64, data: new Uint8Array(80 * 64 * 4).fill(200) };
const run = (n: number) => Array<number>(n).fill(IMAGE_TOKEN);

describe('DecoderOnlyModel.mergeImage', () => {
  it('merges the features at the image tokens and keeps only the image size', async () => {
    const model = await probe();
    model.promptIds = [1, 5, ...run(64), 7, 8];
    const input = await model.prepare(image);
    expect(input.imageKeys).toEqual({ start: 2, end: 66 });
    expect(input.features).toEqual({ start: 2, end: 66 });
    expect(input.image).toEqual({ width: 80, height: 64 });
    await model.release();
  });

  it.each([
    [[1, 5, 7], /the prompt holds no image token \(image_token_index 513\)/],
    [[1, ...run(63), 7], /the prompt holds 63 image tokens \(image_token_index 513\) for 64 image features/],
    [
      [1, ...run(64), 7, IMAGE_TOKEN],
      /image tokens \(image_token_index 513\) at 1 and again at 66: give one image placeholder/,
    ],
  ])('refuses prompt ids %#', async (ids, message) => {
    const model = await probe();
    model.promptIds = ids;
    await expect(model.prepare(image)).rejects.toThrowError(message);
    await model.release();
  });
});

describe('the tokenizer', () => {
  it('is typed: neither the package nor the wrapper resolves to any', async () => {
    expectTypeOf<InstanceType<typeof Tokenizer>>().not.toBeAny();
    expectTypeOf(createTokenizer).returns.toEqualTypeOf<TextTokenizer>();
    expectTypeOf<ReturnType<TextTokenizer['encode']>>().toEqualTypeOf<{ ids: number[] }>();
    const { tokenizer } = await readModelFiles(
      await openModelFolder(modelDir('llava-tiny')),
      {},
      {
        config: z.unknown(),
        configExpected: '',
        preprocessor: z.unknown(),
        preprocessorExpected: '',
      },
    );
    const ids = tokenizer.encode('a red circle', { add_special_tokens: false }).ids;
    expect(tokenizer.decode(ids)).toBe('a red circle');
    expect(tokenizer.id_to_token(IMAGE_TOKEN)).toBe('<image>');
  });
});
