/** @dexar/eval/node: dataset readers, the evaluation runner and report files (Node: fs, sharp, onnxruntime-node). */
export {
  type Dataset,
  defaultVocTemplates,
  type EvalSample,
  findRepositoryPath,
  type GroundedWord,
  loadMask,
  type MaskRef,
  openDataset,
  readClassMap,
  unionMask,
  VOC_CLASSES,
  type VocOptions,
  validateSamples,
  vocColor,
} from './datasets.js';
export { type EvalModel, openEvalModel, wordTokens } from './model.js';
export { type RecordSet, readRecords, writeReport } from './report-files.js';
export {
  cropMask,
  type EvalOptions,
  type EvalOutcome,
  type EvalProgress,
  recordsFile,
  runEvaluation,
  shardSamples,
} from './runner.js';
