export { configObject, eosTokenIds, parseConfig, tokenIds } from './config.js';
export { type ConfigFields, checkDecoderInputs, GRAPHS } from './contract.js';
export {
  type DecoderOnlyFields,
  DecoderOnlyModel,
  type DecoderOnlySettings,
  type MergedPrompt,
} from './decoder-only.js';
export {
  argmaxLast,
  type Cache,
  type CacheShape,
  concatEmbeddings,
  decoderFeeds,
  type Embeddings,
  embedTokens,
  emptyCache,
  type GreedyStep,
  greedyDecode,
  greedySteps,
  nextCache,
  sliceEmbeddings,
} from './decoding.js';
export {
  type EncodedInput,
  EncoderDecoderModel,
  type EncoderDecoderSettings,
  type GridRule,
} from './encoder-decoder.js';
export {
  chunkCallsAreCausal,
  type DecoderOnlyExplain,
  type ExplainOutputs,
  explainDecoderOnly,
  explainFeeds,
  queryFeeds,
  type StreamedStep,
  stackRows,
  streamExplainSteps,
} from './explain-runs.js';
export { FamilyModelBase, type FamilySettings, type OpenedSessions, openSessions } from './family-model.js';
export {
  type ImageProcessor,
  type ImageProcessorDefaults,
  imageProcessorFields,
  type Normalisation,
  pixelValues,
  processImage,
} from './image.js';
export { LazyDecoder } from './lazy-session.js';
export { type ModelFiles, readModelFiles } from './model-files.js';
export {
  batchAttentionMask,
  batchImageFeatures,
  checkScoreBatch,
  readLogProbabilities,
  tileRows,
} from './scoring.js';
export { createTokenizer, type TextTokenizer } from './tokenizer.js';
