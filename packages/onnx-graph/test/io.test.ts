import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { makeAttribute } from '../src/graph/attributes.js';
import { checkExternalData, normalizeExternalLocation, OnnxModel, readModel, writeModel } from '../src/model.js';
import { toBigInt, toNumber } from '../src/proto/int64.js';
import { makeTensor, readTensorBigInts, readTensorNumbers } from '../src/proto/tensor.js';
import { DataType, type ModelProto, type NodeProto } from '../src/proto/types.js';
import { fixtureFile } from './helpers/fixtures.js';
import { buildModel, makeOrtTensor, runModel, tensorValues, valueInfo } from './helpers/onnx.js';

const FIXTURE_GRAPHS = [
  ['llava-tiny', 'decoder_model_merged.onnx'],
  ['bakllava-tiny', 'decoder_model_merged.onnx'],
  ['paligemma-tiny', 'decoder_model_merged.onnx'],
  ['florence2-tiny', 'decoder_model_merged.onnx'],
  ['florence2-tiny', 'encoder_model.onnx'],
  ['llava-tiny', 'vision_encoder.onnx'],
  ['llava-tiny', 'embed_tokens.onnx'],
] as const;

/** A plain, comparable view of a model (Longs as strings, bytes as arrays). */
function plain(m: ModelProto): unknown {
  return JSON.parse(
    JSON.stringify(m, (_k, v) => {
      if (v && typeof v === 'object' && 'low' in v && 'high' in v && 'unsigned' in v) return `int64:${toBigInt(v)}`;
      if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('base64')}`;
      if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data))
        return `bytes:${Buffer.from(v.data).toString('base64')}`;
      return v;
    }),
  );
}

describe('ONNX I/O round trip', () => {
  for (const [name, file] of FIXTURE_GRAPHS) {
    it(`load, save, load gives an identical graph: ${name}/${file}`, () => {
      const bytes = readFileSync(fixtureFile(name, file));
      const a = readModel(bytes);
      const saved = writeModel(a);
      const b = readModel(saved);
      expect(plain(b.proto)).toEqual(plain(a.proto));
      // and saving again is byte-stable
      expect(Buffer.from(writeModel(b)).equals(Buffer.from(saved))).toBe(true);
    });
  }

  it('a round-tripped decoder computes the same outputs on onnxruntime', async () => {
    const bytes = readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx'));
    const again = writeModel(readModel(bytes));
    const m = readModel(bytes);
    const S = 5;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: makeOrtTensor(
        DataType.FLOAT,
        [1, S, 64],
        Array.from({ length: S * 64 }, (_, i) => Math.sin(i)),
      ),
      attention_mask: makeOrtTensor(DataType.INT64, [1, S], new Array(S).fill(1)),
      position_ids: makeOrtTensor(DataType.INT64, [1, S], [0, 1, 2, 3, 4]),
    };
    for (const v of m.graph.inputs) {
      if (v.name?.startsWith('past')) feeds[v.name] = makeOrtTensor(DataType.FLOAT, [1, 4, 0, 16], []);
    }
    const x = await runModel(new Uint8Array(bytes), feeds, ['logits']);
    const y = await runModel(again, feeds, ['logits']);
    expect(tensorValues(y.logits as ort.Tensor)).toEqual(tensorValues(x.logits as ort.Tensor));
  });

  for (const opset of [14, 15, 16, 17, 18, 19, 20, 21]) {
    it(`opset ${opset} and the com.microsoft domain round-trip untouched and run`, async () => {
      const nodes: NodeProto[] = [
        { name: 'fast_gelu', opType: 'FastGelu', domain: 'com.microsoft', input: ['x', 'bias'], output: ['g'] },
        {
          name: 'reduce',
          opType: 'ReduceSum',
          input: ['g', 'axes'],
          output: ['y'],
          attribute: [makeAttribute('keepdims', 0)],
        },
      ];
      const model = buildModel({
        inputs: [valueInfo('x', DataType.FLOAT, ['batch', 4])],
        outputs: [valueInfo('y', DataType.FLOAT, ['batch'])],
        nodes,
        initializers: [
          makeTensor('bias', DataType.FLOAT, [4], [0.1, -0.2, 0.3, 0]),
          makeTensor('axes', DataType.INT64, [1], [1]),
        ],
        opset,
        contrib: true,
      });
      const again = readModel(writeModel(model));
      expect(again.opsetVersion('')).toBe(opset);
      expect(again.opsetVersion('com.microsoft')).toBe(1);
      expect(again.graph.nodes[0]?.domain).toBe('com.microsoft');
      expect(plain(again.proto)).toEqual(plain(model.proto));
      const feeds = { x: makeOrtTensor(DataType.FLOAT, [2, 4], [1, 2, 3, 4, -1, -2, -3, -4]) };
      const a = await runModel(model, feeds);
      const b = await runModel(again, feeds);
      expect(tensorValues(b.y as ort.Tensor)).toEqual(tensorValues(a.y as ort.Tensor));
    });
  }

  it('keeps int64 values beyond 2^53 exactly (Slice ends = INT64_MAX in int64_data)', () => {
    const ends = { name: 'ends', dataType: DataType.INT64, dims: [1], int64Data: ['9223372036854775807'] as never };
    const model = new OnnxModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        node: [{ opType: 'Slice', input: ['x', 'starts', 'ends'], output: ['y'] }],
        input: [valueInfo('x', DataType.FLOAT, [5])],
        output: [valueInfo('y', DataType.FLOAT)],
        initializer: [makeTensor('starts', DataType.INT64, [1], [1]), ends],
      },
    });
    const again = readModel(writeModel(readModel(writeModel(model))));
    const t = again.graph.initializer('ends');
    expect(t && readTensorBigInts(t)).toEqual([9223372036854775807n]);
    expect(toNumber(again.proto.irVersion)).toBe(8);
  });

  it('keeps fields added by IR 9-10 (node overload and metadata)', () => {
    const model = new OnnxModel({
      irVersion: 10,
      opsetImport: [{ domain: '', version: 21 }],
      graph: {
        node: [
          {
            opType: 'Identity',
            input: ['x'],
            output: ['y'],
            overload: 'v2',
            metadataProps: [{ key: 'origin', value: 'test' }],
          },
        ],
        input: [valueInfo('x', DataType.FLOAT, [2])],
        output: [valueInfo('y', DataType.FLOAT, [2])],
        metadataProps: [{ key: 'graph', value: 'meta' }],
      },
    });
    const again = readModel(writeModel(model));
    expect(again.graph.nodes[0]?.overload).toBe('v2');
    expect(again.graph.nodes[0]?.metadataProps?.[0]?.value).toBe('test');
    expect(again.graph.proto.metadataProps?.[0]?.key).toBe('graph');
  });

  it('reads typed tensor values (float16, raw and typed fields)', () => {
    const h = makeTensor('h', DataType.FLOAT16, [3], [1, -0.5, 65504]);
    expect(readTensorNumbers(h)).toEqual([1, -0.5, 65504]);
    expect(readTensorNumbers({ name: 'f', dataType: DataType.FLOAT, dims: [2], floatData: [1.5, 2] })).toEqual([
      1.5, 2,
    ]);
  });
});

describe('external data', () => {
  const external = (location: string) =>
    new OnnxModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        node: [{ opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
        input: [valueInfo('x', DataType.FLOAT, [1, 4])],
        output: [valueInfo('y', DataType.FLOAT, [1, 4])],
        initializer: [
          {
            name: 'w',
            dataType: DataType.FLOAT,
            dims: [4, 4],
            dataLocation: 1,
            externalData: [
              { key: 'location', value: location },
              { key: 'offset', value: '0' },
              { key: 'length', value: '64' },
            ],
          },
        ],
      },
    });

  it('stays a reference through read and write (no weight byte is read)', () => {
    const m = readModel(writeModel(external('model.onnx_data')));
    expect(m.externalDataFiles()).toEqual(['model.onnx_data']);
    const w = m.graph.initializer('w');
    expect(w?.rawData?.byteLength ?? 0).toBe(0);
    expect(() => readTensorNumbers(w as never)).toThrow(/external data/);
  });

  it('normalises locations inside the model folder', () => {
    expect(normalizeExternalLocation('./weights/../w.bin', 't')).toBe('w.bin');
    expect(normalizeExternalLocation('sub\\w.bin', 't')).toBe('sub/w.bin');
    const m = readModel(writeModel(external('sub/./w.bin')));
    expect(m.externalDataFiles()).toEqual(['sub/w.bin']);
  });

  it('checks the referenced files against a listing or a predicate', () => {
    const m = readModel(writeModel(external('model.onnx_data')));
    expect(() => checkExternalData(m, ['model.onnx_data', 'other'])).not.toThrow();
    expect(() => checkExternalData(m, (p) => p === 'model.onnx_data')).not.toThrow();
  });
});
