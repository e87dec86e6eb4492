import { UnsupportedModelError } from '../errors.js';
import type { OnnxModel } from '../model.js';
import { DataType, type NodeProto, type TensorProto } from '../proto/types.js';
import { attrFloat, attrInt, attrInts } from './attributes.js';
import type { GraphBuilder } from './builder.js';
import { replaceNode } from './passes.js';

/**
 * Fused attention ops (ONNX Runtime's com.microsoft MultiHeadAttention, GroupQueryAttention and
 * Attention; ONNX's Attention from opset 23) never materialise the attention probabilities the
 * explain graph hooks (docs/algorithm.md, "The signal"). This pass replaces such a node by the
 * primitive ops it stands for, following each operator's published specification: the scores
 * `scale · q kᵀ` (soft-capped where asked), the attention bias, the causal, sliding-window and
 * padding masks, the past keys and values concatenated in front of the new ones (the `present`
 * outputs), grouped-query head mapping (query head h reads key/value head h / (heads / kv heads)),
 * packed QKV inputs, and GroupQueryAttention's rotary embedding. The scores, the Softmax and the
 * product with the values run in float32 whatever the node's type (the fused kernels accumulate
 * there too); the node's outputs keep their names and types.
 *
 * The explain graph expands every fused node to find the layers, then puts the original node back
 * in the layers it does not explain (`restoreFusedAttention`): generation keeps the fused kernel.
 */

/** One expansion: the node replaced, what replaced it, and the Softmax that exposes its probabilities. */
export interface FusedExpansion {
  readonly node: NodeProto;
  readonly softmaxNode: string;
  readonly nodes: readonly NodeProto[];
  readonly initializers: readonly string[];
}

/** What one expansion builds from the node's inputs: a tensor per node output, and its Softmax node. */
type Expand = (b: GraphBuilder, node: NodeProto, inputs: readonly string[]) => { outputs: string[]; softmax: string };

/** Query, keys and values split into heads: `[B, heads, S, head size]`, keys and values over all T keys. */
interface Heads {
  q: string;
  k: string;
  v: string;
}

interface AttendOptions {
  heads: number;
  kvHeads: number;
  /** Multiplies the scores; undefined: 1 / sqrt(head size). */
  scale: number | undefined;
  /** `softcap · tanh(scores / softcap)` before any bias or mask; 0: none. */
  softcap: number;
  /** Float tensors added to the scores, broadcast to `[B, heads, S, T]`. */
  biases: readonly string[];
  /** Boolean tensor broadcast to `[B, heads, S, T]`: false where a key is masked. */
  visible: string | undefined;
  /** What a masked score gets added (ORT's mask_filter_value, or -inf). */
  fill: number;
  /** Element type of the node's output. */
  outType: number;
}

const f32 = DataType.FLOAT;

function nodeLabel(node: NodeProto): string {
  return `${node.domain ? `${node.domain}:` : ''}${node.opType} node ${node.name || '(unnamed)'}`;
}

function refuse(node: NodeProto, what: string): never {
  throw new UnsupportedModelError(
    `${nodeLabel(node)} ${what}; the explain graph cannot expose its attention probabilities: export without this option, or with eager attention`,
  );
}

/** Input `i` of the node, '' when omitted. */
const input = (inputs: readonly string[], i: number): string => inputs[i] ?? '';

/** `[B, S, heads·size]` to `[B, heads, S, size]`. */
function splitHeads(b: GraphBuilder, x: string, heads: number): string {
  return b.op('Transpose', [b.op('Reshape', [x, b.int64s([0, 0, heads, -1])])], { perm: [0, 2, 1, 3] });
}

/** `[B, heads, S, size]` to `[B, S, heads·size]`. */
function mergeHeads(b: GraphBuilder, x: string): string {
  return b.op('Reshape', [b.op('Transpose', [x], { perm: [0, 2, 1, 3] }), b.int64s([0, 0, -1])]);
}

/** `x[..., from:to]` on the last axis. */
function lastAxis(b: GraphBuilder, x: string, from: number, to: number): string {
  return b.op('Slice', [x, b.int64s([from]), b.int64s([to]), b.int64s([-1])]);
}

