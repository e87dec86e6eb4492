import { EXPLAIN_GRAPH, USE_CACHE_BRANCH } from '@dexar/core/adapter';
import { buildGradient } from '../autodiff/gradient.js';
import { HookNotFoundError, InvalidOptionsError, UnsupportedModelError } from '../errors.js';
import { GraphBuilder } from '../graph/builder.js';
import { formatShape } from '../graph/dims.js';
import { expandFusedAttention, isExpandable, restoreFusedAttention } from '../graph/fused-attention.js';
import { addGraphInput, addGraphOutput, cloneNodes, mergeUnderIf, pruneUnread, specializeIf } from '../graph/passes.js';
import { fuseDynamicQuantizeMatMul } from '../graph/quantized-matmul.js';
import { quantizedHeadRows } from '../graph/quantized-weights.js';
import { validateGraph } from '../graph/validate.js';
import { assertUnfusedAttention, type DecoderHooks, decoderHooks } from '../hooks/hooks.js';
import { type OnnxModel, readModel, writeModel } from '../model.js';
import { tensorDims } from '../proto/tensor.js';
import { DataType, type NodeProto } from '../proto/types.js';
import { RowCloner } from './rows.js';

/** Graph input / output names of the explain graph (the names are core's contract with the families). */
export const EXPLAIN_INPUTS = {
  targetIds: EXPLAIN_GRAPH.targetIds,
  queryPositions: EXPLAIN_GRAPH.queryPositions,
} as const;

export const EXPLAIN_OUTPUTS = {
  attentionRows: EXPLAIN_GRAPH.attentionRows,
  gradientRows: EXPLAIN_GRAPH.gradientRows,
  logitLens: EXPLAIN_GRAPH.logitLens,
} as const;

/**
 * Optional output (`positionLens: true`): the logit-lens logit of each target at every position of
 * the call, `[T, layers, S]` (the gradient-free "logit lens on image positions" baseline of
 * evaluation).
 */
export const POSITION_LENS_OUTPUT = EXPLAIN_GRAPH.positionLens;

/**
 * The boolean input of a decoder merged the way optimum merges them (`USE_CACHE_BRANCH`): its If
 * runs the with-past decoder when true, the without-past one when false (generation feeds it). The
 * explain graph of such a decoder explains each branch and merges them back under an If that it
 * conditions itself on the past being non-empty, so every explain call runs the branch generation
 * ran for the same call: the without-past one for a prefill (a prefix LM's bidirectional prefix;
 * Florence-2's cross keys computed from the encoder states), the with-past one after a cache.
 */
export { USE_CACHE_BRANCH };

/**
 * The explain graph's own condition for that If: the past is non-empty. A greedy (streaming) graph
 * of an unmerged decoder is split on it too, its with-past branch reading forward rows.
 */
const WITH_PAST = 'dexar_with_past';

/** Symbolic size of the target axis in the explain graph's inputs and outputs. */
export const TARGET_AXIS = 'dexar_num_targets';

export interface ExplainOptions {
  /** Absolute layer indices, ascending (e.g. `[22, 23, ..., 31]` for layerIndex -10 of 32). */
  layers: readonly number[];
  /**
   * `official`: at the last layer the final norm is applied twice, as the authors' code does
   * (HuggingFace's last hidden state is already normalised); `paper`: once.
   */
  compat: 'official' | 'paper';
  /** `self` for decoder-only families; `cross` for Florence-2 (decoder cross-attention). */
  attention: 'self' | 'cross';
  /**
   * Also output `dexar_position_lens` `[T, layers, S]`: z at every position p of the call,
   * `[W_lm · FinalNorm(h_l[p])]_{y_n}` with the head's bias and soft-capping, the final norm applied
   * once at every layer (the model's own head). Off by default; part of the cache key when on.
   */
  positionLens?: boolean;
  /**
   * Greedy targets inside the graph: `dexar_target_ids` is no input but an output, y_n =
   * argmax_v logits[q_n, v] (the first maximum, as greedy decoding takes it), so one call
   * generates a token and explains it (streaming). Off by default; part of the cache key when on.
   */
  greedyTargets?: boolean;
}

