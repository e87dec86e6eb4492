import { expect, it } from 'vitest';
import { runFuzz, summaryLine } from '../fuzz/driver.js';

/**
 * CI's fuzz run: a fixed seed and 2,000 mutated decoders (structure-aware and byte-level) through
 * read, explain-graph build and write. Every case must end built or in a typed error, and memory
 * stay bounded; a crash fails the file. Case times are reported, not asserted (no wall-clock
 * limits in unit tests): `pnpm fuzz` runs 10,000 cases and fails on any case over 5 s.
 */
it('reads, builds and writes 2,000 mutated decoders with typed errors only', async () => {
  const summary = await runFuzz({ seed: 'ci', cases: 2000 });
  console.log(summaryLine(summary));
  expect(summary.untyped).toEqual([]);
  expect(summary.built).toBeGreaterThan(0);
  expect(summary.peakRssMiB).toBeLessThan(2048);
}, 1_800_000);
