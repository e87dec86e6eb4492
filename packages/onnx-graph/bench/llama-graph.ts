/**
 * Builds a LLaVA/Llama decoder graph with the structure torch.onnx.export gives HuggingFace's eager
 * Llama (shape arithmetic from Shape/Gather/Concat, RMSNorm as primitive ops, rotary embeddings,
 * a KV cache, Softmax -> Cast -> MatMul attention), at any size. Weights are either external data
 * references (no bytes anywhere: the benchmark) or small random initializers (tests).
 */
import { GraphBuilder } from '../src/graph/builder.js';
import { ShapeInference } from '../src/graph/shapes.js';
import { OnnxModel } from '../src/model.js';
import { makeTensor } from '../src/proto/tensor.js';
import { DataType, type TensorProto, type ValueInfoProto } from '../src/proto/types.js';

export interface LlamaConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  /** External-data file name for the weights; omitted: random embedded weights. */
  externalData?: string;
  seed?: number;
  opset?: number;
  /** Activation and weight precision (default float32). float16 keeps HF's float32 islands: norms and softmax. */
  dtype?: 'float32' | 'float16';
}

/** LLaVA-1.5-7B's language model (Vicuna-7B / Llama-2-7B dimensions, LLaVA's 32064 vocabulary). */
export const LLAVA_7B: LlamaConfig = {
  layers: 32,
  hidden: 4096,
  heads: 32,
  kvHeads: 32,
  headDim: 128,
  intermediate: 11008,
  vocab: 32064,
  externalData: 'decoder_model_merged.onnx_data',
};

function dim(name: string | number) {
  return typeof name === 'number' ? { dimValue: name } : { dimParam: name };
}

function info(name: string, elemType: number, dims: (string | number)[]): ValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map(dim) } } } };
}