export interface ExplainGraph {
  /** The augmented model: the original outputs plus the DEX-AR outputs. */
  model: OnnxModel;
  inputs: { targetIds: string; queryPositions: string };
  outputs: { attentionRows: string; gradientRows: string; logitLens: string; positionLens?: string };
  /** The layers in output order (axis 1 of the outputs). */
  layers: number[];
  /**
   * Where the signals were found. A layer whose attention was a fused op, expanded to find it, has
   * its probabilities in the explain graph only when the layer is explained (the others keep the
   * fused op).
   */
  hooks: DecoderHooks;
}

function validate(options: ExplainOptions, layerCount: number): void {
  if (!options || typeof options !== 'object') {
    throw new InvalidOptionsError('buildExplainGraph needs options { layers, compat, attention }');
  }
  if (options.compat !== 'official' && options.compat !== 'paper') {
    throw new InvalidOptionsError(`compat must be 'official' or 'paper', got ${JSON.stringify(options.compat)}`);
  }
  if (options.attention !== 'self' && options.attention !== 'cross') {
    throw new InvalidOptionsError(`attention must be 'self' or 'cross', got ${JSON.stringify(options.attention)}`);
  }
  const layers = options.layers;
  if (!Array.isArray(layers) || layers.length === 0) {
    throw new InvalidOptionsError('layers must be a non-empty array of layer indices');
  }
  layers.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= layerCount) {
      throw new InvalidOptionsError(`layer ${l} does not exist: the decoder has layers 0..${layerCount - 1}`);
    }
    if (i > 0 && l <= (layers[i - 1] as number)) {
      throw new InvalidOptionsError(`layers must be ascending without repeats, got [${layers.join(', ')}]`);
    }
  });
}

/**
 * Builds the DEX-AR "explain" graph from a decoder graph (see docs/algorithm.md, "Why one forward
 * pass is enough"). The returned model keeps every original input and output and adds:
 *
 * - inputs `dexar_target_ids` int64 [T] (the tokens y_n; an output instead with `greedyTargets`)
 *   and `dexar_query_positions` int64 [T] (q_n, positions on this call's sequence axis);
 * - `dexar_attention_rows` float32 [T, layers, H, K]: A_l[:, q_n, :];
 * - `dexar_gradient_rows` float32 [T, layers, H, K]: d z_{n,l} / d A_l[:, q_n, :], unclamped;
 * - `dexar_logit_lens` float32 [T, layers]: z_{n,l} = [W_lm FinalNorm(h_l[q_n])]_{y_n} (+ the
 *   head's bias and soft-capping).
 *
 * K is the call's key length (past + current for self-attention, encoder length for cross). Work
 * is proportional to T: per layer, the attention rows of the query positions are gathered, the
 * layer's post-softmax subgraph is re-run on those rows only, the LM head is applied through the
 * gathered target rows of its weight (never the full vocabulary product), and the backward pass
 * runs through that clone only. The explain graph needs batch size 1.
 */
