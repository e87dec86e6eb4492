import { DexarError } from './errors.js';

/** A half-open range `[start, end)` on the key axis. */
export interface KeySpan {
  readonly start: number;
  readonly end: number;
}

export interface Grid {
  readonly height: number;
  readonly width: number;
}

/**
 * Where things sit on the key axis of each explained step. An adapter builds
 * it; `core` never guesses a model family's layout.
 */
export interface TokenLayout {
  /** Image keys `[i0, i1)`: `grid.height * grid.width` patches, row-major. */
  readonly imageKeys: KeySpan;
  readonly grid: Grid;
  /** Keys visible at step n (`q_n + 1` for self-attention, the encoder length for cross-attention). `[T]` */
  readonly keyCounts: readonly number[];
  /** The text set `Text_n` of each step: key positions, all below `keyCounts[n]`. `[T][*]` */
  readonly textKeys: readonly (readonly number[])[];
}

/**
 * Text keys of a causal decoder at step n: every visible non-image key, less
 * `exclude` (the authors' code leaves out the first key after the image for
 * LLaVA: docs/algorithm.md, quirk 2). An excluded key must be a non-image key
 * that some step sees: anything else is refused, not ignored.
 */
export function causalTextKeys(
  keyCounts: readonly number[],
  imageKeys: KeySpan,
  exclude: readonly number[] = [],
): number[][] {
  const visible = Math.max(0, ...keyCounts);
  for (const k of exclude) {
    const image = k >= imageKeys.start && k < imageKeys.end;
    if (!Number.isInteger(k) || k < 0 || k >= visible || image) {
      invalidLayout(
        `the text-set exclusion ${k} is ${image ? 'an image key' : `not a key any step sees (0 to ${visible - 1})`}: exclude text positions, outside the image [${imageKeys.start}, ${imageKeys.end})`,
      );
    }
  }
  const skipped = new Set(exclude);
  return keyCounts.map((count) => {
    const keys: number[] = [];
    for (let k = 0; k < count; k++) {
      if ((k < imageKeys.start || k >= imageKeys.end) && !skipped.has(k)) keys.push(k);
    }
    return keys;
  });
}

const invalidLayout = (what: string): never => {
  throw new DexarError('invalid-input', `invalid token layout: ${what}`);
};

/** The image span and its grid agree. */
export function validateGrid(imageKeys: KeySpan, grid: Grid): void {
  if (!(grid.height > 0 && grid.width > 0 && Number.isInteger(grid.height) && Number.isInteger(grid.width))) {
    invalidLayout(`grid ${grid.height} x ${grid.width} must be positive integers`);
  }
  if (imageKeys.end - imageKeys.start !== grid.height * grid.width || imageKeys.start < 0) {
    invalidLayout(
      `image keys [${imageKeys.start}, ${imageKeys.end}) hold ${imageKeys.end - imageKeys.start} positions but the grid ${grid.height} x ${grid.width} needs ${grid.height * grid.width}`,
    );
  }
}

/** Step `n` sees `count` keys of the `keysAxis` its rows hold, the whole image among them, and text keys inside them. */
export function validateStep(
  imageKeys: KeySpan,
  n: number,
  count: number,
  textKeys: readonly number[],
  keysAxis: number,
): void {
  if (count > keysAxis) invalidLayout(`step ${n} sees ${count} keys but the gradient rows hold only ${keysAxis}`);
  if (imageKeys.end > count)
    invalidLayout(`step ${n} sees ${count} keys, fewer than the image keys end ${imageKeys.end}`);
  for (const k of textKeys) {
    if (!(k >= 0 && k < count)) invalidLayout(`text key ${k} of step ${n} is outside its ${count} visible keys`);
    if (k >= imageKeys.start && k < imageKeys.end) invalidLayout(`text key ${k} of step ${n} is an image key`);
  }
}

/** One key count and one text set per step. */
export function validateStepCount(layout: TokenLayout, steps: number): void {
  const { keyCounts, textKeys } = layout;
  if (keyCounts.length !== steps || textKeys.length !== steps) {
    invalidLayout(`${steps} gradient steps but ${keyCounts.length} key counts and ${textKeys.length} text key sets`);
  }
}
