/**
 * Typed errors. Every message is one line that names the problem and the fix, so that an app can
 * show it as is; `code` lets callers branch without parsing text.
 */

export type OnnxGraphErrorCode =
  | 'MODEL_FORMAT'
  | 'EXTERNAL_DATA'
  | 'UNSUPPORTED_MODEL'
  | 'HOOK_NOT_FOUND'
  | 'AUTODIFF'
  | 'INVALID_OPTIONS'
  | 'GRAPH';

/** Base class of every error this package throws on purpose. */
export class OnnxGraphError extends Error {
  readonly code: OnnxGraphErrorCode;
  constructor(code: OnnxGraphErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The bytes are not a (complete) ONNX model: truncated, corrupt, or another file type. */
export class ModelFormatError extends OnnxGraphError {
  constructor(message: string) {
    super('MODEL_FORMAT', message);
  }
}

/** An external-data reference is unsafe (absolute, leaves the model folder) or its file is missing. */
export class ExternalDataError extends OnnxGraphError {
  readonly location: string;
  constructor(message: string, location: string) {
    super('EXTERNAL_DATA', message);
    this.location = location;
  }
}

/** The model uses something this package does not handle (fused attention, control flow, ...). */
export class UnsupportedModelError extends OnnxGraphError {
  constructor(message: string) {
    super('UNSUPPORTED_MODEL', message);
  }
}

/** A decoder hook (attention probabilities, layer output, final norm, LM head) was not found. */
export class HookNotFoundError extends OnnxGraphError {
  constructor(message: string) {
    super('HOOK_NOT_FOUND', message);
  }
}

/** Reverse-mode differentiation failed: an operator without a rule, or an unknown rank/type. */
export class AutodiffError extends OnnxGraphError {
  constructor(message: string) {
    super('AUTODIFF', message);
  }
}

/** Options passed to a public function are invalid. */
export class InvalidOptionsError extends OnnxGraphError {
  constructor(message: string) {
    super('INVALID_OPTIONS', message);
  }
}

/** A graph edit refers to a tensor or node that does not exist, or would break the graph. */
export class GraphError extends OnnxGraphError {
  constructor(message: string) {
    super('GRAPH', message);
  }
}
