// Variants of the export zoo (tools/fixtures/generate.py --zoo --variants; docs/supported-exports.md).
//
// Fused-attention twins: a zoo decoder rewritten with ONNX Runtime's fused attention ops explains to 1e-4 of
// the eager model it was fused from (maps, token weights, raw rows), generates its tokens, and its explain
// graph expands only the attention of the layers it explains.
//
// fp16: the folder's `_fp16` graphs explain against a PyTorch reference computed in float32 on the weights
// the fp16 files store; the raw rows are held to a bound derived from half-precision arithmetic (below), and
// the maps' agreement with the fp32 model is reported.
import '@dexar/adapter-florence2';
import '@dexar/adapter-llava';
import '@dexar/adapter-paligemma';
import { readFileSync } from 'node:fs';
import type { Explanation } from '@dexar/core';
import type { Variant } from '@dexar/core/runtime';
import {
  buildExplainGraph,
  DataType,
  makeTensor,
  type NodeProto,
  type OnnxModel,
  readModel,
  ShapeInference,
  type TensorProto,
  tensorDims,
  UnsupportedModelError,
} from '@dexar/onnx-graph';
import { nodeBackend, openModelFolder } from '@dexar/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  caseImage,
  expectMatchesReference,
  maxAbs,
  type ReferenceCase,
  type ReferenceResult,
  referenceCases,
  referenceSettings,
  repoRoot,
} from '../../adapter-kit/test/reference-cases.js';
import { Explainer } from '../src/index.js';

const zoo = `${repoRoot}fixtures/zoo`;
interface ManifestModel {
  family: string;
  reference_of?: string;
  variants?: Record<string, { greedy_ids: number[] }>;
}
const manifest = JSON.parse(readFileSync(`${zoo}/MANIFEST.json`, 'utf8')) as { models: Record<string, ManifestModel> };
const entries = Object.entries(manifest.models);
const fusedTwins = entries.flatMap(([name, m]) => (m.reference_of ? [[name, m.reference_of] as const] : []));
const fp16Models = entries.flatMap(([name, m]) => (m.variants?.fp16 ? [name] : []));
const variantsOf = (names: readonly Variant[]) =>
  entries.flatMap(([name, m]) => names.filter((v) => m.variants?.[v]).map((v) => [name, v] as const));

const open = async (model: string, variant: Variant = 'fp32') =>
  Explainer.open({
    backend: nodeBackend({ threads: 1 }),
    folder: await openModelFolder(`${zoo}/models/${model}`, variant),
  });

/** A variant's reference case, and the fp32 model's, as the zoo generator wrote them. */
const variantReferences = (model: string, reference: string) => ({
  family: manifest.models[model]?.family ?? '',
  ref: referenceCases(reference, `${zoo}/references/${model}`)[0] as ReferenceCase & { greedy_ids: number[] },
  full: referenceCases(model, `${zoo}/references`)[0] as ReferenceCase,
});

/** An Explainer on the model's variant for the enclosing block: opened before its tests, released after them. */
function explainerFor(model: string, variant: Variant): { current: Explainer } {
  const held = {} as { current: Explainer };
  beforeAll(async () => {
    held.current = await open(model, variant);
  });
  afterAll(() => held.current?.release());
  return held;
}

/** An explanation in the reference's field names, so `expectMatchesReference` holds one explanation to another. */
const asReference = (e: Explanation) => ({
  per_token_heatmaps: e.perTokenHeatmaps,
  per_token_heatmaps_unfiltered: e.perTokenHeatmapsUnfiltered,
  token_weights: e.tokenWeights,
  sentence_heatmap: e.sentenceHeatmap,
  sentence_heatmap_unfiltered: e.sentenceHeatmapUnfiltered,
});

const rawOf = (e: Explanation) => {
  if (!e.raw) throw new Error('returnRaw was set but the explanation has no raw rows');
  return e.raw;
};

const FUSED_OPS = new Set(['MultiHeadAttention', 'GroupQueryAttention', 'Attention']);
const fusedNodes = (m: OnnxModel) => m.graph.nodes.filter((n) => FUSED_OPS.has(n.opType ?? '')).length;

