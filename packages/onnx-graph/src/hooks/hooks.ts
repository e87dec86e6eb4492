import { HookNotFoundError, UnsupportedModelError } from '../errors.js';
import { attrFloat, attrInt, attrInts } from '../graph/attributes.js';
import { dominatorChain } from '../graph/dominators.js';
import { type Graph, nodeInputs } from '../graph/graph.js';
import { bnb4Layout, nBitsLayout, QUANTIZED_HEADS } from '../graph/quantized-weights.js';
import type { ShapeInference } from '../graph/shapes.js';
import { validateGraph } from '../graph/validate.js';
import type { OnnxModel } from '../model.js';
import { tensorDims } from '../proto/tensor.js';
import type { NodeProto } from '../proto/types.js';

/** Where one decoder layer's DEX-AR signals live in the graph. */
export interface LayerHook {
  /** Layer number (0-based, in graph order). */
  index: number;
  /** Which attention of the layer `attentionProbs` is. */
  attention: 'self' | 'cross';
  /** Softmax output that multiplies the values: [B, H, S, K] (or [B*H, S, K]). */
  attentionProbs: string;
  /** Name of the Softmax node. */
  softmaxNode: string;
  /** Name of the MatMul node computing probs @ values. */
  valuesMatMul: string;
  /** The values operand of that MatMul (full key length; never gathered). */
  values: string;
  /** The layer's output: the residual stream after its last block. */
  layerOutput: string;
  /** Module scope of the layer when names carry one (a hint only), e.g. `/model/layers.3`. */
  scope?: string;
}

/** The final normalisation applied before the LM head (null when the head reads the last layer directly). */
export interface FinalNormHook {
  /** The last layer's output, the subgraph's entry. */
  input: string;
  /** The normalised tensor the LM head reads. */
  output: string;
  /** Node names of the subgraph, in topological order. */
  nodes: string[];
}

export interface LmHeadHook {
  /** The MatMul / Gemm node. */
  node: string;
  /** Activation input of the head ([B, S, D], or [S, D] for Gemm). */
  input: string;
  /** The head's output (logits before the tail). */
  output: string;
  /**
   * Weight initializer (a tied embedding read through a Transpose is reported as itself); of a quantized
   * head, its packed weight.
   */
  weight: string;
  /** A quantized head's op (graph/quantized-weights.ts `QUANTIZED_HEADS`): its rows are read dequantised. */
  quantized?: string;
  /** `DxV`: [hidden, vocab] (MatMul(x, W)); `VxD`: [vocab, hidden] (Gemm transB or tied embedding). */
  layout: 'DxV' | 'VxD';
  /** Element type the graph casts the stored weight to before the head, if it does. */
  weightCast?: number;
  vocabSize: number;
  hiddenSize: number;
  /** Gemm alpha (1 for MatMul). */
  alpha: number;
  /** Gemm C input (vocab-indexed bias), if any, and its beta. */
  gemmBias?: string;
  beta: number;
  /** Nodes after the head up to the logits output (bias adds, soft-capping), in order. */
  tail: string[];
  /** A vocab-indexed bias added in the tail (e.g. final_logits_bias). */
  bias?: string;
  /** True when the tail soft-caps logits with tanh. */
  softCap: boolean;
  /** The logits graph output. */
  logits: string;
}

export interface DecoderHooks {
  layers: LayerHook[];
  finalNorm: FinalNormHook | null;
  lmHead: LmHeadHook;
}

export interface FindHooksOptions {
  /** Self-attention (decoder-only families) or the decoder's cross-attention (encoder-decoder). */
  attention: 'self' | 'cross';
}

const FUSED_ATTENTION = new Set([
  'Attention',
  'MultiHeadAttention',
  'GroupQueryAttention',
  'PackedAttention',
  'PackedMultiHeadAttention',
  'DecoderMaskedMultiHeadAttention',
  'DecoderMaskedSelfAttention',
  'DecoderAttention',
  'SparseAttention',
  'PagedAttention',
  'LongformerAttention',
  'QAttention',
]);

/** Ops a probability tensor may pass through on its way to the values MatMul. */
const PASS_THROUGH = new Set(['Cast', 'Identity', 'Dropout']);

