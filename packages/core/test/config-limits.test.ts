import { describe, expect, it } from 'vitest';
import { checkConfigLimits } from '../src/adapter.js';

const llava = {
  model_type: 'llava',
  text_config: { num_hidden_layers: 4, max_position_embeddings: 4096 },
  vision_config: { image_size: 64, patch_size: 8 },
};

describe('config limits', () => {
  it('accepts a sane config, arrays of patch sizes included', () => {
    expect(() => checkConfigLimits(llava, 'config.json')).not.toThrow();
    expect(() => checkConfigLimits({ vision_config: { patch_size: [7, 3, 3, 3] } }, 'config.json')).not.toThrow();
  });

  it.each([
    [
      { ...llava, text_config: { num_hidden_layers: 1e9 } },
      /text_config\.num_hidden_layers is 1000000000, not an integer from 1 to 1024/,
    ],
    [
      { ...llava, vision_config: { image_size: 65, patch_size: 8 } },
      /vision_config\.image_size \(65\) does not divide by patch_size \(8\)/,
    ],
    [{ size: { shortest_edge: 1e9 } }, /size\.shortest_edge is 1000000000, not an integer from 1 to 4096/],
    [{ text_config: { num_hidden_layers: 2.5 } }, /num_hidden_layers is 2\.5/],
    [{ text_config: { num_hidden_layers: -1 } }, /num_hidden_layers is -1/],
  ])('refuses %j with one line naming the file and field', (config, message) => {
    expect(() => checkConfigLimits(config, '/m/config.json')).toThrowError(message);
    expect(() => checkConfigLimits(config, '/m/config.json')).toThrowError(
      /^\/m\/config\.json: .*: the file is damaged or not from a supported model$/,
    );
  });

  it('refuses nesting deeper than any config rather than walking it', () => {
    let deep: unknown = {};
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    expect(() => checkConfigLimits(deep, 'config.json')).toThrowError(/nests deeper than 16 levels/);
  });
});