describe.each(fusedTwins)('fused twin %s of %s', (fused, twin) => {
  const c = referenceCases(twin, `${zoo}/references`)[0] as ReferenceCase;
  let fusedExplainer: Explainer;
  let twinExplainer: Explainer;
  beforeAll(async () => {
    [fusedExplainer, twinExplainer] = await Promise.all([open(fused), open(twin)]);
  });
  afterAll(() => Promise.all([fusedExplainer?.release(), twinExplainer?.release()]));

  it.each(referenceSettings)('%s, layerIndex %i: within 1e-4 of the eager twin', async (compat, layerIndex) => {
    const image = await caseImage(c);
    const request = { prompt: c.prompt, targetIds: c.target_ids, compat, layerIndex, returnRaw: true };
    const [got, want] = await Promise.all([
      fusedExplainer.explain(image, request),
      twinExplainer.explain(image, request),
    ]);
    expectMatchesReference(got, asReference(want));
    for (const rows of ['gradientRows', 'attentionRows'] as const) {
      expect(maxAbs(rawOf(got)[rows].flat(3), rawOf(want)[rows].flat(3)), rows).toBeLessThan(1e-4);
    }
  });

  it("generates the twin's tokens", async () => {
    const image = await caseImage(c);
    const request = { prompt: c.prompt, maxNewTokens: 5 };
    const [got, want] = await Promise.all([
      fusedExplainer.generate(image, request),
      twinExplainer.generate(image, request),
    ]);
    expect(got.tokenIds).toEqual(want.tokenIds);
  });

  it('its explain graph expands the fused attention of the explained layers only', () => {
    const decoder = readModel(readFileSync(`${zoo}/models/${fused}/onnx/decoder_model_merged.onnx`));
    const attention = manifest.models[fused]?.family === 'florence2' ? 'cross' : 'self';
    const build = (layers: number[]) => buildExplainGraph(decoder, { layers, compat: 'official', attention });
    const L = build([0]).hooks.layers.length;
    expect(fusedNodes(build([L - 1]).model)).toBe(fusedNodes(decoder) - 1);
    expect(fusedNodes(build(Array.from({ length: L }, (_, l) => l)).model)).toBe(fusedNodes(decoder) - L);
  });
});

/**
 * The tolerance of the fp16 rows, derived from half-precision arithmetic. ONNX Runtime's float16 kernels
 * compute in float32 and round each result once (measured on its CPU MatMul and reductions:
 * docs/supported-exports.md), so every node with a float16 output is one rounding, relative error at most
 * u = 2^-11. An output depends on the roundings along its dependency chains; with n the longest chain (the
 * input conversion, the vision encoder, the decoder's forward and the explain graph's backward, counted on
 * the graphs) and the rounding errors independent and of mean zero, the compounded relative error is at
 * most γ̃_n(λ) = exp(λ·√n·u + n·u²/(1 − u)) − 1 with probability at least 1 − 2·exp(−λ²(1 − u)²/2)
 * (Higham & Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5),
 * 2019, Theorem 2.4). λ = 5 (probability 1 − 7.5e-6); the model assumes no operation amplifies relative
 * errors (condition numbers at most 1). Tolerance: γ̃_n(5) · max|reference|.
 */
const U = 2 ** -11;
const LAMBDA = 5;
const gammaTilde = (n: number, u = U) => Math.exp(LAMBDA * Math.sqrt(n) * u + (n * u * u) / (1 - u)) - 1;

/** Which node outputs are roundings: a float16 output (fp16), a dynamic uint8 quantization (q8). */
type Rounds = (node: NodeProto, output: number, shapes: ShapeInference) => boolean;
const HALF_ROUNDS: Rounds = (n, k, shapes) => shapes.type(n.output?.[k] ?? '') === DataType.FLOAT16;
const DYNAMIC_QUANTIZATION_ROUNDS: Rounds = (n, k) =>
  (n.opType === 'DynamicQuantizeLinear' && k === 0) || n.opType === 'DynamicQuantizeMatMul';

/** Longest chain of roundings ending at each tensor, from the given depths of the graph inputs. */
function roundingDepths(model: OnnxModel, inputs: Record<string, number>, rounds: Rounds): Map<string, number> {
  const shapes = new ShapeInference(model.graph, model.opsetVersion() ?? 17);
  const depth = new Map(Object.entries(inputs));
  for (const n of model.graph.topologicalOrder()) {
    const before = Math.max(0, ...(n.input ?? []).map((i) => depth.get(i) ?? 0));
    (n.output ?? []).forEach((o, k) => {
      if (o) depth.set(o, before + (rounds(n, k, shapes) ? 1 : 0));
    });
  }
  return depth;
}

const graph = (model: string, file: string, variant: Variant) =>
  readModel(readFileSync(`${zoo}/models/${model}/onnx/${file}_${variant}.onnx`));

/**
 * n for the explain graph's gradient and attention rows of a variant's decoder: the longest chain of
 * roundings through the vision encoder (and Florence-2's encoder), the decoder's forward and the explain
 * graph's backward (fp16: the pixels' conversion counts 1).
 */
