import '@dexar/adapter-llava';
import { cp, mkdir, mkdtemp, readFile, rename, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Explanation } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import { type Backend, type ModelFolder, variantPath } from '@dexar/core/runtime';
import { externalDataInfo, isExternal, readModel, type TensorProto } from '@dexar/onnx-graph';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { describe, expect, it } from 'vitest';
import { caseImage, modelDir, referenceCases } from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';

const DECODER = 'onnx/decoder_model_merged.onnx';

/** A private copy of the tiny LLaVA without cached explain graphs. */
async function modelCopy(): Promise<string> {
  const model = join(await mkdtemp(join(tmpdir(), 'dexar-weights-')), 'model');
  await cp(modelDir('llava-tiny'), model, { recursive: true, filter: (src) => !/\.dexar-[0-9a-f]+\./.test(src) });
  return model;
}

/** The node backend, counting the sessions that hold the decoder's weights (the decoder and explain graphs). */
function countingBackend(): { backend: Backend; mostOpen: () => number } {
  const inner = nodeBackend({ threads: 1 });
  let open = 0;
  let most = 0;
  const backend: Backend = {
    ...inner,
    async createSession(folder, path, options) {
      const session = await inner.createSession(folder, path, options);
      if (!path.startsWith(DECODER.replace(/\.onnx$/, ''))) return session;
      most = Math.max(most, ++open);
      return {
        ...session,
        release: async () => {
          open--;
          await session.release();
        },
      };
    },
  };
  return { backend, mostOpen: () => most };
}

/**
 * Scales one large weight of the decoder file in place (same size, same layout): the largest
 * MatMul weight of the middle layer, by 1.5.
 */
async function editWeightInPlace(model: string): Promise<void> {
  const file = join(model, DECODER);
  const bytes = new Uint8Array(await readFile(file));
  const decoder = readModel(bytes);
  const largest = (decoder.graph.proto.initializer ?? [])
    .filter((t): t is TensorProto & { rawData: Uint8Array } => (t.rawData?.byteLength ?? 0) >= 4096 && t.dataType === 1)
    .sort((a, b) => b.rawData.byteLength - a.rawData.byteLength)[1];
  if (!largest) throw new Error('no large float weight to edit');
  const view = new DataView(bytes.buffer, bytes.byteOffset + largest.rawData.byteOffset, largest.rawData.byteLength);
  for (let i = 0; i < view.byteLength; i += 4) view.setFloat32(i, view.getFloat32(i, true) * 1.5, true);
  await writeFile(file, bytes);
}

/** The folder, counting the times the decoder file is read whole. */
function countingFolder(folder: ModelFolder): { folder: ModelFolder; decoderReadWhole: () => number } {
  let whole = 0;
  const counted: ModelFolder = Object.create(folder);
  counted.readBytes = async (path) => {
    if (path === DECODER) whole++;
    return folder.readBytes(path);
  };
  return { folder: counted, decoderReadWhole: () => whole };
}

const fromCache = (events: ProgressEvent[]) => events.some((e) => e.detail?.startsWith('explain graph from cache'));

const c = referenceCases('llava-tiny')[0];
const maps = (e: Explanation) => ({ sentence: e.sentenceHeatmap, perToken: e.perTokenHeatmaps, w: e.tokenWeights });