/** Elementwise ops between the Q·K MatMul and the Softmax (scaling, masking, soft-capping). */
const SCORE_OPS = new Set(['Add', 'Sub', 'Mul', 'Div', 'Where', 'Cast', 'Tanh', 'Clip', 'Identity', 'Max', 'Min']);

/**
 * Refuses graphs this package cannot see attention probabilities in; `expandable` names the fused nodes
 * the caller expands first (graph/fused-attention.ts).
 */
export function assertUnfusedAttention(model: OnnxModel, expandable: (node: NodeProto) => boolean = () => false): void {
  for (const n of model.graph.nodes) {
    const domain = n.domain ?? '';
    if (
      FUSED_ATTENTION.has(n.opType ?? '') &&
      !expandable(n) &&
      (domain === 'com.microsoft' || (domain === '' && n.opType === 'Attention'))
    ) {
      throw new UnsupportedModelError(
        `node ${n.name || '(unnamed)'} is a fused ${domain || 'ai.onnx'}:${n.opType}, which never materialises attention probabilities; use an export with eager attention (no ORT transformer optimisations), e.g. the non-optimised decoder_model_merged.onnx`,
      );
    }
    if (n.opType === 'If' || n.opType === 'Loop' || n.opType === 'Scan') {
      throw new UnsupportedModelError(
        `node ${n.name || '(unnamed)'} is a control-flow ${n.opType}${n.opType === 'If' ? ` on ${n.input?.[0] || '(no condition)'}` : ''}; only a merged decoder's If on the boolean graph input use_cache_branch is supported: export the decoder without other control flow`,
      );
    }
  }
}

function isConstant(g: Graph, t: string): boolean {
  return g.constantTensor(t) !== undefined;
}

interface AttentionMatch {
  softmax: NodeProto;
  probs: string;
  valuesMatMul: NodeProto;
  values: string;
  qkMatMul: NodeProto;
}

/** Softmax nodes whose output (through casts) is the left operand of a MatMul, fed by Q·K^T. */
export function findAttentionSoftmaxes(model: OnnxModel): AttentionMatch[] {
  const g = model.graph;
  const out: AttentionMatch[] = [];
  for (const n of g.topologicalOrder()) {
    if (n.opType !== 'Softmax' || (n.domain ?? '') !== '') continue;
    const probs = n.output?.[0];
    if (!probs) continue;
    // forward: find the MatMul with the values
    let valuesMatMul: NodeProto | undefined;
    const frontier = [probs];
    const seen = new Set<string>();
    while (frontier.length && !valuesMatMul) {
      const t = frontier.shift() as string;
      if (seen.has(t)) continue;
      seen.add(t);
      for (const c of g.consumers(t)) {
        if (c.opType === 'MatMul' && c.input?.[0] === t) {
          valuesMatMul = c;
          break;
        }
        if (PASS_THROUGH.has(c.opType ?? '') && c.output?.[0]) frontier.push(c.output[0]);
      }
    }
    if (!valuesMatMul) continue;
    // backward: the scores come from a MatMul of two activations
    let qk: NodeProto | undefined;
    const back = [n.input?.[0] ?? ''];
    const visited = new Set<string>();
    while (back.length && !qk && visited.size < 64) {
      const t = back.shift() as string;
      if (visited.has(t)) continue;
      visited.add(t);
      const p = g.producer(t);
      if (!p) continue;
      if (p.opType === 'MatMul') {
        const [a, b] = p.input ?? [];
        if (a && b && !isConstant(g, a) && !isConstant(g, b)) qk = p;
        continue;
      }
      if (SCORE_OPS.has(p.opType ?? '')) for (const i of p.input ?? []) if (i && !isConstant(g, i)) back.push(i);
      // attention in three dimensions reshapes the scores to 4D around the mask; follow the data only
      if (p.opType === 'Reshape' && p.input?.[0]) back.push(p.input[0]);
    }
    if (!qk) continue;
    out.push({ softmax: n, probs, valuesMatMul, values: valuesMatMul.input?.[1] ?? '', qkMatMul: qk });
  }
  return out;
}

/**
 * For every tensor, the set of (non-initializer) graph inputs its values depend on, as a bit mask.
 * Shape-only dependencies (through Shape, Size, ConstantOfShape) do not count.
 */
