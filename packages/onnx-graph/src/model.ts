import { ExternalDataError, ModelFormatError } from './errors.js';
import { Graph, nodeInputs } from './graph/graph.js';
import { checkUniqueDefinitions } from './graph/validate.js';
import { decodeModelProto, encodeModelProto } from './proto/codec.js';
import { toNumber } from './proto/int64.js';
import { externalDataInfo, isExternal } from './proto/tensor.js';
import type { ModelProto, TensorProto } from './proto/types.js';

/** An ONNX model in memory: the decoded ModelProto and a graph view over its main graph. */
export class OnnxModel {
  readonly proto: ModelProto;
  readonly graph: Graph;

  constructor(proto: ModelProto) {
    this.proto = proto;
    proto.graph ??= {};
    this.graph = new Graph(proto.graph);
  }

  /** The opset version imported for a domain ('' or 'ai.onnx' for the default domain). */
  opsetVersion(domain = ''): number | undefined {
    const want = domain === 'ai.onnx' ? '' : domain;
    for (const o of this.proto.opsetImport ?? []) {
      const d = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
      if (d === want) return toNumber(o.version);
    }
    return undefined;
  }

  /** Makes sure a domain is imported (at least `version`), e.g. before adding contrib ops. */
  requireOpset(domain: string, version: number): void {
    const current = this.opsetVersion(domain);
    if (current !== undefined && current >= version) return;
    const list = (this.proto.opsetImport ?? []).filter(
      (o) => (o.domain === 'ai.onnx' ? '' : (o.domain ?? '')) !== domain,
    );
    list.push({ domain, version });
    this.proto.opsetImport = list;
  }

  /** Tensors stored as external data (their bytes live in other files). */
  externalTensors(): TensorProto[] {
    const out: TensorProto[] = [];
    for (const t of this.graph.proto.initializer ?? []) if (isExternal(t)) out.push(t);
    for (const n of this.graph.nodes) {
      for (const a of n.attribute ?? []) if (a.t && isExternal(a.t)) out.push(a.t);
    }
    return out;
  }

  /** The distinct external-data files the model references, as normalised relative paths. */
  externalDataFiles(): string[] {
    const files = new Set<string>();
    for (const t of this.externalTensors()) {
      files.add(normalizeExternalLocation(externalDataInfo(t).location ?? '', t.name ?? ''));
    }
    return [...files];
  }
}

/**
 * Normalises an external-data `location` to a relative path inside the model folder, or throws
 * when it is absolute, a URL, or leaves the folder (`..`).
 */
export function normalizeExternalLocation(location: string, tensor: string): string {
  const fix = 'store the weight file next to the .onnx file and reference it by a relative name';
  if (location === '') {
    throw new ExternalDataError(
      `external-data tensor ${tensor} has no location; the model is corrupt, re-export it`,
      location,
    );
  }
  if (
    location.startsWith('/') ||
    location.startsWith('\\') ||
    /^[A-Za-z]:/.test(location) ||
    /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(location)
  ) {
    throw new ExternalDataError(
      `external-data location "${location}" of tensor ${tensor} is absolute; ${fix}`,
      location,
    );
  }
  const parts: string[] = [];
  for (const seg of location.split(/[\\/]+/)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) {
        throw new ExternalDataError(
          `external-data location "${location}" of tensor ${tensor} leaves the model folder; ${fix}`,
          location,
        );
      }
      parts.pop();
      continue;
    }
    parts.push(seg);
  }
  if (parts.length === 0) {
    throw new ExternalDataError(
      `external-data location "${location}" of tensor ${tensor} names no file; ${fix}`,
      location,
    );
  }
  return parts.join('/');
}

/**
 * Decodes an ONNX model from bytes. Weights stored as external data stay references (no file is
 * read). Throws `ModelFormatError` for bytes that are not a complete ONNX model and
 * `ExternalDataError` for an unsafe external-data location.
 */
export function readModel(bytes: Uint8Array): OnnxModel {
  if (!(bytes instanceof Uint8Array)) {
    throw new ModelFormatError('readModel expects the model file as a Uint8Array; read the file first');
  }
  if (bytes.byteLength === 0) {
    throw new ModelFormatError('the model file is empty; download or export it again');
  }
  let proto: ModelProto;
  try {
    proto = decodeModelProto(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ModelFormatError(
      `cannot decode the bytes as an ONNX model (${why}): the file is truncated or not ONNX; download or export it again`,
    );
  }
  if (!proto.graph || !proto.opsetImport || proto.opsetImport.length === 0) {
    throw new ModelFormatError(
      'the bytes decode but hold no ONNX graph or opset import: this is not an ONNX model file; pass the .onnx file',
    );
  }
  const model = new OnnxModel(proto);
  validateReferences(model);
  for (const t of model.externalTensors()) {
    normalizeExternalLocation(externalDataInfo(t).location ?? '', t.name ?? '');
  }
  return model;
}

/** Every node input must be defined; a truncated file usually breaks this. */
function validateReferences(model: OnnxModel): void {
  checkUniqueDefinitions(model);
  const g = model.graph;
  const defined = new Set<string>();
  for (const t of g.proto.initializer ?? []) if (t.name) defined.add(t.name);
  for (const v of g.proto.input ?? []) if (v.name) defined.add(v.name);
  for (const n of g.nodes) for (const o of n.output ?? []) if (o) defined.add(o);
  for (const n of g.nodes) {
    for (const i of nodeInputs(n)) {
      if (!defined.has(i)) {
        throw new ModelFormatError(
          `node ${n.name || n.opType} reads tensor "${i}" that nothing defines: the model is truncated or corrupt; download or export it again`,
        );
      }
    }
  }
  for (const o of g.outputs) {
    if (o.name && !defined.has(o.name)) {
      throw new ModelFormatError(
        `graph output "${o.name}" is not produced by any node: the model is truncated or corrupt; download or export it again`,
      );
    }
  }
}

/** Encodes a model to bytes. */
export function writeModel(model: OnnxModel | ModelProto): Uint8Array {
  const proto = model instanceof OnnxModel ? model.proto : model;
  return encodeModelProto(proto);
}

/**
 * Checks that every external-data file the model references exists. `exists` is either the list
 * of files present in the model folder (relative paths) or a predicate; the package itself never
 * touches a file system. Throws `ExternalDataError` naming the first missing file.
 */
export function checkExternalData(
  model: OnnxModel,
  exists: readonly string[] | ((relativePath: string) => boolean),
): void {
  const present =
    typeof exists === 'function'
      ? exists
      : (() => {
          const set = new Set<string>();
          for (const p of exists) {
            try {
              set.add(normalizeExternalLocation(p, p));
            } catch {
              // an absolute or escaping listing entry cannot be a file of the model folder
            }
          }
          return (p: string) => set.has(p);
        })();
  for (const file of model.externalDataFiles()) {
    if (!present(file)) {
      throw new ExternalDataError(
        `external-data file "${file}" referenced by the model is missing; put it next to the .onnx file (same folder)`,
        file,
      );
    }
  }
}