function roundingChains(
  model: string,
  family: string,
  variant: 'fp16' | 'quantized',
): { gradientRows: number; attentionRows: number } {
  const rounds = variant === 'fp16' ? HALF_ROUNDS : DYNAMIC_QUANTIZATION_ROUNDS;
  const depths = (file: string, inputs: Record<string, number>, output: string) =>
    roundingDepths(graph(model, file, variant), inputs, rounds).get(output) ?? 0;
  const vision = depths('vision_encoder', { pixel_values: variant === 'fp16' ? 1 : 0 }, 'image_features');
  const embeds = depths('embed_tokens', {}, 'inputs_embeds');
  // a float16 output read as float32 and fed again is not rounded again (binary16 values are float32 values)
  const decoderInputs: Record<string, number> =
    family === 'florence2'
      ? {
          encoder_hidden_states: depths(
            'encoder_model',
            { inputs_embeds: Math.max(vision, embeds) },
            'last_hidden_state',
          ),
          inputs_embeds: embeds,
        }
      : { inputs_embeds: Math.max(vision, embeds) };
  const decoder = graph(model, 'decoder_model_merged', variant);
  const attention = family === 'florence2' ? 'cross' : 'self';
  const L = buildExplainGraph(decoder, { layers: [0], compat: 'official', attention }).hooks.layers.length;
  const ex = buildExplainGraph(decoder, {
    layers: Array.from({ length: L }, (_, l) => l),
    compat: 'official',
    attention,
  });
  const explained = roundingDepths(ex.model, decoderInputs, rounds);
  return {
    gradientRows: explained.get(ex.outputs.gradientRows) ?? 0,
    attentionRows: explained.get(ex.outputs.attentionRows) ?? 0,
  };
}

