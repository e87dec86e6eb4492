import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildLlamaDecoder } from '../bench/llama-graph.js';
import { buildGradient } from '../src/autodiff/gradient.js';
import {
  AutodiffError,
  ExternalDataError,
  HookNotFoundError,
  InvalidOptionsError,
  ModelFormatError,
  OnnxGraphError,
  UnsupportedModelError,
} from '../src/errors.js';
import { buildExplainGraph } from '../src/explain/explain.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { redirectConsumers } from '../src/graph/passes.js';
import { findDecoderHooks } from '../src/hooks/hooks.js';
import { checkExternalData, OnnxModel, readModel, writeModel } from '../src/model.js';
import { makeTensor } from '../src/proto/tensor.js';
import { DataType } from '../src/proto/types.js';
import { FIXTURES, fixtureFile } from './helpers/fixtures.js';
import { buildModel, valueInfo } from './helpers/onnx.js';

/** Runs `fn`, expects an error of `type`, and checks the message is one line naming `pattern`. */
function expectError(
  fn: () => unknown,
  type: new (...args: never[]) => OnnxGraphError,
  pattern: RegExp,
): OnnxGraphError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an error').toBeInstanceOf(type);
  const err = caught as OnnxGraphError;
  expect(err).toBeInstanceOf(OnnxGraphError);
  expect(err.message).toMatch(pattern);
  expect(err.message.includes('\n'), 'one-line message').toBe(false);
  expect(err.name).toBe(type.name);
  return err;
}

const decoderBytes = () => readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx'));

function externalModel(location: string): Uint8Array {
  return writeModel(
    new OnnxModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        node: [{ opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
        input: [valueInfo('x', DataType.FLOAT, [1, 2])],
        output: [valueInfo('y', DataType.FLOAT, [1, 2])],
        initializer: [
          {
            name: 'w',
            dataType: DataType.FLOAT,
            dims: [2, 2],
            dataLocation: 1,
            externalData: [{ key: 'location', value: location }],
          },
        ],
      },
    }),
  );
}