/** Dimension `axis` of x as a 1-D int64 tensor. */
function dimOf(b: GraphBuilder, x: string, axis: number): string {
  return b.op('Slice', [b.shapeOf(x), b.int64s([axis]), b.int64s([axis === -1 ? Number.MAX_SAFE_INTEGER : axis + 1])]);
}

/** A static size of x's `axis`, or a one-line refusal naming why it is needed. */
function staticDim(b: GraphBuilder, node: NodeProto, x: string, axis: number, why: string): number {
  const d = b.shape(x)?.at(axis);
  if (typeof d !== 'number') refuse(node, `has ${why} of unknown size (tensor ${x})`);
  return d;
}

/** `past ++ current` on the sequence axis (2) of `[B, heads, S, size]` tensors. */
function withPast(b: GraphBuilder, past: string, current: string): string {
  return past ? b.op('Concat', [past, current], { axis: 2 }) : current;
}

/** Key indices `[T]` of keys `[B, heads, T, size]`. */
function keyIndices(b: GraphBuilder, keys: string): string {
  return b.op('Range', [b.int64(0), b.squeeze(dimOf(b, keys, 2), [0]), b.int64(1)]);
}

/**
 * `true` where key j may be read from query i: `j <= first + i` (causal, offset-aligned: query i
 * sits at position first + i), and with a window W also `first + i - j <= W`. `first` broadcasts
 * against `[S, 1]` (a scalar, or `[B, 1, 1, 1]` per batch row).
 */
function causalVisible(b: GraphBuilder, queries: string, keys: string, first: string, window?: number): string {
  const qIndex = b.unsqueeze(b.op('Range', [b.int64(0), b.squeeze(dimOf(b, queries, 2), [0]), b.int64(1)]), [1]);
  const position = b.op('Add', [first, qIndex]); // [.., S, 1]
  const distance = b.op('Sub', [position, keyIndices(b, keys)]); // [.., S, T]
  let visible = b.op('Not', [b.op('Less', [distance, b.int64(0)])]);
  if (window !== undefined)
    visible = b.op('And', [visible, b.op('Not', [b.op('Greater', [distance, b.int64(window - 1)])])]);
  return visible;
}

function andAll(b: GraphBuilder, parts: readonly (string | undefined)[]): string | undefined {
  const present = parts.filter((p): p is string => p !== undefined);
  return present.reduce<string | undefined>((acc, p) => (acc ? b.op('And', [acc, p]) : p), undefined);
}

/** Grouped-query mapping: `[B, kv, T, d]` to `[B, kv·group, T, d]`, each kv head repeated for its `group` query heads. */
function repeatHeads(b: GraphBuilder, x: string, heads: number, group: number): string {
  if (group === 1) return x;
  const expanded = b.op('Expand', [b.unsqueeze(x, [2]), b.int64s([1, 1, group, 1, 1])]);
  const shape = b.op('Concat', [dimOf(b, x, 0), b.int64s([heads, -1]), dimOf(b, x, 3)], { axis: 0 });
  return b.op('Reshape', [expanded, shape]);
}

/**
 * The attention core in float32: probabilities `Softmax(scale · q kᵀ (soft-capped) + biases +
 * mask)` over the keys, times the values. Returns the output `[B, heads, S, value size]` in the
 * node's type and the Softmax node.
 */
