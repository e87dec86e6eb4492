import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const modelDir = (name: string) => `${repoRoot}fixtures/models/${name}`;

export interface ReferenceCase {
  name: string;
  dir: string;
  prompt: string;
  target: string;
  target_ids: number[];
  tokens: string[];
  prompt_ids_expanded: number[];
  image_features: { dims: number[]; data: number[] };
  pixel_values: { dims: number[]; data: number[] };
  idx_img_tok_start: number;
  idx_img_tok_end: number;
}

/** The PyTorch reference cases of a fixture model (fixtures/references/<model>/case<K>). */
export function referenceCases(model: string): ReferenceCase[] {
  const root = `${repoRoot}fixtures/references/${model}`;
  return readdirSync(root)
    .filter((d) => d.startsWith('case'))
    .sort()
    .map((d) => ({
      name: d,
      dir: `${root}/${d}`,
      ...JSON.parse(readFileSync(`${root}/${d}/case.json`, 'utf8')),
    }));
}