/** Spearman rank correlation of two maps (average ranks for ties). */
function rankCorrelation(a: number[], b: number[]): number {
  const ranks = (v: number[]) => {
    const order = v.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(v.length);
    for (let i = 0; i < order.length; ) {
      let j = i;
      while (j + 1 < order.length && order[j + 1]?.[0] === order[i]?.[0]) j++;
      for (let k = i; k <= j; k++) r[order[k]?.[1] as number] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const [ra, rb] = [ranks(a), ranks(b)];
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const [ma, mb] = [mean(ra), mean(rb)];
  let [sab, saa, sbb] = [0, 0, 0];
  ra.forEach((x, i) => {
    const y = rb[i] as number;
    sab += (x - ma) * (y - mb);
    saa += (x - ma) ** 2;
    sbb += (y - mb) ** 2;
  });
  return saa === 0 || sbb === 0 ? (saa === sbb ? 1 : 0) : sab / Math.sqrt(saa * sbb);
}

const argmax = (v: number[]) => v.reduce((best, x, i) => (x > (v[best] as number) ? i : best), 0);

/**
 * Logs the agreement of an explanation's token maps with a reference's (the smallest Spearman rank
 * correlation; pointing: the hottest patch is the reference's) and returns the share that point alike.
 */
function reportAgreement(label: string, got: Explanation, ref: ReferenceResult | undefined, against = 'fp32 model') {
  const maps = ref?.per_token_heatmaps ?? [];
  const correlations = maps.map((m, n) => rankCorrelation(got.perTokenHeatmaps[n]?.flat() ?? [], m.flat()));
  const pointing = maps.filter((m, n) => argmax(got.perTokenHeatmaps[n]?.flat() ?? []) === argmax(m.flat())).length;
  console.log(
    `${label} vs ${against}: per-token map rank correlation min ${Math.min(...correlations).toFixed(4)}, pointing agreement ${pointing}/${maps.length}`,
  );
  return pointing / maps.length;
}

/**
 * The gradient and attention rows (official, layer index 0) of a variant within the tolerance derived from its
 * arithmetic, γ̃_n(5) with its unit (fp16: u = 2^-11 per rounding; q8: u8 = 1/255 per dynamic quantization), times
 * max |reference|.
 */
async function expectRowsWithinDerivedBound(
  explainer: Explainer,
  model: string,
  family: string,
  variant: 'fp16' | 'quantized',
  ref: ReferenceCase,
) {
  const request = {
    prompt: ref.prompt,
    targetIds: ref.target_ids,
    compat: 'official',
    layerIndex: 0,
    returnRaw: true,
  } as const;
  const raw = rawOf(await explainer.explain(await caseImage(ref), request));
  const chains = roundingChains(model, family, variant);
  const [unit, steps] = variant === 'fp16' ? [U, 'roundings'] : [U8, 'quantizations'];
  for (const [rows, reference, n] of [
    ['gradientRows', ref.raw.grad_rows, chains.gradientRows],
    ['attentionRows', ref.raw.attn_rows, chains.attentionRows],
  ] as const) {
    const want = reference.flat(3);
    const tolerance = gammaTilde(n, unit) * Math.max(...want.map(Math.abs));
    const error = maxAbs(raw[rows].flat(3), want);
    console.log(
      `${model} ${variant} ${rows}: max abs error ${error.toExponential(2)}, bound ${tolerance.toExponential(2)} (n = ${n} ${steps}, γ̃_n(5) = ${gammaTilde(n, unit).toExponential(2)})`,
    );
    expect(error, rows).toBeLessThan(tolerance);
  }
}

describe.each(fp16Models)('%s, fp16 variant', (model) => {
  const { family, ref: half, full } = variantReferences(model, 'fp16');
  const explainer = explainerFor(model, 'fp16');

  it('official, layerIndex 0: gradient and attention rows within the derived fp16 bound of the fp16-weights reference', () =>
    expectRowsWithinDerivedBound(explainer.current, model, family, 'fp16', half));

  it.each(referenceSettings)(
    '%s, layerIndex %i: every token map points where the fp16-weights reference points (agreement with fp32 reported)',
    async (compat, layerIndex) => {
      const image = await caseImage(half);
      const got = await explainer.current.explain(image, {
        prompt: half.prompt,
        targetIds: half.target_ids,
        compat,
        layerIndex,
      });
      const key = `layer_index_${layerIndex}`;
      const label = `${model} fp16 ${compat} ${layerIndex}`;
      reportAgreement(label, got, full.results[compat][key]);
      expect(reportAgreement(label, got, half.results[compat][key], 'fp16-weights reference')).toBe(1);
    },
  );

  it('generates the greedy tokens of the fp16 weights', async () => {
    const generation = await explainer.current.generate(await caseImage(half), {
      prompt: half.prompt,
      maxNewTokens: 5,
    });
    expect(generation.tokenIds).toEqual(half.greedy_ids);
  });
});

/**
 * 4-bit weights (q4: MatMulNBits; bnb4: MatMulBnb4 NF4): the activations stay float32 and ONNX Runtime's CPU
 * kernels dequantise the weights and multiply in float32 (accuracy_level 0), the arithmetic of the PyTorch
 * reference on the dequantised weights: the explanation equals it within 1e-4.
 */
describe.each(variantsOf(['q4', 'bnb4']))('%s, %s variant', (model, variant) => {
  const { ref, full } = variantReferences(model, variant);
  const explainer = explainerFor(model, variant);

  it.each(referenceSettings)(
    '%s, layerIndex %i: within 1e-4 of the dequantised-weights reference (agreement with fp32 reported)',
    async (compat, layerIndex) => {
      const image = await caseImage(ref);
      const got = await explainer.current.explain(image, {
        prompt: ref.prompt,
        targetIds: ref.target_ids,
        compat,
        layerIndex,
        returnRaw: true,
      });
      const key = `layer_index_${layerIndex}`;
      const want = ref.results[compat][key] as ReferenceResult;
      expectMatchesReference(got, want);
      const errors = [`maps ${maxAbs(got.perTokenHeatmaps.flat(2), want.per_token_heatmaps.flat(2)).toExponential(2)}`];
      if (compat === 'official' && layerIndex === 0) {
        for (const [rows, rowsWanted] of [
          ['gradientRows', ref.raw.grad_rows],
          ['attentionRows', ref.raw.attn_rows],
        ] as const) {
          const error = maxAbs(rawOf(got)[rows].flat(3), rowsWanted.flat(3));
          errors.push(`${rows} ${error.toExponential(2)}`);
          expect(error, rows).toBeLessThan(1e-4);
        }
      }
      console.log(
        `${model} ${variant} ${compat} ${layerIndex} vs the dequantised-weights reference: ${errors.join(', ')}`,
      );
      reportAgreement(`${model} ${variant} ${compat} ${layerIndex}`, got, full.results[compat][key]);
    },
  );

  it('generates the greedy tokens of the dequantised weights', async () => {
    const generation = await explainer.current.generate(await caseImage(ref), { prompt: ref.prompt, maxNewTokens: 5 });
    expect(generation.tokenIds).toEqual(ref.greedy_ids);
  });
});

/**
 * Quantized LM heads (llava-hf-eager14's q4, bnb4 and q8 files quantize theirs, as transformers.js' exports do;
 * the other families keep it float): the logit lens reads the target rows of the packed head weight, dequantised,
 * never the whole vocabulary (the tests above hold the explanations to the dequantised-weights reference).
 */
describe('a quantized LM head', () => {
  const decoder = (variant: Variant) => graph('llava-hf-eager14', 'decoder_model_merged', variant);
  const explainGraph = (model: OnnxModel) =>
    buildExplainGraph(model, { layers: [0], compat: 'official', attention: 'self' });

  it.each([
    ['q4', 'MatMulNBits', ['Reshape', 'Gather']],
    ['bnb4', 'MatMulBnb4', ['Reshape', 'Gather']],
    ['quantized', 'DynamicQuantizeMatMul', ['Gather']],
  ] as const)(
    '%s (%s): the explain graph reads the packed head weight through a Gather of the targets only',
    (variant, op, path) => {
      const ex = explainGraph(decoder(variant));
      const head = ex.hooks.lmHead;
      expect(head.quantized).toBe(op);
      const g = ex.model.graph;
      const readers = g.consumers(head.weight).filter((n) => n.name !== head.node);
      expect(readers.length).toBeGreaterThan(0);
      for (const reader of readers) {
        const ops = [reader.opType];
        if (reader.opType === 'Reshape') ops.push(...g.consumers(reader.output?.[0] ?? '').map((n) => n.opType));
        expect(ops).toEqual(path);
      }
    },
  );

  it('a head in a quantized form the lens does not read (QDQ: a DequantizeLinear weight) is refused in one line naming it and the fix', () => {
    const model = readModel(readFileSync(`${zoo}/models/llava-hf-eager14/onnx/decoder_model_merged.onnx`));
    const g = model.graph;
    const head = g.producer('logits') as NodeProto;
    const [D, V] = tensorDims(g.constantTensor(head.input?.[1] ?? '') as TensorProto);
    g.addInitializer(makeTensor('head_int8', DataType.INT8, [D, V], new Array(D * V).fill(1)));
    g.addInitializer(makeTensor('head_scale', DataType.FLOAT, [], [0.01]));
    g.addNode({ name: 'head_dq', opType: 'DequantizeLinear', input: ['head_int8', 'head_scale'], output: ['head_w'] });
    head.input = [head.input?.[0] ?? '', 'head_w'];
    g.invalidate();
    expect(() => explainGraph(model)).toThrow(
      new UnsupportedModelError(
        `the LM head weight head_w of node ${head.name} is a DequantizeLinear of stored integers (QDQ), which the logit lens does not read; export the head as MatMulNBits (q4), MatMulBnb4 (bnb4) or DynamicQuantizeLinear + MatMulInteger (q8), or in float`,
      ),
    );
  });
});

/**
 * The tolerance of q8 (`_quantized`) rows, derived from the arithmetic. Each DynamicQuantizeLinear rounds
 * its input x to the uint8 grid of step s = (max(0, max x) − min(0, min x)) / 255 ≤ 2·max|x| / 255: an error
 * of at most s / 2 ≤ max|x| / 255 per element, relative to the tensor's largest magnitude u8 = 1/255 (the
 * integer products and sums are exact, the float32 scaling adds float32 rounding only). The explain graph's
 * backward differentiates the float function straight through and quantizes nothing. With the same model
 * as fp16 above (independent mean-zero errors, no operation amplifying relative error, here taken normwise),
 * n the longest chain of dynamic quantizations (counted on the graphs), the tolerance is γ̃_n(5) with u8:
 * γ̃_n(5; u8) · max|reference|.
 */
const U8 = 1 / 255;

describe.each(variantsOf(['quantized']))('%s, %s (q8) variant', (model) => {
  const { family, ref, full } = variantReferences(model, 'quantized');
  const explainer = explainerFor(model, 'q8');

  it('official, layerIndex 0: gradient and attention rows within the derived q8 bound of the dequantised-weights reference', () =>
    expectRowsWithinDerivedBound(explainer.current, model, family, 'quantized', ref));

  it.each(referenceSettings)(
    '%s, layerIndex %i: agreement of the maps with the dequantised-weights reference and the fp32 model (reported)',
    async (compat, layerIndex) => {
      const got = await explainer.current.explain(await caseImage(ref), {
        prompt: ref.prompt,
        targetIds: ref.target_ids,
        compat,
        layerIndex,
      });
      const key = `layer_index_${layerIndex}`;
      const label = `${model} q8 ${compat} ${layerIndex}`;
      reportAgreement(label, got, full.results[compat][key]);
      const share = reportAgreement(label, got, ref.results[compat][key], 'dequantised-weights reference');
      expect(share).toBeGreaterThan(0);
    },
  );
});
