/**
 * @dexar/onnx-graph: read and write ONNX graphs, find a decoder's DEX-AR hooks, reverse-mode
 * autodiff as ordinary ONNX nodes, and the DEX-AR explain augmentation. Runtime-free: bytes in,
 * bytes out, the same code in Node and the browser.
 */

export { buildGradient, type GradientRequest } from './autodiff/gradient.js';
export { ruleFor, supportedOps, VJP_RULES, type VjpContext, type VjpRule } from './autodiff/rules.js';
export { explainGraphRecord, sealExplainGraph } from './cache-record.js';
export { hexDigest, sha256 } from './digest.js';
export {
  AutodiffError,
  ExternalDataError,
  GraphError,
  HookNotFoundError,
  InvalidOptionsError,
  ModelFormatError,
  OnnxGraphError,
  type OnnxGraphErrorCode,
  UnsupportedModelError,
} from './errors.js';
export { explainCacheKey, explainCacheKeyFromDigest } from './explain/cache-key.js';
export {
  buildExplainGraph,
  EXPLAIN_INPUTS,
  EXPLAIN_OUTPUTS,
  type ExplainGraph,
  type ExplainOptions,
  POSITION_LENS_OUTPUT,
  TARGET_AXIS,
  USE_CACHE_BRANCH,
} from './explain/explain.js';
export {
  type AttrInput,
  attrFloat,
  attrInt,
  attrInts,
  attrString,
  f,
  getAttribute,
  makeAttribute,
  setAttribute,
} from './graph/attributes.js';
export { GraphBuilder, type OpOptions } from './graph/builder.js';
export type { Dim } from './graph/dims.js';
export { dominatorChain } from './graph/dominators.js';
export { Graph, nodeInputs } from './graph/graph.js';
export {
  addGraphInput,
  addGraphOutput,
  type CloneOptions,
  cloneNodes,
  extractSubgraph,
  redirectConsumers,
  replaceNode,
  specializeIf,
  tensorType,
} from './graph/passes.js';
export { ShapeInference, type TensorInfo } from './graph/shapes.js';
export { MAX_ELEMENTS, MAX_RANK, validateGraph } from './graph/validate.js';
export {
  assertUnfusedAttention,
  type DecoderHooks,
  type FinalNormHook,
  type FindHooksOptions,
  findDecoderHooks,
  type LayerHook,
  type LmHeadHook,
} from './hooks/hooks.js';
export {
  checkExternalData,
  normalizeExternalLocation,
  OnnxModel,
  readModel,
  writeModel,
} from './model.js';
export { toNumber, toNumbers } from './proto/int64.js';
export { externalDataInfo, isExternal, makeTensor, readTensorNumbers, tensorDims } from './proto/tensor.js';
export type {
  AttributeProto,
  GraphProto,
  Int64,
  ModelProto,
  NodeProto,
  TensorProto,
  TypeProto,
  ValueInfoProto,
} from './proto/types.js';
export { AttributeType, DataType } from './proto/types.js';
export { type ModelStructure, type ReadRange, readModelStructure } from './proto/weights-in-place.js';
