/**
 * @dexar/eval: explanation methods (DEX-AR and baselines) as pure functions over the explain graph's
 * raw rows, the paper's metrics, statistics and the report. Runtime-free; the Node runner, dataset
 * readers and file I/O are in `@dexar/eval/node`.
 */
export { explainMethod, type MethodRequest } from './explain-method.js';
export {
  type ExplanationMethod,
  layoutFromExplanation,
  type MethodInput,
  type MethodMaps,
  methodExplanation,
  methodFor,
  methodInputFromExplanation,
  methodNames,
  registerMethod,
  withMethod,
} from './methods.js';
export { fillerTokens, type TokenRanking, tokenRanking } from './metrics/faithfulness.js';
export {
  type Direction,
  defaultFractions,
  type Fill,
  fillImage,
  type Normalization,
  normalizedPerplexity,
  type PerturbationOptions,
  type PixelSource,
  perplexity,
  perturbPixels,
  removalOrder,
  removedCells,
  removedCount,
  type Space,
  trapezoidAuc,
} from './metrics/perturbation.js';
export {
  averagePrecision,
  type Mask,
  normalizeMap,
  type SegmentationOptions,
  type SegmentationScores,
  scorePixels,
  segmentationScores,
} from './metrics/segmentation.js';
export {
  defaultPerturbation,
  type MetricName,
  metricNames,
  type PerturbationConfig,
  parseFractions,
  parseMethods,
  parseMetrics,
  parseShard,
  parseThreshold,
  type Shard,
} from './options.js';
export { gaussian, hashString, permutation, prng } from './random.js';
export type { Curve, EvalConfig, EvalRecord, RunHeader, SampleRecord, WordScores } from './records.js';
export { RECORDS_VERSION } from './records.js';
export {
  curvesSvg,
  groupTable,
  type MetricSpec,
  markdownName,
  markdownReport,
  markdownText,
  metricSpecs,
  type Summary,
  summarize,
} from './report.js';
export {
  type CiMethod,
  confidenceInterval,
  type Interval,
  incompleteBeta,
  logGamma,
  mean,
  normalQuantile,
  sampleStd,
  studentTCdf,
  studentTQuantile,
  wilsonInterval,
} from './stats.js';
