import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { Explainer } from '@dexar/explain';
import { nodeBackend, decodeImage as nodeDecode, openModelFolder } from '@dexar/runtime-node';
import { IDBFactory } from 'fake-indexeddb';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodePngBytes,
  externalLocations,
  FileModelFolder,
  IndexedDbStore,
  MemoryStore,
  UrlModelFolder,
  webBackend,
} from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const llavaTiny = `${root}fixtures/models/llava-tiny`;

/** `fetch` over the repository's files, as a static server would answer (GET and HEAD). */
const diskFetch: typeof fetch = async (input, init) => {
  const url = new URL(String(input));
  const file = `${root}${decodeURIComponent(url.pathname).replace(/^\/repo\//, '')}`;
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return new Response('not found', { status: 404 });
  if (init?.method === 'HEAD') return new Response(null, { status: 200 });
  return new Response(await readFile(file), { headers: { 'content-length': String(info.size) } });
};

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('PNG encoding', () => {
  it('round-trips RGBA through a PNG that sharp decodes', async () => {
    const width = 13;
    const height = 7;
    const data = new Uint8Array(width * height * 4).map((_, i) => (i * 37 + (i >> 3)) % 256);
    const png = await encodePngBytes({ width, height, data });
    const { data: back, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([width, height, 4]);
    expect(new Uint8Array(back)).toEqual(data);
  });
});

describe('model folders', () => {
  it('reads a folder over HTTP, reports download progress and names a missing file', async () => {
    const seen: number[] = [];
    const folder = new UrlModelFolder('http://127.0.0.1/repo/fixtures/models/llava-tiny/', {
      fetch: diskFetch,
      store: new MemoryStore(),
      onDownload: (e) => seen.push(e.loaded),
    });
    expect(folder.location).toBe('http://127.0.0.1/repo/fixtures/models/llava-tiny');
    expect(await folder.exists('config.json')).toBe(true);
    expect(await folder.exists('nope.json')).toBe(false);
    const bytes = await folder.readBytes('onnx/embed_tokens.onnx');
    expect(bytes).toEqual(new Uint8Array(await readFile(`${llavaTiny}/onnx/embed_tokens.onnx`)));
    expect(seen.at(-1)).toBe(bytes.length);
    await expect(folder.readBytes('tokenizer.model')).rejects.toThrow(/llava-tiny\/tokenizer.model: HTTP 404/);
  });

  it('keeps derived files in the store, shadowing the source, and maps variants like Node', async () => {
    const store = new MemoryStore();
    const folder = new UrlModelFolder('http://127.0.0.1/repo/fixtures/models/llava-tiny', {
      fetch: diskFetch,
      store,
      variant: 'fp16',
    });
    expect(folder.sourcePath('onnx/decoder_model_merged.onnx')).toBe('onnx/decoder_model_merged_fp16.onnx');
    expect(folder.sourcePath('onnx/decoder_model_merged.dexar-0a1b.onnx')).toBe(
      'onnx/decoder_model_merged.dexar-0a1b.onnx',
    );
    const path = 'onnx/decoder_model_merged.dexar-0a1b.onnx';
    expect(await folder.exists(path)).toBe(false);
    await folder.writeBytes(path, new Uint8Array([1, 2, 3]));
    expect(await folder.exists(path)).toBe(true);
    expect(await folder.readBytes(path)).toEqual(new Uint8Array([1, 2, 3]));
    expect(await store.keys()).toEqual([`${folder.location}|${path}`]);
  });

  it('opens picked files: a directory input (top folder dropped) or loose files matched by name', async () => {
    const config = new File(['{"model_type":"llava"}'], 'config.json');
    const graph = new File([new Uint8Array([7])], 'vision_encoder.onnx');
    const dir = new FileModelFolder(
      [
        { path: 'my-model/config.json', file: config },
        { path: 'my-model/onnx/vision_encoder.onnx', file: graph },
      ],
      { store: new MemoryStore() },
    );
    expect(dir.location).toBe('picked:my-model');
    expect(dir.paths()).toEqual(['config.json', 'onnx/vision_encoder.onnx']);
    expect(await dir.readBytes('onnx/vision_encoder.onnx')).toEqual(new Uint8Array([7]));
    const loose = new FileModelFolder([config, graph], { store: new MemoryStore() });
    expect(loose.location).toBe('picked:files');
    expect(await loose.exists('onnx/vision_encoder.onnx')).toBe(true);
    await expect(loose.readBytes('tokenizer.json')).rejects.toThrow(
      /picked:files\/tokenizer.json: no such file was picked/,
    );
  });

  it('stores derived files in IndexedDB across store instances (one transaction per file)', async () => {
    const factory = new IDBFactory();
    const a = new IndexedDbStore(factory);
    await a.put('x|onnx/a.dexar-1.onnx', new Uint8Array([4, 5]));
    const b = new IndexedDbStore(factory);
    expect(await b.has('x|onnx/a.dexar-1.onnx')).toBe(true);
    expect(await b.get('x|onnx/a.dexar-1.onnx')).toEqual(new Uint8Array([4, 5]));
    expect(await b.get('missing')).toBeUndefined();
    await b.clear();
    expect(await a.keys()).toEqual([]);
  });
});

describe('external data', () => {
  it('finds the external-data locations a graph names', () => {
    const enc = new TextEncoder();
    const entry = (key: string, value: string) => {
      const k = enc.encode(key);
      const v = enc.encode(value);
      return [0x0a, k.length, ...k, 0x12, v.length, ...v];
    };
    const bytes = new Uint8Array([
      1,
      2,
      ...entry('location', 'decoder_model_merged.onnx_data'),
      ...entry('offset', '0'),
      ...entry('location', 'decoder_model_merged.onnx_data'),
      ...entry('location', 'more.bin'),
      9,
    ]);
    expect(externalLocations(bytes)).toEqual(['decoder_model_merged.onnx_data', 'more.bin']);
    expect(externalLocations(new Uint8Array([0x0a, 0x08]))).toEqual([]);
  });
});

describe.each(['llava-tiny', 'bakllava-tiny', 'paligemma-tiny', 'florence2-tiny'])(
  'the web backend runs the same pipeline as Node: %s',
  (name) => {
    let node: Explainer;
    let web: Explainer;
    beforeAll(async () => {
      node = await Explainer.open({
        backend: nodeBackend({ threads: 1 }),
        folder: await openModelFolder(`${root}fixtures/models/${name}`),
      });
      const backend = await webBackend({ executionProvider: 'wasm', threads: 1 });
      expect(backend.info.executionProvider).toBe('wasm');
      const folder = new UrlModelFolder(`http://127.0.0.1/repo/fixtures/models/${name}`, {
        fetch: diskFetch,
        store: new MemoryStore(),
      });
      web = await Explainer.open({ backend, folder });
    }, 60_000);
    afterAll(async () => {
      await node?.release();
      await web?.release();
    });

    it('explains within 1e-4 of onnxruntime-node, building the explain graph into the store', async () => {
      const dir = `${root}fixtures/references/${name}/case0`;
      const { prompt, target_ids: targetIds } = JSON.parse(await readFile(`${dir}/case.json`, 'utf8'));
      const image = await nodeDecode(new Uint8Array(await readFile(`${dir}/image.png`)));
      // The generated answer where the family has one quickly; the reference target otherwise.
      const request = name === 'llava-tiny' ? { prompt, maxNewTokens: 6 } : { prompt, targetIds };
      const a = await node.explain(image, { ...request, returnRaw: true });
      const b = await web.explain(image, { ...request, headWeights: true });
      expect(b.raw).toBeUndefined();
      expect(b.tokenIds).toEqual(a.tokenIds);
      expect(maxDiff(b.perTokenHeatmaps.flat(2), a.perTokenHeatmaps.flat(2))).toBeLessThan(1e-4);
      expect(maxDiff(b.perTokenHeatmapsUnfiltered.flat(2), a.perTokenHeatmapsUnfiltered.flat(2))).toBeLessThan(1e-4);
      expect(maxDiff(b.sentenceHeatmap.flat(), a.sentenceHeatmap.flat())).toBeLessThan(1e-4);
      expect(maxDiff(b.tokenWeights, a.tokenWeights)).toBeLessThan(1e-4);
      expect(maxDiff(b.headWeights?.flat(2) ?? [], a.headWeights?.flat(2) ?? [])).toBeLessThan(1e-4);
      expect(b.model?.path).toBe(`http://127.0.0.1/repo/fixtures/models/${name}`);
    }, 60_000);
  },
);