describe('weights held once', () => {
  it("writes an explain graph that reads the decoder's weights from the decoder file", async () => {
    const model = await modelCopy();
    const explainer = await Explainer.open({
      backend: nodeBackend({ threads: 1 }),
      folder: await openModelFolder(model),
    });
    const graphPath = join(model, await explainer.prepare());
    await explainer.release();
    const decoderBytes = (await stat(join(model, DECODER))).size;
    const decoder = readModel(new Uint8Array(await readFile(join(model, DECODER))));
    const weightBytes = (decoder.graph.proto.initializer ?? [])
      .map((t) => t.rawData?.byteLength ?? 0)
      .filter((bytes) => bytes >= 4096) // smaller tensors (shape constants) stay in the graph
      .reduce((sum, bytes) => sum + bytes, 0);
    const graph = readModel(new Uint8Array(await readFile(graphPath)));
    const external = (graph.graph.proto.initializer ?? []).filter(isExternal);
    const referenced = external.reduce((sum, t) => sum + Number(externalDataInfo(t).length), 0);
    // the weights are the decoder file's bytes, read in place: the graph holds no copy of them
    expect(referenced).toBe(weightBytes);
    expect((await stat(graphPath)).size).toBeLessThan(weightBytes);
    for (const t of external) {
      const { location, offset, length } = externalDataInfo(t);
      expect(location).toBe('decoder_model_merged.onnx');
      expect(Number(offset) + Number(length)).toBeLessThanOrEqual(decoderBytes);
    }
  });

  it('embeds the weights where the decoder is a link to another folder (ONNX Runtime reads external data only beside the graph)', async () => {
    const plain = await modelCopy();
    const linked = await modelCopy();
    await rename(join(linked, DECODER), join(linked, 'decoder-elsewhere.onnx'));
    await mkdir(join(linked, 'elsewhere'));
    await rename(join(linked, 'decoder-elsewhere.onnx'), join(linked, 'elsewhere/decoder.onnx'));
    await symlink(join(linked, 'elsewhere/decoder.onnx'), join(linked, DECODER));
    const request = { prompt: c.prompt, targetIds: c.target_ids, compat: 'official' as const };
    const image = await caseImage(c);
    const results: Explanation[] = [];
    for (const model of [plain, linked]) {
      const explainer = await Explainer.open({
        backend: nodeBackend({ threads: 1 }),
        folder: await openModelFolder(model),
      });
      results.push(await explainer.explain(image, request));
      const graphPath = join(model, await explainer.prepare());
      await explainer.release();
      const graphBytes = (await stat(graphPath)).size;
      const decoderBytes = (await stat(join(model, DECODER))).size;
      expect(graphBytes > decoderBytes).toBe(model === linked);
    }
    expect(maps(results[1] as Explanation)).toEqual(maps(results[0] as Explanation));
  });

  it('builds and keys the explain graph without reading the decoder whole (its structure is read in ranges)', async () => {
    const model = await modelCopy();
    const { folder, decoderReadWhole } = countingFolder(await openModelFolder(model));
    const explainer = await Explainer.open({ backend: nodeBackend({ threads: 1 }), folder });
    await explainer.prepare();
    await explainer.prepare({ compat: 'paper' });
    await explainer.release();
    expect(decoderReadWhole()).toBe(0);
  });

  it('keeps a graph that references the weights when they change in place, and rebuilds one that holds copies', async () => {
    const image = await caseImage(c);
    const request = { prompt: c.prompt, targetIds: c.target_ids };
    const run = async (model: string) => {
      const events: ProgressEvent[] = [];
      const explainer = await Explainer.open({
        backend: nodeBackend({ threads: 1 }),
        folder: await openModelFolder(model),
        onProgress: (e) => events.push(e),
      });
      const result = maps(await explainer.explain(image, request));
      await explainer.release();
      return { result, cached: fromCache(events) };
    };
    const plain = await modelCopy();
    const linked = await modelCopy();
    await mkdir(join(linked, 'elsewhere'));
    await rename(join(linked, DECODER), join(linked, 'elsewhere/decoder.onnx'));
    await symlink(join(linked, 'elsewhere/decoder.onnx'), join(linked, DECODER));
    const before = await run(plain);
    expect((await run(linked)).result).toEqual(before.result);

    await editWeightInPlace(plain);
    await editWeightInPlace(linked); // written through the link: the file elsewhere changes
    const edited = await modelCopy();
    await editWeightInPlace(edited);
    const expected = await run(edited); // built for the edited weights
    expect(expected.cached).toBe(false);
    expect(expected.result).not.toEqual(before.result);
    const referencing = await run(plain);
    expect(referencing.cached).toBe(true);
    expect(referencing.result).toEqual(expected.result);
    const holding = await run(linked);
    expect(holding.cached).toBe(false);
    expect(holding.result).toEqual(expected.result);
    expect((await run(linked)).cached).toBe(true);
  });

  it('opens one decoder session at a time across generation, teacher-forced and streamed explanation', async () => {
    const model = await modelCopy();
    const image = await caseImage(c);
    const request = { prompt: c.prompt, targetIds: c.target_ids };
    const fresh = async (run: (e: Explainer) => Promise<unknown>) => {
      const e = await Explainer.open({ backend: nodeBackend({ threads: 1 }), folder: await openModelFolder(model) });
      const result = await run(e);
      await e.release();
      return result;
    };
    const expected = {
      generated: await fresh((e) => e.generate(image, { prompt: c.prompt, maxNewTokens: 4 })),
      official: maps((await fresh((e) => e.explain(image, request))) as Explanation),
      paper: maps((await fresh((e) => e.explain(image, { ...request, compat: 'paper' }))) as Explanation),
      streamed: maps((await fresh((e) => e.explain(image, { prompt: c.prompt, maxNewTokens: 4 }))) as Explanation),
    };

    const { backend, mostOpen } = countingBackend();
    const explainer = await Explainer.open({ backend, folder: await openModelFolder(model) });
    expect(await explainer.generate(image, { prompt: c.prompt, maxNewTokens: 4 })).toEqual(expected.generated);
    expect(maps(await explainer.explain(image, request))).toEqual(expected.official);
    expect(await explainer.generate(image, { prompt: c.prompt, maxNewTokens: 4 })).toEqual(expected.generated);
    expect(maps(await explainer.explain(image, { prompt: c.prompt, maxNewTokens: 4 }))).toEqual(expected.streamed);
    expect(maps(await explainer.explain(image, { ...request, compat: 'paper' }))).toEqual(expected.paper);
    expect(maps(await explainer.explain(image, request))).toEqual(expected.official);
    await explainer.release();
    expect(mostOpen()).toBe(1);
  });
});

describe('weight variants', () => {
  it("names a variant's own file, and leaves derived files and the variant's own name alone", () => {
    expect(variantPath(DECODER, 'fp32')).toBe(DECODER);
    expect(variantPath(DECODER, 'q4')).toBe('onnx/decoder_model_merged_q4.onnx');
    expect(variantPath(DECODER, 'q8')).toBe('onnx/decoder_model_merged_quantized.onnx');
    expect(variantPath(DECODER, 'quantized')).toBe('onnx/decoder_model_merged_quantized.onnx');
    expect(variantPath('onnx/decoder_model_merged_q4.onnx', 'q4')).toBe('onnx/decoder_model_merged_q4.onnx');
    expect(variantPath('onnx/decoder_model_merged.dexar-00ff.onnx', 'q4')).toBe(
      'onnx/decoder_model_merged.dexar-00ff.onnx',
    );
    expect(variantPath('config.json', 'fp16')).toBe('config.json');
  });

  it('gives the file name external data uses for a variant', async () => {
    const folder = await openModelFolder(modelDir('llava-tiny'), 'fp16');
    expect(folder.fileName(DECODER)).toBe('decoder_model_merged_fp16.onnx');
    expect(folder.fileName('onnx/decoder_model_merged.dexar-00ff.onnx')).toBe('decoder_model_merged.dexar-00ff.onnx');
  });
});
