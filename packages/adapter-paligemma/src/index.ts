import { type ModelAdapter, registerAdapter } from '@dexar/core/adapter';
import { loadPaliGemma } from './model.js';

/** PaliGemma (Gemma or Gemma-2 text model, SigLIP tower, prefix-LM mask, soft-capped head). */
export const paligemmaAdapter: ModelAdapter = {
  family: 'paligemma',
  modelTypes: ['paligemma'],
  load: loadPaliGemma,
};

registerAdapter(paligemmaAdapter);
