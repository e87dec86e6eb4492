import { tmpdir } from 'node:os';
import { basename } from 'node:path';
import { expect, it } from 'vitest';

it('runs every test inside the run-scoped temporary folder the global setup removes', () => {
  expect(basename(tmpdir())).toMatch(/^dexar-test-run-/);
});
