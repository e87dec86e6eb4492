/**
 * Symbolic tensor dimensions. A dimension is a number, a canonical symbolic expression (a string),
 * or `null` when nothing is known. Symbols come from `dim_param` names of graph inputs; products
 * are kept as sorted monomials (`4*batch_size*sequence_length`) so that a reshape's `-1` can be
 * solved, and sums stay opaque atoms (`(past_sequence_length+sequence_length)`). Two dimensions are
 * known equal only when their canonical forms are identical.
 */
export type Dim = number | string | null;

interface Monomial {
  coef: number;
  factors: string[];
}

/** Splits `s` at top-level occurrences of `sep` (outside () and []). */
function splitTop(s: string, sep: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === sep && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** Turns a `dim_param` name into a symbol atom (bracketed when it is not a plain identifier). */
export function symbol(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.]*$/.test(name) ? name : `[${name}]`;
}

function toMonomial(d: number | string): Monomial {
  if (typeof d === 'number') return { coef: d, factors: [] };
  let coef = 1;
  const factors: string[] = [];
  for (const part of splitTop(d, '*')) {
    if (/^-?\d+$/.test(part)) coef *= Number(part);
    else factors.push(part);
  }
  return { coef, factors };
}

function fromMonomial(m: Monomial): number | string {
  if (m.factors.length === 0 || m.coef === 0) return m.coef;
  const f = [...m.factors].sort();
  return m.coef === 1 ? f.join('*') : `${m.coef}*${f.join('*')}`;
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  const x = toMonomial(a);
  const y = toMonomial(b);
  return fromMonomial({ coef: x.coef * y.coef, factors: [...x.factors, ...y.factors] });
}

/** a / b when the division is exact (known), else null. */
export function dimDiv(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') {
    if (b === 0 || a % b !== 0) return null;
    return a / b;
  }
  const x = toMonomial(a);
  const y = toMonomial(b);
  if (y.coef === 0 || x.coef % y.coef !== 0) return null;
  const rest = [...x.factors];
  for (const f of y.factors) {
    const k = rest.indexOf(f);
    if (k < 0) return null;
    rest.splice(k, 1);
  }
  return fromMonomial({ coef: x.coef / y.coef, factors: rest });
}

function terms(d: number | string): Array<number | string> {
  if (typeof d === 'string' && d.startsWith('(') && d.endsWith(')')) {
    const inner = d.slice(1, -1);
    const parts = splitTop(inner, '+');
    if (parts.length > 1) return parts.map((p) => (/^-?\d+$/.test(p) ? Number(p) : p));
  }
  return [d];
}

function fromTerms(list: Array<number | string>): number | string {
  let num = 0;
  const syms: string[] = [];
  for (const t of list) {
    if (typeof t === 'number') num += t;
    else syms.push(t);
  }
  if (syms.length === 0) return num;
  if (num !== 0) syms.push(String(num));
  if (syms.length === 1) return syms[0] as string;
  return `(${syms.sort().join('+')})`;
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  return fromTerms([...terms(a), ...terms(b)]);
}

export function dimSub(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (a === b) return 0;
  const list = terms(a);
  if (typeof b === 'number') return fromTerms([...list, -b]);
  const k = list.indexOf(b);
  if (k >= 0) {
    list.splice(k, 1);
    return fromTerms(list);
  }
  return null;
}

/**
 * Rebuilds a dim with each symbol atom replaced by `fn(atom)`, re-canonicalising sums and products
 * (so `(past+S2)` with `S2 -> S1` becomes `(S1+past)`).
 */
export function mapAtoms(d: Dim, fn: (atom: string) => Dim): Dim {
  if (typeof d !== 'string') return d;
  const sum = terms(d);
  if (sum.length > 1) return sum.reduce<Dim>((acc, t) => dimAdd(acc, mapAtoms(t, fn)), 0);
  const m = toMonomial(d);
  if (m.factors.length === 1 && m.coef === 1) return fn(m.factors[0] as string);
  return m.factors.reduce<Dim>((acc, f) => dimMul(acc, mapAtoms(f, fn)), m.coef);
}

/** The symbol atoms a dim is built from. */
export function atomsOf(d: Dim): string[] {
  const out: string[] = [];
  mapAtoms(d, (a) => {
    out.push(a);
    return a;
  });
  return out;
}

/** True when both dims are known and identical. */
export function dimEq(a: Dim, b: Dim): boolean {
  return a !== null && b !== null && a === b;
}

/** True when `d` is the symbol `sym` or a product that has `sym` as a factor. */
export function dimHasFactor(d: Dim, sym: string): boolean {
  if (typeof d !== 'string') return false;
  if (d === sym) return true;
  return toMonomial(d).factors.includes(sym);
}

/** Product of dims (null if any is unknown). */
export function dimProduct(dims: readonly Dim[]): Dim {
  let p: Dim = 1;
  for (const d of dims) p = dimMul(p, d);
  return p;
}

/**
 * Broadcasts two shapes (numpy rules). A known dim against an unknown one keeps the known one (the
 * unknown is taken to be 1 or equal: an exporter's mask of unknown shape added to scores
 * `[B, H, S, K]` must not erase `S`). Two different known dims that are not 1 must be equal at run
 * time: `unify` is told, so that symbols of unnamed input dims can be merged (`S1 = S2`).
 */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[], unify?: (x: Dim, y: Dim) => void): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = i < n - a.length ? 1 : (a[i - (n - a.length)] as Dim);
    const y = i < n - b.length ? 1 : (b[i - (n - b.length)] as Dim);
    if (x === 1) out.push(y);
    else if (y === 1 || y === null) out.push(x);
    else if (x === null) out.push(y);
    else if (dimEq(x, y)) out.push(x);
    else {
      unify?.(x, y);
      out.push(typeof y === 'number' ? y : x);
    }
  }
  return out;
}

/** Renders a shape for messages: `[batch_size, 4, sequence_length, ?]`. */
export function formatShape(shape: readonly Dim[] | undefined): string {
  if (!shape) return '(unknown shape)';
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}