function attend(b: GraphBuilder, node: NodeProto, x: Heads, o: AttendOptions): { out: string; softmax: string } {
  if (!(o.heads > 0 && o.kvHeads > 0 && o.heads % o.kvHeads === 0)) {
    refuse(node, `has ${o.heads} query heads for ${o.kvHeads} key/value heads (a positive multiple is needed)`);
  }
  const group = o.heads / o.kvHeads;
  const q = b.cast(x.q, f32);
  const k = repeatHeads(b, b.cast(x.k, f32), o.heads, group);
  const v = repeatHeads(b, b.cast(x.v, f32), o.heads, group);
  const scale =
    o.scale !== undefined && o.scale !== 0
      ? b.scalar(o.scale, f32)
      : b.op('Reciprocal', [b.op('Sqrt', [b.cast(b.squeeze(dimOf(b, q, 3), [0]), f32)])]);
  let scores = b.op('Mul', [b.op('MatMul', [q, b.op('Transpose', [k], { perm: [0, 1, 3, 2] })]), scale]);
  if (o.softcap > 0) {
    const cap = b.scalar(o.softcap, f32);
    scores = b.op('Mul', [b.op('Tanh', [b.op('Div', [scores, cap])]), cap]);
  }
  for (const bias of o.biases) scores = b.op('Add', [scores, b.cast(bias, f32)]);
  if (o.visible) scores = b.op('Add', [scores, b.op('Where', [o.visible, b.scalar(0, f32), b.scalar(o.fill, f32)])]);
  const [probs] = b.opN('Softmax', [scores], { axis: -1 });
  const softmax = b.model.graph.producer(probs as string)?.name ?? '';
  return { out: b.cast(b.op('MatMul', [probs as string, v]), o.outType), softmax };
}

/** GroupQueryAttention's rotary embedding of `[B, heads, S, d]` at positions `[B, S]` (cos/sin caches `[max, r/2]`). */
function rotary(b: GraphBuilder, node: NodeProto, x: string, positions: string, cos: string, sin: string): string {
  const half = staticDim(b, node, cos, 1, 'a cos_cache');
  const size = staticDim(b, node, x, 3, 'a head size');
  const at = (cache: string) => b.unsqueeze(b.op('Gather', [cache, positions], { axis: 0 }), [1]); // [B, 1, S, r/2]
  const c = at(cos);
  const s = at(sin);
  const rot = 2 * half;
  const part = rot === size ? x : lastAxis(b, x, 0, rot);
  let rotated: string;
  if (attrInt(node, 'rotary_interleaved', 0)) {
    // pairs (x[2j], x[2j+1]) rotate by angle j
    const pairs = b.op('Reshape', [part, b.int64s([0, 0, 0, half, 2])]);
    const even = b.squeeze(b.op('Slice', [pairs, b.int64s([0]), b.int64s([1]), b.int64s([4])]), [4]);
    const odd = b.squeeze(b.op('Slice', [pairs, b.int64s([1]), b.int64s([2]), b.int64s([4])]), [4]);
    const re = b.op('Sub', [b.op('Mul', [even, c]), b.op('Mul', [odd, s])]);
    const im = b.op('Add', [b.op('Mul', [odd, c]), b.op('Mul', [even, s])]);
    const joined = b.op('Concat', [b.unsqueeze(re, [4]), b.unsqueeze(im, [4])], { axis: 4 });
    rotated = b.op('Reshape', [joined, b.int64s([0, 0, 0, rot])]);
  } else {
    // halves (x[j], x[j + r/2]) rotate by angle j
    const x1 = lastAxis(b, part, 0, half);
    const x2 = lastAxis(b, part, half, rot);
    const re = b.op('Sub', [b.op('Mul', [x1, c]), b.op('Mul', [x2, s])]);
    const im = b.op('Add', [b.op('Mul', [x2, c]), b.op('Mul', [x1, s])]);
    rotated = b.op('Concat', [re, im], { axis: -1 });
  }
  return rot === size ? rotated : b.op('Concat', [rotated, lastAxis(b, x, rot, size)], { axis: -1 });
}

/** Refuses inputs and attributes an expansion does not implement. */
function refuseUnsupported(
  node: NodeProto,
  inputs: readonly string[],
  unsupported: Record<number, string>,
  attributes: Record<string, number>,
): void {
  for (const [i, what] of Object.entries(unsupported)) {
    if (input(inputs, Number(i))) refuse(node, `uses ${what}, which is not expanded`);
  }
  for (const [name, fallback] of Object.entries(attributes)) {
    if (attrInt(node, name, fallback) !== fallback) refuse(node, `sets ${name}, which is not expanded`);
  }
}

/** An output that would return the scores or probabilities themselves. */
function refuseQkOutput(node: NodeProto, index: number): void {
  if (node.output?.[index]) refuse(node, `outputs its attention scores (output ${index}), which is not expanded`);
}

