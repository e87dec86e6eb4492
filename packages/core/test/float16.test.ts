import { describe, expect, it } from 'vitest';
import { castFeeds, floatData, fromFloat16Bits, toFloat16Bits } from '../src/float16.js';
import type { TypedTensor } from '../src/runtime.js';

const bits = (values: number[]) => Array.from(toFloat16Bits(Float32Array.from(values)));

describe('float16 at the session boundary', () => {
  it('rounds float32 to the nearest binary16, ties to even, with subnormals, overflow and NaN', () => {
    expect(bits([1, -2, 0.5, 65504, 0, -0])).toEqual([0x3c00, 0xc000, 0x3800, 0x7bff, 0, 0x8000]);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1); 1 + 3·2^-11 to 1 + 2^-9
    expect(bits([1 + 2 ** -11, 1 + 3 * 2 ** -11])).toEqual([0x3c00, 0x3c02]);
    expect(bits([1 + 2 ** -11 + 2 ** -20])).toEqual([0x3c01]);
    // smallest subnormal 2^-24; half of it ties to zero; 65520 rounds past the largest finite value
    expect(bits([2 ** -24, 2 ** -25, 3 * 2 ** -25, 65520, Number.POSITIVE_INFINITY])).toEqual([
      1, 0, 2, 0x7c00, 0x7c00,
    ]);
    expect(fromFloat16Bits(toFloat16Bits(Float32Array.of(Number.NaN)))[0]).toBeNaN();
  });

  it('decodes every binary16 value exactly and round-trips it', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((b) => (b & 0x7c00) !== 0x7c00 || !(b & 0x3ff));
    const values = fromFloat16Bits(all);
    expect(values[all.indexOf(0x3555)]).toBe(0.333251953125);
    expect(values[all.indexOf(0x0001)]).toBe(2 ** -24);
    expect(Array.from(toFloat16Bits(values))).toEqual(Array.from(all));
  });

  it('casts float32 feeds to float16 inputs only, and reads float16 outputs as float32', () => {
    const made: string[] = [];
    const tensor = (type: string, data: Float32Array | Uint16Array, dims: number[]): TypedTensor => ({
      type,
      data,
      dims,
    });
    const cache = tensor('float16', Uint16Array.of(0x3c00), [1]);
    const feeds = castFeeds(
      {
        inputs_embeds: tensor('float32', Float32Array.of(0.1, 2), [1, 2]),
        scores: tensor('float32', Float32Array.of(0.1), [1]),
        past: cache,
      },
      { inputs_embeds: 'float16', scores: 'float32', past: 'float16' },
      (b, dims) => {
        made.push('float16');
        return tensor('float16', b, [...dims]);
      },
    );
    expect(made).toEqual(['float16']);
    expect(feeds.inputs_embeds?.type).toBe('float16');
    expect(Array.from(floatData(feeds.inputs_embeds as TypedTensor))).toEqual([0.0999755859375, 2]);
    expect(feeds.scores?.type).toBe('float32');
    expect(feeds.past).toBe(cache);
  });
});
