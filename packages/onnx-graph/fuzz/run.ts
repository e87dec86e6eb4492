/**
 * `pnpm fuzz [--seed S] [--cases N]`: the long fuzz run (10,000 cases by default). Prints the
 * summary line and the untyped errors, and exits 1 on any untyped error or hang; a crash ends
 * the process without a summary.
 */
import { parseArgs } from 'node:util';
import { runFuzz, summaryLine } from './driver.js';

const { values } = parseArgs({ options: { seed: { type: 'string' }, cases: { type: 'string' } } });
const summary = await runFuzz({ seed: values.seed ?? 'dexar-fuzz', cases: Number(values.cases ?? 10_000) });
console.log(summaryLine(summary));
for (const line of summary.untyped.slice(0, 20)) console.log(`untyped: ${line}`);
process.exitCode = summary.untyped.length === 0 && summary.hangs === 0 ? 0 : 1;
