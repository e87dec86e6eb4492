// The fused attention expansions against ONNX Runtime's own kernels: each case runs one fused node
// (com.microsoft MultiHeadAttention, GroupQueryAttention, Attention; ONNX Attention-23) and its
// expansion on the same random inputs, and every output (attention output, present keys and
// values) must agree. The expansion computes the scores and the softmax in float32 like the CPU
// kernels, so the only differences are float32 summation orders.
import { describe, expect, it } from 'vitest';
import { UnsupportedModelError } from '../src/errors.js';
import { type AttrInput, makeAttribute } from '../src/graph/attributes.js';
import { expandFusedAttention, restoreFusedAttention } from '../src/graph/fused-attention.js';
import { readModel, writeModel } from '../src/model.js';
import { makeTensor } from '../src/proto/tensor.js';
import { DataType, type TensorProto } from '../src/proto/types.js';
import { buildModel, makeOrtTensor, rng, runModel, tensorValues, valueInfo } from './helpers/onnx.js';

/** An input: random floats of a shape, fixed integers, a random boolean mask, or a constant. */
type CaseInput =
  | { name: string; shape: number[]; kind: 'float' }
  | { name: string; shape: number[]; kind: 'bool' }
  | { name: string; shape: number[]; kind: 'int32' | 'int64'; values: number[] }
  | { name: string; shape: number[]; kind: 'const'; values: number[] };

interface FusedCase {
  name: string;
  op: string;
  domain?: string;
  opset?: number;
  attrs: Record<string, AttrInput>;
  /** Node inputs in order ('' for an omitted one). */
  inputs: (CaseInput | '')[];
  outputs: string[];
}

const f = (name: string, shape: number[]): CaseInput => ({ name, shape, kind: 'float' });
const i32 = (name: string, values: number[], shape = [values.length]): CaseInput => ({
  name,
  shape,
  kind: 'int32',
  values,
});

/** cos/sin caches `[positions, half]` of angle p · 10000^(-2j / (2·half)), as constants. */
function rotaryCaches(positions: number, half: number): CaseInput[] {
  const angle = (p: number, j: number) => p * 10000 ** (-j / half);
  const cos: number[] = [];
  const sin: number[] = [];
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < half; j++) {
      cos.push(Math.cos(angle(p, j)));
      sin.push(Math.sin(angle(p, j)));
    }
  }
  return [
    { name: 'cos', shape: [positions, half], kind: 'const', values: cos },
    { name: 'sin', shape: [positions, half], kind: 'const', values: sin },
  ];
}

const MS = 'com.microsoft';
const [B, S, P] = [2, 3, 4];

/** GroupQueryAttention's sequence inputs for a batch without padding: seqlens_k = P + S - 1, total P + S. */
const gqaLengths = (past: number, s: number, batch = 1) => [
  i32('seqlens_k', new Array(batch).fill(past + s - 1)),
  i32('total_sequence_length', [past + s], []),
];

/** A GroupQueryAttention prompt of 6 tokens (empty past), 2 query heads on 1 key/value head of size 8. */
const gqaPrompt: CaseInput[] = [
  f('q', [1, 6, 16]),
  f('k', [1, 6, 8]),
  f('v', [1, 6, 8]),
  f('past_key', [1, 1, 0, 8]),
  f('past_value', [1, 1, 0, 8]),
  ...gqaLengths(0, 6),
];