function inputDependencies(g: Graph): Map<string, bigint> {
  const deps = new Map<string, bigint>();
  g.inputs.forEach((v, i) => {
    if (v.name) deps.set(v.name, 1n << BigInt(i));
  });
  for (const n of g.topologicalOrder()) {
    let mask = 0n;
    if (n.opType !== 'Shape' && n.opType !== 'Size' && n.opType !== 'ConstantOfShape') {
      for (const i of nodeInputs(n)) mask |= deps.get(i) ?? 0n;
    }
    for (const o of n.output ?? []) if (o) deps.set(o, mask);
  }
  return deps;
}

function layerScope(name: string): string | undefined {
  const m = /^(.*?\/layers\.\d+)\//.exec(name);
  return m?.[1];
}

/** Follows Identity and same-type Cast producers back to the tensor they copy. */
function throughCopies(g: Graph, shapes: ShapeInference, t: string, allowed?: Set<string>): string {
  let cur = t;
  for (;;) {
    const p = g.producer(cur);
    if (!p) return cur;
    const src = p.input?.[0];
    if (!src) return cur;
    const copy =
      p.opType === 'Identity' ||
      (p.opType === 'Cast' && shapes.type(src) !== undefined && shapes.type(src) === shapes.type(cur));
    if (!copy || (allowed && !allowed.has(src))) return cur;
    cur = src;
  }
}

/** The residual input of the first residual Add after `probs` (the input of that layer). */
function residualInput(g: Graph, chain: string[], probs: string): string | undefined {
  const fromProbs = g.descendants([probs]);
  for (const t of chain.slice(1)) {
    const p = g.producer(t);
    if (p?.opType !== 'Add') continue;
    const [a, b] = p.input ?? [];
    if (!a || !b) continue;
    const aIn = fromProbs.has(a);
    const bIn = fromProbs.has(b);
    if (aIn !== bIn) {
      const other = aIn ? b : a;
      if (!isConstant(g, other)) return other;
    }
  }
  return undefined;
}

/** Finds the LM head (MatMul/Gemm with a vocabulary-sized weight) behind the logits output. */
function findLmHead(model: OnnxModel, shapes: ShapeInference): LmHeadHook {
  const g = model.graph;
  const outputs = g.outputs.map((o) => o.name ?? '');
  // the name is a hint; without one, the output behind the widest head weight is the logits
  const named = outputs.find((o) => o === 'logits') ?? outputs.find((o) => /logits/i.test(o));
  if (named) return headBehind(model, shapes, named);
  let best: LmHeadHook | undefined;
  for (const o of outputs) {
    try {
      const h = headBehind(model, shapes, o);
      if (!best || h.vocabSize > best.vocabSize) best = h;
    } catch {
      // not a head output
    }
  }
  if (!best) {
    throw new HookNotFoundError(
      `no graph output (${outputs.join(', ')}) is produced by an LM head MatMul/Gemm with a stored weight; the decoder graph must output the logits`,
    );
  }
  return best;
}

function headBehind(model: OnnxModel, shapes: ShapeInference, logits: string): LmHeadHook {
  const g = model.graph;
  const tail: NodeProto[] = [];
  let cur = logits;
  let head: NodeProto | undefined;
  for (let guard = 0; guard < 32; guard++) {
    const p = g.producer(cur);
    if (!p) break;
    const op = p.opType ?? '';
    // the op's name alone: the graph's validation refused every contrib op it does not know before this
    if (
      ((op === 'MatMul' || op === 'Gemm') && !p.domain) ||
      (p.domain === 'com.microsoft' && QUANTIZED_HEADS.has(op))
    ) {
      head = p;
      break;
    }
    const acts = (p.input ?? []).filter((i) => i && !isConstant(g, i));
    if (acts.length !== 1 || !['Add', 'Sub', 'Mul', 'Div', 'Tanh', 'Cast', 'Identity'].includes(op)) {
      throw new HookNotFoundError(
        `the logits output is produced by ${op} node ${p.name ?? ''}, not by an LM head MatMul/Gemm followed by elementwise bias or soft-capping; this head is not supported`,
      );
    }
    tail.unshift(p);
    cur = acts[0] as string;
  }
  if (!head) {
    throw new HookNotFoundError(`no LM head MatMul/Gemm found behind the logits output ${logits}`);
  }
  const x = head.input?.[0];
  if (!x) throw new HookNotFoundError(`LM head node ${head.name} has no activation input`);
  const weight = head.domain ? quantizedHeadWeight(g, head) : floatHeadWeight(g, shapes, head);
  let bias: string | undefined;
  let softCap = false;
  for (const t of tail) {
    if (t.opType === 'Tanh') softCap = true;
    if (t.opType === 'Add' && !bias) {
      const k = (t.input ?? []).find((i) => i && isConstant(g, i));
      const kt = k ? g.constantTensor(k) : undefined;
      if (k && kt && tensorDims(kt).at(-1) === weight.vocabSize) bias = k;
    }
  }
  const hook: LmHeadHook = {
    node: head.name ?? '',
    input: x,
    output: head.output?.[0] ?? '',
    ...weight,
    tail: tail.map((t) => t.name ?? ''),
    softCap,
    logits,
  };
  if (bias) hook.bias = bias;
  return hook;
}

