export { type ExplainGraphOptions, graphDigest, openExplainGraph } from './explain-graph.js';
export { Explainer, type Generation, type OpenOptions } from './explainer.js';
export {
  type ExplainRequest,
  ExplainRequestSchema,
  type GenerateRequest,
  GenerateRequestSchema,
} from './request.js';
