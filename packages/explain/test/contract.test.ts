import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { llavaAdapter } from '@dexar/adapter-llava';
import { paligemmaAdapter } from '@dexar/adapter-paligemma';
import { DexarError } from '@dexar/core';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { describe, expect, it } from 'vitest';
import { caseImage, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';

/** The fields of the tiny LLaVA's config.json these tests edit. */
interface ConfigJson {
  text_config: Record<string, number>;
  vision_config: Record<string, number>;
}

const c = referenceCases('llava-tiny')[0];
const backend = nodeBackend({ threads: 1 });

/** A private copy of the tiny LLaVA with `edit` applied to its config.json. */
async function editedModel(edit: (config: ConfigJson) => void): Promise<string> {
  const dir = join(await mkdtemp(join(tmpdir(), 'dexar-contract-')), 'model');
  await cp(modelDir('llava-tiny'), dir, {
    recursive: true,
    filter: (src) => !/\.dexar-[0-9a-f]+\.(onnx|json)$/.test(src),
  });
  await editConfig(dir, edit);
  return dir;
}

async function editConfig(dir: string, edit: (config: ConfigJson) => void): Promise<void> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  edit(config);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
}

const open = async (dir: string) => Explainer.open({ backend, folder: await openModelFolder(dir) });

/** The one-line error of explaining (teacher forcing: the explain graph only) and of generating (the plain decoder). */
async function failures(dir: string): Promise<string[]> {
  const image = await caseImage(c);
  const messages: string[] = [];
  for (const run of [
    (e: Explainer) => e.explain(image, { prompt: c.prompt, targetIds: c.target_ids }),
    (e: Explainer) => e.generate(image, { prompt: c.prompt, maxNewTokens: 2 }),
  ]) {
    const explainer = await open(dir);
    const error = await run(explainer).then(
      () => undefined,
      (e: unknown) => e,
    );
    await explainer.release().catch(() => undefined);
    expect(error).toBeInstanceOf(DexarError);
    messages.push((error as Error).message);
  }
  return messages;
}

describe('a config that does not match its graphs', () => {
  it.each([
    [
      'a layer count',
      (config: ConfigJson) => {
        config.text_config.num_hidden_layers = 3;
      },
      /\/config\.json: text_config\.num_hidden_layers gives 3 but onnx\/decoder_model_merged(\.dexar-[0-9a-f]+)?\.onnx has 4 decoder layers: the config does not match the graph$/,
    ],
    [
      'a KV-head count',
      (config: ConfigJson) => {
        config.text_config.num_key_value_heads = 2;
      },
      /\/config\.json: text_config\.num_key_value_heads gives 2 but onnx\/decoder_model_merged(\.dexar-[0-9a-f]+)?\.onnx has 4 KV heads \(past_key_values\.0\.key is \[batch_size, 4, past_sequence_length, 16\]\): the config does not match the graph$/,
    ],
    [
      'a head size',
      (config: ConfigJson) => {
        config.text_config.head_dim = 8;
      },
      /text_config\.head_dim \(else hidden_size \/ num_attention_heads\) gives 8 but onnx\/decoder_model_merged(\.dexar-[0-9a-f]+)?\.onnx has 16 values per head/,
    ],
    [
      'a grid',
      (config: ConfigJson) => {
        config.vision_config.patch_size = 16;
      },
      /\/config\.json: vision_config\.image_size \/ vision_config\.patch_size gives a 4 x 4 grid \(16 features\) but onnx\/vision_encoder\.onnx yields 64: the config does not match the graph$/,
    ],
  ])('is refused in one line naming the field: %s', async (_, edit, message) => {
    const messages = await failures(await editedModel(edit));
    for (const m of messages) expect(m).toMatch(message);
  });

  it('is refused for a cached explain graph built before the config was edited', async () => {
    const dir = await editedModel(() => {});
    const explainer = await open(dir);
    await explainer.prepare({ layerIndex: -10, compat: 'official' });
    await explainer.release();
    await editConfig(dir, (config) => {
      config.text_config.num_key_value_heads = 1;
    });
    const [explained] = await failures(dir);
    expect(explained).toMatch(
      /text_config\.num_key_value_heads gives 1 but onnx\/decoder_model_merged\.dexar-[0-9a-f]+\.onnx has 4 KV heads/,
    );
  });
});

describe('Explainer.open with an explicit adapter', () => {
  it('uses the adapter given, and refuses one for another model type', async () => {
    const folder = await openModelFolder(modelDir('llava-tiny'));
    const explainer = await Explainer.open({ backend, folder, adapter: llavaAdapter });
    expect(explainer.model.family).toBe('llava');
    await explainer.release();
    await expect(Explainer.open({ backend, folder, adapter: paligemmaAdapter })).rejects.toThrowError(
      /llava-tiny\/config\.json has model_type "llava", but the paligemma adapter given loads "paligemma": give the adapter of this model's family$/,
    );
  });
});
