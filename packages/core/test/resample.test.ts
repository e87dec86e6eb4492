import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { resample } from '../src/index.js';

describe('resample (Pillow resize)', () => {
  const pattern = (x: number, y: number, c: number) =>
    (x * 37 + y * 91 + c * 53 + ((x * y) % 17) * 13 + (x ^ y) * 7) % 256;

  it('gives exactly the bytes of Pillow for shrinking, enlarging, bicubic and bilinear', async () => {
    const fixture = JSON.parse(await readFile(new URL('./fixtures/pil-resize.json', import.meta.url), 'utf8'));
    const { width: W, height: H } = fixture.source;
    const data = new Uint8Array(W * H * 4);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) data[(y * W + x) * 4 + c] = pattern(x, y, c);
        data[(y * W + x) * 4 + 3] = 255;
      }
    for (const c of fixture.cases) {
      const out = resample({ width: W, height: H, data }, c.width, c.height, c.filter);
      const rgb = out.data.filter((_, i) => i % 4 !== 3);
      expect(Buffer.from(rgb).toString('base64'), `${c.filter} ${c.width}x${c.height}`).toBe(c.rgb);
    }
  });

  it('rejects a size that is not a positive integer', () => {
    expect(() => resample({ width: 1, height: 1, data: new Uint8Array(4) }, 0, 2, 'bicubic')).toThrow(/positive/);
  });
});
