import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExplanationSchema } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import {
  expectMatchesReference,
  modelDir,
  referenceCases,
  referenceSettings,
} from '../../../packages/adapter-kit/test/reference-cases.js';

const bin = fileURLToPath(new URL('../bin/dexar.js', import.meta.url));

function explainJson(args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(
      'node',
      [bin, 'explain', '--json', '--quiet', ...args],
      { maxBuffer: 64 << 20 },
      (error, stdout, stderr) => (error ? reject(new Error(stderr)) : resolve(JSON.parse(stdout))),
    );
  });
}

describe.each(['llava-tiny', 'bakllava-tiny', 'paligemma-tiny', 'florence2-tiny'])(
  'dexar explain --json on %s',
  (model) => {
    describe.each(referenceCases(model))('$name', (c) => {
      it.each(referenceSettings)('%s, layerIndex %i matches the PyTorch reference', async (compat, layerIndex) => {
        const out = await mkdtemp(join(tmpdir(), 'dexar-ref-'));
        const result = ExplanationSchema.parse(
          await explainJson([
            ...['--model', modelDir(model), '--image', join(c.dir, 'image.png'), '--out', out],
            ...['--prompt', c.prompt, '--target', c.target, '--compat', compat, '--layer-index', String(layerIndex)],
          ]),
        );
        expect(result.tokenIds).toEqual(c.target_ids);
        expectMatchesReference(result, c.results[compat][`layer_index_${layerIndex}`]);
      });
    });
  },
);
