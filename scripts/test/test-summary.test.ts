import { expect, it } from 'vitest';
// @ts-expect-error: a plain ES module script without type declarations
import { summarize } from '../test-summary.mjs';

const report = (testResults: unknown[], counts: Partial<Record<string, number>> = {}) => ({
  numPassedTests: 2,
  numFailedTests: 0,
  numPendingTests: 0,
  numTodoTests: 0,
  success: true,
  ...counts,
  testResults,
});
const passing = { name: '/repo/a.test.ts', status: 'passed', message: '', assertionResults: [{ status: 'passed' }] };

it('closes on the counts of a passing run', () => {
  expect(summarize(report([passing]), '/repo')).toEqual({ line: 'tests: 2 passed, 0 failed', ok: true });
});

it('counts a test file that failed to run as a failure and names it with its first error line', () => {
  const broken = {
    name: '/repo/apps/demo/test/e2e.test.ts',
    status: 'failed',
    message: 'no Chromium at /usr/bin/chromium: install it\n    at launchChromium',
    assertionResults: [{ status: 'skipped' }],
  };
  const { line, ok } = summarize(report([passing, broken], { success: false, numPendingTests: 12 }), '/repo');
  expect(line).toBe(
    'tests: 2 passed, 1 failed, 12 skipped (apps/demo/test/e2e.test.ts did not run: no Chromium at /usr/bin/chromium: install it)',
  );
  expect(ok).toBe(false);
});

it('counts a failed test once, not again as a failed file', () => {
  const failing = { ...passing, status: 'failed', assertionResults: [{ status: 'failed' }] };
  expect(summarize(report([failing], { numFailedTests: 1, success: false }), '/repo').line).toBe(
    'tests: 2 passed, 1 failed',
  );
});

it('says so when vitest failed the run outside any test', () => {
  expect(summarize(report([passing], { success: false }), '/repo')).toEqual({
    line: 'tests: 2 passed, 0 failed (vitest reported an error outside the tests, see above)',
    ok: false,
  });
});
