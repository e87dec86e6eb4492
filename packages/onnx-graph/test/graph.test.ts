import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../src/graph/builder.js';
import { broadcastShapes, dimAdd, dimDiv, dimMul, dimSub, mapAtoms } from '../src/graph/dims.js';
import { dominatorChain } from '../src/graph/dominators.js';
import { nodeInputs } from '../src/graph/graph.js';
import {
  addGraphOutput,
  cloneNodes,
  extractSubgraph,
  redirectConsumers,
  replaceNode,
  specializeIf,
} from '../src/graph/passes.js';
import { ShapeInference } from '../src/graph/shapes.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import { DataType } from '../src/proto/types.js';
import { fixtureFile } from './helpers/fixtures.js';
import { buildModel, makeOrtTensor, rng, runModel, tensorValues, valueInfo } from './helpers/onnx.js';

const llava = (): OnnxModel => readModel(readFileSync(fixtureFile('llava-tiny', 'decoder_model_merged.onnx')));

function decoderFeeds(m: OnnxModel, S = 6): Record<string, ort.Tensor> {
  const next = rng(9);
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(
      DataType.FLOAT,
      [1, S, 64],
      Array.from({ length: S * 64 }, () => next() - 0.5),
    ),
    attention_mask: makeOrtTensor(DataType.INT64, [1, S], new Array(S).fill(1)),
    position_ids: makeOrtTensor(
      DataType.INT64,
      [1, S],
      Array.from({ length: S }, (_, i) => i),
    ),
  };
  for (const v of m.graph.inputs)
    if (v.name?.startsWith('past')) feeds[v.name] = makeOrtTensor(DataType.FLOAT, [1, 4, 0, 16], []);
  return feeds;
}

const L1_IN = '/language_model/model/layers.0/Add_1_output_0';
const L1_OUT = '/language_model/model/layers.1/Add_1_output_0';

