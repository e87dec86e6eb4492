import { UnsupportedModelError } from '../errors.js';
import type { GraphBuilder } from '../graph/builder.js';
import { type Dim, dimHasFactor, formatShape } from '../graph/dims.js';
import { isFloatType } from '../proto/tensor.js';
import type { NodeProto } from '../proto/types.js';

/**
 * Re-runs a piece of a decoder on T query rows instead of the whole sequence.
 *
 * The piece (a set of nodes between an entry tensor and an exit tensor) is cloned; every tensor it
 * reads from outside is classified:
 * - the entry tensor maps to its row-gathered version (given);
 * - constants and initializers are shared (weights are never copied);
 * - tensors listed in `shared` (the attention values, indexed by key) are shared;
 * - floating-point tensors whose shape has the query axis (the symbolic sequence length of the
 *   attention rows, e.g. the residual stream [B, S, D]) are gathered on that axis;
 * - other floating-point tensors without the sequence axis are shared;
 * - integer tensors whose (symbolically known) values do not involve the sequence length are
 *   shared; the others are shape computations, whose producers are pulled into the clone so they
 *   are recomputed from the gathered tensors (yielding T instead of S).
 * Anything that cannot be classified raises an error naming the tensor.
 */
export class RowCloner {
  private readonly b: GraphBuilder;
  private readonly qSym: string;
  private readonly qpos: string;
  private readonly prefix: string;
  private readonly shared: Set<string>;
  private readonly map = new Map<string, string>();
  /** [original, clone] of every output of the cloned nodes. */
  private readonly clonedOutputs: [string, string][] = [];
  private readonly what: string;

  constructor(
    b: GraphBuilder,
    options: { qSym: string; queryPositions: string; prefix: string; shared?: Iterable<string>; what: string },
  ) {
    this.b = b;
    this.qSym = options.qSym;
    this.qpos = options.queryPositions;
    this.prefix = options.prefix;
    this.shared = new Set(options.shared ?? []);
    this.what = options.what;
  }

  /** Declares that `original` is represented by `replacement` in the clone. */
  bind(original: string, replacement: string): void {
    this.map.set(original, replacement);
  }

  /** Clones `nodes` (topological order) and returns original -> clone for their outputs. */
  cloneNodes(nodes: readonly NodeProto[]): void {
    for (const n of nodes) this.cloneNode(n);
  }

  /** The clone-side tensor for an original tensor. */
  resolve(t: string): string {
    if (t === '') return '';
    const hit = this.map.get(t);
    if (hit !== undefined) return hit;
    const out = this.classify(t);
    this.map.set(t, out);
    return out;
  }

  private cloneNode(n: NodeProto): void {
    const g = this.b.model.graph;
    const input = (n.input ?? []).map((i) => this.resolve(i));
    const output = (n.output ?? []).map((o) => {
      if (!o) return '';
      const name = g.uniqueTensorName(`${this.prefix}${o.startsWith('/') ? '' : '/'}${o}`);
      this.map.set(o, name);
      this.clonedOutputs.push([o, name]);
      return name;
    });
    const copy: NodeProto = {
      name: g.uniqueNodeName(`${this.prefix}${(n.name ?? '').startsWith('/') ? '' : '/'}${n.name || n.opType}`),
      opType: n.opType ?? '',
      input,
      output,
      attribute: [...(n.attribute ?? [])],
    };
    if (n.domain) copy.domain = n.domain;
    g.addNode(copy);
    this.b.shapes.run([copy]);
  }

  /**
   * Has every reader of a cloned floating-point tensor that carries the query axis read the forward
   * pass's own tensor at the query rows instead. The piece is row-wise, so its re-run computes
   * exactly those rows again: once the gradient is built (it needs the clone's structure, not its
   * values), the clone's forward nodes are left unread and `pruneUnread` drops them, and the
   * explanation costs the backward pass alone (the forward pass's matrix products are not redone).
   */
  readForwardRows(): void {
    const g = this.b.model.graph;
    const rows = new Map<string, string>();
    for (const [original, clone] of this.clonedOutputs) {
      const info = this.b.info(original);
      if (!info.shape || (info.type !== undefined && !isFloatType(info.type))) continue;
      const axes = this.positionAxes(info.shape);
      if (axes.length === 1) rows.set(clone, this.gather(original, axes[0] as number));
    }
    for (const n of g.nodes) {
      if (n.input?.some((i) => rows.has(i))) n.input = n.input.map((i) => rows.get(i) ?? i);
    }
    g.invalidate();
  }

  private positionAxes(shape: readonly Dim[]): number[] {
    const axes: number[] = [];
    shape.forEach((d, i) => {
      if (d === this.qSym) axes.push(i);
    });
    return axes;
  }

  private gather(t: string, axis: number): string {
    return this.b.op('Gather', [t, this.qpos], { axis }, { name: 'rows' });
  }

  private fail(t: string, why: string): never {
    const p = this.b.model.graph.producer(t);
    const from = p ? ` (output of ${p.opType} node ${p.name || '(unnamed)'})` : '';
    throw new UnsupportedModelError(
      `cannot re-run ${this.what} on the query rows: tensor ${t}${from} ${why}; export the decoder with dynamic (symbolic) sequence axes`,
    );
  }

  private classify(t: string): string {
    const b = this.b;
    const g = b.model.graph;
    if (this.shared.has(t) || g.constantTensor(t)) return t;
    const info = b.info(t);
    const float = info.type === undefined || isFloatType(info.type);
    if (float) {
      if (!info.shape)
        this.fail(t, 'has an unknown shape, so it cannot be told whether it is indexed by sequence position');
      const axes = this.positionAxes(info.shape);
      if (axes.length === 1) return this.gather(t, axes[0] as number);
      if (axes.length > 1) this.fail(t, `has the sequence axis ${this.qSym} twice ${formatShape(info.shape)}`);
      if (info.shape.some((d) => dimHasFactor(d, this.qSym) && d !== this.qSym)) {
        this.fail(t, `merges the sequence axis with another ${formatShape(info.shape)}`);
      }
      if (info.shape.some((d) => d === null)) {
        this.fail(
          t,
          `has unknown dimensions ${formatShape(info.shape)}, so it cannot be told whether it is indexed by sequence position`,
        );
      }
      return t;
    }
    // integer / boolean tensors
    if (info.value && !info.value.some((v) => v === null || dimHasFactor(v, this.qSym))) return t;
    if (info.shape) {
      const axes = this.positionAxes(info.shape);
      if (axes.length === 1 && !(info.shape.length === 1 && info.value)) return this.gather(t, axes[0] as number);
    }
    const p = g.producer(t);
    if (!p) {
      if (g.isGraphInput(t)) return t;
      this.fail(t, 'has no producer and is not a graph input');
    }
    this.cloneNode(p);
    const mapped = this.map.get(t);
    if (mapped === undefined) this.fail(t, 'could not be recomputed');
    return mapped;
  }
}
