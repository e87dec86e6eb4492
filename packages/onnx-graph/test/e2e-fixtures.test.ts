import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildExplainGraph, type ExplainGraph } from '../src/explain/explain.js';
import { type OnnxModel, readModel, writeModel } from '../src/model.js';
import { toNumber } from '../src/proto/int64.js';
import { DataType } from '../src/proto/types.js';
import { type CaseJson, caseDirs, embed, fixtureFile, hasFixture, readCase } from './helpers/fixtures.js';
import { makeOrtTensor, runModel, tensorValues } from './helpers/onnx.js';

/**
 * End to end: the explain graph of every fixture family, run on onnxruntime-node, against the
 * PyTorch-autograd reference rows of tools/fixtures (the authors' step-by-step algorithm).
 */

const GRAD_TOL = 1e-4;
const ATTN_TOL = 1e-5;
const LENS_TOL = 1e-4;

interface Rows {
  /** [n][l][h][key] cropped to seq_len_per_step[n] keys */
  grad: number[][][][];
  attn: number[][][][];
  lens: number[][];
}

interface Call {
  feeds: Record<string, ort.Tensor>;
  /** explained steps of this call, in target order */
  steps: number[];
}

const summary: string[] = [];

function zerosPast(model: OnnxModel, name: string): ort.Tensor {
  const dims = model.graph.inputs.find((v) => v.name === name)?.type?.tensorType?.shape?.dim ?? [];
  const shape = dims.map((d, i) => (i === 2 ? 0 : Object.hasOwn(d, 'dimValue') ? toNumber(d.dimValue) : 1));
  return makeOrtTensor(DataType.FLOAT, shape, []);
}

function splitRows(out: Record<string, ort.Tensor>, c: CaseJson, steps: number[], rows: Rows): void {
  const grad = out.dexar_gradient_rows as ort.Tensor;
  const attn = out.dexar_attention_rows as ort.Tensor;
  const lens = out.dexar_logit_lens as ort.Tensor;
  const [T, Lu, H, K] = grad.dims as [number, number, number, number];
  expect(T).toBe(steps.length);
  const g = tensorValues(grad);
  const a = tensorValues(attn);
  const z = tensorValues(lens);
  steps.forEach((n, t) => {
    const keys = c.seq_len_per_step[n] as number;
    const gn: number[][][] = [];
    const an: number[][][] = [];
    const zn: number[] = [];
    for (let l = 0; l < Lu; l++) {
      const gl: number[][] = [];
      const al: number[][] = [];
      for (let h = 0; h < H; h++) {
        const base = ((t * Lu + l) * H + h) * K;
        gl.push(g.slice(base, base + keys));
        al.push(a.slice(base, base + keys));
      }
      gn.push(gl);
      an.push(al);
      zn.push(z[t * Lu + l] as number);
    }
    rows.grad[n] = gn;
    rows.attn[n] = an;
    rows.lens[n] = zn;
  });
}

async function embedWithImage(name: string, ids: number[], c: CaseJson, from: number): Promise<number[]> {
  const e = await embed(name, ids);
  const D = e.dims[2] as number;
  const feat = c.image_features.data as number[];
  for (let p = c.idx_img_tok_start as number; p < (c.idx_img_tok_end as number); p++) {
    if (p < from || p >= from + ids.length) continue;
    for (let d = 0; d < D; d++)
      e.data[(p - from) * D + d] = feat[(p - (c.idx_img_tok_start as number)) * D + d] as number;
  }
  return e.data;
}

function hidden(model: OnnxModel): number {
  const d = model.graph.inputs.find((v) => v.name === 'inputs_embeds')?.type?.tensorType?.shape?.dim ?? [];
  return toNumber(d[2]?.dimValue);
}

/** LLaVA / BakLLaVA: one causal call over prompt + answer[:-1]. */
async function llavaCalls(name: string, ex: ExplainGraph, c: CaseJson): Promise<Call[]> {
  const T = c.target_ids.length as number;
  const ids = [...c.prompt_ids_expanded, ...c.target_ids.slice(0, T - 1)] as number[];
  const S = ids.length;
  const D = hidden(ex.model);
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(DataType.FLOAT, [1, S, D], await embedWithImage(name, ids, c, 0)),
    attention_mask: makeOrtTensor(DataType.INT64, [1, S], new Array(S).fill(1)),
    position_ids: makeOrtTensor(
      DataType.INT64,
      [1, S],
      Array.from({ length: S }, (_, i) => i),
    ),
    dexar_target_ids: makeOrtTensor(DataType.INT64, [T], c.target_ids),
    dexar_query_positions: makeOrtTensor(
      DataType.INT64,
      [T],
      (c.seq_len_per_step as number[]).map((s) => s - 1),
    ),
  };
  for (const v of ex.model.graph.inputs) {
    if (v.name?.startsWith('past_key_values')) feeds[v.name] = zerosPast(ex.model, v.name);
  }
  return [{ feeds, steps: Array.from({ length: T }, (_, n) => n) }];
}