export function buildExplainGraph(source: OnnxModel, options: ExplainOptions): ExplainGraph {
  const merged = source.graph.nodes.some((n) => n.opType === 'If' && n.input?.[0] === USE_CACHE_BRANCH);
  // the condition generation feeds, computed from the cache: past_key_values.*: [B, kv, past, d]
  const past = source.graph.inputs.find((v) => v.name?.startsWith('past_key_values.'))?.name;
  if (merged && !past) {
    throw new UnsupportedModelError(
      `the decoder merges its branches with an If on ${USE_CACHE_BRANCH} but has no past_key_values.* input to tell them apart`,
    );
  }
  // a streamed call with the past runs one new position, so its forward rows are the whole
  // tensors: a greedy graph reads them in a branch of its own (see `explainPlainDecoder`)
  const splitOnPast = merged || (options.greedyTargets === true && past !== undefined);
  if (!splitOnPast || !past) return explainPlainDecoder(readModel(writeModel(source)), options, false);
  const branch = (withPast: boolean) => {
    const model = readModel(writeModel(source));
    if (merged) specializeIf(model, USE_CACHE_BRANCH, withPast);
    return explainPlainDecoder(model, options, withPast && options.greedyTargets === true);
  };
  const withPast = branch(true);
  const withoutPast = branch(false);
  const shared = new Set((source.graph.proto.initializer ?? []).map((t) => t.name ?? ''));
  const model = mergeUnderIf(withPast.model, withoutPast.model, WITH_PAST, shared);
  const b = new GraphBuilder(model, { prefix: 'dexar/with_past' });
  const pastLength = b.op('Gather', [b.shapeOf(past), b.int64s([2])], { axis: 0 });
  b.model.graph.addNode({
    name: b.model.graph.uniqueNodeName('dexar/with_past/Greater'),
    opType: 'Greater',
    input: [pastLength, b.int64s([0])],
    output: [WITH_PAST],
  });
  model.graph.sortTopologically();
  return { ...withPast, model };
}

/**
 * The explain graph of a decoder without control flow (`model` is modified in place). With
 * `forwardRows`, the backward pass reads the forward pass's values at the query rows instead of
 * re-running each layer's tail on them (`RowCloner.readForwardRows`): that saves the tails' matrix
 * products, but ONNX Runtime then keeps those values over the whole sequence alive until the
 * backward pass (+280 MiB on llava-scale-1024's teacher-forced pass), so it is taken only where a
 * call has a single position (docs/architecture.md, "Weights held once").
 */