/**
 * com.microsoft:MultiHeadAttention (ORT contrib ops): query `[B, S, D]`, key/value `[B, L, D]` or
 * BNSH `[B, N, L, H]`, optional
 * projection bias `[D + D + Dv]`, key padding mask, attention bias `[B|1, N|1, S, T]`, past key/value
 * `[B, N, P, H]`; `unidirectional` masks keys after P + i for query i; masked scores get
 * `mask_filter_value` added.
 */
const multiHeadAttention: Expand = (b, node, inputs) => {
  refuseUnsupported(node, inputs, { 8: 'past_sequence_length', 9: 'cache_indirection' }, {});
  refuseQkOutput(node, 3);
  const N = attrInt(node, 'num_heads', 0);
  let [query, key, value] = [input(inputs, 0), input(inputs, 1), input(inputs, 2)];
  const [bias, padding, attentionBias, pastKey, pastValue] = [3, 4, 5, 6, 7].map((i) => input(inputs, i));
  if (b.rank(query) === 5 || b.rank(key) === 5) {
    // ONNX Runtime's CPU kernel has no packed QKV / KV either: nothing to check an expansion against
    refuse(node, 'takes packed QKV or KV heads ([B, S, N, 3 | 2, H])');
  }
  if (bias) {
    const d = staticDim(b, node, query, 2, 'a query hidden size');
    const dk = b.rank(key) === 3 ? staticDim(b, node, key, 2, 'a key hidden size') : d;
    const part = (from: number, to: number) => b.op('Slice', [bias, b.int64s([from]), b.int64s([to])]);
    query = b.op('Add', [query, part(0, d)]);
    if (b.rank(key) === 3) key = b.op('Add', [key, part(d, d + dk)]);
    if (b.rank(value) === 3) value = b.op('Add', [value, part(d + dk, Number.MAX_SAFE_INTEGER)]);
  }
  const q = splitHeads(b, query, N);
  const k = b.rank(key) === 4 ? key : splitHeads(b, key, N);
  const v = b.rank(value) === 4 ? value : splitHeads(b, value, N);
  const [keys, values] = [withPast(b, pastKey, k), withPast(b, pastValue, v)];
  const { out, softmax } = contribAttend(b, node, { q, k, v }, keys, values, { padding, attentionBias });
  return { outputs: [mergeHeads(b, out), keys, values], softmax };
};

/**
 * What MultiHeadAttention and com.microsoft:Attention share: `unidirectional` (query i at P + i, P the
 * keys before this call's `new` ones), the key padding mask and attention bias, `mask_filter_value`
 * added to masked scores, one head count. `keys` / `values` are past ++ new.
 */
function contribAttend(
  b: GraphBuilder,
  node: NodeProto,
  current: Heads,
  keys: string,
  values: string,
  masks: { padding: string; attentionBias: string },
): { out: string; softmax: string } {
  const visible: (string | undefined)[] = [];
  if (attrInt(node, 'unidirectional', 0)) {
    const first = b.op('Sub', [b.squeeze(dimOf(b, keys, 2), [0]), b.squeeze(dimOf(b, current.k, 2), [0])]);
    visible.push(causalVisible(b, current.q, keys, first));
  }
  if (masks.padding) visible.push(paddingVisible(b, node, masks.padding, keys));
  const N = attrInt(node, 'num_heads', 0);
  return attend(
    b,
    node,
    { q: current.q, k: keys, v: values },
    {
      heads: N,
      kvHeads: N,
      scale: attrFloat(node, 'scale', 0),
      softcap: 0,
      biases: masks.attentionBias ? [masks.attentionBias] : [],
      visible: andAll(b, visible),
      fill: attrFloat(node, 'mask_filter_value', -10000),
      outType: b.dtype(current.q),
    },
  );
}

/**
 * A contrib op's mask of padded keys: `[B, T]` or `[B, S, T]` with 0 where masked, or `[B]` valid
 * lengths (right padding). Returns visibility broadcast to `[B, 1, S|1, T]`.
 */
