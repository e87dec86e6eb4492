// Prints the closing line of the test command, "N passed, N failed", from the
// vitest JSON report, and fails when any test failed or none ran. A test file
// that fails to run (a failing beforeAll, an import error) counts as one failure
// and is named with its first error line: its tests never ran, so no test count shows it.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The closing line and whether the run passed, from a parsed vitest JSON report. */
export function summarize(report, root = process.cwd()) {
  const failedFiles = report.testResults.filter(
    (file) => file.status === 'failed' && !file.assertionResults.some((test) => test.status === 'failed'),
  );
  const failed = report.numFailedTests + failedFiles.length;
  const skipped = report.numPendingTests + report.numTodoTests;
  const reasons = failedFiles.map(
    (file) => `${relative(root, file.name)} did not run: ${(file.message || 'unknown error').trim().split('\n')[0]}`,
  );
  // an error outside any test (an unhandled rejection, a worker timeout) fails the run without failing a test
  if (!report.success && failed === 0) reasons.push('vitest reported an error outside the tests, see above');
  const line = `tests: ${report.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}${
    reasons.length ? ` (${reasons.join('; ')})` : ''
  }`;
  return { line, ok: failed === 0 && report.numPassedTests > 0 && report.success };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { line, ok } = summarize(JSON.parse(readFileSync(process.argv[2], 'utf8')));
  console.log(line);
  process.exit(ok ? 0 : 1);
}
