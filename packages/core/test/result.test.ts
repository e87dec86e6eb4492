import { describe, expect, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import {
  causalTextKeys,
  DEFAULT_OPTIONS,
  type DexarOptions,
  type DexarOptionsSchema,
  type Explanation,
  type ExplanationSchema,
  flatHeatmap,
  heatmapRows,
  parseOptions,
} from '../src/index.js';

type Mutable<T> = T extends readonly (infer U)[]
  ? Mutable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Mutable<T[K]> }
    : T;

describe('the documented types', () => {
  it('are the types the schemas parse to', () => {
    expectTypeOf<z.output<typeof ExplanationSchema>>().toEqualTypeOf<Mutable<Explanation>>();
    expectTypeOf<z.output<typeof DexarOptionsSchema>>().toEqualTypeOf<Mutable<DexarOptions>>();
  });

  it('fill in the documented defaults', () => {
    expect(parseOptions()).toEqual(DEFAULT_OPTIONS);
    expect(DEFAULT_OPTIONS).toEqual({ layerIndex: -10, topK: 1, compat: 'official' });
    expect(() => parseOptions({ topK: 0 })).toThrowError(/^invalid DEX-AR options: topK: /);
    expect(() => parseOptions({ compat: 'exact' as never })).toThrowError(/^invalid DEX-AR options: compat: /);
  });
});

describe('flat and nested maps', () => {
  it('convert both ways', () => {
    const rows = [
      [0, 0.5, 1],
      [0.25, 0.75, 0.125],
    ];
    const { map, grid } = flatHeatmap(rows);
    expect(grid).toEqual({ height: 2, width: 3 });
    expect(Array.from(map)).toEqual([0, 0.5, 1, 0.25, 0.75, 0.125]);
    expect(heatmapRows(map, grid)).toEqual(rows);
  });

  it('refuses ragged or empty maps', () => {
    expect(() => flatHeatmap([[1, 2], [3]])).toThrowError(
      /a heatmap must be a non-empty grid of equal rows, got 2 rows of lengths 2, 1/,
    );
    expect(() => flatHeatmap([])).toThrowError(/non-empty grid/);
  });
});

describe('text-set exclusions', () => {
  const imageKeys = { start: 2, end: 6 };

  it('leave out keys the steps see', () => {
    expect(causalTextKeys([8, 9], imageKeys, [6])).toEqual([
      [0, 1, 7],
      [0, 1, 7, 8],
    ]);
  });

  it.each([
    [9, /the text-set exclusion 9 is not a key any step sees \(0 to 8\)/],
    [-1, /the text-set exclusion -1 is not a key any step sees/],
    [3, /the text-set exclusion 3 is an image key: exclude text positions, outside the image \[2, 6\)/],
  ])('refuses %d instead of ignoring it', (key, message) => {
    expect(() => causalTextKeys([8, 9], imageKeys, [key])).toThrowError(message);
  });
});