/** PaliGemma: the prefix alone (bidirectional prefill), then the answer with the prefix's past. */
async function paligemmaRun(name: string, ex: ExplainGraph, c: CaseJson, rows: Rows): Promise<void> {
  const T = c.target_ids.length as number;
  const prefix = c.prompt_ids_expanded as number[];
  const P = prefix.length;
  const D = hidden(ex.model);
  const bytes = writeModel(ex.model);
  const first: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(DataType.FLOAT, [1, P, D], await embedWithImage(name, prefix, c, 0)),
    attention_mask: makeOrtTensor(DataType.INT64, [1, P], new Array(P).fill(1)),
    position_ids: makeOrtTensor(
      DataType.INT64,
      [1, P],
      Array.from({ length: P }, (_, i) => i + 1),
    ),
    dexar_target_ids: makeOrtTensor(DataType.INT64, [1], [c.target_ids[0]]),
    dexar_query_positions: makeOrtTensor(DataType.INT64, [1], [P - 1]),
  };
  for (const v of ex.model.graph.inputs) {
    if (v.name?.startsWith('past_key_values')) first[v.name] = zerosPast(ex.model, v.name);
  }
  const out1 = await runModel(bytes, first);
  splitRows(out1, c, [0], rows);
  if (T === 1) return;
  const answer = (c.target_ids as number[]).slice(0, T - 1);
  const A = answer.length;
  const second: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(DataType.FLOAT, [1, A, D], (await embed(name, answer)).data),
    attention_mask: makeOrtTensor(DataType.INT64, [1, P + A], new Array(P + A).fill(1)),
    position_ids: makeOrtTensor(
      DataType.INT64,
      [1, A],
      Array.from({ length: A }, (_, i) => P + i + 1),
    ),
    dexar_target_ids: makeOrtTensor(DataType.INT64, [T - 1], (c.target_ids as number[]).slice(1)),
    dexar_query_positions: makeOrtTensor(
      DataType.INT64,
      [T - 1],
      Array.from({ length: T - 1 }, (_, i) => i),
    ),
  };
  for (const v of ex.model.graph.inputs) {
    const n = v.name ?? '';
    if (n.startsWith('past_key_values')) second[n] = out1[n.replace('past_key_values', 'present')] as ort.Tensor;
  }
  const out2 = await runModel(bytes, second);
  splitRows(
    out2,
    c,
    Array.from({ length: T - 1 }, (_, i) => i + 1),
    rows,
  );
}

/** Florence-2: encoder once, then the decoder over [</s>, <s>, answer[:-1]] with cross-attention rows. */
async function florenceCalls(name: string, ex: ExplainGraph, c: CaseJson): Promise<Call[]> {
  const encoder = readModel(readFileSync(fixtureFile(name, 'encoder_model.onnx')));
  const T = c.target_ids.length as number;
  const D = hidden(ex.model);
  const feat = c.image_features.data as number[];
  const prompt = await embed(name, c.prompt_ids_expanded as number[]);
  const E = (c.num_image_features as number) + (c.prompt_ids_expanded as number[]).length;
  const encIn = [...feat, ...prompt.data];
  const encOut = await runModel(encoder, {
    inputs_embeds: makeOrtTensor(DataType.FLOAT, [1, E, D], encIn),
    attention_mask: makeOrtTensor(DataType.INT64, [1, E], new Array(E).fill(1)),
  });
  const states = Object.values(encOut)[0] as ort.Tensor;
  const ids = [...(c.decoder_prefix_ids as number[]), ...(c.target_ids as number[]).slice(0, T - 1)];
  const S = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: makeOrtTensor(DataType.FLOAT, [1, S, D], (await embed(name, ids)).data),
    encoder_hidden_states: states,
    encoder_attention_mask: makeOrtTensor(DataType.INT64, [1, E], new Array(E).fill(1)),
    dexar_target_ids: makeOrtTensor(DataType.INT64, [T], c.target_ids),
    dexar_query_positions: makeOrtTensor(DataType.INT64, [T], c.query_position_per_step),
  };
  for (const v of ex.model.graph.inputs) {
    if (v.name?.startsWith('past_key_values')) feeds[v.name] = zerosPast(ex.model, v.name);
  }
  return [{ feeds, steps: Array.from({ length: T }, (_, n) => n) }];
}