function paddingVisible(b: GraphBuilder, node: NodeProto, mask: string, keys: string): string {
  const rank = b.rank(mask);
  if (rank === 2) return b.unsqueeze(b.cast(mask, DataType.BOOL), [1, 2]);
  if (rank === 3) return b.unsqueeze(b.cast(mask, DataType.BOOL), [1]);
  if (rank === 1 && b.shape(mask)?.[0] === b.shape(keys)?.[0]) {
    const lengths = b.unsqueeze(b.cast(mask, DataType.INT64), [1, 2, 3]); // [B, 1, 1, 1]
    return b.op('Less', [keyIndices(b, keys), lengths]);
  }
  refuse(
    node,
    `has a key mask of shape [${b.shape(mask)?.join(', ') ?? '?'}]; only [B, T], [B, S, T] and [B] lengths are expanded`,
  );
}

/**
 * What GroupQueryAttention and ONNX Attention share: query and key/value head counts, the `scale` and
 * `softcap` attributes, −∞ added to masked scores, the output in the query's type.
 */
function groupedAttend(
  b: GraphBuilder,
  node: NodeProto,
  x: Heads,
  [heads, kvHeads]: [number, number],
  masks: { biases: readonly string[]; visible: string | undefined },
): { out: string; softmax: string } {
  return attend(b, node, x, {
    heads,
    kvHeads,
    scale: attrFloat(node, 'scale', 0),
    softcap: attrFloat(node, 'softcap', 0),
    ...masks,
    fill: Number.NEGATIVE_INFINITY,
    outType: b.dtype(x.q),
  });
}

/**
 * com.microsoft:GroupQueryAttention: query `[B, S, N·H]` (or packed QKV `[B, S, (N + 2·KV)·H]`),
 * key/value `[B, S, KV·H]`, past key/value `[B, KV, P, H]`, `seqlens_k` (total length − 1 per
 * batch row), optional rotary caches. Causal: query i sits at seqlens_k + 1 − S + i; a local
 * window keeps its `local_window_size` most recent keys, its own included (as Mistral's
 * `sliding_window`; measured against the CPU kernel). The present key/value are past ++ new
 * (rotated) keys.
 */
const groupQueryAttention: Expand = (b, node, inputs) => {
  refuseUnsupported(
    node,
    inputs,
    { 9: 'position_ids', 11: 'head_sink', 12: 'k_scale', 13: 'v_scale', 14: 'q_norm_weight', 15: 'k_norm_weight' },
    { smooth_softmax: 0, sliding_window_cache: 0, qk_output: 0 },
  );
  refuseQkOutput(node, 3);
  const N = attrInt(node, 'num_heads', 0);
  const KV = attrInt(node, 'kv_num_heads', 0);
  const [query, key, value, pastKey, pastValue, seqlens, , cos, sin, , attentionBias] = Array.from(
    { length: 11 },
    (_, i) => input(inputs, i),
  );
  if (!seqlens) refuse(node, 'has no seqlens_k input');
  let [qs, ks, vs] = [query, key, value] as [string, string, string];
  if (!key) {
    const d = staticDim(b, node, query as string, 2, 'a packed QKV hidden size');
    const H = d / (N + 2 * KV);
    qs = lastAxis(b, query as string, 0, N * H);
    ks = lastAxis(b, query as string, N * H, (N + KV) * H);
    vs = lastAxis(b, query as string, (N + KV) * H, d);
  }
  let q = splitHeads(b, qs, N);
  let k = splitHeads(b, ks, KV);
  const v = splitHeads(b, vs, KV);
  // query i of batch row r sits at seqlens_k[r] + 1 - S + i
  const S = b.squeeze(dimOf(b, q, 2), [0]);
  const first = b.op('Sub', [b.op('Add', [b.cast(seqlens as string, DataType.INT64), b.int64(1)]), S]); // [B]
  if (attrInt(node, 'do_rotary', 0)) {
    if (!cos || !sin) refuse(node, 'sets do_rotary without cos_cache and sin_cache');
    const positions = b.op('Add', [
      b.unsqueeze(first, [1]),
      b.unsqueeze(b.op('Range', [b.int64(0), S, b.int64(1)]), [0]),
    ]); // [B, S]
    q = rotary(b, node, q, positions, cos, sin);
    k = rotary(b, node, k, positions, cos, sin);
  }
  const keys = withPast(b, pastKey as string, k);
  const values = withPast(b, pastValue as string, v);
  const window = attrInt(node, 'local_window_size', -1);
  const causal = attrInt(node, 'causal', 1);
  const visible = causal
    ? causalVisible(b, q, keys, b.unsqueeze(first, [1, 2, 3]), window >= 0 ? window : undefined)
    : undefined;
  const { out, softmax } = groupedAttend(b, node, { q, k: keys, v: values }, [N, KV], {
    biases: attentionBias ? [attentionBias] : [],
    visible,
  });
  return { outputs: [mergeHeads(b, out), keys, values], softmax };
};

