export {
  adapterFor,
  type ExplainRows,
  type FamilyModel,
  type ModelAdapter,
  type PixelValues,
  type PreparedInput,
  type ProgressCallback,
  type ProgressEvent,
  registerAdapter,
  registeredFamilies,
  type ScoreBatch,
  type StreamedRows,
} from './adapter.js';
export {
  type Aggregation,
  aggregate,
  type DexarMaps,
  type GradientRows,
  type RowShape,
  startAggregation,
  type TokenAggregate,
  type TokenRows,
} from './aggregate.js';
export { checkConfigLimits } from './config-limits.js';
export { DexarError, type DexarErrorCode } from './errors.js';
export { castFeeds, floatData, fromFloat16Bits, toFloat16Bits } from './float16.js';
export { checkImageHeader, type ImageFormat, type ImageHeader } from './image/header.js';
export { checkImageSize, IMAGE_LIMITS, workingSize } from './image/limits.js';
export { resample } from './image/resample.js';
export { causalTextKeys, type Grid, type KeySpan, type TokenLayout } from './layout.js';
export {
  type Compat,
  CompatSchema,
  type DexarOptions,
  type DexarOptionsInput,
  DexarOptionsSchema,
  layersUsed,
  parseOptions,
} from './options.js';
export {
  type ColormapName,
  colormapNames,
  colormapTable,
  type HeatmapStyle,
  overlayHeatmap,
  type RgbaImage,
  renderHeatmap,
  upsampleBilinear,
} from './render/heatmap.js';
export {
  type Explanation,
  type ExplanationMeta,
  ExplanationSchema,
  heatmapRows,
  toExplanation,
} from './result.js';
export {
  type Backend,
  type DType,
  isDerivedFile,
  type ModelFolder,
  type ResizeFilter,
  readJson,
  readText,
  type Session,
  type SessionOptions,
  type TypedTensor,
  type Variant,
  variantPath,
} from './runtime.js';
export { type FloatData, type Tensor, type TensorData, tensor } from './tensor.js';