const FAMILIES = [
  { name: 'llava-tiny', attention: 'self' as const },
  { name: 'bakllava-tiny', attention: 'self' as const },
  { name: 'paligemma-tiny', attention: 'self' as const },
  { name: 'florence2-tiny', attention: 'cross' as const },
];

/**
 * The decoder as a stripped export leaves it: no value_info for intermediate tensors and no names
 * on any input or output dim (the explain graph must not depend on the exporter's annotations).
 */
function withoutShapeAnnotations(source: OnnxModel): OnnxModel {
  const model = readModel(writeModel(source));
  const graph = model.graph.proto;
  graph.valueInfo = [];
  for (const v of [...(graph.input ?? []), ...(graph.output ?? [])]) {
    for (const d of v.type?.tensorType?.shape?.dim ?? []) delete d.dimParam;
  }
  return readModel(writeModel(model));
}

const ANNOTATIONS = [
  { label: '', decoder: (m: OnnxModel) => m },
  { label: ', value_info stripped and dims unnamed', decoder: withoutShapeAnnotations },
];

describe('explain graph vs PyTorch autograd references (fixtures)', () => {
  afterAll(() => {
    console.log(['end-to-end max abs differences vs PyTorch autograd:', ...summary].join('\n'));
  });

  for (const fam of FAMILIES) {
    for (const [compat, annotations] of [
      ['official', ANNOTATIONS[0]],
      ['paper', ANNOTATIONS[0]],
      ['official', ANNOTATIONS[1]],
    ] as const) {
      it(`${fam.name} (${compat}${annotations.label})`, async () => {
        expect(hasFixture(fam.name), `fixture ${fam.name} is missing: run tools/fixtures/generate.py`).toBe(true);
        const cases = caseDirs(fam.name);
        expect(cases.length).toBeGreaterThan(0);
        const source = annotations.decoder(readModel(readFileSync(fixtureFile(fam.name, 'decoder_model_merged.onnx'))));
        let worstGrad = 0;
        let worstAttn = 0;
        let worstLens = 0;
        for (const path of cases) {
          const c = readCase(path);
          const L = c.num_layers as number;
          const ex = buildExplainGraph(source, {
            layers: Array.from({ length: L }, (_, l) => l),
            compat,
            attention: fam.attention,
          });
          const T = c.target_ids.length as number;
          const rows: Rows = { grad: [], attn: [], lens: [] };
          if (fam.name === 'paligemma-tiny') {
            await paligemmaRun(fam.name, ex, c, rows);
          } else {
            const calls =
              fam.name === 'florence2-tiny' ? await florenceCalls(fam.name, ex, c) : await llavaCalls(fam.name, ex, c);
            const bytes = writeModel(ex.model);
            for (const call of calls) splitRows(await runModel(bytes, call.feeds), c, call.steps, rows);
          }
          const lensRef = (compat === 'paper' ? c.logit_lens_value_paper : c.logit_lens_value) as number[][];
          for (let n = 0; n < T; n++) {
            for (let l = 0; l < L; l++) {
              worstLens = Math.max(worstLens, Math.abs((rows.lens[n]?.[l] as number) - (lensRef[n]?.[l] as number)));
              const H = c.num_heads as number;
              for (let h = 0; h < H; h++) {
                const refGrad =
                  compat === 'paper' && l === L - 1
                    ? (c.raw.grad_rows_clean_last_layer[n][h] as number[])
                    : (c.raw.grad_rows[n][l][h] as number[]);
                const refAttn = c.raw.attn_rows[n][l][h] as number[];
                const got = rows.grad[n]?.[l]?.[h] as number[];
                const gotA = rows.attn[n]?.[l]?.[h] as number[];
                expect(got.length).toBe(refGrad.length);
                for (let k = 0; k < refGrad.length; k++) {
                  worstGrad = Math.max(worstGrad, Math.abs((got[k] as number) - (refGrad[k] as number)));
                  worstAttn = Math.max(worstAttn, Math.abs((gotA[k] as number) - (refAttn[k] as number)));
                }
              }
            }
          }
        }
        summary.push(
          `  ${fam.name.padEnd(15)} ${compat.padEnd(8)}${annotations.label} ${cases.length} cases: gradient rows ${worstGrad.toExponential(2)}, attention rows ${worstAttn.toExponential(2)}, logit lens ${worstLens.toExponential(2)}`,
        );
        expect(worstGrad).toBeLessThan(GRAD_TOL);
        expect(worstAttn).toBeLessThan(ATTN_TOL);
        expect(worstLens).toBeLessThan(LENS_TOL);
      });
    }
  }
});