describe('malformed inputs give typed, one-line errors', () => {
  it('truncated file', () => {
    const bytes = decoderBytes();
    for (const cut of [bytes.length - 1000, Math.floor(bytes.length / 2), 37]) {
      const err = expectError(() => readModel(bytes.subarray(0, cut)), ModelFormatError, /truncated|corrupt/);
      expect(err.code).toBe('MODEL_FORMAT');
    }
  });

  it('not ONNX (a PNG, text, empty)', () => {
    const png = readFileSync(join(FIXTURES, 'references', 'llava-tiny', 'case0', 'image.png'));
    expectError(() => readModel(png), ModelFormatError, /not (an )?ONNX/);
    expectError(() => readModel(new TextEncoder().encode('{"hello": "world"}')), ModelFormatError, /ONNX/);
    expectError(() => readModel(new Uint8Array(0)), ModelFormatError, /empty/);
    expectError(() => readModel('model.onnx' as never), ModelFormatError, /Uint8Array/);
  });

  it('missing external data file', () => {
    const m = readModel(externalModel('weights.bin'));
    const err = expectError(() => checkExternalData(m, ['other.bin']), ExternalDataError, /weights\.bin.*missing/);
    expect((err as ExternalDataError).location).toBe('weights.bin');
    expectError(() => checkExternalData(m, () => false), ExternalDataError, /missing/);
  });

  it('external data location that is absolute or leaves the model folder', () => {
    for (const loc of [
      '/etc/passwd',
      '../secret.bin',
      'a/../../b.bin',
      'C:\\weights.bin',
      'file:///w.bin',
      '\\\\server\\w',
    ]) {
      expectError(() => readModel(externalModel(loc)), ExternalDataError, /absolute|leaves the model folder/);
    }
  });

  it('graph without an attention pattern', () => {
    const mlp = buildModel({
      inputs: [valueInfo('x', DataType.FLOAT, ['b', 4])],
      outputs: [valueInfo('logits', DataType.FLOAT, ['b', 3])],
      nodes: [
        { opType: 'MatMul', input: ['x', 'w1'], output: ['h'] },
        { opType: 'Softmax', input: ['h'], output: ['p'] },
        { opType: 'MatMul', input: ['p', 'w2'], output: ['logits'] },
      ],
      initializers: [
        makeTensor('w1', DataType.FLOAT, [4, 4], new Array(16).fill(0.1)),
        makeTensor('w2', DataType.FLOAT, [4, 3], new Array(12).fill(0.1)),
      ],
    });
    expectError(() => findDecoderHooks(mlp, { attention: 'self' }), HookNotFoundError, /no attention pattern/);
    expectError(
      () => buildExplainGraph(mlp, { layers: [0], compat: 'official', attention: 'self' }),
      HookNotFoundError,
      /no attention pattern/,
    );
  });

  it('a fused attention op that is not expanded is refused, naming the node', () => {
    const m = readModel(decoderBytes());
    m.graph.addNode({
      name: '/model/layers.0/self_attn/DecoderMaskedMultiHeadAttention',
      opType: 'DecoderMaskedMultiHeadAttention',
      domain: 'com.microsoft',
      input: ['inputs_embeds'],
      output: ['dmmha_out'],
    });
    expectError(
      () => buildExplainGraph(m, { layers: [0], compat: 'official', attention: 'self' }),
      UnsupportedModelError,
      /DecoderMaskedMultiHeadAttention.*eager attention/,
    );
  });

  it('a fused attention node without heads is refused, naming the node', () => {
    const m = readModel(decoderBytes());
    m.graph.addNode({
      name: '/model/layers.0/self_attn/GroupQueryAttention',
      opType: 'GroupQueryAttention',
      domain: 'com.microsoft',
      input: ['inputs_embeds', 'inputs_embeds', 'inputs_embeds', '', '', 'attention_mask', 'attention_mask'],
      output: ['gqa_out'],
    });
    expectError(
      () => buildExplainGraph(m, { layers: [0], compat: 'official', attention: 'self' }),
      UnsupportedModelError,
      /GroupQueryAttention node \/model\/layers.0\/self_attn\/GroupQueryAttention has 0 query heads/,
    );
  });

  it('control flow (If) is refused', () => {
    const m = readModel(decoderBytes());
    m.graph.addNode({ name: 'use_cache_branch', opType: 'If', input: ['attention_mask'], output: ['branch'] });
    expectError(() => findDecoderHooks(m, { attention: 'self' }), UnsupportedModelError, /control-flow If/);
  });

  it('a merged decoder without past inputs to tell its branches apart is refused before any work', () => {
    const m = readModel(decoderBytes());
    m.graph.proto.input = m.graph.inputs.filter((v) => !v.name?.startsWith('past_key_values.'));
    m.graph.addNode({ name: 'optimum::if', opType: 'If', input: ['use_cache_branch'], output: ['branch'] });
    expectError(
      () => buildExplainGraph(m, { layers: [0], compat: 'official', attention: 'self' }),
      UnsupportedModelError,
      /merges its branches with an If on use_cache_branch but has no past_key_values\.\* input/,
    );
  });

  it('a layer whose structure differs from the others is named', () => {
    const m = buildLlamaDecoder({
      layers: 3,
      hidden: 16,
      heads: 2,
      kvHeads: 2,
      headDim: 8,
      intermediate: 16,
      vocab: 10,
    });
    // insert an extra op (Relu) after the last layer's attention output projection
    const oproj = m.graph.nodes.find(
      (n) => (n.name ?? '').startsWith('/model/layers.2/self_attn/MatMul') && n.input?.[1]?.includes('o_proj'),
    ) as never as { output: string[] };
    const b = new GraphBuilder(m, { prefix: 'edit' });
    const relu = b.op('Relu', [oproj.output[0] as string]);
    redirectConsumers(m.graph, oproj.output[0] as string, relu, [m.graph.producer(relu) as never]);
    expectError(
      () => findDecoderHooks(m, { attention: 'self' }),
      HookNotFoundError,
      /layer 2 \(the last\).*does not match layer 1/,
    );
  });

  it('asking for cross-attention in a decoder-only model', () => {
    const m = readModel(decoderBytes());
    expectError(
      () => findDecoderHooks(m, { attention: 'cross' }),
      HookNotFoundError,
      /layer 0: no cross-attention.*attention: 'self'/,
    );
  });

  it('invalid explain options', () => {
    const m = readModel(decoderBytes());
    expectError(
      () => buildExplainGraph(m, { layers: [4], compat: 'official', attention: 'self' }),
      InvalidOptionsError,
      /layer 4 does not exist.*0\.\.3/,
    );
    expectError(
      () => buildExplainGraph(m, { layers: [2, 1], compat: 'official', attention: 'self' }),
      InvalidOptionsError,
      /ascending/,
    );
    expectError(
      () => buildExplainGraph(m, { layers: [], compat: 'official', attention: 'self' }),
      InvalidOptionsError,
      /non-empty/,
    );
    expectError(
      () => buildExplainGraph(m, { layers: [1], compat: 'both' as never, attention: 'self' }),
      InvalidOptionsError,
      /compat/,
    );
    const ex = buildExplainGraph(m, { layers: [1], compat: 'paper', attention: 'self' });
    expectError(
      () => buildExplainGraph(ex.model, { layers: [1], compat: 'paper', attention: 'self' }),
      InvalidOptionsError,
      /explain graph already/,
    );
  });

  it('an operator without a VJP rule on the differentiated path is named', () => {
    const m = buildModel({
      inputs: [valueInfo('x', DataType.FLOAT, [3])],
      outputs: [valueInfo('y', DataType.FLOAT, [])],
      nodes: [
        { opType: 'Sin', input: ['x'], output: ['s'] },
        { opType: 'ReduceSum', input: ['s'], output: ['y'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] },
      ],
    });
    const b = new GraphBuilder(m, { prefix: 'grad' });
    expectError(() => buildGradient(b, { output: 'y', wrt: ['x'] }), AutodiffError, /no vector-Jacobian rule for Sin/);
  });

  it('integer paths (shapes, masks) are cut, not differentiated', () => {
    const m = buildModel({
      inputs: [valueInfo('x', DataType.FLOAT, [2, 3])],
      outputs: [valueInfo('y', DataType.FLOAT, [2, 3])],
      nodes: [
        { opType: 'Shape', input: ['x'], output: ['shape'] },
        {
          opType: 'ConstantOfShape',
          input: ['shape'],
          output: ['ones'],
          attribute: [{ name: 'value', type: 4, t: makeTensor('v', DataType.FLOAT, [1], [1]) }],
        },
        { opType: 'Greater', input: ['x', 'zero'], output: ['mask'] },
        { opType: 'Where', input: ['mask', 'x', 'ones'], output: ['w'] },
        { opType: 'Mul', input: ['w', 'ones'], output: ['y'] },
      ],
      initializers: [makeTensor('zero', DataType.FLOAT, [], [0])],
    });
    const b = new GraphBuilder(m, { prefix: 'grad' });
    const grads = buildGradient(b, { output: 'y', wrt: ['x'], seed: 'ones' });
    expect(grads.get('x')).toBeDefined();
    const ops = m.graph.nodes.filter((n) => (n.name ?? '').startsWith('grad')).map((n) => n.opType);
    expect(ops).not.toContain('Sin');
  });
});