/**
 * com.microsoft:Attention: the QKV projection inside (`input · weights + bias`, split by
 * `qkv_hidden_sizes`, equal thirds by default), past `[2, B, N, P, H]` and present
 * `[2, B, N, P + S, H]`, mask index (raw `[B, T]` / `[B, S, T]`, or `[B]` lengths), attention bias,
 * `unidirectional`; masked scores get `mask_filter_value` added.
 */
const packedAttention: Expand = (b, node, inputs) => {
  refuseUnsupported(node, inputs, { 6: 'past_sequence_length' }, { do_rotary: 0, past_present_share_buffer: 0 });
  const N = attrInt(node, 'num_heads', 0);
  const [x, weights, bias, mask, past, attentionBias] = Array.from({ length: 6 }, (_, i) => input(inputs, i));
  let qkv = b.op('MatMul', [x as string, weights as string]);
  if (bias) qkv = b.op('Add', [qkv, bias]);
  const total = staticDim(b, node, weights as string, 1, 'merged QKV weights');
  const sizes = attrInts(node, 'qkv_hidden_sizes') ?? [total / 3, total / 3, total / 3];
  const [dq, dk] = sizes as [number, number, number];
  const q = splitHeads(b, lastAxis(b, qkv, 0, dq), N);
  const newKeys = splitHeads(b, lastAxis(b, qkv, dq, dq + dk), N);
  const newValues = splitHeads(b, lastAxis(b, qkv, dq + dk, total), N);
  const pick = (i: number) =>
    b.squeeze(b.op('Slice', [past as string, b.int64s([i]), b.int64s([i + 1]), b.int64s([0])]), [0]);
  const k = past ? withPast(b, pick(0), newKeys) : newKeys;
  const v = past ? withPast(b, pick(1), newValues) : newValues;
  const { out, softmax } = contribAttend(b, node, { q, k: newKeys, v: newValues }, k, v, {
    padding: mask as string,
    attentionBias: attentionBias as string,
  });
  const present = b.op('Concat', [b.unsqueeze(k, [0]), b.unsqueeze(v, [0])], { axis: 0 });
  return { outputs: [mergeHeads(b, out), present], softmax };
};

/**
 * ONNX Attention (opset 23): Q/K/V 3-D `[B, S, heads·H]` (with `q_num_heads`, `kv_num_heads`) or 4-D
 * `[B, heads, S, H]`, `attn_mask` (boolean: false masks; float: added), past key/value
 * `[B, KV, P, H]`; `is_causal` masks keys after P + i for query i; softcap before the mask.
 */
