import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '../src/errors.js';
import { readModel, writeModel } from '../src/model.js';
import { externalDataInfo, makeTensor } from '../src/proto/tensor.js';
import { AttributeType, DataType, type GraphProto, type TensorProto } from '../src/proto/types.js';
import { readModelStructure } from '../src/proto/weights-in-place.js';
import { fixtureFile } from './helpers/fixtures.js';
import { buildModel, makeOrtTensor, tensorValues, valueInfo } from './helpers/onnx.js';

/** Ranged reads of `bytes` that count what they return. */
function countingReader(bytes: Uint8Array) {
  const counts = { bytes: 0, reads: 0 };
  const read = async (offset: number, length: number) => {
    const chunk = bytes.slice(offset, offset + length);
    counts.bytes += chunk.length;
    counts.reads++;
    return chunk;
  };
  return { read, counts };
}

const sameBytes = (a: Uint8Array, b: Uint8Array | undefined) => b !== undefined && Buffer.compare(a, b) === 0;

/** Every initializer of a graph and of its subgraphs. */
function initializers(g: GraphProto): TensorProto[] {
  return [
    ...(g.initializer ?? []),
    ...(g.node ?? []).flatMap((n) =>
      (n.attribute ?? []).flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])].flatMap(initializers)),
    ),
  ];
}

const weight = (name: string, n: number, scale: number) =>
  makeTensor(
    name,
    DataType.FLOAT,
    [n],
    Array.from({ length: n }, (_, i) => Math.sin(i * scale)),
  );

/** y = If(cond, then: x * a + big_then, else: x * a + big_else) with 1 MiB weights in both branches and the main graph. */
function branchedModel() {
  const N = 256 * 1024;
  const branch = (name: string, scale: number): GraphProto => ({
    name,
    node: [
      { opType: 'Mul', input: ['x', 'a'], output: [`${name}_xa`] },
      { opType: 'Add', input: [`${name}_xa`, `${name}_w`], output: [`${name}_y`] },
    ],
    initializer: [weight(`${name}_w`, N, scale), weight(`${name}_small`, 4, scale)],
    output: [valueInfo(`${name}_y`, DataType.FLOAT, [N])],
  });
  return buildModel({
    inputs: [valueInfo('x', DataType.FLOAT, [N]), valueInfo('cond', DataType.BOOL, [])],
    outputs: [valueInfo('y', DataType.FLOAT, [N])],
    initializers: [weight('a', N, 0.001)],
    nodes: [
      {
        opType: 'If',
        input: ['cond'],
        output: ['y'],
        attribute: [
          { name: 'then_branch', type: AttributeType.GRAPH, g: branch('then', 0.002) },
          { name: 'else_branch', type: AttributeType.GRAPH, g: branch('else', 0.003) },
        ],
      },
    ],
  });
}

describe('a model read with its weights left in place', () => {
  for (const [name, file] of [
    ['llava-tiny', 'decoder_model_merged.onnx'],
    ['paligemma-tiny', 'decoder_model_merged.onnx'],
    ['florence2-tiny', 'decoder_model_merged.onnx'],
  ] as const) {
    it(`is the file's model with each weight of 4 KiB or more pointing at its own bytes: ${name}/${file}`, async () => {
      const bytes = new Uint8Array(readFileSync(fixtureFile(name, file)));
      const full = readModel(bytes);
      const { bytes: structure, referencedBytes } = await readModelStructure(
        countingReader(bytes).read,
        'decoder.onnx',
      );
      const model = readModel(structure);
      const original = new Map(initializers(full.graph.proto).map((t) => [t.name, t]));
      let referenced = 0;
      for (const t of initializers(model.graph.proto)) {
        const before = original.get(t.name) as TensorProto;
        if (t.externalData?.length) {
          const { location, offset, length } = externalDataInfo(t);
          expect(location).toBe('decoder.onnx');
          expect(sameBytes(bytes.subarray(Number(offset), Number(offset) + Number(length)), before.rawData)).toBe(true);
          expect(Number(length)).toBeGreaterThanOrEqual(4096);
          referenced += Number(length);
          // with its bytes back, it is the tensor it was
          t.rawData = before.rawData;
          delete t.externalData;
          delete t.dataLocation;
        } else {
          expect(before.rawData?.byteLength ?? 0).toBeLessThan(4096);
        }
      }
      expect(referenced).toBe(referencedBytes);
      expect(referenced).toBeGreaterThan(0);
      expect(sameBytes(writeModel(model), writeModel(full))).toBe(true);
    });
  }

  it('reads the structure only, and ONNX Runtime reads the weights from the file: subgraph weights included', async () => {
    const bytes = writeModel(branchedModel());
    const { read, counts } = countingReader(bytes);
    const { bytes: structure, referencedBytes } = await readModelStructure(read, 'model.onnx');
    expect(referencedBytes).toBe(3 * 1024 * 1024);
    expect(counts.bytes).toBeLessThan(256 * 1024); // of a 3 MiB file
    expect(structure.byteLength).toBeLessThan(4096);

    const dir = await mkdtemp(join(tmpdir(), 'dexar-in-place-'));
    await writeFile(join(dir, 'model.onnx'), bytes);
    await writeFile(join(dir, 'structure.onnx'), structure);
    const N = 256 * 1024;
    for (const cond of [true, false]) {
      const feeds = {
        x: makeOrtTensor(
          DataType.FLOAT,
          [N],
          Array.from({ length: N }, (_, i) => Math.cos(i)),
        ),
        cond: new ort.Tensor('bool', Uint8Array.from([cond ? 1 : 0]), []),
      };
      const outputs = await Promise.all(
        ['model.onnx', 'structure.onnx'].map(async (file) => {
          const session = await ort.InferenceSession.create(join(dir, file), { graphOptimizationLevel: 'disabled' });
          const y = tensorValues((await session.run(feeds)).y as ort.Tensor);
          await session.release();
          return y;
        }),
      );
      expect(outputs[1]).toEqual(outputs[0]);
    }
  });

  it('refuses a file cut short, inside a weight it does not read as in the structure', async () => {
    const bytes = writeModel(branchedModel());
    for (const cut of [bytes.length - 10, Math.floor(bytes.length / 2), 3]) {
      await expect(readModelStructure(countingReader(bytes.subarray(0, cut)).read, 'model.onnx')).rejects.toThrow(
        ModelFormatError,
      );
    }
  });
});
