export { Explainer, type Generation, type OpenOptions } from './explainer.js';
export {
  type ExplainRequest,
  ExplainRequestSchema,
  type GenerateRequest,
  GenerateRequestSchema,
} from './request.js';
