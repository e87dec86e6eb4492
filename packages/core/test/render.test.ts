import { describe, expect, it } from 'vitest';
import { colormapTable, overlayHeatmap, renderHeatmap, upsampleBilinear } from '../src/index.js';

describe('upsampleBilinear', () => {
  it('matches PyTorch interpolate(bilinear, align_corners=False) on a 2 x 2 map', () => {
    const out = upsampleBilinear([1, 2, 3, 4], { height: 2, width: 2 }, 4, 4);
    // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=4, mode='bilinear')
    expect(Array.from(out)).toEqual([1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]);
  });

  it('keeps a map of the output size unchanged and handles non-square grids', () => {
    const map = [0, 1, 2, 3, 4, 5];
    expect(Array.from(upsampleBilinear(map, { height: 2, width: 3 }, 3, 2))).toEqual(map);
    expect(upsampleBilinear(map, { height: 2, width: 3 }, 30, 7)).toHaveLength(210);
  });
});

describe('colormaps', () => {
  it('runs jet from dark blue to dark red', () => {
    const jet = colormapTable('jet');
    expect(Array.from(jet.subarray(0, 3))).toEqual([0, 0, 128]);
    expect(Array.from(jet.subarray(255 * 3))).toEqual([128, 0, 0]);
  });

  it('evaluates the turbo polynomial fit: dark at both ends, green-yellow in the middle', () => {
    const turbo = colormapTable('turbo');
    expect(Array.from(turbo.subarray(0, 3))).toEqual([35, 23, 27]);
    expect(Array.from(turbo.subarray(255 * 3))).toEqual([144, 13, 0]);
    const [r, g, b] = turbo.subarray(128 * 3, 129 * 3);
    expect(g).toBeGreaterThan(200);
    expect(r).toBeGreaterThan(b);
  });
});

describe('overlayHeatmap', () => {
  const image = { width: 2, height: 1, data: new Uint8Array([10, 20, 30, 255, 40, 50, 60, 128]) };
  const grid = { height: 1, width: 2 };

  it('leaves the image as it is at alpha 0 and shows only the heatmap at alpha 1', () => {
    expect(Array.from(overlayHeatmap(image, [0, 1], grid, { alpha: 0 }).data)).toEqual(Array.from(image.data));
    const heat = renderHeatmap([0, 1], grid, 2, 1);
    const full = overlayHeatmap(image, [0, 1], grid, { alpha: 1 });
    expect(Array.from(full.data)).toEqual([...heat.data.subarray(0, 3), 255, ...heat.data.subarray(4, 7), 128]);
  });

  it('blends linearly in between', () => {
    const half = overlayHeatmap(image, [0, 0], grid, { alpha: 0.5, colormap: 'jet' });
    expect(Array.from(half.data.subarray(0, 4))).toEqual([5, 10, 79, 255]);
  });
});