export function buildLlamaDecoder(cfg: LlamaConfig): OnnxModel {
  const opset = cfg.opset ?? 17;
  const { hidden: D, heads: H, kvHeads: KVH, headDim: HD, intermediate: FF, vocab: V } = cfg;
  const AT = cfg.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  const inputs: ValueInfoProto[] = [
    info('inputs_embeds', AT, ['batch_size', 'sequence_length', D]),
    info('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']),
    info('position_ids', DataType.INT64, ['batch_size', 'sequence_length']),
  ];
  const outputs: ValueInfoProto[] = [info('logits', DataType.FLOAT, ['batch_size', 'sequence_length', V])];
  for (let i = 0; i < cfg.layers; i++) {
    for (const kv of ['key', 'value']) {
      inputs.push(info(`past_key_values.${i}.${kv}`, AT, ['batch_size', KVH, 'past_sequence_length', HD]));
      outputs.push(info(`present.${i}.${kv}`, AT, ['batch_size', KVH, 'total_sequence_length', HD]));
    }
  }
  const model = new OnnxModel({
    irVersion: 8,
    producerName: 'dexar-bench',
    opsetImport: [{ domain: '', version: opset }],
    graph: { name: 'llama_decoder', node: [], input: inputs, output: [], initializer: [] },
  });
  const shapes = new ShapeInference(model.graph, opset);
  let offset = 0;
  let state = (cfg.seed ?? 7) >>> 0;
  const rand = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296 - 0.5;
  };
  const weight = (name: string, dims: number[], scale: number, base = 0): string => {
    const count = dims.reduce((a, b) => a * b, 1);
    let t: TensorProto;
    const bytesPer = AT === DataType.FLOAT16 ? 2 : 4;
    if (cfg.externalData) {
      t = {
        name,
        dataType: AT,
        dims,
        dataLocation: 1,
        externalData: [
          { key: 'location', value: cfg.externalData },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(count * bytesPer) },
        ],
      };
      offset += count * bytesPer;
    } else {
      t = makeTensor(
        name,
        AT,
        dims,
        Array.from({ length: count }, () => base + rand() * scale),
      );
    }
    model.graph.addInitializer(t);
    shapes.set(name, { type: AT, shape: dims });
    return name;
  };
  const scope = (prefix: string) => new GraphBuilder(model, { prefix, shapes });
  const FMIN = AT === DataType.FLOAT16 ? -65504 : -3.4028234663852886e38;

  // model-level: causal + padding mask, rotary tables
  const m = scope('/model');
  const S = m.op('Gather', [m.shapeOf('inputs_embeds'), m.int64(1)], { axis: 0 });
  const P = m.op('Gather', [m.shapeOf('past_key_values.0.key'), m.int64(2)], { axis: 0 });
  const total = m.op('Gather', [m.shapeOf('attention_mask'), m.int64(1)], { axis: 0 });
  const rows = m.unsqueeze(m.op('Add', [m.op('Range', [m.int64(0), S, m.int64(1)]), P]), [1]);
  const cols = m.unsqueeze(m.op('Range', [m.int64(0), total, m.int64(1)]), [0]);
  const causal = m.unsqueeze(m.op('LessOrEqual', [cols, rows]), [0, 1]);
  const padding = m.cast(m.unsqueeze('attention_mask', [1, 2]), DataType.BOOL);
  const allowed = m.cast(m.op('And', [causal, padding]), AT);
  const mask = m.op('Mul', [m.op('Sub', [m.scalar(1, AT), allowed]), m.scalar(FMIN, AT)]);
  const r = scope('/model/rotary_emb');
  const invFreq = r.constant(
    DataType.FLOAT,
    [HD / 2],
    Array.from({ length: HD / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / HD)),
  );
  const freqs = r.op('Mul', [r.cast(r.unsqueeze('position_ids', [2]), DataType.FLOAT), invFreq]);
  const emb = r.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = r.unsqueeze(r.cast(r.op('Cos', [emb]), AT), [1]);
  const sin = r.unsqueeze(r.cast(r.op('Sin', [emb]), AT), [1]);

  const rmsNorm = (b: GraphBuilder, x: string, w: string): string => {
    const xc = b.cast(x, DataType.FLOAT);
    const variance = b.reduce('ReduceMean', b.op('Pow', [xc, b.scalar(2, DataType.FLOAT)]), [-1], true);
    const inv = b.op('Div', [
      b.scalar(1, DataType.FLOAT),
      b.op('Sqrt', [b.op('Add', [variance, b.scalar(1e-5, DataType.FLOAT)])]),
    ]);
    return b.op('Mul', [w, b.op('Cast', [b.op('Mul', [xc, inv])], { to: AT })]);
  };
  const rotateHalf = (b: GraphBuilder, x: string): string => {
    const half = b.op('Div', [b.op('Gather', [b.shapeOf(x), b.int64(3)], { axis: 0 }), b.int64(2)]);
    const x1 = b.op('Slice', [x, b.int64s([0]), b.unsqueeze(half, [0]), b.int64s([3]), b.int64s([1])]);
    const x2 = b.op('Slice', [x, b.unsqueeze(half, [0]), b.int64s([2 ** 62]), b.int64s([3]), b.int64s([1])]);
    return b.op('Concat', [b.op('Neg', [x2]), x1], { axis: -1 });
  };

  let x = 'inputs_embeds';
  for (let i = 0; i < cfg.layers; i++) {
    const L = `/model/layers.${i}`;
    const ln1 = rmsNorm(
      scope(`${L}/input_layernorm`),
      x,
      weight(`model.layers.${i}.input_layernorm.weight`, [D], 0.1, 1),
    );
    const a = scope(`${L}/self_attn`);
    const bsz = a.op('Gather', [a.shapeOf(ln1), a.int64(0)], { axis: 0 });
    const seq = a.op('Gather', [a.shapeOf(ln1), a.int64(1)], { axis: 0 });
    const headsShape = (n: number) =>
      a.op('Concat', [a.unsqueeze(bsz, [0]), a.unsqueeze(seq, [0]), a.int64s([n]), a.int64s([HD])], { axis: 0 });
    const proj = (name: string, n: number) =>
      a.op(
        'Transpose',
        [
          a.op('Reshape', [
            a.op('MatMul', [ln1, weight(`model.layers.${i}.self_attn.${name}.weight`, [D, n * HD], 2 / Math.sqrt(D))]),
            headsShape(n),
          ]),
        ],
        { perm: [0, 2, 1, 3] },
      );
    const q0 = proj('q_proj', H);
    const k0 = proj('k_proj', KVH);
    const v0 = proj('v_proj', KVH);
    const q = a.op('Add', [a.op('Mul', [q0, cos]), a.op('Mul', [rotateHalf(a, q0), sin])]);
    const k = a.op('Add', [a.op('Mul', [k0, cos]), a.op('Mul', [rotateHalf(a, k0), sin])]);
    const presentK = `present.${i}.key`;
    const presentV = `present.${i}.value`;
    model.graph.addNode({
      name: `${L}/self_attn/Concat_k`,
      opType: 'Concat',
      input: [`past_key_values.${i}.key`, k],
      output: [presentK],
      attribute: [{ name: 'axis', type: 2, i: 2 }],
    });
    model.graph.addNode({
      name: `${L}/self_attn/Concat_v`,
      opType: 'Concat',
      input: [`past_key_values.${i}.value`, v0],
      output: [presentV],
      attribute: [{ name: 'axis', type: 2, i: 2 }],
    });
    shapes.run(model.graph.nodes.slice(-2));
    let keys = presentK;
    let values = presentV;
    if (KVH !== H) {
      const rep = (t: string) => {
        const kl = a.op('Gather', [a.shapeOf(t), a.int64(2)], { axis: 0 });
        const target = a.op(
          'Concat',
          [a.unsqueeze(bsz, [0]), a.int64s([KVH, H / KVH]), a.unsqueeze(kl, [0]), a.int64s([HD])],
          { axis: 0 },
        );
        const expanded = a.op('Expand', [a.unsqueeze(t, [2]), target]);
        return a.op('Reshape', [
          expanded,
          a.op('Concat', [a.unsqueeze(bsz, [0]), a.int64s([H]), a.unsqueeze(kl, [0]), a.int64s([HD])], { axis: 0 }),
        ]);
      };
      keys = rep(keys);
      values = rep(values);
    }
    const scores = a.op('Add', [
      a.op('Div', [
        a.op('MatMul', [q, a.op('Transpose', [keys], { perm: [0, 1, 3, 2] })]),
        a.scalar(Math.sqrt(HD), AT),
      ]),
      mask,
    ]);
    const probs = a.op('Softmax', [a.op('Cast', [scores], { to: DataType.FLOAT })], { axis: -1 });
    const ctx = a.op('MatMul', [a.op('Cast', [probs], { to: AT }), values]);
    const merged = a.op('Reshape', [
      a.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }),
      a.op('Concat', [a.unsqueeze(bsz, [0]), a.unsqueeze(seq, [0]), a.int64s([D])], { axis: 0 }),
    ]);
    const attnOut = a.op('MatMul', [
      merged,
      weight(`model.layers.${i}.self_attn.o_proj.weight`, [H * HD, D], 2 / Math.sqrt(D)),
    ]);
    const lb = scope(L);
    const h1 = lb.op('Add', [x, attnOut]);
    const ln2 = rmsNorm(
      scope(`${L}/post_attention_layernorm`),
      h1,
      weight(`model.layers.${i}.post_attention_layernorm.weight`, [D], 0.1, 1),
    );
    const mlp = scope(`${L}/mlp`);
    const gate = mlp.op('MatMul', [ln2, weight(`model.layers.${i}.mlp.gate_proj.weight`, [D, FF], 2 / Math.sqrt(D))]);
    const up = mlp.op('MatMul', [ln2, weight(`model.layers.${i}.mlp.up_proj.weight`, [D, FF], 2 / Math.sqrt(D))]);
    const act = mlp.op('Mul', [mlp.op('Mul', [gate, mlp.op('Sigmoid', [gate])]), up]);
    const down = mlp.op('MatMul', [act, weight(`model.layers.${i}.mlp.down_proj.weight`, [FF, D], 2 / Math.sqrt(FF))]);
    x = lb.op('Add', [h1, down]);
  }
  const normed = rmsNorm(scope('/model/norm'), x, weight('model.norm.weight', [D], 0.1, 1));
  const head = scope('/lm_head');
  const logits = head.op('MatMul', [normed, weight('lm_head.weight', [D, V], 8 / Math.sqrt(D))]);
  model.graph.addNode({
    name: '/lm_head/Cast',
    opType: 'Cast',
    input: [logits],
    output: ['logits'],
    attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }],
  });
  model.graph.proto.output = outputs;
  model.graph.invalidate();
  return model;
}
