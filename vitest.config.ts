import { defineConfig } from 'vitest/config';

// One run over every package and app; each folder is a project with its own tests.
export default defineConfig({
  test: {
    globalSetup: ['scripts/test-environment.ts'],
    projects: ['packages/*/vitest.config.ts', 'apps/*/vitest.config.ts', 'scripts/vitest.config.ts'],
  },
});