/** What the logit lens reads of the head node: its weight and the product's constants. */
type HeadWeight = Pick<
  LmHeadHook,
  'weight' | 'layout' | 'weightCast' | 'vocabSize' | 'hiddenSize' | 'alpha' | 'gemmBias' | 'beta' | 'quantized'
>;

/** A float MatMul / Gemm head's stored weight. */
function floatHeadWeight(g: Graph, shapes: ShapeInference, head: NodeProto): HeadWeight {
  const [, w, c] = head.input ?? [];
  if (!w) throw new HookNotFoundError(`LM head node ${head.name} has no weight input`);
  let weight = w;
  let layout: 'DxV' | 'VxD' = 'DxV';
  let weightCast: number | undefined;
  if (head.opType === 'Gemm' && attrInt(head, 'transB', 0)) layout = 'VxD';
  if (head.opType === 'Gemm' && attrInt(head, 'transA', 0)) {
    throw new HookNotFoundError(`LM head Gemm ${head.name} transposes its activation input; not supported`);
  }
  // a stored weight, possibly read through Identity, Cast or a 2-D Transpose (tied embeddings)
  for (let guard = 0; guard < 8 && !g.constantTensor(weight); guard++) {
    const p = g.producer(weight);
    const src = p?.input?.[0];
    if (!p || !src) break;
    if (p.opType === 'Identity') weight = src;
    else if (p.opType === 'Cast') {
      weightCast ??= attrInt(p, 'to');
      weight = src;
    } else if (p.opType === 'Transpose') {
      const perm = attrInts(p, 'perm');
      if (perm && !(perm[0] === 1 && perm[1] === 0)) break;
      weight = src;
      layout = layout === 'DxV' ? 'VxD' : 'DxV';
    } else break;
  }
  if (g.producer(weight)?.opType === 'DequantizeLinear') {
    throw new UnsupportedModelError(
      `the LM head weight ${w} of node ${head.name} is a DequantizeLinear of stored integers (QDQ), which the logit lens does not read; export the head as MatMulNBits (q4), MatMulBnb4 (bnb4) or DynamicQuantizeLinear + MatMulInteger (q8), or in float`,
    );
  }
  if (!g.constantTensor(weight)) {
    throw new HookNotFoundError(
      `the LM head weight ${w} of node ${head.name} is computed, not stored; only stored (cast, or transposed tied) weights are supported`,
    );
  }
  const wt = g.constantTensor(weight);
  const dims = wt ? tensorDims(wt) : (shapes.shape(weight) as number[]);
  if (dims?.length !== 2) {
    throw new HookNotFoundError(`LM head weight ${weight} is not a matrix (dims ${JSON.stringify(dims)})`);
  }
  const [d0, d1] = dims as [number, number];
  const vocabSize = layout === 'DxV' ? d1 : d0;
  const hiddenSize = layout === 'DxV' ? d0 : d1;
  const out: HeadWeight = {
    weight,
    layout,
    vocabSize,
    hiddenSize,
    alpha: head.opType === 'Gemm' ? attrFloat(head, 'alpha', 1) : 1,
    beta: head.opType === 'Gemm' ? attrFloat(head, 'beta', 1) : 1,
  };
  if (weightCast !== undefined) out.weightCast = weightCast;
  if (c) out.gemmBias = c;
  return out;
}