function explainPlainDecoder(model: OnnxModel, options: ExplainOptions, forwardRows: boolean): ExplainGraph {
  // fused attention: expanded to find the layers, kept fused in the layers not explained
  assertUnfusedAttention(model, isExpandable);
  fuseDynamicQuantizeMatMul(model);
  const validated = validateGraph(model);
  const expansions = expandFusedAttention(model);
  // the expansion's own nodes are checked like the exporter's
  const shapes = expansions.length > 0 ? validateGraph(model) : validated;
  const hooks = decoderHooks(model, { attention: options?.attention }, shapes);
  validate(options, hooks.layers.length);
  const explained = new Set(options.layers.map((l) => hooks.layers[l]?.softmaxNode));
  restoreFusedAttention(
    model,
    expansions.filter((e) => !explained.has(e.softmaxNode)),
  );
  const g = model.graph;
  for (const name of [...Object.values(EXPLAIN_INPUTS), ...Object.values(EXPLAIN_OUTPUTS), POSITION_LENS_OUTPUT]) {
    if (g.hasTensor(name)) {
      throw new InvalidOptionsError(`the model already has a tensor named ${name}; it is an explain graph already`);
    }
  }
  const ids = EXPLAIN_INPUTS.targetIds;
  const qpos = EXPLAIN_INPUTS.queryPositions;
  if (!options.greedyTargets) addGraphInput(model, ids, DataType.INT64, [TARGET_AXIS]);
  addGraphInput(model, qpos, DataType.INT64, [TARGET_AXIS]);
  const b = new GraphBuilder(model, { prefix: 'dexar' });
  if (options.greedyTargets) {
    // y_n = argmax_v logits[0, q_n, v]: [1, S, V] -> [1, T, V] -> [T]; ONNX ArgMax keeps the first maximum
    const atQueries = b.op('Gather', [hooks.lmHead.logits, qpos], { axis: 1 });
    const argmax = b.op('ArgMax', [b.cast(atQueries, DataType.FLOAT)], { axis: -1, keepdims: 0 });
    g.addNode({
      name: g.uniqueNodeName('dexar/greedy_targets'),
      opType: 'Reshape',
      input: [argmax, b.int64s([-1])],
      output: [ids],
    });
    b.shapes.run([g.nodes[g.nodes.length - 1] as NodeProto]);
    addGraphOutput(model, ids, DataType.INT64, [TARGET_AXIS]);
  }

  // LM head rows of the targets: [T, D]; a quantized head's are gathered packed and dequantised, in the
  // type the head computes in (its activation's), the dequantised-weight reference (docs/supported-exports.md)
  const head = hooks.lmHead;
  let selected: string;
  if (head.quantized) {
    const node = g.nodeByName(head.node);
    if (!node) throw new HookNotFoundError(`the LM head node ${head.node} is not in the graph`);
    selected = b.cast(quantizedHeadRows(b, node, ids), b.dtype(head.input));
  } else {
    const gathered =
      head.layout === 'DxV'
        ? b.op('Transpose', [b.op('Gather', [head.weight, ids], { axis: 1 })], { perm: [1, 0] })
        : b.op('Gather', [head.weight, ids], { axis: 0 });
    selected = head.weightCast !== undefined ? b.cast(gathered, head.weightCast) : gathered;
  }
  const headType = b.dtype(selected);
  const L = hooks.layers.length;
  const finalNormNodes = hooks.finalNorm ? g.nodesBetween([hooks.finalNorm.input], [hooks.finalNorm.output]) : [];
  const tailNodes = g.nodesBetween([head.output], [head.logits]);

  const attnParts: string[] = [];
  const gradParts: string[] = [];
  const lensParts: string[] = [];
  const positionParts: string[] = [];
  let positionSym: string | number | null = null;
  const rowsName = b.op('Shape', [qpos]);

  for (const l of options.layers) {
    const layer = hooks.layers[l];
    if (!layer) throw new InvalidOptionsError(`layer ${l} does not exist`);
    const A = layer.attentionProbs;
    const shape = b.shape(A);
    const rank = shape?.length;
    const qSym = shape?.[shape.length - 2];
    if (!shape || rank === undefined || rank < 3 || typeof qSym !== 'string') {
      throw new UnsupportedModelError(
        `layer ${l}: the attention probabilities ${A} (output of Softmax node ${layer.softmaxNode}) have shape ${formatShape(shape)}; expected [..., heads, queries, keys] with the query axis following the sequence length of the decoder's inputs — export with dynamic sequence axes`,
      );
    }
    const prefix = `dexar/layer${l}`;
    const lb = new GraphBuilder(model, { prefix, shapes: b.shapes });
    const rows = lb.op('Gather', [A, qpos], { axis: rank - 2 }, { name: 'attention_rows' });

    // the layer's post-softmax subgraph on the query rows
    const cloner = new RowCloner(lb, {
      qSym,
      queryPositions: qpos,
      prefix,
      shared: [layer.values],
      what: `layer ${l}`,
    });
    cloner.bind(A, rows);
    cloner.cloneNodes(g.nodesBetween([A], [layer.layerOutput]));
    let hidden = cloner.resolve(layer.layerOutput);
    const hiddenShape = lb.shape(hidden);
    if (hiddenShape?.includes(qSym)) {
      throw new UnsupportedModelError(
        `layer ${l}: the re-run of the layer on the query rows still has the full sequence axis ${formatShape(hiddenShape)}; a reshape in the layer bakes in the sequence length`,
      );
    }

    // logit lens: final norm (twice at the last layer in official compat), then the target rows
    if (hooks.finalNorm) {
      const times = options.compat === 'official' && l === L - 1 ? 2 : 1;
      for (let k = 0; k < times; k++) {
        const normCloner = new RowCloner(lb, {
          qSym,
          queryPositions: qpos,
          prefix: `${prefix}/final_norm${k}`,
          what: 'the final norm',
        });
        normCloner.bind(hooks.finalNorm.input, hidden);
        normCloner.cloneNodes(finalNormNodes);
        hidden = normCloner.resolve(hooks.finalNorm.output);
      }
    }
    const hiddenRank = lb.rank(hidden);
    if (hiddenRank === undefined)
      throw new UnsupportedModelError(`layer ${l}: the rank of the logit-lens input is unknown`);
    let z = lb.reduce('ReduceSum', lb.op('Mul', [lb.cast(hidden, headType), selected]), [-1], false);
    if (head.alpha !== 1) z = lb.op('Mul', [z, lb.scalarLike(head.alpha, z)]);
    if (head.gemmBias) z = lb.op('Add', [z, vocabSlice(lb, head.gemmBias, head.vocabSize, ids, head.beta)]);
    // the head's elementwise tail (bias, soft-capping) on the target logits
    const headTail = (logits: string, tailPrefix: string) => {
      const tail = new RowCloner(lb, {
        qSym,
        queryPositions: qpos,
        prefix: tailPrefix,
        what: 'the LM head tail',
      });
      let cur = head.output;
      tail.bind(cur, logits);
      for (const n of tailNodes) {
        for (const i of n.input ?? []) {
          if (i && i !== cur && g.constantTensor(i)) {
            const t = g.constantTensor(i);
            const dims = t ? tensorDims(t) : [];
            if (dims.length > 0 && dims.at(-1) === head.vocabSize && head.vocabSize > 1) {
              tail.bind(i, vocabSlice(lb, i, head.vocabSize, ids, 1));
            }
          }
        }
        tail.cloneNodes([n]);
        cur = n.output?.[0] ?? '';
      }
      return tailNodes.length ? tail.resolve(cur) : logits;
    };
    z = headTail(z, `${prefix}/head_tail`);

    if (options.positionLens) {
      // every position of the layer output through the model's own head (final norm once)
      let h = layer.layerOutput;
      if (hooks.finalNorm) {
        const { input: normInput, output: normOutput } = hooks.finalNorm;
        const first = g.nodes.length;
        const renamed = cloneNodes(g, finalNormNodes, {
          mapInput: (t) => (t === normInput ? h : t),
          renameOutput: (t) => g.uniqueTensorName(`${prefix}/position_lens/${t.replace(/^\//, '')}`),
          renameNode: (n) =>
            g.uniqueNodeName(`${prefix}/position_lens/${(n.name || n.opType || 'node').replace(/^\//, '')}`),
        });
        lb.shapes.run(g.nodes.slice(first));
        h = renamed.get(normOutput) ?? h;
      }
      const hShape = lb.shape(h);
      if (hShape?.length !== 3) {
        throw new UnsupportedModelError(
          `layer ${l}: the layer output ${layer.layerOutput} has shape ${formatShape(hShape)}, the position lens needs [batch, sequence, hidden]`,
        );
      }
      positionSym = hShape[1] ?? null;
      let zp = lb.op('MatMul', [lb.cast(h, headType), lb.op('Transpose', [selected], { perm: [1, 0] })]); // [1, S, T]
      if (head.alpha !== 1) zp = lb.op('Mul', [zp, lb.scalarLike(head.alpha, zp)]);
      if (head.gemmBias) zp = lb.op('Add', [zp, vocabSlice(lb, head.gemmBias, head.vocabSize, ids, head.beta)]);
      zp = headTail(zp, `${prefix}/position_lens/head_tail`);
      const st = lb.squeeze(lb.cast(zp, DataType.FLOAT), [0]); // [1, S, T] -> [S, T] (batch 1)
      positionParts.push(lb.unsqueeze(lb.op('Transpose', [st], { perm: [1, 0] }), [1])); // [T, 1, S]
    }

    const loss = lb.reduce('ReduceSum', z, undefined, false);
    const grads = buildGradient(lb, { output: loss, wrt: [rows] });
    const grad = grads.get(rows) as string;
    if (forwardRows) cloner.readForwardRows();

    const heads = shape[rank - 3];
    const layout = (t: string) => {
      // [.., T, K] -> [B*H, T, K] -> [T, H, K] (batch 1) -> [T, 1, H, K]
      const merged = lb.op(
        'Reshape',
        [
          t,
          lb.op(
            'Concat',
            [
              lb.int64s([typeof heads === 'number' && rank === 4 ? heads : -1]),
              lb.op('Slice', [lb.shapeOf(t), lb.int64s([-2]), lb.int64s([rank])]),
            ],
            { axis: 0 },
          ),
        ],
        {},
        { name: 'explain_graph_requires_batch_size_1' },
      );
      const perT = lb.op('Transpose', [merged], { perm: [1, 0, 2] });
      return lb.unsqueeze(lb.cast(perT, DataType.FLOAT), [1]);
    };
    attnParts.push(layout(rows));
    gradParts.push(layout(grad));
    const lens = lb.op(
      'Reshape',
      [lb.cast(z, DataType.FLOAT), rowsName],
      {},
      { name: 'explain_graph_requires_batch_size_1' },
    );
    lensParts.push(lb.unsqueeze(lens, [1]));
  }

  const concat = (parts: string[], name: string) => {
    const t = parts.length === 1 ? (parts[0] as string) : b.op('Concat', parts, { axis: 1 });
    g.addNode({ name: g.uniqueNodeName(`dexar/${name}`), opType: 'Identity', input: [t], output: [name] });
    b.shapes.run([g.nodes[g.nodes.length - 1] as NodeProto]);
  };
  concat(attnParts, EXPLAIN_OUTPUTS.attentionRows);
  concat(gradParts, EXPLAIN_OUTPUTS.gradientRows);
  concat(lensParts, EXPLAIN_OUTPUTS.logitLens);
  if (options.positionLens) concat(positionParts, POSITION_LENS_OUTPUT);
  const firstShape = b.shape(hooks.layers[options.layers[0] as number]?.attentionProbs ?? '') ?? [];
  const H = firstShape.length === 4 ? (firstShape[1] ?? null) : null;
  const K = firstShape.at(-1) ?? null;
  const used = options.layers.length;
  addGraphOutput(model, EXPLAIN_OUTPUTS.attentionRows, DataType.FLOAT, [TARGET_AXIS, used, H, K]);
  addGraphOutput(model, EXPLAIN_OUTPUTS.gradientRows, DataType.FLOAT, [TARGET_AXIS, used, H, K]);
  addGraphOutput(model, EXPLAIN_OUTPUTS.logitLens, DataType.FLOAT, [TARGET_AXIS, used]);
  if (options.positionLens) {
    addGraphOutput(model, POSITION_LENS_OUTPUT, DataType.FLOAT, [TARGET_AXIS, used, positionSym]);
  }
  if (forwardRows) {
    pruneUnread(g);
    g.sortTopologically();
  }
  model.proto.producerName = model.proto.producerName ? `${model.proto.producerName} + dexar` : 'dexar';
  return {
    model,
    inputs: { ...EXPLAIN_INPUTS },
    outputs: { ...EXPLAIN_OUTPUTS, ...(options.positionLens ? { positionLens: POSITION_LENS_OUTPUT } : {}) },
    layers: [...options.layers],
    hooks,
  };
}

/** The target entries of a vocabulary-indexed constant (bias), flattened to [T], times `scale`. */
function vocabSlice(b: GraphBuilder, t: string, vocab: number, ids: string, scale: number): string {
  const dims = b.shape(t) ?? [];
  if (dims.length === 0 || dims.at(-1) !== vocab) {
    throw new HookNotFoundError(
      `LM head constant ${t} ${formatShape(dims)} is not indexed by the vocabulary (${vocab})`,
    );
  }
  const flat = b.op('Reshape', [t, b.int64s([-1])]);
  const picked = b.op('Gather', [flat, ids], { axis: 0 });
  return scale === 1 ? picked : b.op('Mul', [picked, b.scalarLike(scale, picked)]);
}
