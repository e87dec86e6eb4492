/**
 * Seeded mutations of an ONNX model for the fuzz test: byte-level (flips, truncation, insertion,
 * duplication of the encoded file) and structure-aware (ops, inputs, attributes, tensor dims and
 * data, names, types and opsets of the decoded model), so both the decoder and every later pass
 * see hostile input. The same seed and case index always give the same bytes.
 */
import { createHash } from 'node:crypto';
import { readModel, writeModel } from '../src/model.js';
import type { AttributeProto, ModelProto, NodeProto } from '../src/proto/types.js';

export type Random = () => number;

/** Uniform numbers in [0, 1) from SHA-256 in counter mode: reproducible from `seed` alone. */
export function seededRandom(seed: string): Random {
  let counter = 0;
  let block = Buffer.alloc(0);
  let offset = 0;
  return () => {
    if (offset + 4 > block.length) {
      block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      offset = 0;
    }
    const value = block.readUInt32LE(offset);
    offset += 4;
    return value / 2 ** 32;
  };
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const int = (random: Random, below: number) => Math.floor(random() * below);

/** Values that break code assuming small, sane integers. */
const EXTREMES = [
  0,
  1,
  -1,
  2,
  3,
  4,
  7,
  63,
  64,
  65,
  -65,
  255,
  2 ** 16,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31),
  2 ** 32,
  1e9,
  2 ** 53 - 1,
  -(2 ** 53),
];
const OPS = [
  'Add',
  'Mul',
  'MatMul',
  'Softmax',
  'Transpose',
  'Concat',
  'Reshape',
  'Gather',
  'Frobnicate',
  'Attention',
  'Loop',
  'If',
  '',
];

function attributeMutation(random: Random, node: NodeProto): void {
  node.attribute ??= [];
  const attributes = node.attribute;
  const name = pick(random, ['axis', 'axes', 'perm', 'to', 'value', 'transA', 'epsilon']);
  let attribute = attributes.find((a) => a.name === name);
  if (!attribute) {
    attribute = { name } as AttributeProto;
    attributes.push(attribute);
  }
  switch (name) {
    case 'axes':
    case 'perm': {
      const length = pick(random, [0, 1, 2, 3, 4, 5, 65, 1000]);
      attribute.type = 7;
      attribute.ints = Array.from({ length }, () =>
        random() < 0.7 ? int(random, length + 1) : pick(random, EXTREMES),
      );
      break;
    }
    case 'value': {
      const dims = Array.from({ length: int(random, 4) }, () =>
        pick(
          random,
          EXTREMES.filter((e) => e >= 0),
        ),
      );
      attribute.type = 4;
      attribute.t = { dims, dataType: pick(random, [1, 6, 7, 9, 10, 0, 99]), rawData: new Uint8Array(int(random, 64)) };
      break;
    }
    default:
      attribute.type = 2;
      attribute.i = pick(random, EXTREMES);
  }
}

/** One structure-aware edit of the decoded model. */
function structureMutation(random: Random, model: ModelProto): void {
  const graph = model.graph ?? {};
  graph.node ??= [];
  const nodes = graph.node;
  const node = nodes.length ? pick(random, nodes) : undefined;
  const names = nodes.flatMap((n) => n.output ?? []);
  switch (int(random, 10)) {
    case 0:
      if (node) node.opType = pick(random, OPS);
      break;
    case 1:
      if (node) node.input = (node.input ?? []).slice(0, int(random, (node.input?.length ?? 0) + 1));
      break;
    case 2:
      if (node) node.input = [...(node.input ?? []), pick(random, [...names, 'nowhere', ''])];
      break;
    case 3:
    case 4:
      if (node) attributeMutation(random, node);
      break;
    case 5: {
      const tensor = graph.initializer?.length ? pick(random, graph.initializer) : undefined;
      if (tensor) tensor.dims = (tensor.dims ?? []).map((d) => (random() < 0.5 ? pick(random, EXTREMES) : d));
      break;
    }
    case 6:
      if (node && names.length) node.output = [pick(random, names)];
      break;
    case 7:
      if (nodes.length) nodes.splice(int(random, nodes.length), 1);
      break;
    case 8:
      if (nodes.length > 1) {
        const [a, b] = [int(random, nodes.length), int(random, nodes.length)];
        [nodes[a], nodes[b]] = [nodes[b] as NodeProto, nodes[a] as NodeProto];
      }
      break;
    default:
      model.opsetImport = [{ domain: '', version: pick(random, [1, 7, 13, 17, 18, 21, 1e9]) }];
  }
}

/** One byte-level edit of the encoded model. */
function byteMutation(random: Random, bytes: Uint8Array): Uint8Array {
  switch (int(random, 4)) {
    case 0: {
      const out = bytes.slice();
      for (let k = 0; k < 1 + int(random, 16); k++) out[int(random, out.length)] = int(random, 256);
      return out;
    }
    case 1:
      return bytes.subarray(0, int(random, bytes.length));
    case 2: {
      const at = int(random, bytes.length);
      const noise = Uint8Array.from({ length: 1 + int(random, 64) }, () => int(random, 256));
      return new Uint8Array([...bytes.subarray(0, at), ...noise, ...bytes.subarray(at)]);
    }
    default: {
      const at = int(random, bytes.length);
      const chunk = bytes.subarray(at, at + int(random, 4096));
      return new Uint8Array([...bytes.subarray(0, at), ...chunk, ...bytes.subarray(at)]);
    }
  }
}

/** Case `index` of the run seeded `seed`: the base model with one to four edits, structure-aware or byte-level. */
export function mutatedModel(base: Uint8Array, seed: string, index: number): { bytes: Uint8Array; kind: string } {
  const random = seededRandom(`${seed}/${index}`);
  if (random() < 0.3) {
    let bytes = base;
    for (let k = 0; k < 1 + int(random, 3); k++) bytes = byteMutation(random, bytes);
    return { bytes, kind: 'bytes' };
  }
  const model = readModel(base).proto;
  for (let k = 0; k < 1 + int(random, 4); k++) structureMutation(random, model);
  return { bytes: writeModel(model), kind: 'structure' };
}