describe('graph model', () => {
  it('indexes producers and consumers', () => {
    const g = llava().graph;
    const p = g.producer(L1_OUT);
    expect(p?.opType).toBe('Add');
    // the next layer reads it through its norm's (float -> float) Cast
    expect(g.consumers(L1_OUT).map((n) => n.opType)).toEqual(['Cast']);
    expect(g.producer('inputs_embeds')).toBeUndefined();
    expect(g.isGraphInput('inputs_embeds')).toBe(true);
    expect(g.isGraphOutput('logits')).toBe(true);
    expect(g.initializer('language_model.model.norm.weight')).toBeDefined();
  });

  it('queries nodes by scope name', () => {
    const g = llava().graph;
    const softmax = g.nodesInScope('/model/layers.3/self_attn', 'Softmax');
    expect(softmax.map((n) => n.name)).toEqual(['/language_model/model/layers.3/self_attn/Softmax']);
    expect(g.nodesInScope('/language_model/model/layers.3/self_attn/Softmax').length).toBe(1);
    expect(g.nodesInScope('layers.1/mlp').every((n) => (n.name ?? '').includes('/layers.1/mlp/'))).toBe(true);
    expect(g.nodesInScope('layers.1/mlp').length).toBeGreaterThan(4);
    // whole segments only
    expect(g.nodesInScope('/model/layers.')).toEqual([]);
  });

  it('sorts topologically', () => {
    const m = llava();
    const shuffled = [...m.graph.nodes].reverse();
    m.graph.proto.node = shuffled;
    m.graph.invalidate();
    m.graph.sortTopologically();
    const seen = new Set<string>([
      ...m.graph.inputs.map((v) => v.name as string),
      ...(m.graph.proto.initializer ?? []).map((t) => t.name as string),
    ]);
    for (const n of m.graph.nodes) {
      for (const i of nodeInputs(n)) expect(seen.has(i), `${n.name} reads ${i} before it exists`).toBe(true);
      for (const o of n.output ?? []) seen.add(o);
    }
  });

  it('finds the tensors every path passes through', () => {
    const g = llava().graph;
    const chain = dominatorChain(g, '/language_model/model/layers.1/self_attn/Softmax_output_0', L1_OUT);
    expect(chain[0]).toContain('Softmax');
    expect(chain.at(-1)).toBe(L1_OUT);
    expect(chain).toContain('/language_model/model/layers.1/Add_output_0');
    // the MLP branch is bypassed by the residual: its internals are not on every path
    expect(chain.some((t) => t.includes('mlp/up_proj'))).toBe(false);
  });

  it("infers symbolic shapes through the export's shape arithmetic", () => {
    const m = llava();
    const s = new ShapeInference(m.graph, 17);
    expect(s.shape('/language_model/model/layers.2/self_attn/Softmax_output_0')).toEqual([
      'batch_size',
      4,
      'sequence_length',
      '(past_sequence_length+sequence_length)',
    ]);
    expect(s.shape(L1_OUT)).toEqual(['batch_size', 'sequence_length', 64]);
    expect(s.get('/language_model/model/layers.1/self_attn/Concat_output_0').value).toEqual([
      'batch_size',
      'sequence_length',
      4,
      16,
    ]);
    expect(s.shape('logits')).toEqual(['batch_size', 'sequence_length', 576]);
  });

  it('symbolic dimension algebra', () => {
    expect(dimMul('b', dimMul(4, 's'))).toBe('4*b*s');
    expect(dimDiv('4*b*s', dimMul('b', 4))).toBe('s');
    expect(dimDiv('s', 'b')).toBeNull();
    expect(dimAdd('p', 's')).toBe('(p+s)');
    expect(dimSub('(p+s)', 'p')).toBe('s');
    expect(dimAdd(2, 3)).toBe(5);
    expect(broadcastShapes(['b', 1, 's'], [4, 1])).toEqual(['b', 4, 's']);
    // an unknown dim does not erase a known one; two different known ones are reported as equal
    expect(broadcastShapes(['b', 4, 's', 'k'], [null, null, null, null])).toEqual(['b', 4, 's', 'k']);
    const equal: unknown[] = [];
    expect(broadcastShapes(['s1', 8], ['s2', 8], (x, y) => equal.push([x, y]))).toEqual(['s1', 8]);
    expect(equal).toEqual([['s1', 's2']]);
    expect(mapAtoms('(past+s2)', (a) => (a === 's2' ? 's1' : a))).toBe('(past+s1)');
    expect(mapAtoms('4*b*s2', (a) => (a === 's2' ? '(p+q)' : a))).toBe('4*(p+q)*b');
  });

  it('names unnamed input dims and merges those broadcasting proves equal', () => {
    // q [?, ?, 8] * cos [?, ?, 8] + mask [?, ?]: a stripped export's three sequence axes are one
    const m = buildModel({
      inputs: [
        valueInfo('q', DataType.FLOAT, [0, 0, 8].map(() => '') as never),
        valueInfo('cos', DataType.FLOAT),
        valueInfo('total', DataType.FLOAT, ['total_sequence_length']),
      ],
      outputs: [valueInfo('scores', DataType.FLOAT)],
      nodes: [
        { name: 'rot', opType: 'Mul', input: ['q', 'cos'], output: ['rot'] },
        { name: 'scores', opType: 'MatMul', input: ['rot', 'rot_t'], output: ['scores'] },
        {
          name: 't',
          opType: 'Transpose',
          input: ['rot'],
          output: ['rot_t'],
          attribute: [{ name: 'perm', type: 7, ints: [0, 2, 1] }],
        },
        { name: 'masked', opType: 'Add', input: ['scores', 'total'], output: ['masked'] },
      ],
    });
    m.graph.proto.input = (m.graph.proto.input ?? []).map((v) =>
      v.name === 'cos' ? valueInfo('cos', DataType.FLOAT, ['', '', 8] as never) : v,
    );
    for (const v of m.graph.proto.input ?? []) {
      for (const d of v.type?.tensorType?.shape?.dim ?? []) if (d.dimParam === '') delete d.dimParam;
    }
    m.graph.sortTopologically();
    const s = new ShapeInference(m.graph, 17);
    // cos's unnamed dims are q's; q's unnamed key length is the mask's named one
    expect(s.shape('cos')).toEqual(['q__0', 'total_sequence_length', 8]);
    expect(s.shape('rot')).toEqual(['q__0', 'total_sequence_length', 8]);
    expect(s.shape('masked')).toEqual(['q__0', 'total_sequence_length', 'total_sequence_length']);
  });
});

