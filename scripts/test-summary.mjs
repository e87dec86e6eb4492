// Prints the closing line of the test command, "N passed, N failed", from the
// vitest JSON report, and fails when any test failed or none ran.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const skipped = report.numPendingTests + report.numTodoTests;
console.log(
  `tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`,
);
process.exit(report.numFailedTests === 0 && report.numPassedTests > 0 && report.success ? 0 : 1);