/**
 * A quantized head's packed weight (graph/quantized-weights.ts): MatMulNBits' B `[V, blocks, blob]` and
 * MatMulBnb4's (W is `[V, D]`: VxD), DynamicQuantizeMatMul's B `[D, V]` (DxV); the op's bias input reads as
 * a Gemm's C.
 */
function quantizedHeadWeight(g: Graph, head: NodeProto): HeadWeight {
  const op = head.opType ?? '';
  const [, weight, , , ...rest] = head.input ?? [];
  const stored = weight ? g.constantTensor(weight) : undefined;
  if (!weight || !stored) {
    throw new HookNotFoundError(`the packed LM head weight of ${op} node ${head.name} is computed, not stored`);
  }
  let out: HeadWeight;
  if (op === 'MatMulNBits') {
    const layout = nBitsLayout(head);
    if (typeof layout === 'string') throw new UnsupportedModelError(`the LM head: ${layout}`);
    out = { weight, layout: 'VxD', vocabSize: layout.N, hiddenSize: layout.K, alpha: 1, beta: 1, quantized: op };
  } else if (op === 'MatMulBnb4') {
    const layout = bnb4Layout(head);
    if (typeof layout === 'string') throw new UnsupportedModelError(`the LM head: ${layout}`);
    out = { weight, layout: 'VxD', vocabSize: layout.N, hiddenSize: layout.K, alpha: 1, beta: 1, quantized: op };
  } else {
    const [d, v] = tensorDims(stored) as [number, number];
    out = { weight, layout: 'DxV', vocabSize: v, hiddenSize: d, alpha: 1, beta: 1, quantized: op };
  }
  // MatMulNBits' bias is input 5 (after g_idx), DynamicQuantizeMatMul's input 4; MatMulBnb4 has none
  const bias = op === 'MatMulNBits' ? rest[1] : rest[0];
  if (bias) out.gemmBias = bias;
  return out;
}

/**
 * Finds, from the graph's structure, each decoder layer's attention probabilities (the Softmax
 * output that multiplies the values), the layer's output (end of its residual block), the final
 * norm and the LM head. Node names are used only as hints (the reported `scope`).
 */
export function findDecoderHooks(model: OnnxModel, options: FindHooksOptions): DecoderHooks {
  assertUnfusedAttention(model);
  return decoderHooks(model, options, validateGraph(model));
}

/**
 * `findDecoderHooks` on a graph `assertUnfusedAttention` and `validateGraph` passed as it is now, with
 * the inference `validateGraph` returned.
 */
