import { checkConfigLimits } from '@dexar/core/adapter';
import { type ModelFolder, readJson } from '@dexar/core/runtime';
import type { z } from 'zod';
import { parseConfig } from './config.js';
import { createTokenizer, type TextTokenizer } from './tokenizer.js';

export interface ModelFiles<C, P> {
  config: C;
  preprocessor: P;
  /** `generation_config.json`, when the folder has one. */
  generation: unknown;
  tokenizer: TextTokenizer;
  tokenizerConfig: Record<string, unknown>;
}

/**
 * The JSON files of a transformers.js model folder, validated: `config.json` (already parsed by the
 * registry) against the family's schema, `preprocessor_config.json`, the tokenizer and, if present,
 * `generation_config.json`. Errors name the file, the field and what the adapter expects.
 */
export async function readModelFiles<CS extends z.ZodType, PS extends z.ZodType>(
  folder: ModelFolder,
  rawConfig: unknown,
  schemas: { config: CS; configExpected: string; preprocessor: PS; preprocessorExpected: string },
): Promise<ModelFiles<z.output<CS>, z.output<PS>>> {
  const config = parseConfig(schemas.config, rawConfig, `${folder.location}/config.json`, schemas.configExpected);
  const preprocessorFile = `${folder.location}/preprocessor_config.json`;
  const rawPreprocessor = await readJson(folder, 'preprocessor_config.json');
  checkConfigLimits(rawPreprocessor, preprocessorFile);
  const preprocessor = parseConfig(
    schemas.preprocessor,
    rawPreprocessor,
    preprocessorFile,
    schemas.preprocessorExpected,
  );
  const generation = (await folder.exists('generation_config.json'))
    ? await readJson(folder, 'generation_config.json')
    : undefined;
  const tokenizerConfig = (await readJson(folder, 'tokenizer_config.json')) as Record<string, unknown>;
  const tokenizer = createTokenizer((await readJson(folder, 'tokenizer.json')) as object, tokenizerConfig);
  return { config, preprocessor, generation, tokenizer, tokenizerConfig };
}
