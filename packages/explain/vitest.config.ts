import { defineProject } from 'vitest/config';

// The cache tests build explain graphs and run onnxruntime sessions several times: allow them a minute.
export default defineProject({ test: { name: 'explain', testTimeout: 60_000 } });
