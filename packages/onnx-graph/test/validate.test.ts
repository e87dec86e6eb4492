import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildExplainGraph, OnnxGraphError, type OnnxModel, readModel, writeModel } from '../src/index.js';
import { fixtureFile } from './helpers/fixtures.js';

const decoderBytes = new Uint8Array(readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx')));
const options = { layers: [2, 3], compat: 'official', attention: 'self' } as const;

/** The tiny LLaVA decoder with one edit applied to its first node of `op`. */
function damaged(op: string, edit: (model: OnnxModel, index: number) => void): OnnxModel {
  const model = readModel(decoderBytes);
  const index = model.graph.nodes.findIndex((n) => n.opType === op);
  if (index < 0) throw new Error(`the fixture decoder has no ${op}`);
  edit(model, index);
  model.graph.invalidate();
  return model;
}

const node = (model: OnnxModel, index: number) => model.graph.nodes[index];

describe('graph validation before the explain-graph build', () => {
  it('builds the undamaged decoder', () => {
    expect(() => buildExplainGraph(readModel(decoderBytes), options)).not.toThrow();
  });

  it.each([
    [
      'a Constant whose dims say 1e9 elements',
      damaged('Constant', (m, i) => {
        const value = node(m, i).attribute?.find((a) => a.t)?.t;
        if (value) value.dims = [1e9];
      }),
      /Constant\) attribute tensor .* declares 1000000000 elements but holds \d+/,
    ],
    [
      'a Concat with axis 2^31',
      damaged('Concat', (m, i) => {
        const axis = node(m, i).attribute?.find((a) => a.name === 'axis');
        if (axis) axis.i = 2 ** 31;
      }),
      /\(Concat\) has axis 2147483648, outside -\d+\.\.\d+/,
    ],
    [
      'a Transpose whose perm is shorter than its input rank',
      damaged('Transpose', (m, i) => {
        const perm = node(m, i).attribute?.find((a) => a.name === 'perm');
        if (perm) perm.ints = [1, 0];
      }),
      /\(Transpose\) has a perm of 2 axes for its rank-\d input/,
    ],
    [
      'a Mul with one input',
      damaged('Mul', (m, i) => {
        node(m, i).input = node(m, i).input?.slice(0, 1);
      }),
      /\(Mul\) has 1 inputs where Mul takes 2/,
    ],
    [
      'an unknown op',
      damaged('Sqrt', (m, i) => {
        node(m, i).opType = 'Frobnicate';
      }),
      /\(Frobnicate\) is an op dexar does not know: export the decoder with standard ONNX ops/,
    ],
    [
      'a tensor defined twice',
      damaged('Mul', (m, i) => {
        const other = m.graph.nodes.find((n, k) => k > i && n.opType === 'Add');
        if (other?.output) other.output = [...(node(m, i).output ?? [])];
      }),
      /\(Add\) defines tensor .*, which node .* \(Mul\) defines already/,
    ],
  ])('refuses %s with a typed error naming the node and op', (_, model, message) => {
    let thrown: unknown;
    try {
      buildExplainGraph(readModel(writeModel(model)), options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OnnxGraphError);
    expect((thrown as Error).message).toMatch(message);
  });
});
