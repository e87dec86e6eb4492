export { configObject, eosTokenIds, parseConfig, tokenIds } from './config.js';
export {
  DECODER_PATH,
  DecoderOnlyModel,
  type DecoderOnlySessions,
  type DecoderOnlySettings,
  type MergedPrompt,
  openDecoderOnlySessions,
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
  layersOfDecoder,
  nextCache,
  sliceEmbeddings,
} from './decoding.js';
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
export { type Normalisation, pixelValues } from './image.js';
export { LazyDecoder } from './lazy-session.js';
export { type ModelFiles, readModelFiles } from './model-files.js';
export {
  batchAttentionMask,
  batchImageFeatures,
  checkScoreBatch,
  readLogProbabilities,
  tileRows,
} from './scoring.js';
