/**
 * `@dexar/core`: the DEX-AR math on typed arrays (aggregation, token layouts, options, the result
 * and its schema, heatmaps, Pillow-exact resizing). The plugin boundary is in `@dexar/core/adapter`,
 * the runtime contract in `@dexar/core/runtime`.
 */
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
export { DexarError, type DexarErrorCode } from './errors.js';
export { type ResizeFilter, resample } from './image/resample.js';
export { causalTextKeys, type Grid, type KeySpan, type TokenLayout } from './layout.js';
export {
  type Compat,
  CompatSchema,
  DEFAULT_OPTIONS,
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
  flatHeatmap,
  heatmapRows,
  type RawRows,
  toExplanation,
} from './result.js';
export { ExplanationSchema } from './schema.js';
export { type FloatData, type Tensor, type TensorData, tensor } from './tensor.js';
