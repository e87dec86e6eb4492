import { defineProject } from 'vitest/config';

// End-to-end tests build explain graphs and run onnxruntime sessions: allow them a minute.
export default defineProject({
  test: { name: 'onnx-graph', testTimeout: 60_000, setupFiles: ['test/quiet-onnxruntime.ts'] },
});
