import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildLlamaDecoder } from '../bench/llama-graph.js';
import { buildExplainGraph, EXPLAIN_OUTPUTS } from '../src/explain/explain.js';
import { findDecoderHooks } from '../src/hooks/hooks.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import { DataType } from '../src/proto/types.js';
import { fixtureFile } from './helpers/fixtures.js';
import { makeOrtTensor, rng, runModel, tensorValues } from './helpers/onnx.js';

function load(name: string): OnnxModel {
  return readModel(readFileSync(fixtureFile(name, 'decoder_model_merged.onnx')));
}

/** Renames every node to '' and every internal tensor to t<k>; returns new -> old names. */
function anonymize(model: OnnxModel): Map<string, string> {
  const g = model.graph;
  const keep = new Set([...g.inputs.map((v) => v.name), ...g.outputs.map((v) => v.name)]);
  const rename = new Map<string, string>();
  let k = 0;
  const name = (t: string) => {
    if (!t || keep.has(t)) return t;
    let n = rename.get(t);
    if (!n) {
      n = `t${k++}`;
      rename.set(t, n);
    }
    return n;
  };
  for (const t of g.proto.initializer ?? []) t.name = name(t.name ?? '');
  for (const n of g.nodes) {
    n.name = '';
    n.input = (n.input ?? []).map(name);
    n.output = (n.output ?? []).map(name);
  }
  g.invalidate();
  return new Map([...rename].map(([a, b]) => [b, a]));
}

describe('decoder hooks from graph structure', () => {
  it('LLaVA (Llama): layers, final RMSNorm, LM head', () => {
    const h = findDecoderHooks(load('llava-tiny'), { attention: 'self' });
    expect(h.layers.length).toBe(4);
    h.layers.forEach((l, i) => {
      expect(l.attention).toBe('self');
      expect(l.attentionProbs).toBe(`/language_model/model/layers.${i}/self_attn/Softmax_output_0`);
      expect(l.layerOutput).toBe(`/language_model/model/layers.${i}/Add_1_output_0`);
      expect(l.values).toBe(`present.${i}.value`);
      expect(l.scope).toBe(`/language_model/model/layers.${i}`);
    });
    expect(h.finalNorm?.input).toBe('/language_model/model/layers.3/Add_1_output_0');
    expect(h.finalNorm?.output).toBe('/language_model/model/norm/Mul_1_output_0');
    expect(h.finalNorm?.nodes.every((n) => n.includes('/norm/'))).toBe(true);
    expect(h.lmHead).toMatchObject({
      layout: 'DxV',
      vocabSize: 576,
      hiddenSize: 64,
      softCap: false,
      tail: [],
      logits: 'logits',
    });
  });

  it('BakLLaVA (Mistral, grouped-query attention): values after the KV repeat', () => {
    const h = findDecoderHooks(load('bakllava-tiny'), { attention: 'self' });
    expect(h.layers.length).toBe(4);
    expect(h.layers[0]?.values).toMatch(/layers\.0\/self_attn\/Reshape/);
  });

  it('PaliGemma (Gemma): soft-capped head', () => {
    const h = findDecoderHooks(load('paligemma-tiny'), { attention: 'self' });
    expect(h.layers.length).toBe(4);
    expect(h.finalNorm).not.toBeNull();
    expect(h.lmHead.softCap).toBe(true);
    expect(h.lmHead.tail.length).toBe(3);
  });

  it('Florence-2 (BART-like): cross-attention, post-norm layer outputs, no final norm, logits bias', () => {
    const m = load('florence2-tiny');
    const cross = findDecoderHooks(m, { attention: 'cross' });
    const self = findDecoderHooks(m, { attention: 'self' });
    expect(cross.layers.length).toBe(4);
    cross.layers.forEach((l, i) => {
      expect(l.attention).toBe('cross');
      expect(l.attentionProbs).toContain(`layers.${i}/encoder_attn/Softmax`);
      expect(l.values).toBe(`present.${i}.encoder.value`);
      expect(l.layerOutput).toContain(`layers.${i}/final_layer_norm`);
      expect(self.layers[i]?.attentionProbs).toContain(`layers.${i}/self_attn/Softmax`);
      expect(self.layers[i]?.layerOutput).toBe(l.layerOutput);
    });
    expect(cross.finalNorm).toBeNull();
    expect(cross.lmHead.bias).toBe('language_model.final_logits_bias');
  });

  for (const [name, attention] of [
    ['llava-tiny', 'self'],
    ['paligemma-tiny', 'self'],
    ['florence2-tiny', 'cross'],
  ] as const) {
    it(`does not need names: ${name} with every node and tensor renamed`, () => {
      const named = findDecoderHooks(load(name), { attention });
      const m = readModel(writeModel(load(name)));
      const back = anonymize(m);
      const anon = findDecoderHooks(m, { attention });
      const orig = (t: string) => back.get(t) ?? t;
      expect(anon.layers.length).toBe(named.layers.length);
      anon.layers.forEach((l, i) => {
        const ref = named.layers[i];
        expect(orig(l.attentionProbs)).toBe(ref?.attentionProbs);
        expect(orig(l.layerOutput)).toBe(ref?.layerOutput);
        expect(orig(l.values)).toBe(ref?.values);
        expect(l.scope).toBeUndefined();
      });
      expect(orig(anon.lmHead.weight)).toBe(named.lmHead.weight);
      expect(orig(anon.lmHead.input)).toBe(named.lmHead.input);
      expect(anon.finalNorm === null).toBe(named.finalNorm === null);
    });
  }

  it('builds the same explain graph without names (PaliGemma: soft-capped head, final norm)', async () => {
    const named = load('paligemma-tiny');
    const anon = readModel(writeModel(load('paligemma-tiny')));
    anonymize(anon);
    const opts = { layers: [0, 2, 3], compat: 'official', attention: 'self' } as const;
    const a = buildExplainGraph(named, opts);
    const b = buildExplainGraph(anon, opts);
    const next = rng(21);
    const S = 9;
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
        Array.from({ length: S }, (_, i) => i + 1),
      ),
      dexar_target_ids: makeOrtTensor(DataType.INT64, [2], [7, 300]),
      dexar_query_positions: makeOrtTensor(DataType.INT64, [2], [8, 3]),
    };
    for (const v of named.graph.inputs) {
      if (v.name?.startsWith('past')) feeds[v.name] = makeOrtTensor(DataType.FLOAT, [1, 1, 0, 16], []);
    }
    const ra = await runModel(writeModel(a.model), feeds);
    const rb = await runModel(writeModel(b.model), feeds);
    for (const o of Object.values(EXPLAIN_OUTPUTS)) {
      expect(tensorValues(rb[o] as ort.Tensor)).toEqual(tensorValues(ra[o] as ort.Tensor));
    }
  });

  it('finds the hooks of a generated 32-layer graph', () => {
    const m = buildLlamaDecoder({
      layers: 32,
      hidden: 16,
      heads: 2,
      kvHeads: 1,
      headDim: 8,
      intermediate: 16,
      vocab: 10,
    });
    const h = findDecoderHooks(m, { attention: 'self' });
    expect(h.layers.length).toBe(32);
    expect(h.layers[31]?.layerOutput).toMatch(/^\/model\/layers\.31\/Add/);
    expect(h.finalNorm?.output).toMatch(/^\/model\/norm\//);
  });
});
