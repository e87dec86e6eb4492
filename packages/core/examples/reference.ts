// Aggregates the authors' reference gradient rows of the tiny LLaVA case
// (test/conformance) and prints each token's weight and the sentence map.
import { aggregate } from '../src/index.js';
import { gradientRowsOf, layoutOf, loadCase } from '../test/conformance.js';

const c = loadCase('llava_tiny-case0');
const maps = aggregate(gradientRowsOf(c, 'official'), layoutOf(c, 'official'), { layerIndex: 0 });
const shades = ' .:-=+*#%@';

console.log(`target: ${c.tokens.join(' ')}\n\ntoken weights (delta):`);
c.tokens.forEach((token, n) => {
  const delta = maps.tokenWeights[n];
  console.log(`  ${token.padEnd(8)} ${delta.toFixed(3).padStart(6)} ${'#'.repeat(Math.round(delta * 8))}`);
});
console.log(`\nsentence map (${maps.grid.height} x ${maps.grid.width}, layers ${maps.layersUsed.join(', ')}):`);
for (let r = 0; r < maps.grid.height; r++) {
  const row = Array.from(maps.sentence.subarray(r * maps.grid.width, (r + 1) * maps.grid.width));
  console.log(`  ${row.map((v) => shades[Math.min(9, Math.floor(v * 10))].repeat(2)).join('')}`);
}