describe('graph passes', () => {
  it('slices the subgraph between tensors (layer 1) and it computes what the full graph does', async () => {
    const full = llava();
    addGraphOutput(full, L1_IN, DataType.FLOAT);
    addGraphOutput(full, L1_OUT, DataType.FLOAT);
    const feeds = decoderFeeds(full);
    const ref = await runModel(writeModel(full), feeds, [L1_IN, L1_OUT]);
    const slice = extractSubgraph(llava(), [L1_IN], [L1_OUT]);
    const names = slice.graph.inputs.map((v) => v.name);
    expect(names).toContain(L1_IN);
    // inputs_embeds stays an input: the mask reads its shape (not its values); the rotary tables
    // torch placed in layer 0's scope are needed too, layer 0's blocks are not
    expect(
      slice.graph.nodes.some((n) => /layers\.0\/(mlp|post_attention|input_layernorm)|layers\.2\//.test(n.name ?? '')),
    ).toBe(false);
    expect(slice.graph.nodes.some((n) => (n.name ?? '').includes('layers.1/mlp'))).toBe(true);
    const sliceFeeds: Record<string, ort.Tensor> = { [L1_IN]: ref[L1_IN] as ort.Tensor };
    for (const n of names) if (n && n !== L1_IN) sliceFeeds[n] = feeds[n] as ort.Tensor;
    const got = await runModel(writeModel(slice), sliceFeeds);
    expect(tensorValues(got[L1_OUT] as ort.Tensor)).toEqual(tensorValues(ref[L1_OUT] as ort.Tensor));
  });

  it('clones a subgraph with renamed tensors, fed from another tensor', async () => {
    const m = llava();
    const nodes = m.graph.nodesBetween(['/language_model/model/layers.1/self_attn/Softmax_output_0'], [L1_OUT]);
    // clone layer 1's post-softmax part, reading layer 2's softmax instead: a different function
    const renamed = cloneNodes(m.graph, nodes, {
      mapInput: (t) => t,
      renameOutput: (t) => `copy/${t}`,
    });
    const copy = renamed.get(L1_OUT) as string;
    expect(copy).toBe(`copy/${L1_OUT}`);
    addGraphOutput(m, copy, DataType.FLOAT);
    addGraphOutput(m, L1_OUT, DataType.FLOAT);
    const out = await runModel(writeModel(m), decoderFeeds(m), [copy, L1_OUT]);
    expect(tensorValues(out[copy] as ort.Tensor)).toEqual(tensorValues(out[L1_OUT] as ort.Tensor));
  });

  it('replaces (expands) a node by primitive ops', async () => {
    const m = llava();
    const sigmoid = m.graph.nodesInScope('/model/layers.2/mlp', 'Sigmoid')[0];
    expect(sigmoid).toBeDefined();
    const before = await runModel(writeModel(llava()), decoderFeeds(m), ['logits']);
    replaceNode(m, sigmoid as never, (b: GraphBuilder, [x]) => {
      const e = b.op('Exp', [b.op('Neg', [x as string])]);
      return [b.op('Reciprocal', [b.op('Add', [b.scalar(1, DataType.FLOAT), e])])];
    });
    expect(m.graph.nodes.some((n) => n === sigmoid)).toBe(false);
    const after = await runModel(writeModel(m), decoderFeeds(m), ['logits']);
    const a = tensorValues(after.logits as ort.Tensor);
    const b = tensorValues(before.logits as ort.Tensor);
    expect(a.reduce((mx, v, i) => Math.max(mx, Math.abs(v - (b[i] as number))), 0)).toBeLessThan(1e-5);
  });

  it("inlines a merged decoder's If on use_cache_branch with the chosen branch", async () => {
    // then: x + past, else: x * 2; both read the outer scope
    const branch = (name: string, op: string, other: string) => ({
      name,
      node: [{ name: `${name}/op`, opType: op, input: ['x', other], output: [`${name}_y`] }],
      output: [valueInfo(`${name}_y`, DataType.FLOAT, [2])],
    });
    const make = () =>
      buildModel({
        inputs: [
          valueInfo('x', DataType.FLOAT, [2]),
          valueInfo('past', DataType.FLOAT, [2]),
          valueInfo('use_cache_branch', DataType.BOOL, [1]),
        ],
        outputs: [valueInfo('y', DataType.FLOAT, [2])],
        initializers: [{ name: 'two', dataType: DataType.FLOAT, dims: [1], floatData: [2] }],
        nodes: [
          {
            name: 'merged',
            opType: 'If',
            input: ['use_cache_branch'],
            output: ['y'],
            attribute: [
              { name: 'then_branch', type: 5, g: branch('with_past', 'Add', 'past') },
              { name: 'else_branch', type: 5, g: branch('without_past', 'Mul', 'two') },
            ],
          },
        ],
      });
    const feeds = {
      x: makeOrtTensor(DataType.FLOAT, [2], [1, 3]),
      past: makeOrtTensor(DataType.FLOAT, [2], [10, 20]),
    };
    for (const [value, expected] of [
      [true, [11, 23]],
      [false, [2, 6]],
    ] as const) {
      const m = make();
      specializeIf(m, 'use_cache_branch', value);
      expect(m.graph.nodes.some((n) => n.opType === 'If')).toBe(false);
      expect(m.graph.inputs.map((v) => v.name)).toEqual(['x', 'past']);
      const out = await runModel(writeModel(m), feeds, ['y']);
      expect(tensorValues(out.y as ort.Tensor)).toEqual(expected);
    }
  });

  it('adds graph inputs and outputs, and redirects consumers', async () => {
    const m = llava();
    const b = new GraphBuilder(m, { prefix: 'edit' });
    const t = '/language_model/model/layers.3/Add_1_output_0';
    const doubled = b.op('Mul', [t, b.scalar(1, DataType.FLOAT)]);
    redirectConsumers(m.graph, t, doubled, [m.graph.producer(doubled) as never]);
    expect(m.graph.consumers(t).length).toBe(1);
    const out = await runModel(writeModel(m), decoderFeeds(m), ['logits']);
    expect(out.logits?.dims).toEqual([1, 6, 576]);
  });
});
