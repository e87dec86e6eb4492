import { type ModelAdapter, registerAdapter } from '@dexar/core/adapter';
import { loadLlava } from './model.js';

/** LLaVA-1.5 (Llama decoder) and BakLLaVA (Mistral decoder, grouped-query attention). */
export const llavaAdapter: ModelAdapter = {
  family: 'llava',
  modelTypes: ['llava'],
  load: loadLlava,
};

registerAdapter(llavaAdapter);
