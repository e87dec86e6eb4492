import { toNumber, toNumbers } from '../proto/int64.js';
import { type AttributeProto, AttributeType, type NodeProto, type TensorProto } from '../proto/types.js';

/**
 * An attribute value as written by this package's builders: an integer (`INT`), a list of
 * integers (`INTS`), a string (`STRING`), or a tagged float / float list / tensor.
 */
export type AttrInput =
  | number
  | readonly number[]
  | string
  | { readonly f: number }
  | { readonly floats: readonly number[] }
  | { readonly t: TensorProto };

/** Float attribute value for builders (`{ epsilon: f(1e-5) }`). */
export function f(value: number): { f: number } {
  return { f: value };
}

/** Builds an AttributeProto. */
export function makeAttribute(name: string, value: AttrInput): AttributeProto {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new TypeError(`attribute ${name}: ${value} is not an integer; wrap floats with f()`);
    }
    return { name, type: AttributeType.INT, i: value };
  }
  if (typeof value === 'string') {
    return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  }
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: [...value] };
  if ('f' in value) return { name, type: AttributeType.FLOAT, f: value.f };
  if ('floats' in value) return { name, type: AttributeType.FLOATS, floats: [...value.floats] };
  if ('t' in value) return { name, type: AttributeType.TENSOR, t: value.t };
  throw new TypeError(`attribute ${name}: unsupported value`);
}

/** Finds an attribute of a node by name. */
export function getAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

/** An INT attribute, or `fallback` when absent. */
export function attrInt(node: NodeProto, name: string, fallback: number): number;
export function attrInt(node: NodeProto, name: string): number | undefined;
export function attrInt(node: NodeProto, name: string, fallback?: number): number | undefined {
  const a = getAttribute(node, name);
  if (!a) return fallback;
  return toNumber(a.i);
}

/** An INTS attribute, or undefined when absent. */
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = getAttribute(node, name);
  if (!a) return undefined;
  return toNumbers(a.ints);
}

/** A FLOAT attribute, or `fallback` when absent. */
export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = getAttribute(node, name);
  if (!a) return fallback;
  return a.f ?? 0;
}

/** A STRING attribute decoded as UTF-8, or `fallback` when absent. */
export function attrString(node: NodeProto, name: string, fallback: string): string {
  const a = getAttribute(node, name);
  if (!a?.s) return fallback;
  return new TextDecoder().decode(a.s);
}

/** A TENSOR attribute. */
export function attrTensor(node: NodeProto, name: string): TensorProto | undefined {
  return getAttribute(node, name)?.t;
}

/** Sets (adds or replaces) an attribute on a node. */
export function setAttribute(node: NodeProto, name: string, value: AttrInput): void {
  const attr = makeAttribute(name, value);
  const list = (node.attribute ?? []).filter((a) => a.name !== name);
  list.push(attr);
  node.attribute = list;
}