export function decoderHooks(model: OnnxModel, options: FindHooksOptions, shapes: ShapeInference): DecoderHooks {
  const g = model.graph;
  const matches = findAttentionSoftmaxes(model);
  if (matches.length === 0) {
    const softmax = g.nodes.find((n) => n.opType === 'Softmax');
    const seen = softmax
      ? `; e.g. Softmax node ${softmax.name || '(unnamed)'} feeds ${
          g
            .consumers(softmax.output?.[0] ?? '')
            .map((c) => `${c.opType} node ${c.name || '(unnamed)'}`)
            .join(', ') || 'nothing'
        }`
      : '; the graph has no Softmax';
    throw new HookNotFoundError(
      `no attention pattern found: expected a Softmax whose output (through Cast/Identity/Dropout) is the left input of the MatMul with the values, its input computed from a Q·K MatMul through scaling, masking or reshaping${seen}; pass a transformer decoder exported with eager attention`,
    );
  }
  const lmHead = findLmHead(model, shapes);

  // self vs cross: the first attention is a self-attention; its queries read the decoder stream.
  // A cross-attention's keys depend on none of the graph inputs that stream is computed from.
  const deps = inputDependencies(g);
  const stream = deps.get(matches[0]?.qkMatMul.input?.[0] ?? '') ?? 0n;
  const kinds = matches.map((m) => {
    const dk = deps.get(m.qkMatMul.input?.[1] ?? '') ?? 0n;
    return (stream & dk) === 0n ? ('cross' as const) : ('self' as const);
  });
  // group into layers: every self-attention opens a layer; a cross-attention joins the open one
  interface Group {
    self?: AttentionMatch;
    cross?: AttentionMatch;
  }
  const groups: Group[] = [];
  matches.forEach((m, i) => {
    const kind = kinds[i];
    if (kind === 'self' || groups.length === 0) groups.push({ [kind ?? 'self']: m });
    else {
      const last = groups[groups.length - 1] as Group;
      if (last.cross) groups.push({ cross: m });
      else last.cross = m;
    }
  });
  const first = (grp: Group) => (grp.self ?? grp.cross) as AttentionMatch;

  const sink = lmHead.input;
  const chains = groups.map((grp) => dominatorChain(g, first(grp).probs, sink));
  const outputsOf: string[] = [];
  for (let l = 0; l < groups.length - 1; l++) {
    const next = first(groups[l + 1] as Group);
    const chain = chains[l] as string[];
    const chainSet = new Set(chain);
    const r = residualInput(g, chains[l + 1] as string[], next.probs);
    const where = layerScope(first(groups[l] as Group).softmax.name ?? '') ?? `layer ${l}`;
    if (!r) {
      throw new HookNotFoundError(
        `layer ${l} (${where}): the next layer's attention output is never added to a residual stream, so the layer's output cannot be located; the decoder is not a residual transformer this package understands`,
      );
    }
    const h = throughCopies(g, shapes, r, chainSet);
    if (!chainSet.has(h)) {
      throw new HookNotFoundError(
        `layer ${l} (${where}): the residual input ${r} of layer ${l + 1} is not on every path from layer ${l}'s attention probabilities, so it is not the layer's output`,
      );
    }
    outputsOf.push(h);
  }
  // last layer: same position in its chain as the layer before it (all layers share a structure)
  const L = groups.length;
  const lastChain = chains[L - 1] as string[];
  if (L >= 2) {
    const prevChain = chains[L - 2] as string[];
    const k = prevChain.indexOf(outputsOf[L - 2] as string);
    const ops = (chain: string[]) => chain.slice(1, k + 1).map((t) => g.producer(t)?.opType ?? '');
    const a = ops(prevChain);
    const b = ops(lastChain);
    if (lastChain.length <= k || a.join() !== b.join()) {
      throw new HookNotFoundError(
        `layer ${L - 1} (the last): its structure after the attention (${b.join(' > ')}) does not match layer ${L - 2}'s (${a.join(' > ')}), so its output cannot be located`,
      );
    }
    outputsOf.push(lastChain[k] as string);
  } else {
    // a single layer: its output is the last residual Add before the head
    let h: string | undefined;
    for (const t of lastChain.slice(1)) {
      const p = g.producer(t);
      if (p?.opType === 'Add' && (p.input ?? []).every((i) => i && !isConstant(g, i))) h = t;
    }
    if (!h) {
      throw new HookNotFoundError(
        'layer 0: no residual Add between the attention and the LM head; cannot locate the layer output',
      );
    }
    outputsOf.push(h);
  }

  const layers: LayerHook[] = groups.map((grp, l) => {
    const m = options.attention === 'cross' ? grp.cross : grp.self;
    if (!m) {
      const have = grp.self ? 'self' : 'cross';
      throw new HookNotFoundError(
        `layer ${l}: no ${options.attention}-attention found (the layer has ${have}-attention only); use attention: '${have}'`,
      );
    }
    const hook: LayerHook = {
      index: l,
      attention: options.attention,
      attentionProbs: m.probs,
      softmaxNode: m.softmax.name ?? '',
      valuesMatMul: m.valuesMatMul.name ?? '',
      values: m.values,
      layerOutput: outputsOf[l] as string,
    };
    const scope = layerScope(m.softmax.name ?? '');
    if (scope) hook.scope = scope;
    return hook;
  });

  const lastOut = outputsOf[L - 1] as string;
  let finalNorm: FinalNormHook | null = null;
  if (lastOut !== lmHead.input) {
    const nodes = g.nodesBetween([lastOut], [lmHead.input]);
    for (const n of nodes) {
      if (n.opType === 'Softmax' || (n.opType === 'MatMul' && (n.input ?? []).every((i) => i && !isConstant(g, i)))) {
        throw new HookNotFoundError(
          `the subgraph between the last layer output ${lastOut} and the LM head input contains ${n.opType} node ${n.name}; it is not a final norm`,
        );
      }
    }
    finalNorm = { input: lastOut, output: lmHead.input, nodes: nodes.map((n) => n.name ?? '') };
  }
  return { layers, finalNorm, lmHead };
}
