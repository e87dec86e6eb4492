// Vitest global setup: every test and every process it starts (the CLI, Chromium, ONNX Runtime)
// gets one fresh temporary folder through TMPDIR, removed when the run ends, so a test run leaves
// nothing in the system temp folder even where a test forgets to clean up. Tests that open
// ONNX Runtime sessions directly keep its telemetry out of the home folder as dexar's backend does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function isolateTemporaryFiles(): () => void {
  const systemTmp = tmpdir();
  const runTmp = mkdtempSync(join(systemTmp, 'dexar-test-run-'));
  process.env.TMPDIR = runTmp;
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  return () => {
    process.env.TMPDIR = systemTmp;
    rmSync(runTmp, { recursive: true, force: true });
  };
}
