export {
  type DecoderStructure,
  type ExplainGraphOptions,
  graphDigest,
  openExplainGraph,
  readDecoderStructure,
} from './explain-graph.js';
export {
  Explainer,
  type Generation,
  type OpenOptions,
  type StreamEvent,
  type StreamedResult,
  type StreamedToken,
} from './explainer.js';
export { openFamilyModel } from './family.js';
export {
  type ExplainRequest,
  ExplainRequestSchema,
  type GenerateRequest,
  GenerateRequestSchema,
  type StreamRequest,
  StreamRequestSchema,
} from './request.js';
