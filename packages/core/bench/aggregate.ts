// Aggregation at the LLaVA-7B shape (issue #16: "< 0.3 s on one core"; earlier "no more than
// two copies of the input alive"): T = 64 tokens, 32 layers, 32 heads, 576
// image keys. Prints the median of 5 runs and the peak memory beyond the input.
import { aggregate, type Compat, causalTextKeys, tensor } from '../src/index.js';

const T = 64;
const L = 32;
const H = 32;
const imageKeys = { start: 35, end: 35 + 576 };
const promptLength = imageKeys.end + 20;
const K = promptLength + T - 1;

const keyCounts = Array.from({ length: T }, (_, n) => promptLength + n);
const data = new Float32Array(T * L * H * K);
let seed = 1;
for (let i = 0; i < data.length; i++) {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  data[i] = seed / 2 ** 31 - 1;
}
const inputBytes = data.byteLength;
const gradients = {
  rows: tensor(data, [T, L, H, K]),
  layers: Array.from({ length: L }, (_, l) => l),
  numLayers: L,
};
const maxRssBytes = () => process.resourceUsage().maxRSS * 1024;

console.log(
  `aggregate: T=${T} layers=${L} heads=${H} image keys=576 keys=${K}; input ${(inputBytes / 2 ** 20).toFixed(0)} MiB (float32)`,
);
for (const compat of ['official', 'paper'] as Compat[]) {
  const layout = {
    imageKeys,
    grid: { height: 24, width: 24 },
    keyCounts,
    textKeys: causalTextKeys(keyCounts, imageKeys, compat === 'official' ? [imageKeys.end] : []),
  };
  const before = maxRssBytes();
  const times: number[] = [];
  for (let run = 0; run < 5; run++) {
    const start = performance.now();
    aggregate(gradients, layout, { layerIndex: 0, compat });
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const extra = Math.max(0, maxRssBytes() - before);
  console.log(
    `  ${compat.padEnd(8)} median ${(times[2] / 1000).toFixed(3)} s (min ${(times[0] / 1000).toFixed(3)}, max ${(times[4] / 1000).toFixed(3)}; target < 0.3 s)` +
      `  peak memory beyond the input ${(extra / 2 ** 20).toFixed(1)} MiB = ${(extra / inputBytes).toFixed(2)} input copies (target: input + at most 1 copy)`,
  );
}