const CASES: FusedCase[] = [
  {
    name: 'MultiHeadAttention: self-attention with past, causal, projection bias and attention bias',
    op: 'MultiHeadAttention',
    domain: MS,
    attrs: { num_heads: 4, unidirectional: 1 },
    inputs: [
      f('q', [B, S, 32]),
      f('k', [B, S, 32]),
      f('v', [B, S, 32]),
      f('bias', [96]),
      '',
      f('attention_bias', [1, 4, S, P + S]),
      f('past_key', [B, 4, P, 8]),
      f('past_value', [B, 4, P, 8]),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'MultiHeadAttention: cross-attention on BNSH keys with a key padding mask and a scale',
    op: 'MultiHeadAttention',
    domain: MS,
    attrs: { num_heads: 2, scale: { f: 0.3 } },
    inputs: [
      f('q', [B, S, 16]),
      f('k', [B, 2, 5, 8]),
      f('v', [B, 2, 5, 8]),
      '',
      i32('key_padding_mask', [1, 1, 1, 0, 1, 1, 1, 1, 1, 0], [B, 5]),
    ],
    outputs: ['y'],
  },
  {
    name: 'GroupQueryAttention: 4 query / 2 key-value heads, past, several new tokens',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 4, kv_num_heads: 2 },
    inputs: [
      f('q', [1, S, 32]),
      f('k', [1, S, 16]),
      f('v', [1, S, 16]),
      f('past_key', [1, 2, P, 8]),
      f('past_value', [1, 2, P, 8]),
      ...gqaLengths(P, S),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'GroupQueryAttention: packed QKV, multi-query (4 / 1), a prompt (empty past)',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 4, kv_num_heads: 1 },
    inputs: [
      f('qkv', [1, 5, 48]),
      '',
      '',
      f('past_key', [1, 1, 0, 8]),
      f('past_value', [1, 1, 0, 8]),
      ...gqaLengths(0, 5),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'GroupQueryAttention: rotary inside (do_rotary), past, one new token',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 2, kv_num_heads: 1, do_rotary: 1 },
    inputs: [
      f('q', [1, 1, 32]),
      f('k', [1, 1, 16]),
      f('v', [1, 1, 16]),
      f('past_key', [1, 1, P, 16]),
      f('past_value', [1, 1, P, 16]),
      ...gqaLengths(P, 1),
      ...rotaryCaches(16, 8),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'GroupQueryAttention: interleaved rotary on a prompt',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 2, kv_num_heads: 2, do_rotary: 1, rotary_interleaved: 1 },
    inputs: [
      f('q', [1, S, 32]),
      f('k', [1, S, 32]),
      f('v', [1, S, 32]),
      f('past_key', [1, 2, 0, 16]),
      f('past_value', [1, 2, 0, 16]),
      ...gqaLengths(0, S),
      ...rotaryCaches(16, 8),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'GroupQueryAttention: sliding window (local_window_size 2)',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 2, kv_num_heads: 1, local_window_size: 2 },
    inputs: gqaPrompt,
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'GroupQueryAttention: softcap',
    op: 'GroupQueryAttention',
    domain: MS,
    attrs: { num_heads: 2, kv_num_heads: 1, softcap: { f: 1.5 } },
    inputs: gqaPrompt,
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'Attention (com.microsoft): merged QKV weights, past [2, B, N, P, H], causal, raw mask',
    op: 'Attention',
    domain: MS,
    attrs: { num_heads: 4, unidirectional: 1 },
    inputs: [
      f('x', [B, S, 16]),
      f('weights', [16, 96]),
      f('bias', [96]),
      i32('mask_index', [1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1], [B, P + S]),
      f('past', [2, B, 4, P, 8]),
    ],
    outputs: ['y', 'present'],
  },
  {
    name: 'Attention (ONNX, opset 23): grouped-query 3-D, past, causal, float mask',
    op: 'Attention',
    opset: 23,
    attrs: { q_num_heads: 4, kv_num_heads: 2, is_causal: 1 },
    inputs: [
      f('q', [B, S, 32]),
      f('k', [B, S, 16]),
      f('v', [B, S, 16]),
      f('attn_mask', [B, 1, S, P + S]),
      f('past_key', [B, 2, P, 8]),
      f('past_value', [B, 2, P, 8]),
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
  {
    name: 'Attention (ONNX, opset 23): 4-D, boolean mask, softcap, scale',
    op: 'Attention',
    opset: 23,
    attrs: { softcap: { f: 2 }, scale: { f: 0.25 } },
    inputs: [
      f('q', [B, 4, S, 8]),
      f('k', [B, 1, 5, 8]),
      f('v', [B, 1, 5, 8]),
      { name: 'attn_mask', shape: [S, 5], kind: 'bool' },
    ],
    outputs: ['y', 'present_key', 'present_value'],
  },
];

function buildCase(c: FusedCase) {
  const next = rng(1234);
  const inputs = [];
  const initializers: TensorProto[] = [];
  const feeds: Record<string, ReturnType<typeof makeOrtTensor>> = {};
  for (const x of c.inputs) {
    if (x === '') continue;
    const count = x.shape.reduce((a, b) => a * b, 1);
    if (x.kind === 'const') {
      initializers.push(makeTensor(x.name, DataType.FLOAT, x.shape, x.values));
      continue;
    }
    const type =
      x.kind === 'float'
        ? DataType.FLOAT
        : x.kind === 'bool'
          ? DataType.BOOL
          : x.kind === 'int32'
            ? DataType.INT32
            : DataType.INT64;
    let values: number[];
    if (x.kind === 'float') values = Array.from({ length: count }, () => next() * 2 - 1);
    else if (x.kind === 'bool') {
      // the first key of every row stays visible
      values = Array.from({ length: count }, (_, k) => (k % (x.shape.at(-1) as number) === 0 || next() < 0.7 ? 1 : 0));
    } else values = x.values;
    inputs.push(valueInfo(x.name, type, x.shape));
    feeds[x.name] = makeOrtTensor(type, x.shape, values);
  }
  const model = buildModel({
    opset: c.opset ?? 17,
    contrib: c.domain === MS,
    inputs,
    initializers,
    outputs: c.outputs.map((o) => valueInfo(o, DataType.FLOAT)),
    nodes: [
      {
        name: 'fused',
        opType: c.op,
        ...(c.domain ? { domain: c.domain } : {}),
        input: c.inputs.map((x) => (x === '' ? '' : x.name)),
        output: c.outputs,
        attribute: Object.entries(c.attrs).map(([k, v]) => makeAttribute(k, v)),
      },
    ],
  });
  return { model, feeds };
}

describe('fused attention expansion equals the fused kernel', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const { model, feeds } = buildCase(c);
    const expanded = readModel(writeModel(model));
    const expansions = expandFusedAttention(expanded);
    expect(expansions).toHaveLength(1);
    expect(expanded.graph.nodes.some((n) => n.opType === c.op)).toBe(false);
    expect(expanded.graph.nodes.filter((n) => n.opType === 'Softmax')).toHaveLength(1);
    const want = await runModel(model, feeds);
    const got = await runModel(expanded, feeds);
    for (const o of c.outputs) {
      const a = tensorValues(got[o] as never);
      const b = tensorValues(want[o] as never);
      expect(got[o]?.dims, o).toEqual(want[o]?.dims);
      const diff = a.reduce((m, v, k) => Math.max(m, Math.abs(v - (b[k] as number))), 0);
      expect(diff, `${o}: max abs diff ${diff}`).toBeLessThan(1e-5);
    }
  });

  it.each([
    [
      'packed QKV heads (MultiHeadAttention)',
      { ...(CASES[0] as FusedCase), inputs: [f('qkv', [1, 5, 2, 3, 8])], outputs: ['y'] },
      /MultiHeadAttention node fused takes packed QKV/,
    ],
    [
      'smooth softmax (GroupQueryAttention)',
      { ...(CASES[2] as FusedCase), attrs: { num_heads: 4, kv_num_heads: 2, smooth_softmax: 1 } },
      /GroupQueryAttention node fused sets smooth_softmax, which is not expanded/,
    ],
    [
      'heads that do not group',
      { ...(CASES[2] as FusedCase), attrs: { num_heads: 4, kv_num_heads: 3 } },
      /has 4 query heads for 3 key\/value heads/,
    ],
    [
      'the scores as an output',
      { ...(CASES[9] as FusedCase), outputs: ['y', 'present_key', 'present_value', 'qk'] },
      /outputs its attention scores \(output 3\)/,
    ],
  ])('refuses %s in one line, naming the node', (_, c, message) => {
    const { model } = buildCase(c);
    let caught: unknown;
    try {
      expandFusedAttention(model);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UnsupportedModelError);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).not.toContain('\n');
  });

  it('restoring an expansion gives back the fused node and drops what the expansion added', () => {
    const { model } = buildCase(CASES[2] as FusedCase);
    const copy = readModel(writeModel(model));
    const expansions = expandFusedAttention(copy);
    restoreFusedAttention(copy, expansions);
    expect(copy.graph.nodes.map((n) => n.opType)).toEqual(['GroupQueryAttention']);
    expect(copy.graph.proto.initializer).toHaveLength(0);
  });
});
