import { type ModelAdapter, registerAdapter } from '@dexar/core/adapter';
import { loadFlorence2 } from './model.js';

/** Florence-2 (DaViT tower, BART-like encoder-decoder); DEX-AR reads the decoder's cross-attention. */
export const florence2Adapter: ModelAdapter = {
  family: 'florence2',
  modelTypes: ['florence2'],
  load: loadFlorence2,
};

registerAdapter(florence2Adapter);
