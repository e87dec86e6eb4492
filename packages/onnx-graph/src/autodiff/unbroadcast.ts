import type { GraphBuilder } from '../graph/builder.js';
import { dimEq } from '../graph/dims.js';

/**
 * Sums a gradient `g` back to the shape of `x`, undoing numpy broadcasting (the EXPAND rule of
 * tinygrad). Static shapes decide when they can; otherwise the axes to sum are computed at run time
 * from `Shape(g)` and `Shape(x)`, so symbolic sequence lengths work.
 */
export function unbroadcast(b: GraphBuilder, g: string, x: string): string {
  const sg = b.shape(g);
  const sx = b.shape(x);
  if (sg && sx) {
    if (sg.length === sx.length && sg.every((d, i) => dimEq(d, sx[i] ?? null))) return g;
    let out = g;
    const lead = sg.length - sx.length;
    if (lead < 0) return runtime(b, g, x);
    if (lead > 0) {
      out = b.reduce(
        'ReduceSum',
        out,
        Array.from({ length: lead }, (_, i) => i),
        false,
      );
    }
    const rest = sg.slice(lead);
    const staticAxes: number[] = [];
    let needRuntime = false;
    rest.forEach((d, i) => {
      const xd = sx[i] ?? null;
      if (dimEq(d, xd)) return;
      if (xd === 1) {
        if (d !== 1) staticAxes.push(i);
        return;
      }
      // a known size other than 1 cannot have been broadcast
      if (typeof xd === 'number') return;
      needRuntime = true;
    });
    if (needRuntime) return onesAxes(b, out, x);
    if (staticAxes.length) out = b.reduce('ReduceSum', out, staticAxes, true);
    return out;
  }
  return runtime(b, g, x);
}

/** Sums over the axes where `x` has size 1 (ranks equal), decided at run time. */
function onesAxes(b: GraphBuilder, g: string, x: string): string {
  const ones = b.op('Equal', [b.shapeOf(x), b.int64(1)]);
  const axes = b.op('Reshape', [b.op('NonZero', [ones]), b.int64s([-1])]);
  return b.reduce('ReduceSum', g, axes, true, { noop_with_empty_axes: 1 });
}

/** Fully run-time unbroadcast (ranks unknown). */
function runtime(b: GraphBuilder, g: string, x: string): string {
  const rg = b.op('Size', [b.shapeOf(g)]);
  const rx = b.op('Size', [b.shapeOf(x)]);
  const lead = b.op('Range', [b.int64(0), b.op('Sub', [rg, rx]), b.int64(1)]);
  const reduced = b.reduce('ReduceSum', g, lead, false, { noop_with_empty_axes: 1 });
  return onesAxes(b, reduced, x);
}
