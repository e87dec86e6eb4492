import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ort from 'onnxruntime-node';
import { readModel } from '../../src/model.js';
import { DataType } from '../../src/proto/types.js';
import { makeOrtTensor, runModel, tensorValues } from './onnx.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
export const FIXTURES = join(REPO, 'fixtures');

export function modelDir(name: string): string {
  return join(FIXTURES, 'models', name);
}

export function fixtureFile(name: string, file: string): string {
  return join(modelDir(name), 'onnx', file);
}

export function hasFixture(name: string, file = 'decoder_model_merged.onnx'): boolean {
  return existsSync(fixtureFile(name, file));
}

export function caseDirs(name: string): string[] {
  const out: string[] = [];
  for (let k = 0; k < 16; k++) {
    const p = join(FIXTURES, 'references', name, `case${k}`, 'case.json');
    if (existsSync(p)) out.push(p);
  }
  return out;
}

// biome-ignore lint/suspicious/noExplicitAny: reference JSON is loosely typed
export type CaseJson = Record<string, any>;

export function readCase(path: string): CaseJson {
  return JSON.parse(readFileSync(path, 'utf8')) as CaseJson;
}

export function readConfig(name: string): CaseJson {
  return JSON.parse(readFileSync(join(modelDir(name), 'config.json'), 'utf8')) as CaseJson;
}

/** Runs embed_tokens.onnx on ids: [1, S, D] values. */
export async function embed(name: string, ids: number[]): Promise<{ data: number[]; dims: number[] }> {
  const m = readModel(readFileSync(fixtureFile(name, 'embed_tokens.onnx')));
  const input = m.graph.inputs[0]?.name ?? 'input_ids';
  const out = await runModel(m, { [input]: makeOrtTensor(DataType.INT64, [1, ids.length], ids) });
  const t = Object.values(out)[0] as ort.Tensor;
  return { data: tensorValues(t), dims: [...(t.dims as number[])] };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