const onnxAttention: Expand = (b, node, inputs) => {
  refuseUnsupported(node, inputs, { 6: 'nonpad_kv_seqlen' }, { qk_matmul_output_mode: 0 });
  refuseQkOutput(node, 3);
  const [Q, K, V, mask, pastKey, pastValue] = Array.from({ length: 6 }, (_, i) => input(inputs, i)) as string[];
  const threeD = b.rank(Q as string) === 3;
  const N = threeD ? attrInt(node, 'q_num_heads', 0) : staticDim(b, node, Q as string, 1, 'query heads');
  const KV = threeD ? attrInt(node, 'kv_num_heads', 0) : staticDim(b, node, K as string, 1, 'key heads');
  const q = threeD ? splitHeads(b, Q as string, N) : (Q as string);
  const k = threeD ? splitHeads(b, K as string, KV) : (K as string);
  const v = threeD ? splitHeads(b, V as string, KV) : (V as string);
  const keys = withPast(b, pastKey as string, k);
  const values = withPast(b, pastValue as string, v);
  const visible: (string | undefined)[] = [];
  const biases: string[] = [];
  if (mask) {
    // a mask shorter than the keys is padded: the keys after it are masked
    const missing = b.op('Sub', [dimOf(b, keys, 2), dimOf(b, mask, -1)]);
    const rank = b.rank(mask) ?? 2;
    const pads = b.op('Concat', [b.int64s(new Array(2 * rank - 1).fill(0)), missing], { axis: 0 });
    const additive =
      b.dtype(mask) === DataType.BOOL
        ? b.op('Where', [mask, b.scalar(0, f32), b.scalar(Number.NEGATIVE_INFINITY, f32)])
        : b.cast(mask, f32);
    biases.push(b.op('Pad', [additive, pads, b.scalar(Number.NEGATIVE_INFINITY, f32)]));
  }
  if (attrInt(node, 'is_causal', 0)) {
    const first = pastKey ? b.squeeze(dimOf(b, pastKey, 2), [0]) : b.int64(0);
    visible.push(causalVisible(b, q, keys, first));
  }
  const { out, softmax } = groupedAttend(b, node, { q, k: keys, v: values }, [N, KV], {
    biases,
    visible: andAll(b, visible),
  });
  return { outputs: [threeD ? mergeHeads(b, out) : out, keys, values], softmax };
};

/** Fused attention op (`domain:opType`, plain for the default domain) to its expansion. */
export const FUSED_ATTENTION: Readonly<Record<string, Expand>> = {
  'com.microsoft:MultiHeadAttention': multiHeadAttention,
  'com.microsoft:GroupQueryAttention': groupQueryAttention,
  'com.microsoft:Attention': packedAttention,
  Attention: onnxAttention,
};

function expansionOf(node: NodeProto): Expand | undefined {
  const domain = node.domain ?? '';
  const op = node.opType ?? '';
  return domain === '' || domain === 'ai.onnx' ? FUSED_ATTENTION[op] : FUSED_ATTENTION[`${domain}:${op}`];
}

/** True for a fused attention node `expandFusedAttention` replaces. */
export const isExpandable = (node: NodeProto): boolean => expansionOf(node) !== undefined;

/**
 * Replaces every fused attention node the table expands by primitive ops (in place) and returns
 * what each replacement added, in graph order, so it can be undone.
 */
export function expandFusedAttention(model: OnnxModel): FusedExpansion[] {
  const g = model.graph;
  const done: FusedExpansion[] = [];
  for (const node of g.topologicalOrder()) {
    const expand = expansionOf(node);
    if (!expand) continue;
    const before = new Set(g.nodes);
    const initializersBefore = (g.proto.initializer ?? []).length;
    let softmax = '';
    replaceNode(
      model,
      node,
      (b, inputs) => {
        const expanded = expand(b, node, inputs);
        softmax = expanded.softmax;
        return expanded.outputs;
      },
      `${node.name || node.opType}/dexar_expanded`,
    );
    done.push({
      node,
      softmaxNode: softmax,
      nodes: g.nodes.filter((n) => !before.has(n)),
      initializers: (g.proto.initializer ?? []).slice(initializersBefore).map((t: TensorProto) => t.name ?? ''),
    });
  }
  return done;
}

/** Undoes expansions: their nodes and constants go, the fused nodes come back. */
export function restoreFusedAttention(model: OnnxModel, expansions: readonly FusedExpansion[]): void {
  if (expansions.length === 0) return;
  const g = model.graph;
  const dropNodes = new Set(expansions.flatMap((e) => e.nodes));
  const dropInitializers = new Set(expansions.flatMap((e) => e.initializers));
  g.proto.node = [...g.nodes.filter((n) => !dropNodes.has(n)), ...expansions.map((e) => e.node)];
  g.proto.initializer = (g.proto.initializer ?? []).filter((t) => !dropInitializers.has(t.name ?? ''));
  g.invalidate();
  g.sortTopologically();
}
